/*
 * rfs_tile_enc.c - the tile encoder.
 *
 * Per plane it picks among CONST, RAW, rANS with a per-tile table and rANS
 * with the tensor's shared table, from exact symbol costs, then codes the
 * plane with 32 interleaved rANS states (ryg_rans style, with reciprocal
 * multiplication instead of a division per symbol).
 *
 * Design note (speed).  A tile goes through: split into planes (and the
 * transform) by the context's split function (AVX2 or scalar, chosen once
 * like the decode backend), one byte histogram per plane (four interleaved
 * count tables, so runs of one symbol do not serialise on one counter),
 * the plane plan from the histogram alone (no decode lookup is built, no
 * table is serialised to be measured), then the rANS loop only for planes
 * that are coded.  The rANS loop is branch-free: a state's low word is
 * always stored and the word cursor moves by the renormalisation flag, so
 * the ~50% unpredictable renormalisations of a near-random plane cost no
 * mispredictions.
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rfs_enc_paths.h"
#include "rfs_internal.h"
#include "rfs_tile.h"

/*
 * A plane is rANS-coded only when that saves more than 1/2^SHIFT of its
 * raw size; otherwise it is stored RAW.  Why: a rANS plane decodes at
 * ~1.5-1.8 GB/s per core here, a RAW plane at copy speed, so a plane that
 * barely compresses costs most of a tile's decode time for nothing.
 * Measured on the benchmark data (docs/benchmarks.md, "Codec"): the planes
 * that are nearly incompressible (real bf16 sign+mantissa, real fp16 low
 * byte, real f32 mantissa bytes) sit at 0.995-1.0 of raw; the synthetic
 * mantissa planes sit at 0.985-0.99.  1/128 moves the first group to RAW
 * (real bf16 file +0.04%) and keeps the second (1/64 would cost synthetic
 * f32 0.54% of ratio, past the 0.3% margin to htscodecs).
 */
#ifndef RFS_ENC_RAW_GAIN_SHIFT
#define RFS_ENC_RAW_GAIN_SHIFT 7
#endif

/* Per-symbol encode constants (ryg_rans RansEncSymbol, 16-bit renorm). */
typedef struct enc_sym {
    uint32_t x_max;     /* emit a word when x >= x_max */
    uint32_t rcp_freq;  /* fixed-point reciprocal of freq */
    uint32_t bias;
    uint16_t cmpl_freq; /* 2^12 - freq */
    uint16_t rcp_shift;
} enc_sym;

struct rfs_enc {
    size_t max_bytes;
    const rfs_enc_paths *be; /* split and SIMD rANS loop */
    uint8_t *planes;     /* max_bytes: plane p of a tile at p*n */
    uint16_t *words;     /* rANS word scratch, filled back to front */
    size_t words_cap;    /* in words */
    rfs_table table;     /* per-tile table of the plane being coded (no dec[]) */
    enc_sym sym[256];
    uint32_t fs[256];    /* freq | start << 16, for the SIMD loop */
    uint32_t counts[256];
    double cost[RFS_PROB_SCALE + 1]; /* cost[f] = bits of a symbol of freq f */
    /* rcp[f], rcp_shift[f]: enc_sym's reciprocal of freq f (f >= 2), made
     * once: a 64-bit division per symbol of every coded plane was a good
     * part of a small tile's table set-up. */
    uint32_t rcp[RFS_PROB_SCALE + 1];
    uint8_t rcp_shift[RFS_PROB_SCALE + 1];
    /* RANS_CTX: the threshold, the two tables (no dec[]), their counts and
     * encode constants, and the sampled (context value, byte) histogram. */
    uint8_t ctx_thr;
    rfs_table ctx_tab[2];
    uint32_t ctx_counts[2][256];
    enc_sym ctx_sym[2][256];
    uint32_t ctx_fs[512]; /* freq | start << 16 of both tables, for the SIMD loop */
    uint32_t ctx_joint[256][256];
    double clogc[RFS_PROB_SCALE]; /* c log2 c, for ctx_split_bound */
};

rfs_enc *rfs_enc_create(size_t max_tile_bytes)
{
    rfs_enc *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->max_bytes = max_tile_bytes;
    e->be = rfs_enc_paths_default();
    /* Up to one word per symbol, plus 32 so the branch-free loops may store
     * up to 8 words below the cursor. */
    e->words_cap = max_tile_bytes + RFS_LANES;
    e->planes = malloc(max_tile_bytes ? max_tile_bytes : 1);
    e->words = malloc(e->words_cap * sizeof(uint16_t));
    if (!e->planes || !e->words) {
        rfs_enc_destroy(e);
        return NULL;
    }
    e->cost[0] = 1e30;
    for (unsigned f = 1; f <= RFS_PROB_SCALE; f++)
        e->cost[f] = RFS_PROB_BITS - log2((double)f);
    for (unsigned c = 1; c < RFS_PROB_SCALE; c++) /* clogc[0] = 0 (calloc) */
        e->clogc[c] = (double)c * log2((double)c);
    for (uint32_t f = 2; f <= RFS_PROB_SCALE; f++) {
        uint32_t shift = 32u - (uint32_t)__builtin_clz(f - 1); /* ceil(log2(f)) */
        e->rcp[f] = (uint32_t)(((1ull << (shift + 31)) + f - 1) / f);
        e->rcp_shift[f] = (uint8_t)(shift - 1);
    }
    return e;
}

