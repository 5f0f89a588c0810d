/*
 * rfs_refill_avx2.h - internal: the AVX2 refill of 8 rANS lanes, shared by
 * the files compiled for AVX2 (rfs_decode_avx2.c, rfs_decode_ctx_avx2.c).
 * The AVX-512 backend has its own (mask registers, vpexpand).
 */
#ifndef RFS_REFILL_AVX2_H
#define RFS_REFILL_AVX2_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

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

#endif
