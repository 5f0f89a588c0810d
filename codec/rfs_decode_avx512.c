/*
 * rfs_decode_avx512.c - the AVX-512 decode backend (built with -mavx512f
 * -mavx512bw -mavx512vl -mavx512dq -mavx2 -mbmi2 -mpopcnt, picked at run
 * time by rfs_cpu.c).
 *
 * Design note: the 32 lanes (docs/format.md 1.5) live in two 16-lane
 * vectors, lanes 0-15 in v0 and 16-31 in v1.  One step is
 *
 *     slot = x & 4095;  e = dec[slot]                      (vpgatherdd)
 *     out  = e & 0xff;  x = f * (x >> 12) + slot - start
 *
 * then the refill: m = (x < L) as a 16-bit mask; the next 16 stream words,
 * widened to 32 bits, are expanded (vpexpandd) into the set lanes of m, so
 * the k-th refilling lane gets word k, and the word cursor moves on by
 * popcount(m).  v0's words come before v1's: lanes refill in ascending order.
 *
 * The fast loop runs only while a whole step of 32 symbols and the 32 words
 * a step can take at most remain, so it has no bounds checks.  It detects no
 * errors: it stops, stores its states and rfs_rans_tail (the scalar, checked
 * loop) decodes the rest and checks the end conditions, so every input gives
 * the same bytes and error code as the scalar backend.
 */
#include <immintrin.h>
#include <string.h>

#include "rfs_backend.h"
#include "rfs_rans_lane.h"

/* x = D(x) for 16 lanes; *e receives the table entries (symbol in byte 0). */
static inline __m512i lanes_decode(__m512i x, const int *dec, __m512i *e)
{
    const __m512i m12 = _mm512_set1_epi32((int)RFS_LANE_MASK);
    __m512i slot = _mm512_and_si512(x, m12);
    __m512i ent = _mm512_i32gather_epi32(slot, dec, 4);
    __m512i fm1 = _mm512_and_si512(_mm512_srli_epi32(ent, 8), m12);
    __m512i xh = _mm512_srli_epi32(x, RFS_LANE_PROB_BITS);
    /* f * xh + slot - start = (f-1) * xh + (xh + slot - start) */
    __m512i rest = _mm512_sub_epi32(_mm512_add_epi32(xh, slot), _mm512_srli_epi32(ent, 20));
    *e = ent;
    return _mm512_add_epi32(_mm512_mullo_epi32(fm1, xh), rest);
}

/* Refill the lanes of x that fell below L from words[*wpos..], in lane order. */
static inline __m512i lanes_refill(__m512i x, const uint8_t *words, size_t *wpos)
{
    __mmask16 m = _mm512_cmplt_epu32_mask(x, _mm512_set1_epi32((int)RFS_LANE_L));
    __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(words + 2 * *wpos)));
    w = _mm512_maskz_expand_epi32(m, w);
    *wpos += (size_t)_mm_popcnt_u32((unsigned)m);
    return _mm512_mask_or_epi32(x, m, _mm512_slli_epi32(x, 16), w);
}

static rfs_err rans_plane_avx512(uint8_t *out, size_t n, const uint8_t *stream,
                                 size_t stream_size, const uint32_t *dec)
{
    uint32_t x[RFS_LANES];
    rfs_err err = rfs_rans_load_states(x, stream, stream_size);
    if (err != RFS_OK)
        return err;
    const uint8_t *words = stream + RFS_STATES_SIZE;
    size_t nwords = (stream_size - RFS_STATES_SIZE) / 2;
    size_t wpos = 0;
    size_t i = 0;
    const int *tab = (const int *)dec;

    __m512i v0 = _mm512_loadu_si512((const void *)(x + 0));
    __m512i v1 = _mm512_loadu_si512((const void *)(x + 16));

    /* ---- fast loop: a whole step and 32 words remain, no checks needed */
    while (i + RFS_LANES <= n && nwords - wpos >= RFS_LANES) {
        __m512i e0, e1;
        v0 = lanes_decode(v0, tab, &e0);
        v1 = lanes_decode(v1, tab, &e1);
        _mm_storeu_si128((__m128i *)(out + i), _mm512_cvtepi32_epi8(e0));
        _mm_storeu_si128((__m128i *)(out + i + 16), _mm512_cvtepi32_epi8(e1));
        v0 = lanes_refill(v0, words, &wpos);
        v1 = lanes_refill(v1, words, &wpos);
        i += RFS_LANES;
    }

    /* ---- checked tail (and end-of-stream checks) */
    _mm512_storeu_si512((void *)(x + 0), v0);
    _mm512_storeu_si512((void *)(x + 16), v1);
    return rfs_rans_tail(x, out, i, n, words, wpos, nwords, dec);
}

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

const rfs_backend rfs_backend_avx512 = {"avx512", rans_plane_avx512, interleave_avx512};
