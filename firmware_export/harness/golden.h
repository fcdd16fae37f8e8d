/* golden.h - the Python reference vectors (golden_data.c, written by firmware_export/generate.py). */
#ifndef KWS_GOLDEN_H
#define KWS_GOLDEN_H

#include <stdint.h>

#include "../kws.h"

extern const uint32_t golden_n_samples;
extern const int16_t golden_pcm[];
extern const uint32_t golden_n_frames;
extern const float golden_feats[];          /* [frames][KWS_N_FEATURES] kws.features.featurize */
extern const int8_t golden_xq[];            /* [frames][KWS_N_FEATURES] QuantizedFastGRNN.quantize_input */
extern const float golden_feat_tol;
extern const uint32_t golden_n_windows;
extern const uint32_t golden_window_end[];  /* frame count after which each window is scored */
extern const int64_t golden_logits[];       /* QuantizedFastGRNN.run_int per window */
extern const int64_t golden_sums[];         /* detector's smoothed sums per hop */
extern const uint32_t golden_trace_frames;
extern const int16_t golden_trace_h[];      /* [frames][KWS_HIDDEN] state trace of the first window */
extern const int64_t golden_trace_logit[];  /* logit after every frame of the first window */
extern const kws_params_t golden_params;
extern const uint32_t golden_n_detections;
extern const uint32_t golden_detection_hop[];
extern const uint32_t golden_n_default_detections;  /* the same with kws_default_params() */
extern const uint32_t golden_default_detection_hop[];

/* platform (host_main.c or qemu_start.c) */
void hw_write(const char *s, unsigned n);

/* the checks; returns the number of failed checks */
int harness_run(void);

#endif
