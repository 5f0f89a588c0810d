/*
 * rfs_tile_enc.c - the tile encoder.
 *
 * Per plane it picks the smallest of CONST, RAW, rANS with a per-tile table
 * and rANS with the tensor's shared table, from exact symbol costs, then
 * codes the plane with 32 interleaved rANS states (ryg_rans style, with
 * reciprocal multiplication instead of a division per symbol).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rfs_internal.h"
#include "rfs_tile.h"

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
    uint8_t *planes;     /* max_bytes: plane p of a tile at p*n */
    uint16_t *words;     /* rANS word scratch, filled back to front */
    size_t words_cap;    /* in words */
    rfs_table table;     /* per-tile table of the plane being coded */
    enc_sym sym[256];
    double cost[RFS_PROB_SCALE + 1]; /* cost[f] = bits of a symbol of freq f */
};

rfs_enc *rfs_enc_create(size_t max_tile_bytes)
{
    rfs_enc *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->max_bytes = max_tile_bytes;
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

size_t rfs_tile_bound(size_t src_size, unsigned width)
{
    /* Every plane falls back to RAW, so a tile never exceeds its header
     * plus the input. */
    return RFS_TILE_HDR_SIZE + RFS_PLANE_DESC_SIZE * (size_t)(width ? width : 1) + src_size;
}

/* Split n elements into W planes of transformed bytes. */
static void split_planes(uint8_t *planes, const uint8_t *src, size_t n, unsigned w,
                         rfs_transform xf)
{
    if (w == 1) {
        memcpy(planes, src, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t t = rfs_xf_apply(rfs_ld_elem(src, i, w), w, xf);
        for (unsigned p = 0; p < w; p++)
            planes[p * n + i] = (uint8_t)(t >> (8 * p));
    }
}

/* Estimated bits to code a histogram with table freq[]; huge if a symbol
 * present in counts is absent from the table. */
static double table_cost_bits(const rfs_enc *e, const uint64_t *counts, const uint16_t *freq)
{
    double bits = 0;
    for (unsigned s = 0; s < 256; s++)
        if (counts[s])
            bits += (double)counts[s] * e->cost[freq[s]];
    return bits;
}

static void enc_sym_init(enc_sym *s, uint32_t start, uint32_t freq)
{
    s->x_max = ((RFS_RANS_L >> RFS_PROB_BITS) << 16) * freq;
    s->cmpl_freq = (uint16_t)(RFS_PROB_SCALE - freq);
    if (freq < 2) {
        s->rcp_freq = ~0u;
        s->rcp_shift = 0;
        s->bias = start + RFS_PROB_SCALE - 1;
    } else {
        uint32_t shift = 0;
        while (freq > (1u << shift))
            shift++;
        s->rcp_freq = (uint32_t)(((1ull << (shift + 31)) + freq - 1) / freq);
        s->rcp_shift = (uint16_t)(shift - 1);
        s->bias = start;
    }
}

/*
 * rANS-code n plane bytes with table t into dst: 32 final states, then the
 * words.  Symbols are coded last to first so the decoder runs forwards;
 * within a step lanes go 31..0 and words are written back to front, which
 * puts each step's refill words in ascending lane order (docs/format.md 1.5).
 */
static rfs_err rans_encode_plane(rfs_enc *e, uint8_t *dst, size_t dst_cap, size_t *written,
                                 const uint8_t *plane, size_t n, const rfs_table *t)
{
    for (unsigned s = 0; s < 256; s++)
        if (t->freq[s])
            enc_sym_init(&e->sym[s], t->start[s], t->freq[s]);
    uint32_t x[RFS_LANES];
    for (unsigned j = 0; j < RFS_LANES; j++)
        x[j] = RFS_RANS_L;
    uint16_t *end = e->words + e->words_cap, *ptr = end;
    for (size_t i = n; i-- > 0;) {
        const enc_sym *s = &e->sym[plane[i]];
        uint32_t xi = x[i & (RFS_LANES - 1)];
        if (xi >= s->x_max) {
            *--ptr = (uint16_t)xi;
            xi >>= 16;
        }
        uint32_t q = (uint32_t)(((uint64_t)xi * s->rcp_freq) >> 32) >> s->rcp_shift;
        x[i & (RFS_LANES - 1)] = xi + s->bias + q * s->cmpl_freq;
    }
    size_t nwords = (size_t)(end - ptr);
    size_t size = RFS_STATES_SIZE + 2 * nwords;
    if (size > dst_cap)
        return RFS_E_DST_SMALL;
    for (unsigned j = 0; j < RFS_LANES; j++)
        rfs_st32(dst + 4 * j, x[j]);
    for (size_t k = 0; k < nwords; k++)
        rfs_st16(dst + RFS_STATES_SIZE + 2 * k, ptr[k]);
    *written = size;
    return RFS_OK;
}

/* Plane coding decision. */
typedef struct plane_plan {
    rfs_plane_mode mode;
    uint8_t value;
    const rfs_table *table; /* for the rANS modes */
} plane_plan;

static plane_plan plan_plane(rfs_enc *e, const uint8_t *plane, size_t n, unsigned p,
                             const rfs_tile_params *prm)
{
    plane_plan pl = {RFS_PM_RAW, 0, NULL};
    if (n == 0 || prm->raw_only)
        return pl;
    uint64_t counts[256] = {0};
    for (size_t i = 0; i < n; i++)
        counts[plane[i]]++;
    unsigned distinct = 0;
    for (unsigned s = 0; s < 256; s++)
        distinct += counts[s] != 0;
    if (distinct == 1) {
        pl.mode = RFS_PM_CONST;
        pl.value = plane[0];
        return pl;
    }
    double best = (double)n; /* RAW */
    rfs_table_from_counts(&e->table, counts);
    uint8_t tbuf[RFS_TABLE_MAX_SIZE];
    size_t tsize = 0;
    rfs_table_write(tbuf, sizeof(tbuf), &tsize, &e->table);
    double c = (double)(RFS_STATES_SIZE + tsize) + table_cost_bits(e, counts, e->table.freq) / 8;
    if (c < best) {
        best = c;
        pl.mode = RFS_PM_RANS_TILE;
        pl.table = &e->table;
    }
    const rfs_table *sh = prm->shared ? prm->shared->plane[p] : NULL;
    if (sh) {
        c = (double)RFS_STATES_SIZE + table_cost_bits(e, counts, sh->freq) / 8;
        if (c < best) {
            pl.mode = RFS_PM_RANS_SHARED;
            pl.table = sh;
        }
    }
    return pl;
}

/* Code one plane's payload at dst; fills the descriptor fields. */
static rfs_err encode_plane(rfs_enc *e, uint8_t *desc, uint8_t *dst, size_t dst_cap,
                            size_t *written, const uint8_t *plane, size_t n, unsigned p,
                            const rfs_tile_params *prm)
{
    plane_plan pl = plan_plane(e, plane, n, p, prm);
    size_t size = 0;
    if (pl.mode == RFS_PM_RANS_TILE || pl.mode == RFS_PM_RANS_SHARED) {
        size_t tsize = 0, ssize = 0;
        rfs_err err = RFS_OK;
        if (pl.mode == RFS_PM_RANS_TILE)
            err = rfs_table_write(dst, dst_cap, &tsize, pl.table);
        if (err == RFS_OK)
            err = rans_encode_plane(e, dst + tsize, dst_cap - tsize, &ssize, plane, n, pl.table);
        size = tsize + ssize;
        /* Estimates can be off by a few bytes: RAW whenever it is not larger. */
        if (err == RFS_E_DST_SMALL || (err == RFS_OK && size >= n))
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
    dst[0] = (uint8_t)w;
    dst[1] = (uint8_t)prm->transform;
    dst[2] = RFS_PROB_BITS;
    dst[3] = 0;
    rfs_st32(dst + 4, (uint32_t)n);
    if (n)
        split_planes(e->planes, src, n, w, prm->transform);
    size_t pos = hdr;
    for (unsigned p = 0; p < w; p++) {
        size_t written = 0;
        rfs_err err = encode_plane(e, dst + RFS_TILE_HDR_SIZE + RFS_PLANE_DESC_SIZE * p,
                                   dst + pos, dst_cap - pos, &written, e->planes + p * n, n, p,
                                   prm);
        if (err != RFS_OK)
            return err;
        pos += written;
    }
    *dst_size = pos;
    return RFS_OK;
}