void rfs_enc_destroy(rfs_enc *e)
{
    if (!e)
        return;
    free(e->planes);
    free(e->words);
    free(e);
}

rfs_err rfs_enc_set_backend(rfs_enc *e, const char *name)
{
    const rfs_enc_paths *b = rfs_enc_paths_by_name(name);
    if (!b)
        return RFS_E_ARG;
    e->be = b;
    return RFS_OK;
}

const char *rfs_enc_backend(const rfs_enc *e)
{
    return e->be->name;
}

size_t rfs_tile_bound(size_t src_size, unsigned width)
{
    /* Every plane falls back to RAW, so a tile never exceeds its header
     * plus the input. */
    return RFS_TILE_HDR_SIZE + RFS_PLANE_DESC_SIZE * (size_t)(width ? width : 1) + src_size;
}

/* ------------------------------------------------------------- split (scalar) */

/* One loop per (width, transform) so the compiler can vectorise each. */
static void split_w2(uint8_t *restrict p0, uint8_t *restrict p1, const uint8_t *restrict src,
                     size_t n, int rot)
{
    if (rot) {
        for (size_t i = 0; i < n; i++) {
            uint32_t v = rfs_ld16(src + 2 * i);
            v = (v << 1) | (v >> 15);
            p0[i] = (uint8_t)v;
            p1[i] = (uint8_t)(v >> 8);
        }
        return;
    }
    for (size_t i = 0; i < n; i++) {
        p0[i] = src[2 * i];
        p1[i] = src[2 * i + 1];
    }
}

static void split_w4(uint8_t *restrict planes, const uint8_t *restrict src, size_t n, int rot)
{
    uint8_t *restrict p0 = planes, *restrict p1 = planes + n;
    uint8_t *restrict p2 = planes + 2 * n, *restrict p3 = planes + 3 * n;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = rfs_ld32(src + 4 * i);
        if (rot)
            v = (v << 1) | (v >> 31);
        p0[i] = (uint8_t)v;
        p1[i] = (uint8_t)(v >> 8);
        p2[i] = (uint8_t)(v >> 16);
        p3[i] = (uint8_t)(v >> 24);
    }
}

void rfs_split_planes_scalar(uint8_t *planes, const uint8_t *src, size_t n, unsigned w,
                             rfs_transform xf)
{
    int rot = xf == RFS_XF_ROT1;
    if (w == 1)
        memcpy(planes, src, n);
    else if (w == 2)
        split_w2(planes, planes + n, src, n, rot);
    else
        split_w4(planes, src, n, rot);
}

/* ------------------------------------------------------------- histogram */

/* counts[s] = occurrences of s in p[0..n).  Four count tables, so a run of
 * one symbol does not chain every increment through one memory slot. */
static void plane_counts(uint32_t counts[256], const uint8_t *p, size_t n)
{
    uint32_t c[4][256];
    memset(c, 0, sizeof(c));
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = rfs_ld64(p + i);
        c[0][v & 0xff]++;
        c[1][(v >> 8) & 0xff]++;
        c[2][(v >> 16) & 0xff]++;
        c[3][(v >> 24) & 0xff]++;
        c[0][(v >> 32) & 0xff]++;
        c[1][(v >> 40) & 0xff]++;
        c[2][(v >> 48) & 0xff]++;
        c[3][v >> 56]++;
    }
    for (; i < n; i++)
        c[0][p[i]]++;
    for (unsigned s = 0; s < 256; s++)
        counts[s] = c[0][s] + c[1][s] + c[2][s] + c[3][s];
}

/*
 * The caller's counts of plane p (rfs_tile_params.counts) into counts; 0
 * when there are none, or when they do not sum to n (then the encoder
 * counts: the table code below relies on that sum).  Debug builds check
 * them against a count of their own: a wrong count would code a tile that
 * does not decode to the plane.
 */
