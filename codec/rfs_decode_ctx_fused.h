/*
 * rfs_decode_ctx_fused.h - internal: the AVX2 RANS_CTX plane decoder, all
 * static, included once by rfs_decode_ctx_avx2.c (table lookups by gather;
 * used by the avx2 and AVX-512 backends) and by rfs_decode_ctx_loads_avx2.c
 * (RFS_LANES_LOADS: by scalar loads, for the avx2-loads backend), each
 * compiled with -mavx2 -mbmi2 -mpopcnt.
 *
 * The step is the order-0 one of rfs_decode_avx2.c with one change: the
 * gather index is slot + 4096 for the lanes whose context byte is >= the
 * threshold (one widen, one compare and one and per 8 lanes), into the two
 * decode tables laid back to back (rfs_decode_ctx.h).  The refill, symbol
 * packing and W = 2 and W = 4 element stores are the order-0 backend's
 * (rfs_refill_avx2.h, rfs_lanes_avx2.h); the step and the plane loops are
 * this file's.  Both widths write elements from the fast steps directly
 * (no plane buffer, no interleave pass), as the order-0 fused forms do.
 */
#ifndef RFS_DECODE_CTX_FUSED_H
#define RFS_DECODE_CTX_FUSED_H

#include <immintrin.h>

#include "rfs_decode_ctx.h"
#include "rfs_lanes_avx2.h"
#include "rfs_rans_lane.h"
#include "rfs_refill_avx2.h"

/* x = D(x) for 8 lanes whose context bytes are c[0..8); *e: the entries. */
static inline __m256i lanes_decode_ctx(__m256i x, const int *dec, const uint8_t *c,
                                       __m256i thr_m1, __m256i *e)
{
    const __m256i m12 = _mm256_set1_epi32((int)RFS_LANE_MASK);
    __m256i cv = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)c));
    __m256i off = _mm256_and_si256(_mm256_cmpgt_epi32(cv, thr_m1),
                                   _mm256_set1_epi32((int)RFS_PROB_SCALE));
    __m256i slot = _mm256_and_si256(x, m12);
    __m256i ent = lanes_lookup(dec, _mm256_add_epi32(slot, off));
    __m256i fm1 = _mm256_and_si256(_mm256_srli_epi32(ent, 8), m12);
    __m256i xh = _mm256_srli_epi32(x, RFS_LANE_PROB_BITS);
    __m256i rest = _mm256_sub_epi32(_mm256_add_epi32(xh, slot), _mm256_srli_epi32(ent, 20));
    *e = ent;
    return _mm256_add_epi32(_mm256_mullo_epi32(fm1, xh), rest);
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
    rfs_err err = rfs_rans_begin(x, &s->words, &s->nwords, jb->stream, jb->stream_size);
    if (err != RFS_OK)
        return err;
    s->wpos = 0;
    s->dec = (const int *)jb->dec;
    s->thr_m1 = _mm256_set1_epi32((int)jb->threshold - 1); /* threshold >= 1 */
    s->v0 = _mm256_loadu_si256((const __m256i *)(x + 0));
    s->v1 = _mm256_loadu_si256((const __m256i *)(x + 8));
    s->v2 = _mm256_loadu_si256((const __m256i *)(x + 16));
    s->v3 = _mm256_loadu_si256((const __m256i *)(x + 24));
    return RFS_OK;
}

/* One step of 32 symbols (context bytes c[0..32)); returns them packed.
 * Always inlined, as plane_step in rfs_decode_fused.h. */
static inline __attribute__((always_inline)) __m256i ctx_step(ctx_st *s, const uint8_t *c)
{
    __m256i e0, e1, e2, e3;
    s->v0 = lanes_decode_ctx(s->v0, s->dec, c + 0, s->thr_m1, &e0);
    s->v1 = lanes_decode_ctx(s->v1, s->dec, c + 8, s->thr_m1, &e1);
    s->v2 = lanes_decode_ctx(s->v2, s->dec, c + 16, s->thr_m1, &e2);
    s->v3 = lanes_decode_ctx(s->v3, s->dec, c + 24, s->thr_m1, &e3);
    lanes_refill4(&s->v0, &s->v1, &s->v2, &s->v3, s->words, &s->wpos);
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
    return rfs_ctx_tail(x, jb, i, n, s->words, s->wpos, s->nwords);
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

/* W = 2 (coded plane 0, context plane 1): fast steps straight to elements;
 * returns the elements done. */
static inline size_t ctx_w2_fast(ctx_st *s, uint8_t *dst, const uint8_t *ctx, size_t n, int rot)
{
    size_t i = 0;
    for (; i + RFS_LANES <= n && ctx_fast_ok(s); i += RFS_LANES) {
        __m256i sym = ctx_step(s, ctx + i);
        store_elems_w2(dst + 2 * i, sym, _mm256_loadu_si256((const __m256i *)(ctx + i)), rot);
    }
    return i;
}

/* W = 4 (coded plane 2, context plane 3): fast steps straight to elements,
 * bytes 0, 1 and 3 from p[]; returns the elements done. */
static inline size_t ctx_w4_fast(ctx_st *s, uint8_t *dst, const uint8_t *const p[4], size_t n,
                                 int rot)
{
    size_t i = 0;
    for (; i + RFS_LANES <= n && ctx_fast_ok(s); i += RFS_LANES) {
        __m256i sym = ctx_step(s, p[3] + i);
        store_elems_w4(dst + 4 * i, load32(p[0] + i), load32(p[1] + i), sym, load32(p[3] + i),
                       rot);
    }
    return i;
}

static rfs_err ctx_elems_avx2(uint8_t *dst, const rfs_ctx_job *jb,
                              const uint8_t *const planes[RFS_MAX_WIDTH], size_t n, unsigned w,
                              rfs_transform xf)
{
    ctx_st s;
    rfs_err err = ctx_begin(&s, jb);
    if (err != RFS_OK)
        return err;
    int rot = xf == RFS_XF_ROT1;
    size_t i;
    if (w == 2)
        i = rot ? ctx_w2_fast(&s, dst, jb->ctx, n, 1) : ctx_w2_fast(&s, dst, jb->ctx, n, 0);
    else
        i = rot ? ctx_w4_fast(&s, dst, planes, n, 1) : ctx_w4_fast(&s, dst, planes, n, 0);
    err = ctx_finish(&s, jb, i, n);
    if (err != RFS_OK || i == n)
        return err;
    /* the rest: the tail's symbols from scratch, interleaved */
    const uint8_t *rest[RFS_MAX_WIDTH] = {0};
    for (unsigned p = 0; p < w; p++)
        rest[p] = (p == RFS_CTX_PLANE(w) ? jb->out : planes[p]) + i;
    rfs_interleave_scalar(dst + (size_t)w * i, rest, n - i, w, xf);
    return RFS_OK;
}

#endif
