/*
 * rfs_decode_avx512.c - the AVX-512 decode backend (built with -mavx512f
 * -mavx512bw -mavx512vl -mavx512dq -mavx2 -mbmi2 -mpopcnt, picked at run
 * time by rfs_cpu.c).
 *
 * Design note: the 32 lanes (docs/format.md 1.5) live in four 8-lane
 * vectors, lanes 0-7 in v0, 8-15 in v1 and so on.  One step is
 *
 *     slot = x & 4095;  e = dec[slot]                      (vpgatherdd)
 *     out  = e & 0xff;  x = f * (x >> 12) + slot - start
 *
 * then the refill, with AVX-512VL masks: m_k = (v_k < L) as an 8-bit mask;
 * the 8 words after those of v0..v(k-1) are widened to 32 bits and expanded
 * (vpexpandd) into the set lanes of m_k, so the lanes take consecutive words
 * in ascending lane order, and the word cursor moves on by popcount(m_k).
 *
 * Why 8 lanes and not 16: the loop is bound by its gathers, and
 * on AMD Zen 4 a 16-lane vpgatherdd costs far more than two 8-lane ones
 * (measured: ~32 vs ~20 cycles latency, ~16 vs ~5 cycles throughput); a
 * 2x16-lane version ran about 5% slower there.
 *
 * The fast loop runs only while a whole step of 32 symbols and the 32 words
 * a step can take at most remain, so it has no bounds checks.  It detects no
 * errors: it stops, stores its states and rfs_rans_tail (the scalar, checked
 * loop) decodes the rest and checks the end conditions, so every input gives
 * the same bytes and error code as the scalar backend.  The plane loop and
 * its fused forms are in rfs_decode_fused.h, shared with the AVX2 backend;
 * this file gives it the refill.
 */
#include <immintrin.h>
#include <string.h>

#include "rfs_backend.h"
#include "rfs_rans_lane.h"

/* Refill the lanes of x below L from w8 (the next 8 words, widened). */
static inline __m256i lanes_refill(__m256i x, __mmask8 m, __m256i w8)
{
    return _mm256_mask_or_epi32(x, m, _mm256_slli_epi32(x, 16), _mm256_maskz_expand_epi32(m, w8));
}

static inline __m256i load_words(const uint8_t *words, size_t pos)
{
    return _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(words + 2 * pos)));
}

/* Refill lanes 0-31 below L: lanes take consecutive words, v0's first. */
static inline void lanes_refill4(__m256i *v0, __m256i *v1, __m256i *v2, __m256i *v3,
                                 const uint8_t *words, size_t *wpos)
{
    const __m256i lo = _mm256_set1_epi32((int)RFS_LANE_L);
    __mmask8 m0 = _mm256_cmplt_epu32_mask(*v0, lo), m1 = _mm256_cmplt_epu32_mask(*v1, lo);
    __mmask8 m2 = _mm256_cmplt_epu32_mask(*v2, lo), m3 = _mm256_cmplt_epu32_mask(*v3, lo);
    size_t c0 = (size_t)_mm_popcnt_u32(m0), c1 = (size_t)_mm_popcnt_u32(m1);
    size_t c2 = (size_t)_mm_popcnt_u32(m2), c3 = (size_t)_mm_popcnt_u32(m3);
    size_t w = *wpos;
    *v0 = lanes_refill(*v0, m0, load_words(words, w));
    *v1 = lanes_refill(*v1, m1, load_words(words, w + c0));
    *v2 = lanes_refill(*v2, m2, load_words(words, w + c0 + c1));
    *v3 = lanes_refill(*v3, m3, load_words(words, w + c0 + c1 + c2));
    *wpos = w + c0 + c1 + c2 + c3;
}

#include "rfs_decode_fused.h"

/* ---------------------------------------------------------------- interleave */

/* 32 fp16/bf16 elements from planes 0 (low byte) and 1, ROT1 undone when rot. */
static inline void interleave32_w2(uint8_t *dst, const uint8_t *p0, const uint8_t *p1, int rot)
{
    __m512i a = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)p0));
    __m512i b = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)p1));
    __m512i t = _mm512_or_si512(a, _mm512_slli_epi16(b, 8));
    if (rot)
        t = _mm512_or_si512(_mm512_srli_epi16(t, 1), _mm512_slli_epi16(t, 15));
    _mm512_storeu_si512((void *)dst, t);
}

/* 16 fp32 elements from four planes. */
static inline void interleave16_w4(uint8_t *dst, const uint8_t *const p[4], size_t i, int rot)
{
    __m512i a = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p[0] + i)));
    __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p[1] + i)));
    __m512i c = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p[2] + i)));
    __m512i d = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p[3] + i)));
    __m512i t = _mm512_or_si512(_mm512_or_si512(a, _mm512_slli_epi32(b, 8)),
                                _mm512_or_si512(_mm512_slli_epi32(c, 16), _mm512_slli_epi32(d, 24)));
    if (rot)
        t = _mm512_ror_epi32(t, 1);
    _mm512_storeu_si512((void *)(dst + 4 * i), t);
}

static void interleave_avx512(uint8_t *dst, const uint8_t *const planes[RFS_MAX_WIDTH], size_t n,
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
        for (; i + 16 <= n; i += 16)
            interleave16_w4(dst, planes, i, rot);
    }
    if (i < n) {
        const uint8_t *rest[RFS_MAX_WIDTH] = {0};
        for (unsigned b = 0; b < width; b++)
            rest[b] = planes[b] + i;
        rfs_interleave_scalar(dst + (size_t)width * i, rest, n - i, width, xf);
    }
}

const rfs_backend rfs_backend_avx512 = {"avx512", interleave_avx512, fused_rans_planes,
                                        fused_rans_w2, fused_rans_w4, NULL};