static int given_counts(uint32_t counts[256], const rfs_tile_params *prm, unsigned p,
                        const uint8_t *plane, size_t n)
{
    if (!prm->counts)
        return 0;
    uint64_t sum = 0;
    for (unsigned s = 0; s < 256; s++)
        sum += prm->counts[p][s];
    if (sum != n)
        return 0;
    memcpy(counts, prm->counts[p], 256 * sizeof *counts);
#ifndef NDEBUG
    uint32_t mine[256];
    plane_counts(mine, plane, n);
    assert(memcmp(mine, counts, sizeof mine) == 0);
#else
    (void)plane;
#endif
    return 1;
}

/* ------------------------------------------------------------- tables */

/* Index of the largest count among symbols with f > floor_ (first on ties). */
static int largest_above(const uint16_t *f, const uint32_t *counts, unsigned floor_)
{
    int best = -1;
    for (unsigned s = 0; s < 256; s++)
        if (f[s] > floor_ && (best < 0 || counts[s] > counts[best]))
            best = (int)s;
    return best;
}

/*
 * Normalise counts (total > 0) to freq[] summing to 2^12: exactly the
 * frequencies rfs_table_from_counts gives, without its decode lookup.  Its
 * one-at-a-time correction always hits the same symbol until that symbol
 * reaches 1, so the excess is taken from it in one go.
 */
static void normalise_freq(uint16_t freq[256], const uint32_t counts[256], uint64_t total)
{
    int32_t sum = 0;
    for (unsigned s = 0; s < 256; s++) {
        uint64_t f = 0;
        if (counts[s]) {
            f = ((uint64_t)counts[s] * RFS_PROB_SCALE + total / 2) / total;
            if (f == 0)
                f = 1;
        }
        freq[s] = (uint16_t)f;
        sum += (int32_t)f;
    }
    while (sum > (int32_t)RFS_PROB_SCALE) {
        int s = largest_above(freq, counts, 1);
        int32_t d = sum - (int32_t)RFS_PROB_SCALE;
        if (d > freq[s] - 1)
            d = freq[s] - 1;
        freq[s] = (uint16_t)(freq[s] - d);
        sum -= d;
    }
    if (sum < (int32_t)RFS_PROB_SCALE) {
        int s = largest_above(freq, counts, 0);
        freq[s] = (uint16_t)(freq[s] + (RFS_PROB_SCALE - (uint32_t)sum));
    }
}

/* Serialised size of a table (docs/format.md "Frequency table"). */
static size_t table_size(const uint16_t *freq)
{
    size_t k = 32;
    for (unsigned s = 0; s < 256; s++)
        k += freq[s] ? 1u + (freq[s] >= 128) : 0u;
    return k;
}

/* Estimated bits to code a histogram with table freq[]; huge if a symbol
 * present in counts is absent from the table. */
static double table_cost_bits(const rfs_enc *e, const uint32_t *counts, const uint16_t *freq)
{
    double bits = 0;
    for (unsigned s = 0; s < 256; s++)
        if (counts[s])
            bits += (double)counts[s] * e->cost[freq[s]];
    return bits;
}

/* ------------------------------------------------------------- rANS */

static void enc_sym_init(const rfs_enc *e, enc_sym *s, uint32_t start, uint32_t freq)
{
    s->x_max = ((RFS_RANS_L >> RFS_PROB_BITS) << 16) * freq;
    s->cmpl_freq = (uint16_t)(RFS_PROB_SCALE - freq);
    if (freq < 2) {
        s->rcp_freq = ~0u;
        s->rcp_shift = 0;
        s->bias = start + RFS_PROB_SCALE - 1;
    } else {
        s->rcp_freq = e->rcp[freq];
        s->rcp_shift = e->rcp_shift[freq];
        s->bias = start;
    }
}

/*
 * x = C(s, x) with 16-bit renormalisation, branch-free: the low word is
 * always stored below the cursor, which moves down only when x >= x_max.
 */
static inline uint16_t *enc_put(uint32_t *xp, uint16_t *ptr, const enc_sym *s)
{
    uint32_t x = *xp;
    uint32_t out = x >= s->x_max;
    ptr[-1] = (uint16_t)x;
    ptr -= out;
    x >>= out << 4;
    uint32_t q = (uint32_t)(((uint64_t)x * s->rcp_freq) >> 32) >> s->rcp_shift;
    *xp = x + s->bias + q * s->cmpl_freq;
    return ptr;
}

/*
 * Code plane[0..n), the symbols from index base on, into words ending at
 * end (written back to front); returns the first word.  Symbols go last to
 * first so the decoder runs forwards; within a step lanes go 31..0, which
 * puts each step's refill words in ascending lane order (docs/format.md
 * 1.5).  At most one word per symbol.  base is a multiple of 32.
 */
