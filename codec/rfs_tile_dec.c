/*
 * rfs_tile_dec.c - the tile decoder: check the header and plane descriptors
 * (untrusted) with rfs_tile_parse and rfs_plane_parse_rans, the parser the
 * GPU planner uses too; decode each plane with the context's backend, then
 * interleave the planes into elements and undo the transform.
 *
 * The rANS planes of a tile are decoded by one backend call, which for
 * W = 2 and 4 also writes the elements (the SIMD backends straight from
 * their decode loop, without the plane buffer and interleave pass).  Errors
 * are as if the planes were decoded one after another, stopping at the
 * first failure: the code of the first failing plane, in plane order.
 */
#include <stdlib.h>
#include <string.h>

#include "rfs_backend.h"
#include "rfs_decode_ctx.h"
#include "rfs_internal.h"
#include "rfs_tile.h"

/* The scratch of one tile being decoded. */
typedef struct dec_slot {
    uint8_t *planes; /* max_bytes: decoded plane p of a tile at p*n */
    rfs_table table[RFS_MAX_WIDTH]; /* per-tile table of plane p */
} dec_slot;

struct rfs_dec {
    size_t max_bytes;
    const rfs_backend *backend;
    dec_slot slot[2]; /* the second only for rfs_tile_decode2, made on first use */
    uint16_t ctx_freq[2][256]; /* a RANS_CTX plane's two tables ... */
    uint32_t *ctx_dec;         /* ... and their lookups (RFS_CTX_DEC_ENTRIES) */
};

/* A tile checked and set up for its rANS decode (tile_prepare). */
typedef struct dec_tile {
    unsigned w;
    uint32_t n;
    rfs_transform xf;
    uint8_t *dst;
    const uint8_t *planes[RFS_MAX_WIDTH];
    rfs_plane_job jobs[RFS_MAX_WIDTH];
    unsigned k, jplane[RFS_MAX_WIDTH];
    rfs_err err; /* the first payload that failed its checks, else RFS_OK */
    int ctx;     /* a RANS_CTX tile: decode_ctx_tile(lay, src, shared) does it all */
    rfs_tile_layout lay;
    const uint8_t *src;
    const rfs_table_set *shared;
} dec_tile;

rfs_dec *rfs_dec_create(size_t max_tile_bytes)
{
    rfs_dec *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->max_bytes = max_tile_bytes;
    d->backend = rfs_backend_default();
    d->slot[0].planes = malloc(max_tile_bytes ? max_tile_bytes : 1);
    d->ctx_dec = malloc(RFS_CTX_DEC_ENTRIES * sizeof(uint32_t));
    if (!d->slot[0].planes || !d->ctx_dec) {
        rfs_dec_destroy(d);
        return NULL;
    }
    return d;
}

void rfs_dec_destroy(rfs_dec *d)
{
    if (!d)
        return;
    free(d->slot[0].planes);
    free(d->slot[1].planes);
    free(d->ctx_dec);
    free(d);
}

rfs_err rfs_dec_set_backend(rfs_dec *d, const char *name)
{
    const rfs_backend *b = rfs_backend_by_name(name);
    if (!b)
        return RFS_E_ARG;
    d->backend = b;
    return RFS_OK;
}

const char *rfs_dec_backend(const rfs_dec *d)
{
    return d->backend->name;
}

/* Check a rANS plane payload (rfs_plane_parse_rans) and fill its job: the
 * stream after the table, and the table to decode with. */
static rfs_err rans_job(dec_slot *d, rfs_plane_job *job, unsigned p, const uint8_t *src,
                        const rfs_plane_layout *pl, const rfs_table *shared)
{
    size_t off = 0, size = 0;
    rfs_err err = rfs_plane_parse_rans(src, pl, shared != NULL, d->table[p].freq, &off, &size);
    if (err != RFS_OK)
        return err;
    const rfs_table *t = shared;
    if (pl->mode == RFS_PM_RANS_TILE) {
        rfs_table_build_lookup(&d->table[p]);
        t = &d->table[p];
    }
    job->stream = src + off;
    job->stream_size = size;
    job->dec = t->dec;
    job->plan = t->plan;
    job->err = RFS_OK;
    return RFS_OK;
}

/* Check a RANS_CTX payload and fill its job (the context bytes are the
 * caller's to set). */
static rfs_err ctx_job(rfs_dec *d, rfs_ctx_job *job, const uint8_t *src, const rfs_plane_layout *pl)
{
    size_t off = 0, size = 0;
    rfs_err err = rfs_plane_parse_ctx(src, pl, &job->threshold, d->ctx_freq[0], d->ctx_freq[1],
                                      &off, &size);
    if (err != RFS_OK)
        return err;
    rfs_ctx_build_dec(d->ctx_dec, d->ctx_freq[0], d->ctx_freq[1]);
    job->stream = src + off;
    job->stream_size = size;
    job->dec = d->ctx_dec;
    return RFS_OK;
}

