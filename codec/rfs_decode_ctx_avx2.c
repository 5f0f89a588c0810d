/*
 * rfs_decode_ctx_avx2.c - the AVX2 RANS_CTX plane decoder (built with
 * -mavx2 -mbmi2 -mpopcnt; used by the AVX2 and AVX-512 backends).
 *
 * The step is the order-0 one of rfs_decode_avx2.c with one change: the
 * gather index is slot + 4096 for the lanes whose context byte is >= the
 * threshold (one widen, one compare and one and per 8 lanes), into the two
 * decode tables laid back to back (rfs_decode_ctx.h).  The refill, symbol
 * packing and element stores are the order-0 backend's, restated here so
 * that this plane's code stays apart from the order-0 loops, which are
 * tuned on their own (docs/format.md 1.5 is the one rule both follow).
 */
#include <immintrin.h>

#include "rfs_decode_ctx.h"
#include "rfs_rans_lane.h"

/* refill_lut[m] byte j = popcount(m & ((1 << j) - 1)) (as rfs_decode_avx2.c). */
#define CL_B(m, k) ((uint64_t)(((m) >> (k)) & 1u))
#define CL_P1(m) CL_B(m, 0)
#define CL_P2(m) (CL_P1(m) + CL_B(m, 1))
#define CL_P3(m) (CL_P2(m) + CL_B(m, 2))
#define CL_P4(m) (CL_P3(m) + CL_B(m, 3))
#define CL_P5(m) (CL_P4(m) + CL_B(m, 4))
#define CL_P6(m) (CL_P5(m) + CL_B(m, 5))
#define CL_P7(m) (CL_P6(m) + CL_B(m, 6))
#define CL_E(m)                                                                             \
    (CL_P1(m) << 8 | CL_P2(m) << 16 | CL_P3(m) << 24 | CL_P4(m) << 32 | CL_P5(m) << 40 |   \
     CL_P6(m) << 48 | CL_P7(m) << 56)
#define CL_E4(m) CL_E(m), CL_E((m) + 1), CL_E((m) + 2), CL_E((m) + 3)
#define CL_E16(m) CL_E4(m), CL_E4((m) + 4), CL_E4((m) + 8), CL_E4((m) + 12)
#define CL_E64(m) CL_E16(m), CL_E16((m) + 16), CL_E16((m) + 32), CL_E16((m) + 48)

static const uint64_t refill_lut[256] = {CL_E64(0), CL_E64(64), CL_E64(128), CL_E64(192)};

/* Lanes of x below L take the next words in lane order (sign of x - L is
 * the mask: x < 2^31). */
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

/* x = D(x) for 8 lanes whose context bytes are c[0..8); *e: the entries. */
static inline __m256i lanes_decode_ctx(__m256i x, const int *dec, const uint8_t *c,
                                       __m256i thr_m1, __m256i *e)
{
    const __m256i m12 = _mm256_set1_epi32((int)RFS_LANE_MASK);
    __m256i cv = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)c));
    __m256i off = _mm256_and_si256(_mm256_cmpgt_epi32(cv, thr_m1),
                                   _mm256_set1_epi32((int)RFS_PROB_SCALE));
    __m256i slot = _mm256_and_si256(x, m12);
    __m256i ent = _mm256_i32gather_epi32(dec, _mm256_add_epi32(slot, off), 4);
    __m256i fm1 = _mm256_and_si256(_mm256_srli_epi32(ent, 8), m12);
    __m256i xh = _mm256_srli_epi32(x, RFS_LANE_PROB_BITS);
    __m256i rest = _mm256_sub_epi32(_mm256_add_epi32(xh, slot), _mm256_srli_epi32(ent, 20));
    *e = ent;
    return _mm256_add_epi32(_mm256_mullo_epi32(fm1, xh), rest);
}

