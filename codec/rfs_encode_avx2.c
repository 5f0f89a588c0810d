/*
 * rfs_encode_avx2.c - the encoder's AVX2 paths (built with -mavx2 -mbmi2
 * -mpopcnt, picked at run time by rfs_enc_paths_default()): the plane
 * split and the rANS encode loop.  Both give the same bytes as the scalar
 * code in rfs_tile_enc.c.
 *
 * Split: 32 elements per step, rotated (ROT1) in registers, bytes grouped
 * by plane with pack or shuffle, then the qwords put in element order; a
 * scalar loop does the last < 32.
 *
 * rANS (design note): the 32 lanes live in four 8-lane vectors, lanes 0-7
 * in v[0] and so on.  A step codes one symbol per lane, x = C(s, x):
 *
 *     f, start = tab[s]                       (scalar loads, see lookup32)
 *     if x >= f << 19: emit x & 0xffff; x >>= 16          (renormalise)
 *     q = x / f; r = x - q*f; x = (q << 12) + r + start
 *
 * The division is done in float, as x * (1/f) with 1/f from vrcpps and
 * one Newton step (relative error below 2^-21 with the roundings of x to
 * float and of the product): x < 2^19 f after renormalisation, so
 * x/f < 2^19 and the estimate is off by less than 1/4; truncation is thus
 * q or q +- 1, and one correction on the sign and size of r gives the
 * exact q.  The result is
 * the same integer state as the scalar reciprocal form (ryg_rans), so the
 * words and final states are identical.
 *
 * Words: the encoder runs last symbol to first, filling the word buffer
 * back to front, and a step's words must lie in ascending lane order.  Per
 * vector, from v[3] down to v[0]: word_lut[m] moves the words of the lanes
 * in mask m to the top positions of an 8-word block, in lane order; the
 * block is stored ending at the cursor (the words below the valid ones are
 * junk, overwritten by the next store), and the cursor drops by popcnt(m).
 */
#include <immintrin.h>

#include "rfs_enc_paths.h"
#include "rfs_internal.h"

/* word_lut[m] byte p: the lane whose word goes to position p of an 8-word
 * block when the lanes in m emit, right-aligned (positions 8-popcnt(m)..7
 * take the set lanes in ascending order; the rest are 0). */