/*
 * A tile whose plane W-2 is RANS_CTX (docs/format.md 1.4.1): the other
 * planes first, as in rfs_tile_decode but without the fused forms (the
 * context plane W-1 is among them), then the RANS_CTX plane from them,
 * straight to elements where the backend has that form.  Errors: the
 * first of the other planes' (in plane order), then the RANS_CTX plane's.
 */
static rfs_err decode_ctx_tile(rfs_dec *d, uint8_t *dst, const uint8_t *src,
                               const rfs_tile_layout *lay, const rfs_table_set *shared)
{
    const unsigned w = lay->width, cp = RFS_CTX_PLANE(w);
    const uint32_t n = lay->n;
    const rfs_plane_layout *pl = lay->plane;
    const uint8_t *planes[RFS_MAX_WIDTH] = {0};
    rfs_plane_job jobs[RFS_MAX_WIDTH];
    rfs_ctx_job cj;
    unsigned k = 0;
    rfs_err err = RFS_OK;
    for (unsigned p = 0; p < w && err == RFS_OK; p++) {
        uint8_t *out = d->slot[0].planes + (size_t)p * n;
        planes[p] = out;
        if (pl[p].mode == RFS_PM_RAW) {
            planes[p] = src + pl[p].off;
        } else if (pl[p].mode == RFS_PM_CONST) {
            memset(out, pl[p].value, n);
        } else if (p == cp) {
            err = ctx_job(d, &cj, src, &pl[p]);
            cj.out = out;
        } else {
            err = rans_job(&d->slot[0], &jobs[k], p, src, &pl[p], shared ? shared->plane[p] : NULL);
            jobs[k].out = out;
            k += err == RFS_OK;
        }
    }
    if (k)
        d->backend->rans_planes(jobs, k, n);
    for (unsigned j = 0; j < k; j++)
        if (jobs[j].err != RFS_OK)
            return jobs[j].err;
    if (err != RFS_OK)
        return err;
    cj.ctx = planes[RFS_CTX_SRC_PLANE(w)];
    const rfs_ctx_paths *cpath = rfs_ctx_paths_for(d->backend);
    if ((w == 2 || w == 4) && cpath->elems)
        return cpath->elems(dst, &cj, planes, n, w, lay->xf);
    if ((err = cpath->plane(&cj, n)) != RFS_OK)
        return err;
    d->backend->interleave(dst, planes, n, w, lay->xf);
    return RFS_OK;
}

/* Check a tile's header and set up its planes: RAW and CONST ones, and
 * the jobs of the rANS planes before the first one whose payload fails its
 * checks (t->err then holds its code).  Returns the header's errors. */
static rfs_err tile_prepare(const rfs_dec *d, dec_slot *sl, dec_tile *t, void *dst,
                            size_t dst_cap, const uint8_t *src, size_t src_size,
                            const rfs_table_set *shared)
{
    rfs_tile_layout lay;
    if (!src || (!dst && dst_cap))
        return RFS_E_ARG;
    rfs_err err = rfs_tile_parse(&lay, src, src_size);
    if (err != RFS_OK)
        return err;
    const unsigned w = lay.width;
    const uint32_t n = lay.n;
    const rfs_plane_layout *pl = lay.plane;
    size_t bytes = (size_t)n * w;
    if (bytes > d->max_bytes)
        return RFS_E_TOO_BIG;
    if (bytes > dst_cap)
        return RFS_E_DST_SMALL;
    *t = (dec_tile){.w = w, .n = n, .xf = lay.xf, .dst = dst};
    if (w >= 2 && pl[RFS_CTX_PLANE(w)].mode == RFS_PM_RANS_CTX) {
        t->ctx = 1; /* decoded whole by tile_run (decode_ctx_tile) */
        t->lay = lay;
        t->src = src;
        t->shared = shared;
        return RFS_OK;
    }
    for (unsigned p = 0; p < w && err == RFS_OK; p++) {
        /* W = 1 decodes straight into dst: nothing to interleave. */
        uint8_t *out = w == 1 ? (uint8_t *)dst : sl->planes + (size_t)p * n;
        t->planes[p] = out;
        if (pl[p].mode == RFS_PM_RAW) {
            t->planes[p] = src + pl[p].off;
        } else if (pl[p].mode == RFS_PM_CONST) {
            memset(out, pl[p].value, n);
        } else {
            err = rans_job(sl, &t->jobs[t->k], p, src, &pl[p], shared ? shared->plane[p] : NULL);
            t->jobs[t->k].out = out;
            t->jplane[t->k] = p;
            t->k += err == RFS_OK;
        }
    }
    t->err = err;
    return RFS_OK;
}