static uint16_t *rans_encode_words(uint32_t x[RFS_LANES], uint16_t *end, const uint8_t *plane,
                                   size_t n, const enc_sym *sym, size_t base)
{
    uint16_t *ptr = end;
    size_t i = n;
    while (i % RFS_LANES) { /* the last, partial step */
        i--;
        ptr = enc_put(&x[(base + i) % RFS_LANES], ptr, &sym[plane[i]]);
    }
    while (i) {
        i -= RFS_LANES;
        const uint8_t *p = plane + i;
        for (unsigned j = RFS_LANES; j-- > 0;)
            ptr = enc_put(&x[j], ptr, &sym[p[j]]);
    }
    return ptr;
}

/* Every lane's state before the last symbol is coded (the decoder's end
 * check, docs/format.md 1.5). */
static void rans_states_init(uint32_t x[RFS_LANES])
{
    for (unsigned j = 0; j < RFS_LANES; j++)
        x[j] = RFS_RANS_L;
}

/* The stream into dst: the 32 final states x, then the words ptr..end.
 * RFS_E_DST_SMALL when they do not fit in dst_cap. */
static rfs_err rans_stream_out(uint8_t *dst, size_t dst_cap, size_t *written,
                               const uint32_t x[RFS_LANES], const uint16_t *ptr,
                               const uint16_t *end)
{
    size_t nwords = (size_t)(end - ptr);
    size_t size = RFS_STATES_SIZE + 2 * nwords;
    if (size > dst_cap)
        return RFS_E_DST_SMALL;
    for (unsigned j = 0; j < RFS_LANES; j++)
        rfs_st32(dst + 4 * j, x[j]);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(dst + RFS_STATES_SIZE, ptr, 2 * nwords);
#else
    for (size_t k = 0; k < nwords; k++)
        rfs_st16(dst + RFS_STATES_SIZE + 2 * k, ptr[k]);
#endif
    *written = size;
    return RFS_OK;
}

/* rANS-code n plane bytes with table t into dst: 32 final states, then the
 * words.  RFS_E_DST_SMALL when they do not fit in dst_cap. */
static rfs_err rans_encode_plane(rfs_enc *e, uint8_t *dst, size_t dst_cap, size_t *written,
                                 const uint8_t *plane, size_t n, const rfs_table *t)
{
    for (unsigned s = 0; s < 256; s++) {
        if (t->freq[s]) {
            enc_sym_init(e, &e->sym[s], t->start[s], t->freq[s]);
            e->fs[s] = t->freq[s] | (uint32_t)t->start[s] << 16;
        }
    }
    uint32_t x[RFS_LANES];
    rans_states_init(x);
    uint16_t *end = e->words + e->words_cap, *ptr;
    size_t whole = n - n % RFS_LANES;
    if (e->be->rans_steps) {
        /* the last, partial step in scalar, the whole steps in SIMD */
        ptr = rans_encode_words(x, end, plane + whole, n - whole, e->sym, whole);
        ptr = e->be->rans_steps(x, ptr, plane, whole, e->fs);
    } else {
        ptr = rans_encode_words(x, end, plane, n, e->sym, 0);
    }
    return rans_stream_out(dst, dst_cap, written, x, ptr, end);
}

/* ------------------------------------------------------------- RANS_CTX */

/*
 * RANS_CTX (docs/format.md 1.4.1): plane W-2 coded with table 0 where the
 * element's byte in plane W-1 (the exponent) is below a threshold and
 * table 1 elsewhere.  Why one threshold: measured on real weights
 * (docs/benchmarks.md, "Context-coded low byte"), after the tables' cost a
 * split of the exponent range into two gains more than giving the most
 * frequent exponents tables of their own, and three or four ranges gain no
 * more than two: the mantissa is near uniform for small magnitudes and
 * skewed for the large ones, and a table costs ~300 bytes of a 128 KiB
 * plane.
 *
 * The threshold is chosen on every 2^CTX_SAMPLE_SHIFT-th element, among
 * about CTX_CANDIDATES values that cut the sampled context histogram
 * into near-equal parts (so the choice costs little next to the coding);
 * the plane's cost is then exact for that threshold.
 */
#define CTX_SAMPLE_SHIFT 3
#define CTX_CANDIDATES 16u

/* Bytes of the symbols counted in c (total m > 0) coded with a table
 * built from them, and (*tab, added to) the bytes of that table; f
 * receives the table. */
static double ctx_part_cost(const rfs_enc *e, uint16_t f[256], const uint32_t *c, uint64_t m,
                            double *tab)
{
    normalise_freq(f, c, m);
    *tab += (double)table_size(f);
    return table_cost_bits(e, c, f) / 8;
}

/* Estimated RANS_CTX bytes of a plane of n symbols from a sample of m:
 * with threshold t, the sample's rows below t (lo, total m_lo) and the
 * rest (tot - lo), coded with tables of their own (the symbols' bytes
 * scaled to n, the tables' not). */