/* The symbol bytes of four entry vectors (lanes 0..31) as 32 bytes. */
static inline __m256i pack_symbols(__m256i e0, __m256i e1, __m256i e2, __m256i e3)
{
    const __m256i m8 = _mm256_set1_epi32(0xff);
    __m256i p01 = _mm256_packus_epi32(_mm256_and_si256(e0, m8), _mm256_and_si256(e1, m8));
    __m256i p23 = _mm256_packus_epi32(_mm256_and_si256(e2, m8), _mm256_and_si256(e3, m8));
    __m256i b = _mm256_packus_epi16(p01, p23);
    return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* 32 W = 2 elements from low bytes a and high bytes b, ROT1 undone when rot. */
static inline void store_elems_w2(uint8_t *dst, __m256i a, __m256i b, int rot)
{
    __m256i lo = _mm256_unpacklo_epi8(a, b), hi = _mm256_unpackhi_epi8(a, b);
    __m256i r0 = _mm256_permute2x128_si256(lo, hi, 0x20);
    __m256i r1 = _mm256_permute2x128_si256(lo, hi, 0x31);
    if (rot) {
        r0 = _mm256_or_si256(_mm256_srli_epi16(r0, 1), _mm256_slli_epi16(r0, 15));
        r1 = _mm256_or_si256(_mm256_srli_epi16(r1, 1), _mm256_slli_epi16(r1, 15));
    }
    _mm256_storeu_si256((__m256i *)dst, r0);
    _mm256_storeu_si256((__m256i *)(dst + 32), r1);
}

/* The plane's 32 lanes and word cursor. */
typedef struct ctx_st {
    __m256i v0, v1, v2, v3, thr_m1;
    const int *dec;
    const uint8_t *words;
    size_t wpos, nwords;
} ctx_st;

static rfs_err ctx_begin(ctx_st *s, const rfs_ctx_job *jb)
{
    uint32_t x[RFS_LANES];
    rfs_err err = rfs_rans_load_states(x, jb->stream, jb->stream_size);
    if (err != RFS_OK)
        return err;
    s->words = jb->stream + RFS_STATES_SIZE;
    s->nwords = (jb->stream_size - RFS_STATES_SIZE) / 2;
    s->wpos = 0;
    s->dec = (const int *)jb->dec;
    s->thr_m1 = _mm256_set1_epi32((int)jb->threshold - 1); /* threshold >= 1 */
    s->v0 = _mm256_loadu_si256((const __m256i *)(x + 0));
    s->v1 = _mm256_loadu_si256((const __m256i *)(x + 8));
    s->v2 = _mm256_loadu_si256((const __m256i *)(x + 16));
    s->v3 = _mm256_loadu_si256((const __m256i *)(x + 24));
    return RFS_OK;
}

/* One step of 32 symbols (context bytes c[0..32)); returns them packed. */
static inline __m256i ctx_step(ctx_st *s, const uint8_t *c)
{
    __m256i e0, e1, e2, e3;
    s->v0 = lanes_decode_ctx(s->v0, s->dec, c + 0, s->thr_m1, &e0);
    s->v1 = lanes_decode_ctx(s->v1, s->dec, c + 8, s->thr_m1, &e1);
    s->v2 = lanes_decode_ctx(s->v2, s->dec, c + 16, s->thr_m1, &e2);
    s->v3 = lanes_decode_ctx(s->v3, s->dec, c + 24, s->thr_m1, &e3);
    s->v0 = lanes_refill(s->v0, s->words, &s->wpos);
    s->v1 = lanes_refill(s->v1, s->words, &s->wpos);
    s->v2 = lanes_refill(s->v2, s->words, &s->wpos);
    s->v3 = lanes_refill(s->v3, s->words, &s->wpos);
    return pack_symbols(e0, e1, e2, e3);
}

/* 1 when the 32 words a step can take at most remain: no checks needed. */
static inline int ctx_fast_ok(const ctx_st *s)
{
    return s->nwords - s->wpos >= RFS_LANES;
}

/* The checked tail from symbol i on. */
static rfs_err ctx_finish(const ctx_st *s, const rfs_ctx_job *jb, size_t i, size_t n)
{
    uint32_t x[RFS_LANES];
    _mm256_storeu_si256((__m256i *)(x + 0), s->v0);
    _mm256_storeu_si256((__m256i *)(x + 8), s->v1);
    _mm256_storeu_si256((__m256i *)(x + 16), s->v2);
    _mm256_storeu_si256((__m256i *)(x + 24), s->v3);
    return rfs_ctx_tail(x, jb, i, n, s->wpos);
}

static rfs_err ctx_plane_avx2(const rfs_ctx_job *jb, size_t n)
{
    ctx_st s;
    rfs_err err = ctx_begin(&s, jb);
    if (err != RFS_OK)
        return err;
    size_t i = 0;
    for (; i + RFS_LANES <= n && ctx_fast_ok(&s); i += RFS_LANES) /* fast part */
        _mm256_storeu_si256((__m256i *)(jb->out + i), ctx_step(&s, jb->ctx + i));
    return ctx_finish(&s, jb, i, n);
}

/* Fast steps straight to elements; returns the elements done. */
static inline size_t ctx_w2_fast(ctx_st *s, uint8_t *dst, const uint8_t *ctx, size_t n, int rot)
{
    size_t i = 0;
    for (; i + RFS_LANES <= n && ctx_fast_ok(s); i += RFS_LANES) {
        __m256i sym = ctx_step(s, ctx + i);
        store_elems_w2(dst + 2 * i, sym, _mm256_loadu_si256((const __m256i *)(ctx + i)), rot);
    }
    return i;
}

static rfs_err ctx_w2_avx2(uint8_t *dst, const rfs_ctx_job *jb, size_t n, rfs_transform xf)
{
    ctx_st s;
    rfs_err err = ctx_begin(&s, jb);
    if (err != RFS_OK)
        return err;
    size_t i = xf == RFS_XF_ROT1 ? ctx_w2_fast(&s, dst, jb->ctx, n, 1)
                                 : ctx_w2_fast(&s, dst, jb->ctx, n, 0);
    err = ctx_finish(&s, jb, i, n);
    if (err != RFS_OK || i == n)
        return err;
    const uint8_t *rest[RFS_MAX_WIDTH] = {jb->out + i, jb->ctx + i, NULL, NULL};
    rfs_interleave_scalar(dst + 2 * i, rest, n - i, 2, xf);
    return RFS_OK;
}

const rfs_ctx_paths rfs_ctx_paths_avx2 = {ctx_plane_avx2, ctx_w2_avx2};
