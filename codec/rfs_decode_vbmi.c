/*
 * rfs_decode_vbmi.c - the AVX-512 VBMI decode backend (built with
 * -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vbmi -mavx2 -mbmi2
 * -mpopcnt, picked at run time by rfs_cpu.c).
 *
 * Design note: on Zen 4 the decode loop of the other SIMD backends is bound
 * by its gathers (an 8-lane vpgatherdd issues only every ~9 cycles, so the
 * four of a 32-symbol step take ~36 of its ~68 cycles).  The exponent plane
 * of bf16 and f32 weights has few symbols (tens), so here its decode table
 * is rewritten (rfs_small_plan_build, rfs_table.c) into tables that fit in
 * zmm registers and are read with permutes, issued about one a cycle:
 *
 *     b    = slot >> 5                          (128 buckets of 32 slots)
 *     r    = r0[b];  r += slot >= next[r]       (vpermi2b, vpermi2w)
 *     r    = fine[w][slot - win[w]]  in a window of rare symbols (vpermi2b)
 *     e    = entry[r]   (symbol, f-1, start as in dec[]; one or two vpermi2d)
 *     x    = f * (x >> 12) + slot - start
 *
 * The 32 lanes live in two 16-lane zmm vectors; the refill is that of the
 * AVX-512 backend on 16 lanes (a compare mask, vpexpandd of the next words,
 * the cursor moved on by popcount).  Only the cases that matter are done
 * here: W = 2 with one rANS plane, the high one (bf16 and fp16 whose low
 * byte is stored RAW), and W = 4 whose last rANS plane is the top one (the
 * exponent of f32), each when the plane's table fits the plan (at most 64
 * symbols: fp16's high byte, 5 exponent + 3 mantissa bits, has more).
 * Everything else goes to the best gather backend (rfs_backend_gather_best).
 * As there, the fast loop runs only while a whole step's symbols and words
 * remain and detects no errors; rfs_rans_tail (scalar, checked) decodes the
 * rest, so every input gives the same bytes and error code as the scalar
 * backend.
 *
 * Measured on Zen 4 (docs/benchmarks.md): the loop is bound by the latency
 * of its chain of permutes (two vectors per plane are all the independent
 * work a tile has), not by their throughput: looking up ranks r and r + 1
 * side by side, or fewer permutes with more ALU work, measured no faster.
 */
#include <immintrin.h>
#include <string.h>

#include "rfs_backend.h"
#include "rfs_rans_lane.h"

/* The plan's tables in registers. */
typedef struct vb_tabs {
    __m512i r0a, r0b, nxa, nxb, e[4];
    __m512i fa[RFS_SMALL_MAX_WIN], fb[RFS_SMALL_MAX_WIN], win[RFS_SMALL_MAX_WIN];
} vb_tabs;

static inline __m512i ld512(const void *p)
{
    return _mm512_loadu_si512(p);
}

static void vb_tabs_load(vb_tabs *t, const rfs_small_plan *p)
{
    t->r0a = ld512(p->r0);
    t->r0b = ld512(p->r0 + 64);
    t->nxa = ld512(p->next);
    t->nxb = ld512(p->next + 32);
    for (unsigned k = 0; k < 4; k++)
        t->e[k] = ld512(p->entry + 16 * k);
    for (unsigned w = 0; w < RFS_SMALL_MAX_WIN; w++) {
        t->fa[w] = ld512(p->fine[w]);
        t->fb[w] = ld512(p->fine[w] + 64);
        /* an unused window never matches: slot - 2^31 >= 128 */
        t->win[w] = _mm512_set1_epi32(w < p->nwin ? (int)p->win[w] : INT32_MIN);
    }
}

#define VB_BYTE0 0x1111111111111111ull /* byte 0 of every dword */
#define VB_WORD0 0x55555555u           /* word 0 of every dword */

