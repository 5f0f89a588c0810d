/*
 * rfs_decode_fused.h - internal: the plane decoder shared by the AVX2 and
 * AVX-512 backends, and the fused forms built on it (several planes in
 * lockstep, planes straight to elements).  Included once by each backend
 * file, after it defines
 *
 *     static inline void lanes_refill4(__m256i *v0, __m256i *v1, __m256i *v2,
 *                                      __m256i *v3, const uint8_t *words,
 *                                      size_t *wpos);
 *
 * which refills lanes 0-31 (v0 = lanes 0-7, ...) that fell below L from
 * words[*wpos..] in ascending lane order and moves *wpos on (docs/format.md
 * 1.5).  Everything here is static, compiled with that file's flags.
 *
 * Design note: a plane's fast steps run only while the 32 words a step can
 * take at most remain (no bounds checks); plane_finish then hands its states
 * to rfs_rans_tail, the checked scalar loop that detects every error, so
 * each plane's result is exactly that of the scalar backend.  The fused
 * forms only change where the fast steps' symbols go: straight into the
 * elements (the bytes of the other planes read from their buffers, ROT1
 * undone on the way), or several planes per loop.  The symbols of the tail
 * go to the plane's scratch buffer and are interleaved afterwards.
 *
 * Measured on Zen 4: two planes in lockstep decode no faster than one after
 * the other.  An 8-lane vpgatherdd there has ~22 cycles latency but one
 * issues only every ~8.5 cycles, so a step's four gathers alone take ~34 of
 * the ~65 cycles it costs: the loop is near a throughput limit, not
 * latency-bound.  Writing elements directly (no plane buffer, no separate
 * interleave pass) is what gains: +20-30% on real bf16/fp16/f32 tiles.
 */
#ifndef RFS_DECODE_FUSED_H
#define RFS_DECODE_FUSED_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "rfs_backend.h"
#include "rfs_lanes_avx2.h"
#include "rfs_rans_lane.h"

/* One plane's decoder: 32 lanes in four vectors and its word cursor. */
typedef struct plane_st {
    __m256i v0, v1, v2, v3;
    const uint8_t *words;
    size_t wpos, nwords;
    const int *tab;
} plane_st;

static rfs_err plane_begin(plane_st *s, const uint8_t *stream, size_t stream_size,
                           const uint32_t *dec)
{
    uint32_t x[RFS_LANES];
    rfs_err err = rfs_rans_begin(x, &s->words, &s->nwords, stream, stream_size);
    if (err != RFS_OK)
        return err;
    s->wpos = 0;
    s->tab = (const int *)dec;
    s->v0 = _mm256_loadu_si256((const __m256i *)(x + 0));
    s->v1 = _mm256_loadu_si256((const __m256i *)(x + 8));
    s->v2 = _mm256_loadu_si256((const __m256i *)(x + 16));
    s->v3 = _mm256_loadu_si256((const __m256i *)(x + 24));
    return RFS_OK;
}

/* 1 when the 32 words a step can take at most remain: no checks needed. */
static inline int plane_fast_ok(const plane_st *s)
{
    return s->nwords - s->wpos >= RFS_LANES;
}

/* One step of 32 symbols; returns them packed.  Always inlined: with the
 * scalar-load lookup (RFS_LANES_LOADS) GCC would otherwise call it, and the
 * call costs the loop its gain (states through memory). */
static inline __attribute__((always_inline)) __m256i plane_step(plane_st *s)
{
    __m256i e0, e1, e2, e3;
    s->v0 = lanes_decode(s->v0, s->tab, &e0);
    s->v1 = lanes_decode(s->v1, s->tab, &e1);
    s->v2 = lanes_decode(s->v2, s->tab, &e2);
    s->v3 = lanes_decode(s->v3, s->tab, &e3);
    lanes_refill4(&s->v0, &s->v1, &s->v2, &s->v3, s->words, &s->wpos);
    return pack_symbols(e0, e1, e2, e3);
}

/* Go on from symbol i: fast steps while they are safe, then the checked
 * tail (and end-of-stream checks). */