static double ctx_split_cost(const rfs_enc *e, const uint32_t *lo, uint64_t m_lo,
                             const uint32_t *tot, uint64_t m, size_t n)
{
    uint32_t hi[256];
    uint16_t f[256];
    double tab = 0;
    for (unsigned s = 0; s < 256; s++)
        hi[s] = tot[s] - lo[s];
    double sym = ctx_part_cost(e, f, lo, m_lo, &tab) + ctx_part_cost(e, f, hi, m - m_lo, &tab);
    return sym * (double)n / (double)m + tab;
}

/* c log2 c (0 for c = 0): from the memo for small counts. */
static double c_log2_c(const rfs_enc *e, uint64_t c)
{
    return c < RFS_PROB_SCALE ? e->clogc[c] : (double)c * log2((double)c);
}

/*
 * A lower bound on ctx_split_cost(e, lo, m_lo, tot, m, n), cheap next to
 * it (no normalisation).  A part's symbols cost sum c[s] (12 - log2 f[s])
 * bits with f summing to 2^12, which is at least the part's empirical
 * entropy m log2 m - sum c log2 c (Gibbs' inequality: cross-entropy is at
 * least entropy); each table takes at least 32 bytes plus one per symbol
 * present (docs/format.md "Frequency table").
 */
static double ctx_split_bound(const rfs_enc *e, const uint32_t *lo, uint64_t m_lo,
                              const uint32_t *tot, uint64_t m, size_t n)
{
    double bits = c_log2_c(e, m_lo) + c_log2_c(e, m - m_lo);
    unsigned present = 0;
    for (unsigned s = 0; s < 256; s++) {
        uint32_t a = lo[s], b = tot[s] - lo[s];
        bits -= c_log2_c(e, a) + c_log2_c(e, b);
        present += (a != 0) + (b != 0);
    }
    return bits / 8 * (double)n / (double)m + 64.0 + present;
}

/* A candidate threshold of ctx_choose: v, the sampled rows below it, and
 * the lower bound on its cost. */
typedef struct ctx_cand {
    unsigned v;
    uint64_t m_lo;
    double bound;
} ctx_cand;

/* acc += the sampled joint histogram's rows from..to-1 (those present). */
static void ctx_add_rows(const rfs_enc *e, const uint32_t *vc, unsigned from, unsigned to,
                         uint32_t *acc)
{
    for (unsigned r = from; r < to; r++)
        if (vc[r])
            for (unsigned s = 0; s < 256; s++)
                acc[s] += e->ctx_joint[r][s];
}

/* What a candidate of lower bound b costs at least, as computed: the
 * margin lies far above the rounding of either sum. */
static double ctx_bound_floor(double b)
{
    return b - (1e-9 * b + 1e-6);
}

/* ctx_split_cost of candidate c, and (Debug builds) the check that the
 * bound held: the search's exactness rests on it. */
static double ctx_cand_cost(const rfs_enc *e, const ctx_cand *c, const uint32_t *lo,
                            const uint32_t *tot, uint64_t m, size_t n)
{
    double cost = ctx_split_cost(e, lo, c->m_lo, tot, m, n);
    assert(cost >= ctx_bound_floor(c->bound));
    return cost;
}

/* vc[v] = sampled context bytes (every 2^CTX_SAMPLE_SHIFT-th) of value v;
 * returns the sample's size.  Four count tables: the context is an
 * exponent byte, few values, and one table chained every increment
 * through the same slot (this loop was a third of ctx_choose). */
static uint64_t ctx_sample_counts(uint32_t vc[256], const uint8_t *ctx, size_t n)
{
    const size_t d = (size_t)1 << CTX_SAMPLE_SHIFT;
    uint32_t t[4][256];
    memset(t, 0, sizeof t);
    size_t i = 0;
    uint64_t m = 0;
    for (; i + 3 * d < n; i += 4 * d, m += 4) {
        t[0][ctx[i]]++;
        t[1][ctx[i + d]]++;
        t[2][ctx[i + 2 * d]]++;
        t[3][ctx[i + 3 * d]]++;
    }
    for (; i < n; i += d, m++)
        t[0][ctx[i]]++;
    for (unsigned v = 0; v < 256; v++)
        vc[v] = t[0][v] + t[1][v] + t[2][v] + t[3][v];
    return m;
}

/*
 * The best threshold for plane (context bytes ctx) on the sample, and
 * *est, the plane's estimated RANS_CTX bytes with it (the sample's cost
 * scaled up); 0 when the sampled contexts have a single value.
 *
 * The candidates are the values that cut the sample into near-equal
 * parts (about CTX_CANDIDATES); the chosen one is the cheapest by
 * ctx_split_cost, the lowest value on a tie.  The candidate with the
 * lowest lower bound is costed first; then, in ascending order, only
 * those whose bound does not rule them out.  The choice is thus exactly
 * that of costing every candidate, and on real weights most of them end
 * at their bound, unnormalised.
 */