/* x = D(x) for 16 lanes with nwin windows and big (more than 32 symbols;
 * both constants after inlining); *ent receives the table entries, as
 * dec[slot] would give them (symbol in byte 0). */
static inline __m512i vb_decode(__m512i x, const vb_tabs *t, unsigned nwin, int big, __m512i *ent)
{
    const __m512i m12 = _mm512_set1_epi32((int)RFS_LANE_MASK);
    __m512i slot = _mm512_and_si512(x, m12);
    __m512i b = _mm512_srli_epi32(slot, 5);
    __m512i r = _mm512_maskz_permutex2var_epi8(VB_BYTE0, t->r0a, b, t->r0b);
    __m512i nx = _mm512_maskz_permutex2var_epi16(VB_WORD0, t->nxa, r, t->nxb);
    __mmask16 up = _mm512_cmpge_epu32_mask(slot, nx);
    r = _mm512_mask_add_epi32(r, up, r, _mm512_set1_epi32(1));
    for (unsigned w = 0; w < nwin; w++) {
        __m512i d = _mm512_sub_epi32(slot, t->win[w]);
        __mmask16 in = _mm512_cmplt_epu32_mask(d, _mm512_set1_epi32(128));
        __m512i fr = _mm512_maskz_permutex2var_epi8(VB_BYTE0, t->fa[w], d, t->fb[w]);
        r = _mm512_mask_mov_epi32(r, in, fr);
    }
    __m512i e = _mm512_permutex2var_epi32(t->e[0], r, t->e[1]);
    if (big) {
        __mmask16 hi = _mm512_test_epi32_mask(r, _mm512_set1_epi32(32));
        e = _mm512_mask_mov_epi32(e, hi, _mm512_permutex2var_epi32(t->e[2], r, t->e[3]));
    }
    __m512i fm1 = _mm512_and_si512(_mm512_srli_epi32(e, 8), m12);
    __m512i xh = _mm512_srli_epi32(x, RFS_LANE_PROB_BITS);
    __m512i rest = _mm512_sub_epi32(_mm512_add_epi32(xh, slot), _mm512_srli_epi32(e, 20));
    *ent = e;
    return _mm512_add_epi32(_mm512_mullo_epi32(fm1, xh), rest);
}

/* One plane: lanes 0-15 in v0, 16-31 in v1, and its word cursor. */
typedef struct vb_plane {
    __m512i v0, v1;
    const uint8_t *words;
    size_t wpos, nwords;
} vb_plane;

static rfs_err vb_begin(vb_plane *s, const uint8_t *stream, size_t stream_size)
{
    uint32_t x[RFS_LANES];
    rfs_err err = rfs_rans_begin(x, &s->words, &s->nwords, stream, stream_size);
    if (err != RFS_OK)
        return err;
    s->wpos = 0;
    s->v0 = ld512(x);
    s->v1 = ld512(x + 16);
    return RFS_OK;
}

/* Refill the lanes of x below L from the words at pos; returns how many. */
static inline size_t vb_refill(__m512i *x, const uint8_t *words, size_t pos)
{
    __mmask16 m = _mm512_cmplt_epu32_mask(*x, _mm512_set1_epi32((int)RFS_LANE_L));
    __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(words + 2 * pos)));
    *x = _mm512_mask_or_epi32(*x, m, _mm512_slli_epi32(*x, 16), _mm512_maskz_expand_epi32(m, w));
    return (size_t)_mm_popcnt_u32(m);
}

/* The symbol bytes (byte 0 of each dword) of e0 (lanes 0-15) and e1
 * (16-31) as bytes 0-31. */
static inline __m512i vb_pack(__m512i e0, __m512i e1)
{
    const __m512i idx = _mm512_set_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 124, 120, 116, 112, 108, 104, 100, 96, 92, 88, 84, 80, 76, 72, 68, 64, 60, 56, 52,
        48, 44, 40, 36, 32, 28, 24, 20, 16, 12, 8, 4, 0);
    return _mm512_permutex2var_epi8(e0, idx, e1);
}

