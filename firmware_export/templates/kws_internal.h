/* kws_internal.h - tables and helpers shared by the library's .c files (not part of the API). */
#ifndef KWS_INTERNAL_H
#define KWS_INTERNAL_H

#include <stdint.h>

#include "kws_config.h"

/* featurizer tables (kws_tables.c) */
extern const float kws_window_table[KWS_WINDOW_TABLE_LEN];
extern const float kws_cos_table[KWS_NFFT / 2];
extern const uint8_t kws_bin_band_start[KWS_NFFT / 2 + 1];
extern const uint8_t kws_bin_band_count[KWS_NFFT / 2 + 1];
extern const float kws_bin_weights[KWS_N_BIN_WEIGHTS];
#if KWS_PROJECT
extern const float kws_projection[KWS_N_MELS * KWS_N_FEATURES];
#endif
/* feature normalization + int8 quantization: q = clamp(round((f - mean) * kws_feat_mul)) */
extern const float kws_feat_mean[KWS_N_FEATURES];
extern const float kws_feat_mul[KWS_N_FEATURES];

#if KWS_WINDOW_SYMMETRIC
/* periodic Hann: w[n] = w[L - n], only w[0 .. L/2] is stored */
#define kws_window(n) kws_window_table[(n) <= KWS_FRAME_LENGTH / 2 ? (n) : KWS_FRAME_LENGTH - (n)]
#else
#define kws_window(n) kws_window_table[n]
#endif

float kws_logf(float x);

/* model tables (kws_weights.c), names as docs/QUANTIZATION.md */
extern const int8_t kws_W_q[KWS_HIDDEN * KWS_N_FEATURES];
extern const int32_t kws_W_mult[KWS_HIDDEN];
extern const int32_t kws_W_shift[KWS_HIDDEN];
extern const int8_t kws_U_q[KWS_HIDDEN * KWS_U_BLOCK];
extern const int32_t kws_U_mult[KWS_HIDDEN];
extern const int32_t kws_U_shift[KWS_HIDDEN];
extern const int32_t kws_b_z[KWS_HIDDEN];
extern const int32_t kws_b_h[KWS_HIDDEN];
extern const int8_t kws_head_q[KWS_HIDDEN];
#if KWS_ZETA_PER_UNIT
extern const int32_t kws_zeta_q15[KWS_HIDDEN];
extern const int32_t kws_nu_q15[KWS_HIDDEN];
#endif
#if KWS_NONLIN_LUT
extern const int16_t kws_sigmoid_lut[513];
extern const int16_t kws_tanh_lut[513];
#endif

void kws_model_step(const int8_t *x, int16_t *h);
int64_t kws_model_logit(const int16_t *h);
int64_t kws_model_ring(const int8_t (*rows)[KWS_N_FEATURES], unsigned n_rows, unsigned start);

/* float -> int8 with round half away from zero and saturation to +-127 (QUANTIZATION.md input edge) */
#define KWS_ROUND_TO_INT8(v, out)                                                  \
    do {                                                                           \
        float t_ = (v);                                                            \
        if (!(t_ > -127.0f)) (out) = -127;                                         \
        else if (t_ >= 127.0f) (out) = 127;                                        \
        else (out) = (int8_t)(int32_t)(t_ >= 0.0f ? t_ + 0.5f : t_ - 0.5f);         \
    } while (0)

#endif
