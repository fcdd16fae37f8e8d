/* qemu_start.c - bare Thumb entry for running the harness under `qemu-arm -cpu max` (user mode):
 * no C library (-nostdlib); output and exit through Linux EABI syscalls (write = 4, exit = 1).
 * Also provides memcpy/memset, which GCC may call even in freestanding code. */
#include <stddef.h>

#include "golden.h"

static long sys3(long nr, long a, long b, long c) {
    register long r7 __asm__("r7") = nr;
    register long r0 __asm__("r0") = a;
    register long r1 __asm__("r1") = b;
    register long r2 __asm__("r2") = c;
    __asm__ volatile("svc #0" : "+r"(r0) : "r"(r7), "r"(r1), "r"(r2) : "memory");
    return r0;
}

void hw_write(const char *s, unsigned n) { sys3(4, 1, (long)s, (long)n); }

void *memcpy(void *dst, const void *src, size_t n) {
    unsigned char *d = (unsigned char *)dst;
    const unsigned char *s = (const unsigned char *)src;
    while (n--) *d++ = *s++;
    return dst;
}

void *memset(void *dst, int c, size_t n) {
    unsigned char *d = (unsigned char *)dst;
    while (n--) *d++ = (unsigned char)c;
    return dst;
}

void _start(void) __attribute__((noreturn));
void _start(void) {
    int failed = harness_run();
    sys3(1, failed ? 1 : 0, 0, 0);
    for (;;) {
    }
}
