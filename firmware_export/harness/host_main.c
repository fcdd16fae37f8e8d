/* host_main.c - runs the harness on the build machine; `harness bench SECONDS` times kws_process
 * over a long buffer (the golden PCM repeated) and prints nanoseconds per 10 ms hop of audio. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "golden.h"

void hw_write(const char *s, unsigned n) { fwrite(s, 1, n, stdout); }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int bench(double seconds) {
    static kws_state_t st;
    size_t n = (size_t)(seconds * KWS_SAMPLE_RATE), i, block = KWS_HOP_LENGTH;
    int16_t *buf = (int16_t *)malloc(n * sizeof(int16_t));
    long detections = 0;
    double t0, t1;
    if (!buf) return 1;
    for (i = 0; i < n; i++) buf[i] = golden_pcm[i % golden_n_samples];
    kws_init(&st, 0);
    t0 = now_s();
    for (i = 0; i + block <= n; i += block) {
        int fired = 0;
        kws_process(&st, &buf[i], block, &fired);
        detections += fired;
    }
    t1 = now_s();
    printf("bench: audio_s=%.1f frames=%lu windows=%lu wall_s=%.4f ns_per_frame=%.0f realtime_x=%.0f detections=%ld\n",
           seconds, (unsigned long)st.frames_seen, (unsigned long)st.hops_seen, t1 - t0,
           1e9 * (t1 - t0) / (double)st.frames_seen, seconds / (t1 - t0), detections);
    free(buf);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "bench") == 0) return bench(argc >= 3 ? atof(argv[2]) : 60.0);
    return harness_run() ? 1 : 0;
}