static const uint64_t word_lut[256] = {
    0x0000000000000000ull, 0x0000000000000000ull, 0x0100000000000000ull, 0x0100000000000000ull,
    0x0200000000000000ull, 0x0200000000000000ull, 0x0201000000000000ull, 0x0201000000000000ull,
    0x0300000000000000ull, 0x0300000000000000ull, 0x0301000000000000ull, 0x0301000000000000ull,
    0x0302000000000000ull, 0x0302000000000000ull, 0x0302010000000000ull, 0x0302010000000000ull,
    0x0400000000000000ull, 0x0400000000000000ull, 0x0401000000000000ull, 0x0401000000000000ull,
    0x0402000000000000ull, 0x0402000000000000ull, 0x0402010000000000ull, 0x0402010000000000ull,
    0x0403000000000000ull, 0x0403000000000000ull, 0x0403010000000000ull, 0x0403010000000000ull,
    0x0403020000000000ull, 0x0403020000000000ull, 0x0403020100000000ull, 0x0403020100000000ull,
    0x0500000000000000ull, 0x0500000000000000ull, 0x0501000000000000ull, 0x0501000000000000ull,
    0x0502000000000000ull, 0x0502000000000000ull, 0x0502010000000000ull, 0x0502010000000000ull,
    0x0503000000000000ull, 0x0503000000000000ull, 0x0503010000000000ull, 0x0503010000000000ull,
    0x0503020000000000ull, 0x0503020000000000ull, 0x0503020100000000ull, 0x0503020100000000ull,
    0x0504000000000000ull, 0x0504000000000000ull, 0x0504010000000000ull, 0x0504010000000000ull,
    0x0504020000000000ull, 0x0504020000000000ull, 0x0504020100000000ull, 0x0504020100000000ull,
    0x0504030000000000ull, 0x0504030000000000ull, 0x0504030100000000ull, 0x0504030100000000ull,
    0x0504030200000000ull, 0x0504030200000000ull, 0x0504030201000000ull, 0x0504030201000000ull,
    0x0600000000000000ull, 0x0600000000000000ull, 0x0601000000000000ull, 0x0601000000000000ull,
    0x0602000000000000ull, 0x0602000000000000ull, 0x0602010000000000ull, 0x0602010000000000ull,
    0x0603000000000000ull, 0x0603000000000000ull, 0x0603010000000000ull, 0x0603010000000000ull,
    0x0603020000000000ull, 0x0603020000000000ull, 0x0603020100000000ull, 0x0603020100000000ull,
    0x0604000000000000ull, 0x0604000000000000ull, 0x0604010000000000ull, 0x0604010000000000ull,
    0x0604020000000000ull, 0x0604020000000000ull, 0x0604020100000000ull, 0x0604020100000000ull,
    0x0604030000000000ull, 0x0604030000000000ull, 0x0604030100000000ull, 0x0604030100000000ull,
    0x0604030200000000ull, 0x0604030200000000ull, 0x0604030201000000ull, 0x0604030201000000ull,
    0x0605000000000000ull, 0x0605000000000000ull, 0x0605010000000000ull, 0x0605010000000000ull,
    0x0605020000000000ull, 0x0605020000000000ull, 0x0605020100000000ull, 0x0605020100000000ull,
    0x0605030000000000ull, 0x0605030000000000ull, 0x0605030100000000ull, 0x0605030100000000ull,
    0x0605030200000000ull, 0x0605030200000000ull, 0x0605030201000000ull, 0x0605030201000000ull,
    0x0605040000000000ull, 0x0605040000000000ull, 0x0605040100000000ull, 0x0605040100000000ull,
    0x0605040200000000ull, 0x0605040200000000ull, 0x0605040201000000ull, 0x0605040201000000ull,
    0x0605040300000000ull, 0x0605040300000000ull, 0x0605040301000000ull, 0x0605040301000000ull,
    0x0605040302000000ull, 0x0605040302000000ull, 0x0605040302010000ull, 0x0605040302010000ull,
    0x0700000000000000ull, 0x0700000000000000ull, 0x0701000000000000ull, 0x0701000000000000ull,
    0x0702000000000000ull, 0x0702000000000000ull, 0x0702010000000000ull, 0x0702010000000000ull,
    0x0703000000000000ull, 0x0703000000000000ull, 0x0703010000000000ull, 0x0703010000000000ull,
    0x0703020000000000ull, 0x0703020000000000ull, 0x0703020100000000ull, 0x0703020100000000ull,
    0x0704000000000000ull, 0x0704000000000000ull, 0x0704010000000000ull, 0x0704010000000000ull,
    0x0704020000000000ull, 0x0704020000000000ull, 0x0704020100000000ull, 0x0704020100000000ull,
    0x0704030000000000ull, 0x0704030000000000ull, 0x0704030100000000ull, 0x0704030100000000ull,
    0x0704030200000000ull, 0x0704030200000000ull, 0x0704030201000000ull, 0x0704030201000000ull,
    0x0705000000000000ull, 0x0705000000000000ull, 0x0705010000000000ull, 0x0705010000000000ull,
    0x0705020000000000ull, 0x0705020000000000ull, 0x0705020100000000ull, 0x0705020100000000ull,
    0x0705030000000000ull, 0x0705030000000000ull, 0x0705030100000000ull, 0x0705030100000000ull,
    0x0705030200000000ull, 0x0705030200000000ull, 0x0705030201000000ull, 0x0705030201000000ull,
    0x0705040000000000ull, 0x0705040000000000ull, 0x0705040100000000ull, 0x0705040100000000ull,
    0x0705040200000000ull, 0x0705040200000000ull, 0x0705040201000000ull, 0x0705040201000000ull,
    0x0705040300000000ull, 0x0705040300000000ull, 0x0705040301000000ull, 0x0705040301000000ull,
    0x0705040302000000ull, 0x0705040302000000ull, 0x0705040302010000ull, 0x0705040302010000ull,
    0x0706000000000000ull, 0x0706000000000000ull, 0x0706010000000000ull, 0x0706010000000000ull,
    0x0706020000000000ull, 0x0706020000000000ull, 0x0706020100000000ull, 0x0706020100000000ull,
    0x0706030000000000ull, 0x0706030000000000ull, 0x0706030100000000ull, 0x0706030100000000ull,
    0x0706030200000000ull, 0x0706030200000000ull, 0x0706030201000000ull, 0x0706030201000000ull,
    0x0706040000000000ull, 0x0706040000000000ull, 0x0706040100000000ull, 0x0706040100000000ull,
    0x0706040200000000ull, 0x0706040200000000ull, 0x0706040201000000ull, 0x0706040201000000ull,
    0x0706040300000000ull, 0x0706040300000000ull, 0x0706040301000000ull, 0x0706040301000000ull,
    0x0706040302000000ull, 0x0706040302000000ull, 0x0706040302010000ull, 0x0706040302010000ull,
    0x0706050000000000ull, 0x0706050000000000ull, 0x0706050100000000ull, 0x0706050100000000ull,
    0x0706050200000000ull, 0x0706050200000000ull, 0x0706050201000000ull, 0x0706050201000000ull,
    0x0706050300000000ull, 0x0706050300000000ull, 0x0706050301000000ull, 0x0706050301000000ull,
    0x0706050302000000ull, 0x0706050302000000ull, 0x0706050302010000ull, 0x0706050302010000ull,
    0x0706050400000000ull, 0x0706050400000000ull, 0x0706050401000000ull, 0x0706050401000000ull,
    0x0706050402000000ull, 0x0706050402000000ull, 0x0706050402010000ull, 0x0706050402010000ull,
    0x0706050403000000ull, 0x0706050403000000ull, 0x0706050403010000ull, 0x0706050403010000ull,
    0x0706050403020000ull, 0x0706050403020000ull, 0x0706050403020100ull, 0x0706050403020100ull,
};

