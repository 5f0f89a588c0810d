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

struct rfs_dec {
    size_t max_bytes;
    const rfs_backend *backend;
    uint8_t *planes; /* max_bytes: decoded plane p of a tile at p*n */
    rfs_table table[RFS_MAX_WIDTH]; /* per-tile table of plane p */
    uint16_t ctx_freq[2][256];      /* a RANS_CTX plane's two tables ... */
    uint32_t *ctx_dec;              /* ... and their lookups (RFS_CTX_DEC_ENTRIES) */
};

rfs_dec *rfs_dec_create(size_t max_tile_bytes)
{
    rfs_dec *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->max_bytes = max_tile_bytes;
    d->backend = rfs_backend_default();
    d->planes = malloc(max_tile_bytes ? max_tile_bytes : 1);
    d->ctx_dec = malloc(RFS_CTX_DEC_ENTRIES * sizeof(uint32_t));
    if (!d->planes || !d->ctx_dec) {
        rfs_dec_destroy(d);
        return NULL;
    }
    return d;
}

void rfs_dec_destroy(rfs_dec *d)
{
    if (!d)
        return;
    free(d->planes);
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
static rfs_err rans_job(rfs_dec *d, rfs_plane_job *job, unsigned p, const uint8_t *src,
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
 * context plane W-1 is among them), then the RANS_CTX plane from them, for
 * W = 2 straight to elements.  Errors: the first of the other planes' (in
 * plane order), then the RANS_CTX plane's.
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
        uint8_t *out = d->planes + (size_t)p * n;
        planes[p] = out;
        if (pl[p].mode == RFS_PM_RAW) {
            planes[p] = src + pl[p].off;
        } else if (pl[p].mode == RFS_PM_CONST) {
            memset(out, pl[p].value, n);
        } else if (p == cp) {
            err = ctx_job(d, &cj, src, &pl[p]);
            cj.out = out;
        } else {
            err = rans_job(d, &jobs[k], p, src, &pl[p], shared ? shared->plane[p] : NULL);
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
    if (w == 2 && cpath->w2)
        return cpath->w2(dst, &cj, n, lay->xf);
    if ((err = cpath->plane(&cj, n)) != RFS_OK)
        return err;
    d->backend->interleave(dst, planes, n, w, lay->xf);
    return RFS_OK;
}

rfs_err rfs_tile_decode(rfs_dec *d, void *dst, size_t dst_cap, size_t *dst_size,
                        const uint8_t *src, size_t src_size, const rfs_table_set *shared)
{
    rfs_tile_layout lay;
    if (!d || !src || !dst_size || (!dst && dst_cap))
        return RFS_E_ARG;
    rfs_err err = rfs_tile_parse(&lay, src, src_size);
    if (err != RFS_OK)
        return err;
    const unsigned w = lay.width;
    const uint32_t n = lay.n;
    const rfs_transform xf = lay.xf;
    const rfs_plane_layout *pl = lay.plane;
    size_t bytes = (size_t)n * w;
    if (bytes > d->max_bytes)
        return RFS_E_TOO_BIG;
    if (bytes > dst_cap)
        return RFS_E_DST_SMALL;
    if (w >= 2 && pl[RFS_CTX_PLANE(w)].mode == RFS_PM_RANS_CTX) {
        if ((err = decode_ctx_tile(d, dst, src, &lay, shared)) != RFS_OK)
            return err;
        *dst_size = bytes;
        return RFS_OK;
    }
    /* RAW and CONST planes, and the jobs of the rANS planes before the
     * first one whose payload fails its checks (err then holds its code). */
    const uint8_t *planes[RFS_MAX_WIDTH] = {0};
    rfs_plane_job jobs[RFS_MAX_WIDTH];
    unsigned k = 0, jplane[RFS_MAX_WIDTH] = {0};
    for (unsigned p = 0; p < w && err == RFS_OK; p++) {
        /* W = 1 decodes straight into dst: nothing to interleave. */
        uint8_t *out = w == 1 ? (uint8_t *)dst : d->planes + (size_t)p * n;
        planes[p] = out;
        if (pl[p].mode == RFS_PM_RAW) {
            planes[p] = src + pl[p].off;
        } else if (pl[p].mode == RFS_PM_CONST) {
            memset(out, pl[p].value, n);
        } else {
            err = rans_job(d, &jobs[k], p, src, &pl[p], shared ? shared->plane[p] : NULL);
            jobs[k].out = out;
            jplane[k] = p;
            k += err == RFS_OK;
        }
    }
    /* W = 2 and 4 go straight to elements when no payload failed its checks */
    int fused = err == RFS_OK && k && w > 1;
    if (fused && w == 2)
        d->backend->rans_w2(dst, n, jobs, k, jplane[0], planes[jplane[0] ^ 1u], xf);
    else if (fused)
        d->backend->rans_w4(dst, n, jobs, k, jplane, planes, xf);
    else if (k)
        d->backend->rans_planes(jobs, k, n);
    for (unsigned j = 0; j < k; j++)
        if (jobs[j].err != RFS_OK)
            return jobs[j].err;
    if (err != RFS_OK)
        return err;
    if (!fused && n && (w > 1 || planes[0] != dst))
        d->backend->interleave(dst, planes, n, w, xf);
    *dst_size = bytes;
    return RFS_OK;
}
