/* main.c - a minimal microcontroller main loop around the generated keyword spotter.
 *
 * The board support below is stubbed (weak functions): replace mic_read_block() with your I2S/PDM
 * DMA driver (16 kHz mono int16; e.g. the half/full-transfer callback of a double buffer) and
 * led_toggle() with a GPIO write. Compiles for Cortex-M4 with arm-none-eabi-gcc and on a host.
 */
#include <stddef.h>
#include <stdint.h>

#include "../kws.h"

#define BLOCK_SAMPLES 160 /* 10 ms at 16 kHz: one DMA half-buffer */

/* ---- board support stubs: override these in your board code ---- */
__attribute__((weak)) size_t mic_read_block(int16_t *pcm, size_t max_samples) {
    size_t i;
    for (i = 0; i < max_samples; i++) pcm[i] = 0; /* silence until a real driver is linked */
    return max_samples;
}
__attribute__((weak)) void led_toggle(void) {}
__attribute__((weak)) void wait_for_interrupt(void) {}
__attribute__((weak)) int keep_running(void) { return 1; }

static kws_state_t kws_state; /* KWS_STATE_SIZE bytes, static: no heap, no big stack frame */
static int16_t pcm[BLOCK_SAMPLES];

int main(void) {
    kws_params_t params = kws_default_params(); /* bundle threshold (3% FPR), smoothing, refractory */
    if (kws_init(&kws_state, &params) != KWS_OK) return 1;
    while (keep_running()) {
        int fired = 0;
        size_t n = mic_read_block(pcm, BLOCK_SAMPLES);
        if (n == 0) {
            wait_for_interrupt();
            continue;
        }
        if (kws_process(&kws_state, pcm, n, &fired) != KWS_OK) return 2;
        if (fired) led_toggle(); /* the keyword was heard */
    }
    return 0;
}