static rfs_err plane_finish(plane_st *sp, uint8_t *out, size_t i, size_t n)
{
    plane_st st = *sp, *s = &st; /* a local copy stays in registers */
    for (; i + RFS_LANES <= n && plane_fast_ok(s); i += RFS_LANES)
        _mm256_storeu_si256((__m256i *)(out + i), plane_step(s));
    uint32_t x[RFS_LANES];
    _mm256_storeu_si256((__m256i *)(x + 0), s->v0);
    _mm256_storeu_si256((__m256i *)(x + 8), s->v1);
    _mm256_storeu_si256((__m256i *)(x + 16), s->v2);
    _mm256_storeu_si256((__m256i *)(x + 24), s->v3);
    return rfs_rans_tail(x, out, i, n, s->words, s->wpos, s->nwords, (const uint32_t *)s->tab);
}

/* k planes (a constant after inlining) in lockstep while every one of them
 * can take a fast step; returns the symbols done. */
static inline size_t planes_lockstep(plane_st *sp, uint8_t *const *out, unsigned k, size_t n)
{
    plane_st s[RFS_MAX_JOBS];
    for (unsigned p = 0; p < k; p++)
        s[p] = sp[p];
    size_t i = 0;
    for (; i + RFS_LANES <= n; i += RFS_LANES) {
        int ok = 1;
        for (unsigned p = 0; p < k; p++)
            ok &= plane_fast_ok(&s[p]);
        if (!ok)
            break;
        for (unsigned p = 0; p < k; p++)
            _mm256_storeu_si256((__m256i *)(out[p] + i), plane_step(&s[p]));
    }
    for (unsigned p = 0; p < k; p++)
        sp[p] = s[p];
    return i;
}

/* Planes in pairs: more would not fit the 16 ymm registers. */
#define PLANES_GROUP 2u

static void fused_rans_planes(rfs_plane_job *jobs, unsigned k, size_t n)
{
    plane_st s[RFS_MAX_JOBS];
    uint8_t *out[RFS_MAX_JOBS];
    unsigned idx[RFS_MAX_JOBS], m = 0;
    for (unsigned p = 0; p < k; p++) {
        jobs[p].err = plane_begin(&s[m], jobs[p].stream, jobs[p].stream_size, jobs[p].dec);
        if (jobs[p].err == RFS_OK) {
            out[m] = jobs[p].out;
            idx[m++] = p;
        }
    }
    for (unsigned g = 0; g < m; g += PLANES_GROUP) {
        unsigned c = m - g < PLANES_GROUP ? m - g : PLANES_GROUP;
        size_t i = c == 2 ? planes_lockstep(s + g, out + g, 2, n) : 0;
        for (unsigned p = g; p < g + c; p++)
            jobs[idx[p]].err = plane_finish(&s[p], out[p], i, n);
    }
}

/* W = 2, one rANS plane: fast steps write elements straight into dst;
 * returns the elements done. */
static inline size_t w2_fast(plane_st *sp, uint8_t *dst, size_t n, unsigned plane,
                             const uint8_t *other, int rot)
{
    plane_st st = *sp, *s = &st;
    size_t i = 0;
    for (; i + RFS_LANES <= n && plane_fast_ok(s); i += RFS_LANES) {
        __m256i sym = plane_step(s);
        __m256i oth = _mm256_loadu_si256((const __m256i *)(other + i));
        if (plane == 1)
            store_elems_w2(dst + 2 * i, oth, sym, rot);
        else
            store_elems_w2(dst + 2 * i, sym, oth, rot);
    }
    *sp = st;
    return i;
}

/* W = 2, both planes rANS (s[0] plane 0), in lockstep, as elements. */
static inline size_t w2x2_fast(plane_st *sp, uint8_t *dst, size_t n, int rot)
{
    plane_st s[2] = {sp[0], sp[1]};
    size_t i = 0;
    for (; i + RFS_LANES <= n && plane_fast_ok(&s[0]) && plane_fast_ok(&s[1]); i += RFS_LANES) {
        __m256i a = plane_step(&s[0]);
        __m256i b = plane_step(&s[1]);
        store_elems_w2(dst + 2 * i, a, b, rot);
    }
    sp[0] = s[0];
    sp[1] = s[1];
    return i;
}

static size_t w2_fast_any(plane_st *s, uint8_t *dst, size_t n, unsigned k, unsigned plane,
                          const uint8_t *other, int rot)
{
    if (k == 2)
        return rot ? w2x2_fast(s, dst, n, 1) : w2x2_fast(s, dst, n, 0);
    if (plane == 1)
        return rot ? w2_fast(s, dst, n, 1, other, 1) : w2_fast(s, dst, n, 1, other, 0);
    return rot ? w2_fast(s, dst, n, 0, other, 1) : w2_fast(s, dst, n, 0, other, 0);
}