static unsigned ctx_choose(rfs_enc *e, const uint8_t *plane, const uint8_t *ctx, size_t n,
                           double *est)
{
    uint32_t vc[256] = {0}, lo[256] = {0}, tot[256] = {0};
    uint64_t m = ctx_sample_counts(vc, ctx, n);
    unsigned used = 0;
    for (unsigned v = 0; v < 256; v++)
        if (vc[v])
            memset(e->ctx_joint[v], 0, sizeof e->ctx_joint[v]), used++;
    if (used < 2)
        return 0;
    for (size_t i = 0; i < n; i += 1u << CTX_SAMPLE_SHIFT)
        e->ctx_joint[ctx[i]][plane[i]]++;
    ctx_add_rows(e, vc, 0, 256, tot);
    ctx_cand cand[256]; /* one per context value at most */
    unsigned k = 0, first = 0;
    uint64_t m_lo = 0, next = 0;
    for (unsigned v = 0; v < 256; v++) {
        /* candidate v: lo holds the rows below v */
        if (vc[v] && m_lo && m_lo >= next) {
            cand[k] = (ctx_cand){v, m_lo, ctx_split_bound(e, lo, m_lo, tot, m, n)};
            if (cand[k].bound < cand[first].bound)
                first = k;
            k++;
            next = m_lo + m / CTX_CANDIDATES;
        }
        ctx_add_rows(e, vc, v, v + 1, lo);
        m_lo += vc[v];
    }
    memset(lo, 0, sizeof lo);
    ctx_add_rows(e, vc, 0, cand[first].v, lo);
    double best = ctx_cand_cost(e, &cand[first], lo, tot, m, n);
    unsigned thr = cand[first].v;
    /* lo is rebuilt only as far as a candidate that must be costed needs
     * (usually none) */
    memset(lo, 0, sizeof lo);
    for (unsigned j = 0, done = 0; j < k; j++) {
        if (j == first || ctx_bound_floor(cand[j].bound) >= best)
            continue; /* it cannot cost less than best */
        ctx_add_rows(e, vc, done, cand[j].v, lo);
        done = cand[j].v;
        double c = ctx_cand_cost(e, &cand[j], lo, tot, m, n);
        if (c < best || (c == best && cand[j].v < thr))
            best = c, thr = cand[j].v;
    }
    *est = best;
    return thr;
}

/* Elements ctx_count indexes per block (its index buffer: 1 KiB of stack). */
#define CTX_COUNT_BLOCK 512u

/* c[k][b]: elements with plane byte b whose context is below thr (k = 0)
 * or not (k = 1).  Each block's bin indices (b + 256 k) are made first, in
 * a loop the compiler vectorises, so the counting loop does little more
 * than its increments; four count tables, as plane_counts, so that runs of
 * one symbol do not chain every increment through one slot. */
static void ctx_count(uint32_t c[2][256], const uint8_t *plane, const uint8_t *ctx, size_t n,
                      unsigned thr)
{
    uint32_t t[4][512];
    uint16_t idx[CTX_COUNT_BLOCK];
    memset(t, 0, sizeof t);
    for (size_t i = 0; i < n; i += CTX_COUNT_BLOCK) {
        size_t m = n - i < CTX_COUNT_BLOCK ? n - i : CTX_COUNT_BLOCK, j = 0;
        for (size_t k = 0; k < m; k++)
            idx[k] = (uint16_t)(plane[i + k] | (unsigned)(ctx[i + k] >= thr) << 8);
        for (; j + 4 <= m; j += 4) {
            t[0][idx[j]]++;
            t[1][idx[j + 1]]++;
            t[2][idx[j + 2]]++;
            t[3][idx[j + 3]]++;
        }
        for (; j < m; j++)
            t[0][idx[j]]++;
    }
    for (unsigned k = 0; k < 2; k++)
        for (unsigned b = 0; b < 256; b++)
            c[k][b] = t[0][256 * k + b] + t[1][256 * k + b] + t[2][256 * k + b] +
                      t[3][256 * k + b];
}

/* Exact RANS_CTX cost of the plane (bytes of payload), with the threshold
 * chosen and both tables in e; huge when a part is empty, or when the
 * sample's estimate is not below bound (a sample's entropy and tables err
 * low, so the exact pass is skipped where it would not win). */
