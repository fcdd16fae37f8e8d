/* kws_features.c - the featurizer (DESIGN.md section 2) in float32 without libm.
 *
 * Frame of KWS_FRAME_LENGTH int16 samples -> x/32768 -> periodic Hann -> zero pad to KWS_NFFT ->
 * real FFT (as a KWS_NFFT/2-point complex radix-2 FFT plus the split step) -> power -> sparse
 * HTK mel filterbank [-> the input gain control] -> log(mel + floor) [-> a per-frame projection: the DCT-II for MFCC and/or
 * the level compression]. Tables (window, twiddles, filterbank, projection) are const arrays in
 * kws_tables.c, written by Python from kws.features so both sides use the same float32 constants.
 */
#include "kws.h"
#include "kws_internal.h"

#define HALF (KWS_NFFT / 2)
#define QUARTER (KWS_NFFT / 4)

/* cos(2 pi k / KWS_NFFT) for k in [0, HALF); sin(2 pi k / KWS_NFFT) = cos(2 pi (k - QUARTER) / KWS_NFFT). */
static float tw_cos(unsigned k) { return kws_cos_table[k]; }
static float tw_sin(unsigned k) { return kws_cos_table[k >= QUARTER ? k - QUARTER : QUARTER - k]; }

/* Natural log without libm: x = m * 2^e with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s),
 * s = (m - 1) / (m + 1), |s| < 0.1716, odd series to s^11 (error < 1e-9, below float rounding).
 * Only called with x >= log_floor > 0 (normal floats). */
float kws_logf(float x) {
    union { float f; uint32_t u; } v;
    int e;
    float m, s, s2, p;
    v.f = x;
    e = (int)((v.u >> 23) & 0xffu) - 127;
    v.u = (v.u & 0x007fffffu) | 0x3f800000u; /* mantissa as a float in [1, 2) */
    m = v.f;
    if (m > 1.41421356f) {
        m *= 0.5f;
        e += 1;
    }
    s = (m - 1.0f) / (m + 1.0f);
    s2 = s * s;
    p = 1.0f / 11.0f;
    p = p * s2 + 1.0f / 9.0f;
    p = p * s2 + 1.0f / 7.0f;
    p = p * s2 + 1.0f / 5.0f;
    p = p * s2 + 1.0f / 3.0f;
    p = p * s2 + 1.0f;
    /* ln 2 split in two so e * ln2 keeps float precision for |e| up to ~100 */
    return (float)e * 0.693145751953125f + ((float)e * 1.428606765330187e-06f + 2.0f * s * p);
}

#if KWS_AGC
/* e^x without libm: x = k ln2 + r, |r| <= ln2 / 2, e^r by its series to r^7 (relative error
 * < 2e-8), times 2^k through the exponent bits. x is the gain control's gain, within +-12. */
static float kws_expf(float x) {
    union { float f; uint32_t u; } v;
    float k = (float)(int32_t)(x * 1.44269504f + (x >= 0.0f ? 0.5f : -0.5f));
    float r = (x - k * 0.693145751953125f) - k * 1.428606765330187e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    v.u = (uint32_t)((int32_t)k + 127) << 23;
    return p * v.f;
}

/* The input gain control (kws.features._GainControl): scales the frame's mel energies so the
 * running speech level sits at KWS_AGC_TARGET; silent frames hold the state. */
static void gain_control(kws_state_t *st, int sounding) {
    unsigned m;
    float g;
    if (sounding) {
        float sum = 0.0f, level, w;
        for (m = 0; m < KWS_N_MELS; m++) sum += st->mel[m];
        level = kws_logf(sum > 1e-30f ? sum : 1e-30f) - KWS_AGC_CALIBRATION;
        if (!st->agc_started) st->agc_noise = level; /* the first sounding frame sets the floor */
        else if (level < st->agc_noise + KWS_AGC_NOISE_RISE) st->agc_noise = level;
        else st->agc_noise += KWS_AGC_NOISE_RISE;
        st->agc_started = 1;
        w = (level - st->agc_noise - KWS_AGC_SPEECH_START) / KWS_AGC_SPEECH_SPAN;
        if (w > 0.0f) {
            float rate;
            if (w > 1.0f) w = 1.0f;
            st->agc_weight += w;
            rate = 1.0f / st->agc_weight;
            if (rate < KWS_AGC_RATE) rate = KWS_AGC_RATE;
            st->agc_speech += w * rate * (level - st->agc_speech);
        }
    }
    g = KWS_AGC_TARGET - st->agc_speech;
    if (g < KWS_AGC_GAIN_MIN) g = KWS_AGC_GAIN_MIN;
    if (g > KWS_AGC_GAIN_MAX) g = KWS_AGC_GAIN_MAX;
    g = kws_expf(g);
    for (m = 0; m < KWS_N_MELS; m++) st->mel[m] *= g;
}
#endif

/* In-place radix-2 decimation-in-time complex FFT of HALF points. */
static void fft_complex(float *re, float *im) {
    unsigned i, j, bit, len, k, half, step;
    /* bit-reversal permutation */
    for (i = 1, j = 0; i < HALF; i++) {
        for (bit = HALF >> 1; j & bit; bit >>= 1) j ^= bit;
        j ^= bit;
        if (i < j) {
            float t = re[i]; re[i] = re[j]; re[j] = t;
            t = im[i]; im[i] = im[j]; im[j] = t;
        }
    }
    for (len = 2; len <= HALF; len <<= 1) {
        half = len >> 1;
        step = KWS_NFFT / len; /* twiddle e^{-2 pi i k / len} = table index k * NFFT / len */
        for (k = 0; k < half; k++) { /* twiddle outside the group loop: one table read per k */
            float wr = tw_cos(k * step), wi = -tw_sin(k * step);
            for (i = 0; i < HALF; i += len) {
                unsigned a = i + k, b = a + half;
                float tr = re[b] * wr - im[b] * wi;
                float ti = re[b] * wi + im[b] * wr;
                re[b] = re[a] - tr; im[b] = im[a] - ti;
                re[a] += tr; im[a] += ti;
            }
        }
    }
}

