/* harness.c - checks the C library against the Python golden vectors. Same source on the host
 * (gcc -O2 -Wall -Werror -std=c99) and on Cortex-M4 Thumb under qemu-arm. No stdio, no libm.
 *
 *  1. featurizer: C log-mel of every golden frame within golden_feat_tol of kws.features (max |diff|);
 *     the int8 edge applied to the C features vs Python's int8 features (mismatch count reported).
 *  2. model: per-frame int16 state and integer logit of the first window, and every window's integer
 *     logit, from Python's int8 features: bit-exact.
 *  3. end to end: kws_process on the golden PCM in blocks of 1 sample and in irregular blocks:
 *     detections (hop numbers) equal Python's; smoothed sums per hop compared (mismatches reported).
 */
#include "golden.h"
#include "../kws_internal.h"

static void say(const char *s) {
    unsigned n = 0;
    while (s[n]) n++;
    hw_write(s, n);
}

static void say_int(int64_t v) {
    char buf[24];
    int i = 23;
    int neg = v < 0;
    uint64_t u = neg ? (uint64_t)(-(v + 1)) + 1u : (uint64_t)v;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + (int)(u % 10u));
        u /= 10u;
    } while (u);
    if (neg) buf[--i] = '-';
    say(&buf[i]);
}

static int verdict(int ok) {
    say(ok ? " PASS\n" : " FAIL\n");
    return ok ? 0 : 1;
}

static kws_state_t st;

static int check_features(void) {
    float feat[KWS_N_FEATURES];
    int8_t q[KWS_N_FEATURES];
    float max_diff = 0.0f;
    uint32_t t, j, q_mismatch = 0, q_worse = 0;
    kws_init(&st, 0);
    for (t = 0; t < golden_n_frames; t++) {
        kws_featurize_frame(&st, &golden_pcm[t * KWS_HOP_LENGTH], feat);
        kws_quantize_features(feat, q);
        for (j = 0; j < KWS_N_FEATURES; j++) {
            float d = feat[j] - golden_feats[t * KWS_N_FEATURES + j];
            int dq = q[j] - golden_xq[t * KWS_N_FEATURES + j];
            if (d < 0) d = -d;
            if (!(d <= max_diff)) max_diff = d; /* NaN propagates as a failure */
            if (dq != 0) q_mismatch++;
            if (dq > 1 || dq < -1) q_worse++;
        }
    }
    say("features: frames=");
    say_int(golden_n_frames);
    say(" max_abs_diff_x1e6=");
    say_int((int64_t)(max_diff * 1e6f));
    say(" tol_x1e6=");
    say_int((int64_t)(golden_feat_tol * 1e6f));
    say(" int8_mismatches=");
    say_int(q_mismatch);
    say("/");
    say_int((int64_t)golden_n_frames * KWS_N_FEATURES);
    return verdict(max_diff <= golden_feat_tol && q_worse == 0);
}

static int check_model(void) {
    int16_t h[KWS_HIDDEN];
    uint32_t t, i, bad_h = 0, bad_logit = 0, bad_win = 0;
    for (i = 0; i < KWS_HIDDEN; i++) h[i] = 0;
    for (t = 0; t < golden_trace_frames; t++) {
        kws_model_step(&golden_xq[t * KWS_N_FEATURES], h);
        for (i = 0; i < KWS_HIDDEN; i++) bad_h += h[i] != golden_trace_h[t * KWS_HIDDEN + i];
        bad_logit += kws_model_logit(h) != golden_trace_logit[t];
    }
    for (t = 0; t < golden_n_windows; t++) {
        int64_t logit = 0;
        uint32_t start = golden_window_end[t] - KWS_WINDOW_FRAMES;
        kws_model_window(&golden_xq[start * KWS_N_FEATURES], KWS_WINDOW_FRAMES, &logit);
        bad_win += logit != golden_logits[t];
    }
    say("model: trace_frames=");
    say_int(golden_trace_frames);
    say(" state_mismatches=");
    say_int(bad_h);
    say(" logit_mismatches=");
    say_int(bad_logit);
    say(" windows=");
    say_int(golden_n_windows);
    say(" window_logit_mismatches=");
    say_int(bad_win);
    return verdict(bad_h == 0 && bad_logit == 0 && bad_win == 0);
}