static double ctx_plan(rfs_enc *e, const uint8_t *plane, const uint8_t *ctx, size_t n,
                       double bound)
{
    double est = 0;
    unsigned thr = ctx_choose(e, plane, ctx, n, &est);
    if (!thr || est >= bound)
        return 1e300;
    ctx_count(e->ctx_counts, plane, ctx, n, thr);
    uint64_t m0 = 0;
    for (unsigned s = 0; s < 256; s++)
        m0 += e->ctx_counts[0][s];
    if (m0 == 0 || m0 == n)
        return 1e300;
    e->ctx_thr = (uint8_t)thr;
    double tab = 0;
    double sym = ctx_part_cost(e, e->ctx_tab[0].freq, e->ctx_counts[0], m0, &tab) +
                 ctx_part_cost(e, e->ctx_tab[1].freq, e->ctx_counts[1], n - m0, &tab);
    return 1.0 + RFS_STATES_SIZE + tab + sym;
}

/* Code the plane with the two tables of e (ctx_plan) into dst: states, then
 * words, as rans_encode_plane; symbol i with table (ctx[i] >= threshold). */
static rfs_err rans_encode_ctx(rfs_enc *e, uint8_t *dst, size_t dst_cap, size_t *written,
                               const uint8_t *plane, const uint8_t *ctx, size_t n)
{
    for (unsigned c = 0; c < 2; c++)
        for (unsigned s = 0, start = 0; s < 256; start += e->ctx_tab[c].freq[s++])
            if (e->ctx_tab[c].freq[s]) {
                enc_sym_init(e, &e->ctx_sym[c][s], start, e->ctx_tab[c].freq[s]);
                e->ctx_fs[256 * c + s] = e->ctx_tab[c].freq[s] | start << 16;
            }
    uint32_t x[RFS_LANES];
    rans_states_init(x);
    const unsigned thr = e->ctx_thr;
    uint16_t *end = e->words + e->words_cap, *ptr = end;
    size_t i = n;
    while (i % RFS_LANES) { /* the last, partial step */
        i--;
        ptr = enc_put(&x[i % RFS_LANES], ptr, &e->ctx_sym[ctx[i] >= thr][plane[i]]);
    }
    if (e->be->rans_ctx_steps) {
        ptr = e->be->rans_ctx_steps(x, ptr, plane, ctx, thr, i, e->ctx_fs);
        i = 0;
    }
    while (i) { /* lanes 31..0, so each step's words come out in lane order */
        i -= RFS_LANES;
        for (unsigned j = RFS_LANES; j-- > 0;)
            ptr = enc_put(&x[j], ptr, &e->ctx_sym[ctx[i + j] >= thr][plane[i + j]]);
    }
    return rans_stream_out(dst, dst_cap, written, x, ptr, end);
}

/* The RANS_CTX payload: threshold, table 0, table 1, stream. */
static rfs_err encode_ctx_payload(rfs_enc *e, uint8_t *dst, size_t dst_cap, size_t *written,
                                  const uint8_t *plane, const uint8_t *ctx, size_t n)
{
    size_t pos = 1, k = 0;
    if (dst_cap < 1)
        return RFS_E_DST_SMALL;
    dst[0] = e->ctx_thr;
    for (unsigned c = 0; c < 2; c++) {
        rfs_err err = rfs_table_write(dst + pos, dst_cap - pos, &k, &e->ctx_tab[c]);
        if (err != RFS_OK)
            return err;
        pos += k;
    }
    rfs_err err = rans_encode_ctx(e, dst + pos, dst_cap - pos, &k, plane, ctx, n);
    *written = pos + k;
    return err;
}

/* ------------------------------------------------------------- plane choice */

/* Plane coding decision. */
typedef struct plane_plan {
    rfs_plane_mode mode;
    uint8_t value;
    const rfs_table *table; /* for the rANS modes */
} plane_plan;

/* Largest payload a rANS plane of n bytes may have before RAW is kept. */
static size_t rans_budget(size_t n)
{
    return n - (n >> RFS_ENC_RAW_GAIN_SHIFT);
}

static plane_plan plan_plane(rfs_enc *e, const uint8_t *plane, const uint8_t *ctx, size_t n,
                             unsigned p, const rfs_tile_params *prm)
{
    plane_plan pl = {RFS_PM_RAW, 0, NULL};
    if (n == 0 || prm->raw_only)
        return pl;
    if (!given_counts(e->counts, prm, p, plane, n))
        plane_counts(e->counts, plane, n);
    if (e->counts[plane[0]] == n) {
        pl.mode = RFS_PM_CONST;
        pl.value = plane[0];
        return pl;
    }
    double best = (double)rans_budget(n); /* rANS must come in below this */
    normalise_freq(e->table.freq, e->counts, n);
    double c = (double)(RFS_STATES_SIZE + table_size(e->table.freq)) +
               table_cost_bits(e, e->counts, e->table.freq) / 8;
    if (c < best) {
        best = c;
        pl.mode = RFS_PM_RANS_TILE;
        pl.table = &e->table;
    }
    const rfs_table *sh = prm->shared ? prm->shared->plane[p] : NULL;
    if (sh) {
        c = (double)RFS_STATES_SIZE + table_cost_bits(e, e->counts, sh->freq) / 8;
        if (c < best) {
            best = c;
            pl.mode = RFS_PM_RANS_SHARED;
            pl.table = sh;
        }
    }
    if (ctx && ctx_plan(e, plane, ctx, n, best) < best) {
        pl.mode = RFS_PM_RANS_CTX;
        pl.table = NULL;
    }
    if (pl.mode == RFS_PM_RANS_TILE) {
        uint32_t start = 0;
        for (unsigned s = 0; s < 256; s++) {
            e->table.start[s] = (uint16_t)start;
            start += e->table.freq[s];
        }
    }
    return pl;
}