/* Windowed frame -> power spectrum bins 0..HALF, accumulated straight into the mel bands. */
static void power_to_mel(const float *re, const float *im, float *mel) {
    unsigned k, m, off = 0;
    float power_k;
    for (m = 0; m < KWS_N_MELS; m++) mel[m] = 0.0f;
    for (k = 0; k <= HALF; k++) {
        if (k == 0) {
            float a = re[0] + im[0];
            power_k = a * a;
        } else if (k == HALF) {
            float a = re[0] - im[0];
            power_k = a * a;
        } else {
            /* X[k] = E + e^{-2 pi i k / N} O with E = (Z[k] + conj Z[H-k]) / 2,
             * O = -i (Z[k] - conj Z[H-k]) / 2 */
            float zr = re[k], zi = im[k], cr = re[HALF - k], ci = -im[HALF - k];
            float er = 0.5f * (zr + cr), ei = 0.5f * (zi + ci);
            float dr = 0.5f * (zr - cr), di = 0.5f * (zi - ci);
            float or_ = di, oi = -dr; /* -i * (dr + i di) */
            float wr = tw_cos(k), wi = -tw_sin(k);
            float xr = er + wr * or_ - wi * oi;
            float xi = ei + wr * oi + wi * or_;
            power_k = xr * xr + xi * xi;
        }
        /* bins -> bands through the per-bin sparse filterbank (each bin feeds <= 2 bands) */
        {
            unsigned first = kws_bin_band_start[k], count = kws_bin_band_count[k];
            for (m = 0; m < count; m++) mel[first + m] += kws_bin_weights[off + m] * power_k;
            off += count;
        }
    }
}

kws_status_t kws_featurize_frame(kws_state_t *st, const int16_t *frame, float *out) {
    unsigned n, m;
    float *re, *im;
#if KWS_MEAN_NORM || KWS_AGC
    int sounding = 0; /* 0 for a frame of digital silence: it leaves the running mean and gain alone */
#endif
    if (st == 0 || frame == 0 || out == 0) return KWS_ERR_NULL;
#if KWS_MEAN_NORM || KWS_AGC
    { /* sounding unless the frame holds KWS_SILENCE_RUN exact zeros in a row (digital silence) */
        unsigned zeros = 0;
        sounding = 1;
        for (n = 0; n < KWS_FRAME_LENGTH && sounding; n++) {
            zeros = frame[n] == 0 ? zeros + 1 : 0;
            if (zeros >= KWS_SILENCE_RUN) sounding = 0;
        }
    }
#endif
    re = st->fft_re;
    im = st->fft_im;
    /* pack the real frame as complex z[n] = x[2n] + i x[2n+1], windowed, zero padded */
    for (n = 0; n < HALF; n++) {
        unsigned a = 2 * n, b = 2 * n + 1;
        re[n] = a < KWS_FRAME_LENGTH ? (float)frame[a] * (1.0f / 32768.0f) * kws_window(a) : 0.0f;
        im[n] = b < KWS_FRAME_LENGTH ? (float)frame[b] * (1.0f / 32768.0f) * kws_window(b) : 0.0f;
    }
    fft_complex(re, im);
    power_to_mel(re, im, st->mel);
#if KWS_AGC
    gain_control(st, sounding);
#endif
    for (m = 0; m < KWS_N_MELS; m++) st->mel[m] = kws_logf(st->mel[m] + KWS_LOG_FLOOR);
#if KWS_PROJECT
    for (m = 0; m < KWS_N_FEATURES; m++) {
        float acc = 0.0f;
        for (n = 0; n < KWS_N_MELS; n++) acc += st->mel[n] * kws_projection[n * KWS_N_FEATURES + m];
        out[m] = acc;
    }
#else
    for (m = 0; m < KWS_N_FEATURES; m++) out[m] = st->mel[m];
#endif
#if KWS_MEAN_NORM
    /* minus the running mean (kws.features): the n-th sounding frame moves it by 1/(n+1) of the
     * way until that falls to KWS_MEAN_NORM_RATE; silent frames hold it (zeros before the first) */
    if (!sounding && st->feat_mean_n == 0) {
        for (m = 0; m < KWS_N_FEATURES; m++) out[m] = 0.0f;
    } else {
        float rate = st->feat_mean_n < KWS_MEAN_NORM_WARMUP ? 1.0f / (float)(st->feat_mean_n + 1)
                                                             : KWS_MEAN_NORM_RATE;
        for (m = 0; m < KWS_N_FEATURES; m++) {
            if (st->feat_mean_n == 0) st->feat_mean[m] = out[m];
            else if (sounding) st->feat_mean[m] += rate * (out[m] - st->feat_mean[m]);
            out[m] -= st->feat_mean[m];
        }
        if (sounding && st->feat_mean_n < 0xFFFFu) st->feat_mean_n++;
    }
#endif
    return KWS_OK;
}
