/*
 * rfs_lanes_avx2.h - internal: the 8-lane rANS decode step and the symbol
 * packing and W = 2 and W = 4 element stores built on it, all static
 * inline, for the files compiled with AVX2 or AVX-512 flags
 * (rfs_decode_fused.h's plane loops, the RANS_CTX plane of
 * rfs_decode_ctx_avx2.c).
 */
#ifndef RFS_LANES_AVX2_H
#define RFS_LANES_AVX2_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "rfs_rans_lane.h"

/*
 * dec[slot] for 8 lanes.  A translation unit that defines RFS_LANES_LOADS
 * before including this header (the avx2-loads backend) gets eight scalar
 * loads instead of one vpgatherdd: on Zen 3 (no AVX-512) that decodes real
 * bf16/fp16/f32 11-14% faster, since the loop is bound by gather throughput
 * there (docs/benchmarks.md, "Table lookups by scalar loads").  Each load is
 * a vpbroadcastd merged by vpblendd: a broadcast from memory is a plain load
 * on Zen 3, while vpinsrd from memory also takes a slot on the two pipes
 * that carry the slot extracts (+2.5-7% over inserts).  Where AVX-512
 * exists (Zen 4) the gather stays: a microbenchmark there put loads only
 * slightly ahead.
 */
static inline __m256i lanes_lookup(const int *dec, __m256i slot)
{
#ifdef RFS_LANES_LOADS
    __m128i s0 = _mm256_castsi256_si128(slot);
    __m128i s1 = _mm256_extracti128_si256(slot, 1);
    uint64_t a = (uint64_t)_mm_cvtsi128_si64(s0), b = (uint64_t)_mm_extract_epi64(s0, 1);
    uint64_t c = (uint64_t)_mm_cvtsi128_si64(s1), d = (uint64_t)_mm_extract_epi64(s1, 1);
#define BC(i) _mm256_set1_epi32(dec[i])
    __m256i r = _mm256_blend_epi32(BC((uint32_t)a), BC(a >> 32), 0x02);
    r = _mm256_blend_epi32(r, BC((uint32_t)b), 0x04);
    r = _mm256_blend_epi32(r, BC(b >> 32), 0x08);
    r = _mm256_blend_epi32(r, BC((uint32_t)c), 0x10);
    r = _mm256_blend_epi32(r, BC(c >> 32), 0x20);
    r = _mm256_blend_epi32(r, BC((uint32_t)d), 0x40);
    r = _mm256_blend_epi32(r, BC(d >> 32), 0x80);
#undef BC
    return r;
#else
    return _mm256_i32gather_epi32(dec, slot, 4);
#endif
}

/* x = D(x) for 8 lanes; *e receives the table entries (symbol in byte 0). */
static inline __m256i lanes_decode(__m256i x, const int *dec, __m256i *e)
{
    const __m256i m12 = _mm256_set1_epi32((int)RFS_LANE_MASK);
    __m256i slot = _mm256_and_si256(x, m12);
    __m256i ent = lanes_lookup(dec, slot);
    __m256i fm1 = _mm256_and_si256(_mm256_srli_epi32(ent, 8), m12);
    __m256i xh = _mm256_srli_epi32(x, RFS_LANE_PROB_BITS);
    /* f * xh + slot - start = (f-1) * xh + (xh + slot - start) */
    __m256i rest = _mm256_sub_epi32(_mm256_add_epi32(xh, slot), _mm256_srli_epi32(ent, 20));
    *e = ent;
    return _mm256_add_epi32(_mm256_mullo_epi32(fm1, xh), rest);
}

/* The symbol bytes of four entry vectors (lanes 0..31), packed into 32 bytes
 * (two packs and a permute: cheaper than four vpmovdb on Zen 4). */
static inline __m256i pack_symbols(__m256i e0, __m256i e1, __m256i e2, __m256i e3)
{
    const __m256i m8 = _mm256_set1_epi32(0xff);
    /* packs work per 128-bit half: dwords come out as
     * e0[0-3] e1[0-3] e2[0-3] e3[0-3] | e0[4-7] e1[4-7] e2[4-7] e3[4-7] */
    __m256i p01 = _mm256_packus_epi32(_mm256_and_si256(e0, m8), _mm256_and_si256(e1, m8));
    __m256i p23 = _mm256_packus_epi32(_mm256_and_si256(e2, m8), _mm256_and_si256(e3, m8));
    __m256i b = _mm256_packus_epi16(p01, p23);
    return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* 32 W = 2 elements from their low bytes a and high bytes b, ROT1 undone
 * when rot. */
static inline void store_elems_w2(uint8_t *dst, __m256i a, __m256i b, int rot)
{
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

/* 32 fp32 elements at o from their bytes 0..3 in a..d. */
static inline void store_elems_w4(uint8_t *o, __m256i a, __m256i b, __m256i c, __m256i d, int rot)
{
    __m256i ab_lo = _mm256_unpacklo_epi8(a, b), ab_hi = _mm256_unpackhi_epi8(a, b);
    __m256i cd_lo = _mm256_unpacklo_epi8(c, d), cd_hi = _mm256_unpackhi_epi8(c, d);
    __m256i r0 = _mm256_unpacklo_epi16(ab_lo, cd_lo); /* elements 0-3   | 16-19 */
    __m256i r1 = _mm256_unpackhi_epi16(ab_lo, cd_lo); /* elements 4-7   | 20-23 */
    __m256i r2 = _mm256_unpacklo_epi16(ab_hi, cd_hi); /* elements 8-11  | 24-27 */
    __m256i r3 = _mm256_unpackhi_epi16(ab_hi, cd_hi); /* elements 12-15 | 28-31 */
    _mm256_storeu_si256((__m256i *)o, rotr1_32(_mm256_permute2x128_si256(r0, r1, 0x20), rot));
    _mm256_storeu_si256((__m256i *)(o + 32),
                        rotr1_32(_mm256_permute2x128_si256(r2, r3, 0x20), rot));
    _mm256_storeu_si256((__m256i *)(o + 64),
                        rotr1_32(_mm256_permute2x128_si256(r0, r1, 0x31), rot));
    _mm256_storeu_si256((__m256i *)(o + 96),
                        rotr1_32(_mm256_permute2x128_si256(r2, r3, 0x31), rot));
}

static inline __m256i load32(const uint8_t *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

#endif