/* The error of a decoded tile: its planes' in plane order, then the
 * payload check that stopped the set-up. */
static rfs_err tile_result(const dec_tile *t)
{
    for (unsigned j = 0; j < t->k; j++)
        if (t->jobs[j].err != RFS_OK)
            return t->jobs[j].err;
    return t->err;
}

/* Decode a prepared tile with d's backend. */
static rfs_err tile_run(rfs_dec *d, dec_tile *t)
{
    if (t->ctx)
        return decode_ctx_tile(d, t->dst, t->src, &t->lay, t->shared);
    const rfs_backend *b = d->backend;
    const unsigned w = t->w;
    const uint32_t n = t->n;
    /* W = 2 and 4 go straight to elements when no payload failed its checks */
    int fused = t->err == RFS_OK && t->k && w > 1;
    if (fused && w == 2)
        b->rans_w2(t->dst, n, t->jobs, t->k, t->jplane[0], t->planes[t->jplane[0] ^ 1u], t->xf);
    else if (fused)
        b->rans_w4(t->dst, n, t->jobs, t->k, t->jplane, t->planes, t->xf);
    else if (t->k)
        b->rans_planes(t->jobs, t->k, n);
    rfs_err err = tile_result(t);
    if (err == RFS_OK && !fused && n && (w > 1 || t->planes[0] != t->dst))
        b->interleave(t->dst, t->planes, n, w, t->xf);
    return err;
}

rfs_err rfs_tile_decode(rfs_dec *d, void *dst, size_t dst_cap, size_t *dst_size,
                        const uint8_t *src, size_t src_size, const rfs_table_set *shared)
{
    dec_tile t;
    if (!d || !dst_size)
        return RFS_E_ARG;
    rfs_err err = tile_prepare(d, &d->slot[0], &t, dst, dst_cap, src, src_size, shared);
    if (err == RFS_OK)
        err = tile_run(d, &t);
    if (err == RFS_OK)
        *dst_size = (size_t)t.n * t.w;
    return err;
}

/* Both tiles set up with their only rANS plane the top one, the same
 * width (2 or 4) and every payload checked: what rans_top2 takes. */
static int tiles_pair(const dec_tile t[2])
{
    for (unsigned j = 0; j < 2; j++)
        if (t[j].ctx || t[j].err != RFS_OK || t[j].k != 1 || t[j].jplane[0] != t[j].w - 1 || t[j].w < 2 ||
            t[j].w != t[0].w)
            return 0;
    return 1;
}

rfs_err rfs_tile_decode2(rfs_dec *d, rfs_tile_io io[2])
{
    if (!d || !io)
        return RFS_E_ARG;
    if (!d->slot[1].planes)
        d->slot[1].planes = malloc(d->max_bytes ? d->max_bytes : 1);
    if (!d->slot[1].planes || !d->backend->rans_top2) {
        for (unsigned j = 0; j < 2; j++)
            io[j].err = rfs_tile_decode(d, io[j].dst, io[j].dst_cap, &io[j].dst_size, io[j].src,
                                        io[j].src_size, io[j].shared);
        return io[0].err != RFS_OK ? io[0].err : io[1].err;
    }
    dec_tile t[2];
    for (unsigned j = 0; j < 2; j++)
        io[j].err = tile_prepare(d, &d->slot[j], &t[j], io[j].dst, io[j].dst_cap, io[j].src,
                                 io[j].src_size, io[j].shared);
    if (io[0].err == RFS_OK && io[1].err == RFS_OK && tiles_pair(t)) {
        rfs_plane_job *jobs[2] = {&t[0].jobs[0], &t[1].jobs[0]};
        uint8_t *dst[2] = {t[0].dst, t[1].dst};
        const uint32_t n[2] = {t[0].n, t[1].n};
        const uint8_t *const *planes[2] = {t[0].planes, t[1].planes};
        const rfs_transform xf[2] = {t[0].xf, t[1].xf};
        d->backend->rans_top2(dst, n, t[0].w, jobs, planes, xf);
        for (unsigned j = 0; j < 2; j++)
            io[j].err = tile_result(&t[j]);
    } else {
        for (unsigned j = 0; j < 2; j++)
            if (io[j].err == RFS_OK)
                io[j].err = tile_run(d, &t[j]);
    }
    for (unsigned j = 0; j < 2; j++)
        if (io[j].err == RFS_OK)
            io[j].dst_size = (size_t)t[j].n * t[j].w;
    return io[0].err != RFS_OK ? io[0].err : io[1].err;
}