/* Code one plane's payload at dst; fills the descriptor fields. */
static rfs_err encode_plane(rfs_enc *e, uint8_t *desc, uint8_t *dst, size_t dst_cap,
                            size_t *written, const uint8_t *plane, const uint8_t *ctx, size_t n,
                            unsigned p, const rfs_tile_params *prm)
{
    plane_plan pl = plan_plane(e, plane, ctx, n, p, prm);
    size_t size = 0;
    if (pl.mode == RFS_PM_RANS_TILE || pl.mode == RFS_PM_RANS_SHARED ||
        pl.mode == RFS_PM_RANS_CTX) {
        size_t tsize = 0, ssize = 0;
        rfs_err err = RFS_OK;
        if (pl.mode == RFS_PM_RANS_CTX)
            err = encode_ctx_payload(e, dst, dst_cap, &ssize, plane, ctx, n);
        else if (pl.mode == RFS_PM_RANS_TILE)
            err = rfs_table_write(dst, dst_cap, &tsize, pl.table);
        if (err == RFS_OK && pl.mode != RFS_PM_RANS_CTX)
            err = rans_encode_plane(e, dst + tsize, dst_cap - tsize, &ssize, plane, n, pl.table);
        size = tsize + ssize;
        /* Estimates can be off by a few bytes: the same rule on the real size. */
        if (err == RFS_E_DST_SMALL || (err == RFS_OK && size >= rans_budget(n)))
            pl.mode = RFS_PM_RAW;
        else if (err != RFS_OK)
            return err;
    }
    if (pl.mode == RFS_PM_RAW) {
        if (n > dst_cap)
            return RFS_E_DST_SMALL;
        memcpy(dst, plane, n);
        size = n;
    } else if (pl.mode == RFS_PM_CONST) {
        size = 0;
    }
    desc[0] = (uint8_t)pl.mode;
    desc[1] = pl.value;
    desc[2] = desc[3] = 0;
    rfs_st32(desc + 4, (uint32_t)size);
    *written = size;
    return RFS_OK;
}

rfs_err rfs_tile_encode(rfs_enc *e, uint8_t *dst, size_t dst_cap, size_t *dst_size,
                        const void *src, size_t src_size, const rfs_tile_params *prm)
{
    unsigned w = prm ? prm->width : 0;
    if (!e || !dst || !dst_size || (!src && src_size) || !prm)
        return RFS_E_ARG;
    if (!rfs_width_xf_valid(w, prm->transform) || src_size % w)
        return RFS_E_ARG;
    if (src_size > e->max_bytes || src_size / w > UINT32_MAX)
        return RFS_E_TOO_BIG;
    size_t n = src_size / w, hdr = rfs_tile_hdr_size(w);
    if (dst_cap < hdr)
        return RFS_E_DST_SMALL;
    /* W = 1 has nothing to split: code straight from src.  Otherwise src is
     * read only here, before dst is written: dst may be src (in place). */
    const uint8_t *planes = w == 1 ? (const uint8_t *)src : e->planes;
    if (n && w > 1)
        e->be->split(e->planes, src, n, w, prm->transform);
    dst[0] = (uint8_t)w;
    dst[1] = (uint8_t)prm->transform;
    dst[2] = RFS_PROB_BITS;
    dst[3] = 0;
    rfs_st32(dst + 4, (uint32_t)n);
    size_t pos = hdr;
    for (unsigned p = 0; p < w; p++) {
        size_t written = 0;
        /* RANS_CTX is tried for plane W-2, with plane W-1 as its context */
        const uint8_t *ctx =
            prm->ctx && w >= 2 && p == RFS_CTX_PLANE(w) ? planes + RFS_CTX_SRC_PLANE(w) * n : NULL;
        rfs_err err = encode_plane(e, dst + RFS_TILE_HDR_SIZE + RFS_PLANE_DESC_SIZE * p,
                                   dst + pos, dst_cap - pos, &written, planes + p * n, ctx, n, p,
                                   prm);
        if (err != RFS_OK)
            return err;
        pos += written;
    }
    *dst_size = pos;
    return RFS_OK;
}