/* One step of 32 symbols; returns them in bytes 0-31, lane order. */
static inline __m512i vb_step(vb_plane *s, const vb_tabs *t, unsigned nwin, int big)
{
    __m512i e0, e1;
    s->v0 = vb_decode(s->v0, t, nwin, big, &e0);
    s->v1 = vb_decode(s->v1, t, nwin, big, &e1);
    size_t c0 = vb_refill(&s->v0, s->words, s->wpos);
    s->wpos += c0;
    s->wpos += vb_refill(&s->v1, s->words, s->wpos);
    return vb_pack(e0, e1);
}

static inline int vb_fast_ok(const vb_plane *s)
{
    return s->nwords - s->wpos >= RFS_LANES;
}

/* Hand the states to the checked tail at symbol i (symbols to out). */
static rfs_err vb_finish(const vb_plane *s, uint8_t *out, size_t i, size_t n, const uint32_t *dec)
{
    uint32_t x[RFS_LANES];
    _mm512_storeu_si512((void *)x, s->v0);
    _mm512_storeu_si512((void *)(x + 16), s->v1);
    return rfs_rans_tail(x, out, i, n, s->words, s->wpos, s->nwords, dec);
}

/* 16-bit rotate right by one (ROT1 undone) when rot. */
static inline __m512i vb_unrot16(__m512i v, int rot)
{
    return rot ? _mm512_or_si512(_mm512_srli_epi16(v, 1), _mm512_slli_epi16(v, 15)) : v;
}

static inline __m512i vb_unrot32(__m512i v, int rot)
{
    return rot ? _mm512_ror_epi32(v, 1) : v;
}

/* 32 W = 2 elements at o: high bytes sym (bytes 0-31), low bytes at low. */
static inline void vb_w2_store(uint8_t *o, __m512i sym, const uint8_t *low, int rot)
{
    /* element j: byte 2j the low byte (table 2, 64 + j), 2j+1 the symbol */
    const __m512i inter = _mm512_set_epi8(
        31, 95, 30, 94, 29, 93, 28, 92, 27, 91, 26, 90, 25, 89, 24, 88, 23, 87, 22, 86, 21, 85, 20,
        84, 19, 83, 18, 82, 17, 81, 16, 80, 15, 79, 14, 78, 13, 77, 12, 76, 11, 75, 10, 74, 9, 73,
        8, 72, 7, 71, 6, 70, 5, 69, 4, 68, 3, 67, 2, 66, 1, 65, 0, 64);
    __m512i lo = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)low));
    _mm512_storeu_si512((void *)o, vb_unrot16(_mm512_permutex2var_epi8(sym, inter, lo), rot));
}

/* 32 W = 4 elements i.. at dst: top bytes sym (bytes 0-31), the others
 * from p[0..2]. */
static inline void vb_w4_store(uint8_t *dst, size_t i, __m512i sym, const uint8_t *const p[4],
                               int rot)
{
    for (unsigned h = 0; h < 2; h++) {
        size_t e = i + 16 * h;
        __m128i sh = h ? _mm512_extracti32x4_epi32(sym, 1) : _mm512_castsi512_si128(sym);
        __m512i top = _mm512_slli_epi32(_mm512_cvtepu8_epi32(sh), 24);
        __m512i a = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p[0] + e)));
        __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p[1] + e)));
        __m512i c = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p[2] + e)));
        __m512i v = _mm512_or_si512(_mm512_or_si512(a, _mm512_slli_epi32(b, 8)),
                                    _mm512_or_si512(_mm512_slli_epi32(c, 16), top));
        _mm512_storeu_si512((void *)(dst + 4 * e), vb_unrot32(v, rot));
    }
}

/* Fast steps from element i of a top plane (width w, a constant after
 * inlining) straight to elements; returns the elements done. */