static void fused_rans_w2(uint8_t *dst, size_t n, rfs_plane_job *jobs, unsigned k, unsigned plane,
                          const uint8_t *other, rfs_transform xf)
{
    plane_st s[2];
    int ok = 1;
    for (unsigned j = 0; j < k; j++) {
        jobs[j].err = plane_begin(&s[j], jobs[j].stream, jobs[j].stream_size, jobs[j].dec);
        ok &= jobs[j].err == RFS_OK;
    }
    /* the fast steps (none when a plane failed: its error may hide the
     * other's, so each then decodes alone into its scratch) */
    size_t i = ok ? w2_fast_any(s, dst, n, k, plane, other, xf == RFS_XF_ROT1) : 0;
    for (unsigned j = 0; j < k; j++) {
        if (jobs[j].err == RFS_OK)
            jobs[j].err = plane_finish(&s[j], jobs[j].out, i, n);
        ok &= jobs[j].err == RFS_OK;
    }
    if (!ok || i == n)
        return;
    /* the rest: the tail's symbols from scratch, interleaved */
    const uint8_t *planes[RFS_MAX_WIDTH] = {0};
    if (k == 2) {
        planes[0] = jobs[0].out + i;
        planes[1] = jobs[1].out + i;
    } else {
        planes[plane] = jobs[0].out + i;
        planes[plane ^ 1u] = other + i;
    }
    rfs_interleave_scalar(dst + 2 * i, planes, n - i, 2, xf);
}

/* W = 4: fast steps of plane `plane` (a constant after inlining) write
 * elements, the other bytes from planes[]; returns the elements done. */
static inline size_t w4_fast(plane_st *sp, uint8_t *dst, size_t n, unsigned plane,
                             const uint8_t *const p[4], int rot)
{
    plane_st st = *sp, *s = &st;
    size_t i = 0;
    for (; i + RFS_LANES <= n && plane_fast_ok(s); i += RFS_LANES) {
        __m256i sym = plane_step(s);
        __m256i a = plane == 0 ? sym : load32(p[0] + i);
        __m256i b = plane == 1 ? sym : load32(p[1] + i);
        __m256i c = plane == 2 ? sym : load32(p[2] + i);
        __m256i d = plane == 3 ? sym : load32(p[3] + i);
        store_elems_w4(dst + 4 * i, a, b, c, d, rot);
    }
    *sp = st;
    return i;
}

static void fused_rans_w4(uint8_t *dst, size_t n, rfs_plane_job *jobs, unsigned k,
                          const unsigned *jplane, const uint8_t *const planes[RFS_MAX_WIDTH],
                          rfs_transform xf)
{
    /* all but the last job as planes, then the last one to elements */
    fused_rans_planes(jobs, k - 1, n);
    for (unsigned j = 0; j + 1 < k; j++)
        if (jobs[j].err != RFS_OK)
            return; /* an earlier plane's error comes first */
    rfs_plane_job *last = &jobs[k - 1];
    plane_st s;
    last->err = plane_begin(&s, last->stream, last->stream_size, last->dec);
    if (last->err != RFS_OK)
        return;
    int rot = xf == RFS_XF_ROT1;
    size_t i;
    switch (jplane[k - 1]) {
    case 3:
        i = rot ? w4_fast(&s, dst, n, 3, planes, 1) : w4_fast(&s, dst, n, 3, planes, 0);
        break;
    case 2:
        i = w4_fast(&s, dst, n, 2, planes, rot);
        break;
    case 1:
        i = w4_fast(&s, dst, n, 1, planes, rot);
        break;
    default:
        i = w4_fast(&s, dst, n, 0, planes, rot);
        break;
    }
    last->err = plane_finish(&s, last->out, i, n);
    if (last->err != RFS_OK || i == n)
        return;
    const uint8_t *rest[RFS_MAX_WIDTH];
    for (unsigned b = 0; b < 4; b++)
        rest[b] = planes[b] + i;
    rfs_interleave_scalar(dst + 4 * i, rest, n - i, 4, xf);
}

#endif