static inline __m256i rotl1_16(__m256i v)
{
    return _mm256_or_si256(_mm256_slli_epi16(v, 1), _mm256_srli_epi16(v, 15));
}

static inline __m256i rotl1_32(__m256i v)
{
    return _mm256_or_si256(_mm256_slli_epi32(v, 1), _mm256_srli_epi32(v, 31));
}

/* 32 two-byte elements -> 32 low bytes and 32 high bytes. */
static inline void split32_w2(uint8_t *p0, uint8_t *p1, const uint8_t *src, int rot)
{
    const __m256i m8 = _mm256_set1_epi16(0xff);
    __m256i a = _mm256_loadu_si256((const __m256i *)src);        /* elements 0-15 */
    __m256i b = _mm256_loadu_si256((const __m256i *)(src + 32)); /* elements 16-31 */
    if (rot) {
        a = rotl1_16(a);
        b = rotl1_16(b);
    }
    /* packs work per 128-bit half: qwords come out as a0-7 b16-23 a8-15 b24-31 */
    __m256i lo = _mm256_packus_epi16(_mm256_and_si256(a, m8), _mm256_and_si256(b, m8));
    __m256i hi = _mm256_packus_epi16(_mm256_srli_epi16(a, 8), _mm256_srli_epi16(b, 8));
    _mm256_storeu_si256((__m256i *)p0, _mm256_permute4x64_epi64(lo, 0xd8));
    _mm256_storeu_si256((__m256i *)p1, _mm256_permute4x64_epi64(hi, 0xd8));
}

