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
 * Why 8 lanes and not 16: the loop is bound by the latency of one step, and
 * on AMD Zen 4 a 16-lane vpgatherdd costs far more than two 8-lane ones
 * (measured: ~32 vs ~20 cycles latency, ~16 vs ~5 cycles throughput); a
 * 2x16-lane version ran about 5% slower there.
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

/* x = D(x) for 8 lanes; *e receives the table entries (symbol in byte 0). */
static inline __m256i lanes_decode(__m256i x, const int *dec, __m256i *e)
{
    const __m256i m12 = _mm256_set1_epi32((int)RFS_LANE_MASK);
    __m256i slot = _mm256_and_si256(x, m12);
    __m256i ent = _mm256_i32gather_epi32(dec, slot, 4);
    __m256i fm1 = _mm256_and_si256(_mm256_srli_epi32(ent, 8), m12);
    __m256i xh = _mm256_srli_epi32(x, RFS_LANE_PROB_BITS);
    /* f * xh + slot - start = (f-1) * xh + (xh + slot - start) */
    __m256i rest = _mm256_sub_epi32(_mm256_add_epi32(xh, slot), _mm256_srli_epi32(ent, 20));
    *e = ent;
    return _mm256_add_epi32(_mm256_mullo_epi32(fm1, xh), rest);
}

/* Refill the lanes of x below L from w8 (the next 8 words, widened). */
static inline __m256i lanes_refill(__m256i x, __mmask8 m, __m256i w8)
{
    return _mm256_mask_or_epi32(x, m, _mm256_slli_epi32(x, 16), _mm256_maskz_expand_epi32(m, w8));
}

/* Pack the symbol bytes of four entry vectors (lanes 0..31) into 32 bytes
 * (two packs and a permute: cheaper than four vpmovdb on Zen 4). */
static inline void store_symbols(uint8_t *out, __m256i e0, __m256i e1, __m256i e2, __m256i e3)
{
    const __m256i m8 = _mm256_set1_epi32(0xff);
    /* packs work per 128-bit half: dwords come out as
     * e0[0-3] e1[0-3] e2[0-3] e3[0-3] | e0[4-7] e1[4-7] e2[4-7] e3[4-7] */
    __m256i p01 = _mm256_packus_epi32(_mm256_and_si256(e0, m8), _mm256_and_si256(e1, m8));
    __m256i p23 = _mm256_packus_epi32(_mm256_and_si256(e2, m8), _mm256_and_si256(e3, m8));
    __m256i b = _mm256_packus_epi16(p01, p23);
    b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)out, b);
}

static inline __m256i load_words(const uint8_t *words, size_t pos)
{
    return _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(words + 2 * pos)));
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
    const __m256i lo = _mm256_set1_epi32((int)RFS_LANE_L);

    __m256i v0 = _mm256_loadu_si256((const __m256i *)(x + 0));
    __m256i v1 = _mm256_loadu_si256((const __m256i *)(x + 8));
    __m256i v2 = _mm256_loadu_si256((const __m256i *)(x + 16));
    __m256i v3 = _mm256_loadu_si256((const __m256i *)(x + 24));

    /* ---- fast loop: a whole step and 32 words remain, no checks needed */
    while (i + RFS_LANES <= n && nwords - wpos >= RFS_LANES) {
        __m256i e0, e1, e2, e3;
        v0 = lanes_decode(v0, tab, &e0);
        v1 = lanes_decode(v1, tab, &e1);
        v2 = lanes_decode(v2, tab, &e2);
        v3 = lanes_decode(v3, tab, &e3);
        store_symbols(out + i, e0, e1, e2, e3);
        /* lanes below L take consecutive words: v0's first, then v1's ... */
        __mmask8 m0 = _mm256_cmplt_epu32_mask(v0, lo), m1 = _mm256_cmplt_epu32_mask(v1, lo);
        __mmask8 m2 = _mm256_cmplt_epu32_mask(v2, lo), m3 = _mm256_cmplt_epu32_mask(v3, lo);
        size_t c0 = (size_t)_mm_popcnt_u32(m0), c1 = (size_t)_mm_popcnt_u32(m1);
        size_t c2 = (size_t)_mm_popcnt_u32(m2), c3 = (size_t)_mm_popcnt_u32(m3);
        v0 = lanes_refill(v0, m0, load_words(words, wpos));
        v1 = lanes_refill(v1, m1, load_words(words, wpos + c0));
        v2 = lanes_refill(v2, m2, load_words(words, wpos + c0 + c1));
        v3 = lanes_refill(v3, m3, load_words(words, wpos + c0 + c1 + c2));
        wpos += c0 + c1 + c2 + c3;
        i += RFS_LANES;
    }

    /* ---- checked tail (and end-of-stream checks) */
    _mm256_storeu_si256((__m256i *)(x + 0), v0);
    _mm256_storeu_si256((__m256i *)(x + 8), v1);
    _mm256_storeu_si256((__m256i *)(x + 16), v2);
    _mm256_storeu_si256((__m256i *)(x + 24), v3);
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
