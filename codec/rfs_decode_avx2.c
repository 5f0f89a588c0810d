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
 * AVX-512 backend; this file gives it the refill.
 */
#include <immintrin.h>
#include <string.h>

#include "rfs_backend.h"
#include "rfs_rans_lane.h"

/*
 * refill_lut[m] byte j = popcount(m & ((1 << j) - 1)): the index, among this
 * vector's refill words, of lane j's word.  Built by the preprocessor so the
 * table is const data (bytes of lanes whose bit is clear are never used).
 */
#define RL_B(m, k) ((uint64_t)(((m) >> (k)) & 1u))
#define RL_P1(m) RL_B(m, 0)
#define RL_P2(m) (RL_P1(m) + RL_B(m, 1))
#define RL_P3(m) (RL_P2(m) + RL_B(m, 2))
#define RL_P4(m) (RL_P3(m) + RL_B(m, 3))
#define RL_P5(m) (RL_P4(m) + RL_B(m, 4))
#define RL_P6(m) (RL_P5(m) + RL_B(m, 5))
#define RL_P7(m) (RL_P6(m) + RL_B(m, 6))
#define RL_E(m)                                                                             \
    (RL_P1(m) << 8 | RL_P2(m) << 16 | RL_P3(m) << 24 | RL_P4(m) << 32 | RL_P5(m) << 40 |   \
     RL_P6(m) << 48 | RL_P7(m) << 56)
#define RL_E4(m) RL_E(m), RL_E((m) + 1), RL_E((m) + 2), RL_E((m) + 3)
#define RL_E16(m) RL_E4(m), RL_E4((m) + 4), RL_E4((m) + 8), RL_E4((m) + 12)
#define RL_E64(m) RL_E16(m), RL_E16((m) + 16), RL_E16((m) + 32), RL_E16((m) + 48)

static const uint64_t refill_lut[256] = {RL_E64(0), RL_E64(64), RL_E64(128), RL_E64(192)};

/* Refill the lanes of x that fell below L from words[*wpos..], in lane order.
 * x < 2^31, so x - L is negative exactly when x < L: its sign bits are the
 * refill mask for both movmskps and blendvps (no compare needed). */
static inline __m256i lanes_refill(__m256i x, const uint8_t *words, size_t *wpos)
{
    __m256 need = _mm256_castsi256_ps(_mm256_sub_epi32(x, _mm256_set1_epi32((int)RFS_LANE_L)));
    unsigned m = (unsigned)_mm256_movemask_ps(need);
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(words + 2 * *wpos)));
    __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)&refill_lut[m]));
    __m256i xr = _mm256_or_si256(_mm256_slli_epi32(x, 16), _mm256_permutevar8x32_epi32(w, idx));
    *wpos += (size_t)_mm_popcnt_u32(m);
    return _mm256_castps_si256(
        _mm256_blendv_ps(_mm256_castsi256_ps(x), _mm256_castsi256_ps(xr), need));
}

/* lanes_refill for all 32 lanes: v0's words come first, then v1's ... */
static inline void lanes_refill4(__m256i *v0, __m256i *v1, __m256i *v2, __m256i *v3,
                                 const uint8_t *words, size_t *wpos)
{
    *v0 = lanes_refill(*v0, words, wpos);
    *v1 = lanes_refill(*v1, words, wpos);
    *v2 = lanes_refill(*v2, words, wpos);
    *v3 = lanes_refill(*v3, words, wpos);
}

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

static void interleave_avx2(uint8_t *dst, const uint8_t *const planes[RFS_MAX_WIDTH], size_t n,
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

const rfs_backend rfs_backend_avx2 = {"avx2", interleave_avx2, fused_rans_planes,
                                      fused_rans_w2, fused_rans_w4, NULL};
