/* kws.c - the public API: block of int16 samples in, detection flag out.
 *
 * Samples fill a KWS_FRAME_LENGTH frame; each complete frame (every KWS_HOP_LENGTH samples) is
 * featurized, normalized and quantized to int8 into a ring of the last KWS_WINDOW_FRAMES frames.
 * Every KWS_HOP_FRAMES frames (once the ring is full) the int8 model scores the whole window from a
 * zero state; the detector sums the last `smoothing` window logits and fires on the rising edge of
 * "sum >= count * threshold" (the mean compared without a division) when at least
 * `refractory_hops` hops passed since the previous detection. The schedule counts samples, so the
 * block size never changes the output.
 */
#include "kws.h"
#include "kws_internal.h"

#define KWS_MAGIC 0x6b777331u /* "kws1" */

kws_params_t kws_default_params(void) {
    kws_params_t p;
    p.threshold = KWS_DEFAULT_THRESHOLD;
    p.smoothing = KWS_DEFAULT_SMOOTHING;
    p.refractory_hops = KWS_DEFAULT_REFRACTORY_HOPS;
    return p;
}

kws_status_t kws_reset(kws_state_t *st) {
    unsigned i;
    if (st == 0) return KWS_ERR_NULL;
    if (st->magic != KWS_MAGIC) return KWS_ERR_NOT_INIT;
    st->pcm_fill = 0;
#if KWS_MEAN_NORM
    st->feat_mean_n = 0;
#endif
#if KWS_AGC
    st->agc_noise = 0.0f;
    st->agc_speech = KWS_AGC_START_LEVEL;
    st->agc_weight = KWS_AGC_PRIOR_WEIGHT;
    st->agc_started = 0;
#endif
    st->feat_head = 0;
    st->frames_seen = 0;
    for (i = 0; i < KWS_MAX_SMOOTHING; i++) st->logits[i] = 0;
    st->logit_head = 0;
    st->logit_count = 0;
    st->above = 0;
    st->last_logit = 0;
    st->last_sum = 0;
    st->hops_seen = 0;
    st->fire_hop = 0;
    return KWS_OK;
}

kws_status_t kws_init(kws_state_t *st, const kws_params_t *params) {
    kws_params_t p;
    if (st == 0) return KWS_ERR_NULL;
    p = params ? *params : kws_default_params();
    if (p.smoothing < 1 || p.smoothing > KWS_MAX_SMOOTHING) return KWS_ERR_BAD_PARAM;
    st->params = p;
    st->magic = KWS_MAGIC;
    return kws_reset(st);
}

/* One window score -> detector update; returns 1 on a detection. The rule is kws.stream's
 * (rising edge of the smoothed score across the threshold, at least refractory_hops hops after the
 * previous detection) with the moving average taken over integer logits, so the decision is exact
 * integer arithmetic: mean >= threshold  <=>  sum >= count * threshold. */
static int detector_update(kws_state_t *st, int64_t logit) {
    unsigned i, n, s = st->params.smoothing;
    int64_t sum = 0;
    int above, fire = 0;
    st->logits[st->logit_head] = logit;
    st->logit_head = (uint16_t)((st->logit_head + 1) % s);
    if (st->logit_count < s) st->logit_count++;
    n = st->logit_count;
    for (i = 0; i < n; i++) sum += st->logits[i];
    st->hops_seen++;
    st->last_logit = logit;
    st->last_sum = sum;
    above = sum >= (int64_t)n * st->params.threshold;
    if (above && !st->above &&
        (st->fire_hop == 0 || st->hops_seen - st->fire_hop >= st->params.refractory_hops)) {
        fire = 1;
        st->fire_hop = st->hops_seen;
    }
    st->above = (uint8_t)above;
    return fire;
}

/* A complete frame in st->pcm -> int8 row in the ring; maybe a window score. */
static int frame_done(kws_state_t *st) {
    float feat[KWS_N_FEATURES];
    kws_featurize_frame(st, st->pcm, feat);
    kws_quantize_features(feat, st->feats[st->feat_head]);
    st->feat_head = (uint16_t)(st->feat_head + 1 == KWS_WINDOW_FRAMES ? 0 : st->feat_head + 1);
    st->frames_seen++;
    if (st->frames_seen >= KWS_WINDOW_FRAMES && (st->frames_seen - KWS_WINDOW_FRAMES) % KWS_HOP_FRAMES == 0) {
        /* ring is full: feat_head is the oldest row */
        return detector_update(st, kws_model_ring((const int8_t(*)[KWS_N_FEATURES])st->feats,
                                                  KWS_WINDOW_FRAMES, st->feat_head));
    }
    return 0;
}

kws_status_t kws_process(kws_state_t *st, const int16_t *pcm, size_t n, int *fired) {
    size_t i = 0;
    int count = 0;
    if (st == 0 || fired == 0 || (pcm == 0 && n > 0)) return KWS_ERR_NULL;
    if (st->magic != KWS_MAGIC) return KWS_ERR_NOT_INIT;
    *fired = 0;
    while (i < n) {
        size_t take = KWS_FRAME_LENGTH - st->pcm_fill, k;
        if (take > n - i) take = n - i;
        for (k = 0; k < take; k++) st->pcm[st->pcm_fill + k] = pcm[i + k];
        st->pcm_fill = (uint16_t)(st->pcm_fill + take);
        i += take;
        if (st->pcm_fill == KWS_FRAME_LENGTH) {
            count += frame_done(st);
            /* keep the overlap: the next frame starts KWS_HOP_LENGTH samples later */
            for (k = 0; k < KWS_FRAME_LENGTH - KWS_HOP_LENGTH; k++) st->pcm[k] = st->pcm[k + KWS_HOP_LENGTH];
            st->pcm_fill = KWS_FRAME_LENGTH - KWS_HOP_LENGTH;
        }
    }
    *fired = count;
    return KWS_OK;
}