/* Feed the golden PCM with a block-size pattern; record detections (hop numbers). */
static int run_stream(const kws_params_t *params, const uint32_t *sizes, uint32_t n_sizes, uint32_t *hops,
                      uint32_t max_hops, uint32_t *sum_mismatch) {
    uint32_t pos = 0, k = 0, n_det = 0, checked = 0;
    kws_init(&st, params);
    *sum_mismatch = 0;
    while (pos < golden_n_samples) {
        uint32_t n = sizes[k++ % n_sizes];
        int fired = 0;
        if (n > golden_n_samples - pos) n = golden_n_samples - pos;
        if (kws_process(&st, &golden_pcm[pos], n, &fired) != KWS_OK) return -1;
        pos += n;
        if (fired && n_det < max_hops) hops[n_det++] = st.fire_hop;
        /* blocks of one sample complete at most one hop: compare its smoothed sum */
        if (n == 1 && params == &golden_params && st.hops_seen > checked) {
            checked = st.hops_seen;
            if (st.last_sum != golden_sums[checked - 1]) (*sum_mismatch)++;
        }
    }
    if (st.hops_seen != golden_n_windows) return -2;
    return (int)n_det;
}

static int check_stream(void) {
    static const uint32_t ones[] = {1};
    static const uint32_t mixed[] = {160, 1, 333, 7, 1024, 2, 4000, 159, 161, 512};
    uint32_t hops_a[64], hops_b[64], hops_d[64], mism_a, mism_b, mism_d, i;
    int na = run_stream(&golden_params, ones, 1, hops_a, 64, &mism_a);
    int nb = run_stream(&golden_params, mixed, 10, hops_b, 64, &mism_b);
    int nd = run_stream(0, mixed, 10, hops_d, 64, &mism_d); /* NULL params: kws_default_params() */
    int ok = na == (int)golden_n_detections && nb == na && nd == (int)golden_n_default_detections;
    for (i = 0; ok && i < golden_n_detections; i++)
        ok = hops_a[i] == golden_detection_hop[i] && hops_b[i] == hops_a[i];
    for (i = 0; ok && i < golden_n_default_detections; i++) ok = hops_d[i] == golden_default_detection_hop[i];
    say("stream: hops=");
    say_int(golden_n_windows);
    say(" detections_python=");
    say_int(golden_n_detections);
    say(" c_1sample=");
    say_int(na);
    say(" c_mixed_blocks=");
    say_int(nb);
    say(" default_params_python=");
    say_int(golden_n_default_detections);
    say(" c=");
    say_int(nd);
    say(" smoothed_sum_mismatches=");
    say_int(mism_a);
    return verdict(ok);
}

static int check_errors(void) {
    kws_state_t fresh;
    kws_params_t bad = kws_default_params();
    int fired = 0;
    int ok = 1;
    int16_t s = 0;
    fresh.magic = 0;
    ok &= kws_init(0, 0) == KWS_ERR_NULL;
    ok &= kws_process(&fresh, &s, 1, &fired) == KWS_ERR_NOT_INIT;
    bad.smoothing = 0;
    ok &= kws_init(&fresh, &bad) == KWS_ERR_BAD_PARAM;
    ok &= kws_init(&fresh, 0) == KWS_OK;
    ok &= kws_process(&fresh, 0, 5, &fired) == KWS_ERR_NULL;
    ok &= kws_process(&fresh, &s, 1, 0) == KWS_ERR_NULL;
    ok &= kws_process(&fresh, 0, 0, &fired) == KWS_OK;
    ok &= kws_model_window(golden_xq, 0, 0) == KWS_ERR_NULL;
    say("errors: codes");
    return verdict(ok);
}

int harness_run(void) {
    int failed = 0;
    say("kws harness: keyword=" KWS_KEYWORD " state_bytes=");
    say_int((int64_t)KWS_STATE_SIZE);
    say("\n");
    failed += check_features();
    failed += check_model();
    failed += check_stream();
    failed += check_errors();
    say(failed ? "RESULT FAIL\n" : "RESULT PASS\n");
    return failed;
}