static inline size_t vb_top_fast(vb_plane *sp, const vb_tabs *t, unsigned nwin, int big,
                                 unsigned w, uint8_t *dst, size_t i, size_t n,
                                 const uint8_t *const p[4], int rot)
{
    vb_plane st = *sp, *s = &st;
    for (; i + RFS_LANES <= n && vb_fast_ok(s); i += RFS_LANES) {
        __m512i sym = vb_step(s, t, nwin, big);
        if (w == 2)
            vb_w2_store(dst + 2 * i, sym, p[0] + i, rot);
        else
            vb_w4_store(dst, i, sym, p, rot);
    }
    *sp = st;
    return i;
}

/* The table forms (windows, more than 32 symbols) the loops are built for,
 * one list for the single-tile and the pair dispatch; the general form
 * (RFS_SMALL_MAX_WIN windows, 64 symbols) is each dispatch's fallback and
 * serves every plan. */
#define VB_SMALL_FORMS(X) X(0, 0) X(1, 0) X(2, 0) X(0, 1) X(1, 1)

/* vb_top_fast for the plan's window count and size. */
static size_t vb_fast(vb_plane *s, const rfs_small_plan *plan, unsigned w, uint8_t *dst, size_t i,
                      size_t n, const uint8_t *const p[4], int rot)
{
    vb_tabs t;
    vb_tabs_load(&t, plan);
    int big = plan->nsym > 32;
#define VB_CASE(nw, bg)                                                                          \
    if (plan->nwin == nw && big == bg)                                                           \
        return w == 2 ? vb_top_fast(s, &t, nw, bg, 2, dst, i, n, p, rot)                         \
                      : vb_top_fast(s, &t, nw, bg, 4, dst, i, n, p, rot);
    VB_SMALL_FORMS(VB_CASE)
#undef VB_CASE
    return w == 2 ? vb_top_fast(s, &t, RFS_SMALL_MAX_WIN, 1, 2, dst, i, n, p, rot)
                  : vb_top_fast(s, &t, RFS_SMALL_MAX_WIN, 1, 4, dst, i, n, p, rot);
}

/* From element i: the fast steps left, the checked tail to job->out, then
 * the tail's elements interleaved.  Sets job->err. */
static void vb_top_end(vb_plane *s, size_t i, uint8_t *dst, size_t n, unsigned w,
                       rfs_plane_job *job, const rfs_small_plan *plan, const uint8_t *const p[4],
                       rfs_transform xf)
{
    i = vb_fast(s, plan, w, dst, i, n, p, xf == RFS_XF_ROT1);
    job->err = vb_finish(s, job->out, i, n, job->dec);
    if (job->err != RFS_OK || i == n)
        return;
    const uint8_t *rest[RFS_MAX_WIDTH] = {0};
    for (unsigned b = 0; b + 1 < w; b++)
        rest[b] = p[b] + i;
    rest[w - 1] = job->out + i;
    rfs_interleave_scalar(dst + (size_t)w * i, rest, n - i, w, xf);
}

/* Decode the top plane's job into dst (width w) with the other planes'
 * bytes from p[].  Sets job->err. */
static void vb_top_plane(uint8_t *dst, size_t n, unsigned w, rfs_plane_job *job,
                         const rfs_small_plan *plan, const uint8_t *const p[4], rfs_transform xf)
{
    vb_plane s;
    job->err = vb_begin(&s, job->stream, job->stream_size);
    if (job->err == RFS_OK)
        vb_top_end(&s, 0, dst, n, w, job, plan, p, xf);
}

/* Two top planes (width w) in lockstep while both can take a fast step:
 * each step's chains interleave.  nwin and big (constants after inlining)
 * are those of the larger plan: an unused window never matches and a
 * small plan's ranks never reach the second entry pair, so one form serves
 * both tiles.  Returns the elements done. */
