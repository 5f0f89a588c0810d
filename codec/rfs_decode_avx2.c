/*
 * rfs_decode_avx2.c - the AVX2 decode backend (built with -mavx2 -mbmi2
 * -mpopcnt, picked at run time by rfs_cpu.c).
 *
 * Design note: the 32 lanes (docs/format.md 1.5) live in four 8-lane
 * vectors, lanes 0-7 in v[0], 8-15 in v[1] and so on.  One step is
 *
 *     slot = x & 4095;  e = dec[slot]                      (vpgatherdd)
 *     out  = e & 0xff;  x = f * (x >> 12) + slot - start   (f = freq-1 + 1)
 *
 * then the refill.  Per vector, cmpgt + movemask give an 8-bit mask m of
 * the lanes with x < L; the next 8 stream words are widened to 32 bits and
 * permuted by refill_lut[m], which sends word k to the k-th set lane, and the
 * word cursor moves on by popcount(m).  v[0]'s words come before v[1]'s, so
 * the lanes refill in ascending order exactly as the format says.
 *
 * The fast loop runs only while a whole step of 32 symbols and the 32 words
 * a step can take at most remain, so it has no bounds checks.  It detects
 * no errors: it stops, stores its states and rfs_rans_tail (the scalar,
 * checked loop) decodes the rest and checks the end conditions, so every
 * input gives the same bytes and error code as the scalar backend.  The
 * plane loop and its fused forms are in rfs_decode_fused.h, shared with the
 * AVX-512 backend; this file gives it the refill (rfs_refill_avx2.h).
 */
#include <immintrin.h>
#include <string.h>

#include "rfs_backend.h"
#include "rfs_rans_lane.h"
#include "rfs_refill_avx2.h"

#include "rfs_decode_fused.h"

/* ---------------------------------------------------------------- interleave */

/* 32 fp16/bf16 elements from planes 0 (low byte) and 1, ROT1 undone when rot. */
static inline void interleave32_w2(uint8_t *dst, const uint8_t *p0, const uint8_t *p1, int rot)
{
    store_elems_w2(dst, _mm256_loadu_si256((const __m256i *)p0),
                   _mm256_loadu_si256((const __m256i *)p1), rot);
}

/* 32 fp32 elements from four planes. */
static inline void interleave32_w4(uint8_t *dst, const uint8_t *const p[4], size_t i, int rot)
{
    store_elems_w4(dst + 4 * i, load32(p[0] + i), load32(p[1] + i), load32(p[2] + i),
                   load32(p[3] + i), rot);
}

void rfs_interleave_avx2(uint8_t *dst, const uint8_t *const planes[RFS_MAX_WIDTH], size_t n,
                         unsigned width, rfs_transform xf)
{
    int rot = xf == RFS_XF_ROT1;
    size_t i = 0;
    if (width == 1) {
        memcpy(dst, planes[0], n);
        return;
    }
    if (width == 2) {
        for (; i + 32 <= n; i += 32)
            interleave32_w2(dst + 2 * i, planes[0] + i, planes[1] + i, rot);
    } else if (width == 4) {
        for (; i + 32 <= n; i += 32)
            interleave32_w4(dst, planes, i, rot);
    }
    if (i < n) {
        const uint8_t *rest[RFS_MAX_WIDTH] = {0};
        for (unsigned b = 0; b < width; b++)
            rest[b] = planes[b] + i;
        rfs_interleave_scalar(dst + (size_t)width * i, rest, n - i, width, xf);
    }
}

const rfs_backend rfs_backend_avx2 = {"avx2", rfs_interleave_avx2, fused_rans_planes,
                                      fused_rans_w2, fused_rans_w4, NULL};
