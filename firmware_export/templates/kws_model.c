/* kws_model.c - the int8 FastGRNN step, bit for bit as docs/QUANTIZATION.md specifies
 * (and as kws.quantize computes in numpy): int8 weights x int8 input / int16 state, int32
 * accumulators, fixed-point requantization with (M, S) multipliers, Q3.12 pre-activations, Q15 gates.
 * Integer only. Right shifts of negative numbers are arithmetic on gcc/clang/arm-none-eabi-gcc
 * (checked below at compile time).
 */
#include "kws.h"
#include "kws_internal.h"

typedef char kws_arithmetic_shift_check[((-8 >> 1) == -4) ? 1 : -1];

/* rounding right shift, half up: (v + 2^(s-1)) >> s; s = 0 leaves v */
static int64_t rrshift(int64_t v, int s) {
    return s > 0 ? (v + ((int64_t)1 << (s - 1))) >> s : v;
}

/* v * M / 2^S, rounded (spec's mul) */
static int64_t mul_ms(int64_t v, int32_t m, int32_t s) {
    return rrshift(v * (int64_t)m, (int)s);
}

static int32_t sat16(int64_t v) {
    return v < -32768 ? -32768 : (v > 32767 ? 32767 : (int32_t)v);
}

#if KWS_NONLIN_LUT
/* 513-entry table over the int16 range, step 128, linear interpolation with a 7-bit fraction */
static int32_t lut_eval(const int16_t *lut, int32_t p) {
    uint32_t u = (uint32_t)(p + 32768);
    uint32_t k = u >> 7, f = u & 127u;
    int32_t a = lut[k], b = lut[k + 1];
    return a + ((((b - a) * (int32_t)f) + 64) >> 7);
}
#define SIG(p) lut_eval(kws_sigmoid_lut, (p))
#define TANH(p) lut_eval(kws_tanh_lut, (p))
#else
static int32_t pwl_sig(int32_t p) {
    int32_t v = (p + 4096) * 4;
    return v < 0 ? 0 : (v > 32767 ? 32767 : v);
}
static int32_t pwl_tanh(int32_t p) {
    int32_t v = p * 8;
    return v < -32767 ? -32767 : (v > 32767 ? 32767 : v);
}
#define SIG(p) pwl_sig(p)
#define TANH(p) pwl_tanh(p)
#endif

#if KWS_ZETA_PER_UNIT
#define ZETA_Q15(i) kws_zeta_q15[i]
#define NU_Q15(i) kws_nu_q15[i]
#else
#define ZETA_Q15(i) KWS_ZETA_Q15
#define NU_Q15(i) KWS_NU_Q15
#endif

/* One step: h (int16 [H]) updated in place from int8 input x [F]. */
void kws_model_step(const int8_t *x, int16_t *h) {
    int16_t h_new[KWS_HIDDEN];
    unsigned i, j;
    for (i = 0; i < KWS_HIDDEN; i++) {
        const int8_t *wrow = &kws_W_q[i * KWS_N_FEATURES];
        const int8_t *urow = &kws_U_q[i * KWS_U_BLOCK];
        const int16_t *hblock = &h[(i / KWS_U_BLOCK) * KWS_U_BLOCK];  /* the state of i's block */
        int32_t acc_w = 0, acc_u = 0, z, c;
        int64_t p, coef, g;
        for (j = 0; j < KWS_N_FEATURES; j++) acc_w += (int32_t)wrow[j] * (int32_t)x[j];
        for (j = 0; j < KWS_U_BLOCK; j++) acc_u += (int32_t)urow[j] * (int32_t)hblock[j];
        p = mul_ms(acc_w, kws_W_mult[i], kws_W_shift[i]) + mul_ms(acc_u, kws_U_mult[i], kws_U_shift[i]);
        z = SIG(sat16(p + kws_b_z[i]));
        c = TANH(sat16(p + kws_b_h[i]));
        coef = (int64_t)NU_Q15(i) + rrshift((int64_t)ZETA_Q15(i) * (32768 - z), 15);
        g = rrshift(coef * c, 15);
        h_new[i] = (int16_t)sat16(mul_ms(g, KWS_H_MULT, KWS_H_SHIFT) + rrshift((int64_t)z * h[i], 15));
    }
    for (i = 0; i < KWS_HIDDEN; i++) h[i] = h_new[i];
}

int64_t kws_model_logit(const int16_t *h) {
    int64_t acc = KWS_HEAD_BIAS;
    unsigned i;
    for (i = 0; i < KWS_HIDDEN; i++) acc += (int32_t)kws_head_q[i] * (int32_t)h[i];
    return acc;
}

/* The window model over a ring of KWS_WINDOW_FRAMES rows, oldest row first at `start`. */
int64_t kws_model_ring(const int8_t (*rows)[KWS_N_FEATURES], unsigned n_rows, unsigned start) {
    int16_t h[KWS_HIDDEN];
    unsigned i, r = start;
    for (i = 0; i < KWS_HIDDEN; i++) h[i] = 0;
    for (i = 0; i < n_rows; i++) {
        kws_model_step(rows[r], h);
        r = (r + 1 == n_rows) ? 0 : r + 1;
    }
    return kws_model_logit(h);
}

kws_status_t kws_model_window(const int8_t *frames, size_t n_frames, int64_t *logit) {
    if (frames == 0 || logit == 0) return KWS_ERR_NULL;
    if (n_frames == 0 || n_frames > 65535u) return KWS_ERR_BAD_SIZE;
    *logit = kws_model_ring((const int8_t(*)[KWS_N_FEATURES])frames, (unsigned)n_frames, 0);
    return KWS_OK;
}

void kws_quantize_features(const float *feat, int8_t *q) {
    unsigned j;
    for (j = 0; j < KWS_N_FEATURES; j++) {
        float v = (feat[j] - kws_feat_mean[j]) * kws_feat_mul[j];
        KWS_ROUND_TO_INT8(v, q[j]);
    }
}