static inline size_t vb_pair_fast(vb_plane sp[2], const vb_tabs t[2], unsigned nwin, int big,
                                  unsigned w, uint8_t *const dst[2], size_t n,
                                  const uint8_t *const *const p[2], const int rot[2])
{
    vb_plane a = sp[0], b = sp[1];
    size_t i = 0;
    for (; i + RFS_LANES <= n && vb_fast_ok(&a) && vb_fast_ok(&b); i += RFS_LANES) {
        __m512i sa = vb_step(&a, &t[0], nwin, big);
        __m512i sb = vb_step(&b, &t[1], nwin, big);
        if (w == 2) {
            vb_w2_store(dst[0] + 2 * i, sa, p[0][0] + i, rot[0]);
            vb_w2_store(dst[1] + 2 * i, sb, p[1][0] + i, rot[1]);
        } else {
            vb_w4_store(dst[0], i, sa, p[0], rot[0]);
            vb_w4_store(dst[1], i, sb, p[1], rot[1]);
        }
    }
    sp[0] = a;
    sp[1] = b;
    return i;
}

/* vb_pair_fast in the form of the two plans' larger window count and
 * size, not always the largest form: a window neither plan needs still
 * costs the loop its permutes (bf16 pairs of normal weights, which need one
 * window, decode 13% faster so; most real bf16 pairs need both windows, and
 * the entries past 32 measured free, docs/benchmarks.md). */
static size_t vb_pair(vb_plane s[2], const rfs_small_plan *const plan[2], unsigned w,
                      uint8_t *const dst[2], size_t n, const uint8_t *const *const p[2],
                      const int rot[2])
{
    vb_tabs t[2];
    vb_tabs_load(&t[0], plan[0]);
    vb_tabs_load(&t[1], plan[1]);
    unsigned nwin = plan[0]->nwin > plan[1]->nwin ? plan[0]->nwin : plan[1]->nwin;
    int big = plan[0]->nsym > 32 || plan[1]->nsym > 32;
#define VB_PAIR_CASE(nw, bg)                                                                     \
    if (nwin == nw && big == bg)                                                                 \
        return w == 2 ? vb_pair_fast(s, t, nw, bg, 2, dst, n, p, rot)                            \
                      : vb_pair_fast(s, t, nw, bg, 4, dst, n, p, rot);
    VB_SMALL_FORMS(VB_PAIR_CASE)
#undef VB_PAIR_CASE
    return w == 2 ? vb_pair_fast(s, t, RFS_SMALL_MAX_WIN, 1, 2, dst, n, p, rot)
                  : vb_pair_fast(s, t, RFS_SMALL_MAX_WIN, 1, 4, dst, n, p, rot);
}

/* One W = 2 tile alone goes to the gather path's scalar-load loop on AMD:
 * on Zen 4 it decodes real bf16 3-8% faster than this backend's loop does
 * for a single tile, whose one chain of permutes has only two vectors of
 * independent work (docs/benchmarks.md); two tiles in lockstep
 * (vbmi_rans_top2) stay here, 20% ahead of both.  W = 4 (the f32 exponent)
 * stays here too: 10% ahead. */
static int vb_w2_alone_here(void)
{
    __builtin_cpu_init();
    return !__builtin_cpu_is("amd");
}

/* The job's plan: its table's, where prebuilt (an image's shared table: no
 * plan per tile, 1.6% of the daemon's CPU in a dd of the 5 GiB shard), else
 * built into *buf.  NULL where dec does not fit the plan. */
static const rfs_small_plan *vb_plan(const rfs_plane_job *job, rfs_small_plan *buf)
{
    if (job->plan)
        return job->plan;
    return rfs_small_plan_build(buf, job->dec) ? buf : NULL;
}