/* 8 four-byte elements -> qword b = their byte b (b = 0..3). */
static inline __m256i group8_w4(const uint8_t *src, int rot)
{
    const __m256i by_byte = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
                                             0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    __m256i v = _mm256_loadu_si256((const __m256i *)src);
    if (rot)
        v = rotl1_32(v);
    v = _mm256_shuffle_epi8(v, by_byte); /* per half: dword b = byte b of 4 elements */
    return _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* 32 four-byte elements -> 32 bytes of each of the four planes. */
static inline void split32_w4(uint8_t *planes, size_t n, size_t i, const uint8_t *src, int rot)
{
    __m256i a = group8_w4(src, rot), b = group8_w4(src + 32, rot);
    __m256i c = group8_w4(src + 64, rot), d = group8_w4(src + 96, rot);
    __m256i ab02 = _mm256_unpacklo_epi64(a, b), ab13 = _mm256_unpackhi_epi64(a, b);
    __m256i cd02 = _mm256_unpacklo_epi64(c, d), cd13 = _mm256_unpackhi_epi64(c, d);
    _mm256_storeu_si256((__m256i *)(planes + i), _mm256_permute2x128_si256(ab02, cd02, 0x20));
    _mm256_storeu_si256((__m256i *)(planes + n + i), _mm256_permute2x128_si256(ab13, cd13, 0x20));
    _mm256_storeu_si256((__m256i *)(planes + 2 * n + i),
                        _mm256_permute2x128_si256(ab02, cd02, 0x31));
    _mm256_storeu_si256((__m256i *)(planes + 3 * n + i),
                        _mm256_permute2x128_si256(ab13, cd13, 0x31));
}

void rfs_split_planes_avx2(uint8_t *planes, const uint8_t *src, size_t n, unsigned w,
                           rfs_transform xf)
{
    int rot = xf == RFS_XF_ROT1;
    size_t i = 0;
    if (w == 2) {
        for (; i + 32 <= n; i += 32)
            split32_w2(planes + i, planes + n + i, src + 2 * i, rot);
    } else if (w == 4) {
        for (; i + 32 <= n; i += 32)
            split32_w4(planes, n, i, src + 4 * i, rot);
    } else {
        rfs_split_planes_scalar(planes, src, n, w, xf);
        return;
    }
    for (; i < n; i++) {
        uint32_t t = rfs_xf_apply(rfs_ld_elem(src, i, w), w, xf);
        for (unsigned b = 0; b < w; b++)
            planes[b * n + i] = (uint8_t)(t >> (8 * b));
    }
}

/* ---------------------------------------------------------------- rANS */

/* x = C(s, x) for 8 lanes with table entries e = tab[s]; returns the new
 * states and in *emit a mask of the lanes that renormalise. */
static inline __m256i lanes_encode(__m256i x, __m256i e, __m256i *emit)
{
    const __m256i m16 = _mm256_set1_epi32(0xffff);
    __m256i f = _mm256_and_si256(e, m16);
    __m256i start = _mm256_srli_epi32(e, 16);
    /* x >= f << 19  <=>  x >> 16 >= f << 3 (f << 19 is a multiple of 2^16),
     * compared there because f << 19 is 2^31 for f = 2^12 (one symbol has
     * all of a RANS_CTX part's table: never emits), out of signed range */
    __m256i xs = _mm256_srli_epi32(x, 16);
    __m256i keep = _mm256_cmpgt_epi32(_mm256_slli_epi32(f, 3), xs);
    *emit = _mm256_andnot_si256(keep, _mm256_set1_epi32(-1));
    x = _mm256_blendv_epi8(xs, x, keep);
    /* 1/f: vrcpps (rel. error < 1.5 * 2^-12) and one Newton step */
    __m256 ff = _mm256_cvtepi32_ps(f);
    __m256 r0 = _mm256_rcp_ps(ff);
    __m256 r1 = _mm256_mul_ps(r0, _mm256_sub_ps(_mm256_set1_ps(2.0f), _mm256_mul_ps(ff, r0)));
    __m256i q = _mm256_cvttps_epi32(_mm256_mul_ps(_mm256_cvtepi32_ps(x), r1));
    __m256i r = _mm256_sub_epi32(x, _mm256_mullo_epi32(q, f));
    /* r < 0: q was one too big */
    __m256i lo = _mm256_cmpgt_epi32(_mm256_setzero_si256(), r);
    q = _mm256_add_epi32(q, lo);
    r = _mm256_add_epi32(r, _mm256_and_si256(lo, f));
    /* r >= f: q was one too small */
    __m256i hi = _mm256_andnot_si256(_mm256_cmpgt_epi32(f, r), _mm256_set1_epi32(-1));
    q = _mm256_sub_epi32(q, hi);
    r = _mm256_sub_epi32(r, _mm256_and_si256(hi, f));
    return _mm256_add_epi32(_mm256_add_epi32(_mm256_slli_epi32(q, RFS_PROB_BITS), r), start);
}

/* Store the low words of the lanes of xold selected by emit, in lane order,
 * ending at ptr; returns the new cursor. */
static inline uint16_t *lanes_emit(uint16_t *ptr, __m256i xold, __m256i emit)
{
    const __m256i lo16 = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1,
                                          0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1);
    unsigned m = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(emit));
    __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)&word_lut[m]));
    __m256i w = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(xold, idx), lo16);
    w = _mm256_permute4x64_epi64(w, 0x08);
    _mm_storeu_si128((__m128i *)(ptr - 8), _mm256_castsi256_si128(w));
    return ptr - _mm_popcnt_u32(m);
}

