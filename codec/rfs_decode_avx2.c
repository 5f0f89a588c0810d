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
 * input gives the same bytes and error code as the scalar backend.
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

/* Pack the symbol bytes of four entry vectors (lanes 0..31) into 32 bytes. */
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

static rfs_err rans_plane_avx2(uint8_t *out, size_t n, const uint8_t *stream, size_t stream_size,
                               const uint32_t *dec)
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
        v0 = lanes_refill(v0, words, &wpos);
        v1 = lanes_refill(v1, words, &wpos);
        v2 = lanes_refill(v2, words, &wpos);
        v3 = lanes_refill(v3, words, &wpos);
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

/* 32 fp16/bf16 elements: bytes a (low) and b (high), ROT1 undone when rot. */
static inline void interleave32_w2(uint8_t *dst, const uint8_t *p0, const uint8_t *p1, int rot)
{
    __m256i a = _mm256_loadu_si256((const __m256i *)p0);
    __m256i b = _mm256_loadu_si256((const __m256i *)p1);
    __m256i lo = _mm256_unpacklo_epi8(a, b); /* elements 0-7 | 16-23 */
    __m256i hi = _mm256_unpackhi_epi8(a, b); /* elements 8-15 | 24-31 */
    __m256i r0 = _mm256_permute2x128_si256(lo, hi, 0x20);
    __m256i r1 = _mm256_permute2x128_si256(lo, hi, 0x31);
    if (rot) {
        r0 = _mm256_or_si256(_mm256_srli_epi16(r0, 1), _mm256_slli_epi16(r0, 15));
        r1 = _mm256_or_si256(_mm256_srli_epi16(r1, 1), _mm256_slli_epi16(r1, 15));
    }
    _mm256_storeu_si256((__m256i *)dst, r0);
    _mm256_storeu_si256((__m256i *)(dst + 32), r1);
}

static inline __m256i rotr1_32(__m256i v, int rot)
{
    return rot ? _mm256_or_si256(_mm256_srli_epi32(v, 1), _mm256_slli_epi32(v, 31)) : v;
}

/* 32 fp32 elements from four planes. */
static inline void interleave32_w4(uint8_t *dst, const uint8_t *const p[4], size_t i, int rot)
{
    __m256i a = _mm256_loadu_si256((const __m256i *)(p[0] + i));
    __m256i b = _mm256_loadu_si256((const __m256i *)(p[1] + i));
    __m256i c = _mm256_loadu_si256((const __m256i *)(p[2] + i));
    __m256i d = _mm256_loadu_si256((const __m256i *)(p[3] + i));
    __m256i ab_lo = _mm256_unpacklo_epi8(a, b), ab_hi = _mm256_unpackhi_epi8(a, b);
    __m256i cd_lo = _mm256_unpacklo_epi8(c, d), cd_hi = _mm256_unpackhi_epi8(c, d);
    __m256i r0 = _mm256_unpacklo_epi16(ab_lo, cd_lo); /* elements 0-3   | 16-19 */
    __m256i r1 = _mm256_unpackhi_epi16(ab_lo, cd_lo); /* elements 4-7   | 20-23 */
    __m256i r2 = _mm256_unpacklo_epi16(ab_hi, cd_hi); /* elements 8-11  | 24-27 */
    __m256i r3 = _mm256_unpackhi_epi16(ab_hi, cd_hi); /* elements 12-15 | 28-31 */
    uint8_t *o = dst + 4 * i;
    _mm256_storeu_si256((__m256i *)o, rotr1_32(_mm256_permute2x128_si256(r0, r1, 0x20), rot));
    _mm256_storeu_si256((__m256i *)(o + 32),
                        rotr1_32(_mm256_permute2x128_si256(r2, r3, 0x20), rot));
    _mm256_storeu_si256((__m256i *)(o + 64),
                        rotr1_32(_mm256_permute2x128_si256(r0, r1, 0x31), rot));
    _mm256_storeu_si256((__m256i *)(o + 96),
                        rotr1_32(_mm256_permute2x128_si256(r2, r3, 0x31), rot));
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

const rfs_backend rfs_backend_avx2 = {"avx2", rans_plane_avx2, interleave_avx2};