static void vbmi_rans_w2(uint8_t *dst, size_t n, rfs_plane_job *jobs, unsigned k, unsigned plane,
                         const uint8_t *other, rfs_transform xf)
{
    rfs_small_plan buf;
    const rfs_small_plan *plan;
    if (k == 1 && plane == 1 && vb_w2_alone_here() && (plan = vb_plan(&jobs[0], &buf))) {
        const uint8_t *p[4] = {other, NULL, NULL, NULL};
        vb_top_plane(dst, n, 2, &jobs[0], plan, p, xf);
        return;
    }
    rfs_backend_gather_best()->rans_w2(dst, n, jobs, k, plane, other, xf);
}

static void vbmi_rans_w4(uint8_t *dst, size_t n, rfs_plane_job *jobs, unsigned k,
                         const unsigned *jplane, const uint8_t *const planes[RFS_MAX_WIDTH],
                         rfs_transform xf)
{
    rfs_small_plan buf;
    rfs_plane_job *last = &jobs[k - 1];
    const rfs_small_plan *plan = jplane[k - 1] == 3 ? vb_plan(last, &buf) : NULL;
    if (!plan) {
        rfs_backend_gather_best()->rans_w4(dst, n, jobs, k, jplane, planes, xf);
        return;
    }
    /* the other rANS planes first (an earlier plane's error comes first) */
    if (k > 1) {
        rfs_backend_gather_best()->rans_planes(jobs, k - 1, n);
        for (unsigned j = 0; j + 1 < k; j++)
            if (jobs[j].err != RFS_OK)
                return;
    }
    vb_top_plane(dst, n, 4, last, plan, planes, xf);
}

static void vbmi_interleave(uint8_t *dst, const uint8_t *const planes[RFS_MAX_WIDTH], size_t n,
                            unsigned width, rfs_transform xf)
{
    rfs_backend_gather_best()->interleave(dst, planes, n, width, xf);
}

static void vbmi_rans_planes(rfs_plane_job *jobs, unsigned k, size_t n)
{
    rfs_backend_gather_best()->rans_planes(jobs, k, n);
}

/* One tile of rans_top2 alone (the form rans_w2 / rans_w4 take). */
static void vbmi_top_alone(uint8_t *dst, uint32_t n, unsigned w, rfs_plane_job *job,
                           const uint8_t *const *planes, rfs_transform xf)
{
    const unsigned top = w - 1;
    if (w == 2)
        vbmi_rans_w2(dst, n, job, 1, 1, planes[0], xf);
    else
        vbmi_rans_w4(dst, n, job, 1, &top, planes, xf);
}

static void vbmi_rans_top2(uint8_t *const dst[2], const uint32_t n[2], unsigned w,
                           rfs_plane_job *const jobs[2], const uint8_t *const *const planes[2],
                           const rfs_transform xf[2])
{
    rfs_small_plan buf[2];
    const rfs_small_plan *plan[2];
    vb_plane s[2];
    int ok = 1;
    for (unsigned j = 0; j < 2 && ok; j++)
        ok = (plan[j] = vb_plan(jobs[j], &buf[j])) != NULL &&
             vb_begin(&s[j], jobs[j]->stream, jobs[j]->stream_size) == RFS_OK;
    if (!ok) { /* apart: each as rans_w2 / rans_w4 would */
        for (unsigned j = 0; j < 2; j++)
            vbmi_top_alone(dst[j], n[j], w, jobs[j], planes[j], xf[j]);
        return;
    }
    const int rot[2] = {xf[0] == RFS_XF_ROT1, xf[1] == RFS_XF_ROT1};
    size_t m = n[0] < n[1] ? n[0] : n[1];
    size_t i = vb_pair(s, plan, w, dst, m, planes, rot);
    for (unsigned j = 0; j < 2; j++)
        vb_top_end(&s[j], i, dst[j], n[j], w, jobs[j], plan[j], planes[j], xf[j]);
}

const rfs_backend rfs_backend_avx512vbmi = {"avx512vbmi", vbmi_interleave, vbmi_rans_planes,
                                            vbmi_rans_w2,  vbmi_rans_w4,    vbmi_rans_top2};