/* ent[j] = tab[p[j]] for one step.  Scalar loads: on Zen 4 a vpgatherdd
 * per 8 lanes cost about a third of the whole encode (measured). */
static inline void lookup32(uint32_t ent[RFS_LANES], const uint8_t *p, const uint32_t tab[256])
{
    for (unsigned k = 0; k < RFS_LANES; k += 8) {
        uint64_t s = rfs_ld64(p + k);
        for (unsigned b = 0; b < 8; b++)
            ent[k + b] = tab[(s >> (8 * b)) & 0xff];
    }
}

/* ent[j] = tab[p[j] + 256 * (c[j] >= thr)] for one step (RANS_CTX): the
 * table indices made 16 at a time in registers, the loads scalar as above. */
static inline void lookup32_ctx(uint32_t ent[RFS_LANES], const uint8_t *p, const uint8_t *c,
                                __m128i thr, const uint32_t tab[512])
{
    const __m128i one = _mm_set1_epi8(1);
    for (unsigned k = 0; k < RFS_LANES; k += 16) {
        __m128i cv = _mm_loadu_si128((const __m128i *)(c + k));
        /* c >= thr <=> max(c, thr) == c (bytes unsigned) */
        __m128i hi = _mm_and_si128(_mm_cmpeq_epi8(_mm_max_epu8(cv, thr), cv), one);
        __m256i idx = _mm256_or_si256(
            _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(p + k))),
            _mm256_slli_epi16(_mm256_cvtepu8_epi16(hi), 8));
        uint16_t ix[16];
        _mm256_storeu_si256((__m256i *)ix, idx);
        for (unsigned b = 0; b < 16; b++)
            ent[k + b] = tab[ix[b]];
    }
}

/* One step: lanes 0..31 (v[0] = lanes 0-7, ...) coded with their table
 * entries ent, the words of v[3] stored first (back to front); returns the
 * new cursor. */
static inline uint16_t *step32(__m256i v[4], uint16_t *ptr, const uint32_t ent[RFS_LANES])
{
    __m256i e[4], nv[4];
    for (unsigned k = 0; k < 4; k++)
        nv[k] = lanes_encode(v[k], _mm256_loadu_si256((const __m256i *)(ent + 8 * k)), &e[k]);
    for (unsigned k = 4; k-- > 0;)
        ptr = lanes_emit(ptr, v[k], e[k]);
    for (unsigned k = 0; k < 4; k++)
        v[k] = nv[k];
    return ptr;
}

static inline void states_load(__m256i v[4], const uint32_t x[RFS_LANES])
{
    for (unsigned k = 0; k < 4; k++)
        v[k] = _mm256_loadu_si256((const __m256i *)(x + 8 * k));
}

static inline void states_store(uint32_t x[RFS_LANES], const __m256i v[4])
{
    for (unsigned k = 0; k < 4; k++)
        _mm256_storeu_si256((__m256i *)(x + 8 * k), v[k]);
}

uint16_t *rfs_rans_encode_steps_avx2(uint32_t x[RFS_LANES], uint16_t *ptr, const uint8_t *plane,
                                     size_t n, const uint32_t tab[256])
{
    __m256i v[4];
    states_load(v, x);
    for (size_t i = n; i > 0;) {
        i -= RFS_LANES;
        uint32_t ent[RFS_LANES];
        lookup32(ent, plane + i, tab);
        ptr = step32(v, ptr, ent);
    }
    states_store(x, v);
    return ptr;
}

uint16_t *rfs_rans_encode_ctx_steps_avx2(uint32_t x[RFS_LANES], uint16_t *ptr,
                                         const uint8_t *plane, const uint8_t *ctx, unsigned thr,
                                         size_t n, const uint32_t tab[512])
{
    const __m128i t = _mm_set1_epi8((char)thr);
    __m256i v[4];
    states_load(v, x);
    for (size_t i = n; i > 0;) {
        i -= RFS_LANES;
        uint32_t ent[RFS_LANES];
        lookup32_ctx(ent, plane + i, ctx + i, t, tab);
        ptr = step32(v, ptr, ent);
    }
    states_store(x, v);
    return ptr;
}
