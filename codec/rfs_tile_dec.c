/*
 * rfs_tile_dec.c - the tile decoder: parse and check the header and plane
 * descriptors (untrusted), decode each plane with the context's backend,
 * then interleave the planes into elements and undo the transform.
 *
 * The rANS planes of a tile are decoded by one backend call, which for
 * W = 2 and 4 also writes the elements (the SIMD backends straight from
 * their decode loop, without the plane buffer and interleave pass).  Errors are as if the planes were
 * decoded one after another, stopping at the first failure: the code of
 * the first failing plane, in plane order.
 */
#include <stdlib.h>
#include <string.h>

#include "rfs_backend.h"
#include "rfs_internal.h"
#include "rfs_tile.h"

struct rfs_dec {
    size_t max_bytes;
    const rfs_backend *backend;
    uint8_t *planes; /* max_bytes: decoded plane p of a tile at p*n */
    rfs_table table[RFS_MAX_WIDTH]; /* per-tile table of plane p */
};

rfs_dec *rfs_dec_create(size_t max_tile_bytes)
{
    rfs_dec *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->max_bytes = max_tile_bytes;
    d->backend = rfs_backend_default();
    d->planes = malloc(max_tile_bytes ? max_tile_bytes : 1);
    if (!d->planes) {
        free(d);
        return NULL;
    }
    return d;
}

void rfs_dec_destroy(rfs_dec *d)
{
    if (!d)
        return;
    free(d->planes);
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

/* One parsed plane descriptor. */
typedef struct plane_desc {
    unsigned mode;
    uint8_t value;
    const uint8_t *payload;
    size_t size;
} plane_desc;

/* Check the descriptors and that the payloads fill the tile exactly. */
static rfs_err parse_planes(plane_desc *pd, const uint8_t *src, size_t src_size, unsigned w,
                            size_t n)
{
    size_t hdr = rfs_tile_hdr_size(w);
    if (src_size < hdr)
        return RFS_E_TRUNCATED;
    uint64_t pos = hdr;
    for (unsigned p = 0; p < w; p++) {
        const uint8_t *d = src + RFS_TILE_HDR_SIZE + RFS_PLANE_DESC_SIZE * p;
        pd[p].mode = d[0];
        pd[p].value = d[1];
        pd[p].size = rfs_ld32(d + 4);
        if (pd[p].mode >= RFS_PM_COUNT || d[2] || d[3] || (pd[p].mode != RFS_PM_CONST && d[1]))
            return RFS_E_HEADER;
        if ((pd[p].mode == RFS_PM_RAW && pd[p].size != n) ||
            (pd[p].mode == RFS_PM_CONST && pd[p].size != 0))
            return RFS_E_HEADER;
        pos += pd[p].size;
        if (pos > src_size)
            return RFS_E_TRUNCATED;
        pd[p].payload = src + pos - pd[p].size;
    }
    return pos == src_size ? RFS_OK : RFS_E_TRAILING;
}

/* Check a rANS plane payload (table, sizes) and fill its job: the stream
 * after the table, and the table to decode with. */
static rfs_err rans_job(rfs_dec *d, rfs_plane_job *job, unsigned p, const plane_desc *pd,
                        const rfs_table *shared)
{
    const uint8_t *stream = pd->payload;
    size_t size = pd->size;
    const rfs_table *t = shared;
    if (pd->mode == RFS_PM_RANS_TILE) {
        size_t used = 0;
        rfs_err err = rfs_table_parse(&d->table[p], stream, size, &used);
        if (err != RFS_OK)
            return err;
        stream += used;
        size -= used;
        t = &d->table[p];
    } else if (!t) {
        return RFS_E_NO_SHARED;
    }
    if (size < RFS_STATES_SIZE)
        return RFS_E_TRUNCATED;
    if ((size - RFS_STATES_SIZE) % 2)
        return RFS_E_TRAILING;
    job->stream = stream;
    job->stream_size = size;
    job->dec = t->dec;
    job->err = RFS_OK;
    return RFS_OK;
}

rfs_err rfs_tile_decode(rfs_dec *d, void *dst, size_t dst_cap, size_t *dst_size,
                        const uint8_t *src, size_t src_size, const rfs_table_set *shared)
{
    unsigned w;
    uint32_t n;
    rfs_transform xf;
    if (!d || !src || !dst_size || (!dst && dst_cap))
        return RFS_E_ARG;
    rfs_err err = rfs_tile_info(src, src_size, &w, &n, &xf);
    if (err != RFS_OK)
        return err;
    size_t bytes = (size_t)n * w;
    if (bytes > d->max_bytes)
        return RFS_E_TOO_BIG;
    if (bytes > dst_cap)
        return RFS_E_DST_SMALL;
    plane_desc pd[RFS_MAX_WIDTH];
    err = parse_planes(pd, src, src_size, w, n);
    if (err != RFS_OK)
        return err;
    /* RAW and CONST planes, and the jobs of the rANS planes before the
     * first one whose payload fails its checks (err then holds its code). */
    const uint8_t *planes[RFS_MAX_WIDTH] = {0};
    rfs_plane_job jobs[RFS_MAX_WIDTH];
    unsigned k = 0, jplane[RFS_MAX_WIDTH] = {0};
    for (unsigned p = 0; p < w && err == RFS_OK; p++) {
        /* W = 1 decodes straight into dst: nothing to interleave. */
        uint8_t *out = w == 1 ? (uint8_t *)dst : d->planes + (size_t)p * n;
        planes[p] = out;
        if (pd[p].mode == RFS_PM_RAW) {
            planes[p] = pd[p].payload;
        } else if (pd[p].mode == RFS_PM_CONST) {
            memset(out, pd[p].value, n);
        } else {
            err = rans_job(d, &jobs[k], p, &pd[p], shared ? shared->plane[p] : NULL);
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
