/*
 * rfs_gpu_image.c - rfs_gpu_read_to_device: a byte range of a file of an
 * image straight into device memory.  Its own object file, so programs that
 * do not call it need not link the image reader.
 *
 * The range is walked span by span (rfs_image_map).  Tensor tiles are
 * checked here (rfs_image_unit_check) and queued as device units (decoded
 * on the GPU, only their compressed bytes uploaded); RAW extents and zstd
 * units are read by rfs_image_read (which checks and decodes them) into a
 * pinned bounce buffer and uploaded as bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "rfs_array.h"
#include "rfs_gpu_internal.h"

/* Upload bytes [pos, pos+len) of the file at dev + dst via the bounce buffer. */
static rfs_err upload_plain(rfs_gpu *g, const rfs_image *img, rfs_rctx *ctx, uint64_t ino,
                            uint64_t pos, uint64_t len, uint8_t *dev)
{
    cudaStream_t st = g->slot[0].stream;
    while (len) {
        size_t take = len < g->bounce_cap ? (size_t)len : g->bounce_cap, got = 0;
        rfs_err err = rfs_image_read(img, ctx, ino, pos, take, g->h_bounce, &got);
        if (err != RFS_OK)
            return err;
        if (got != take)
            return RFS_E_CORRUPT;
        if (!rfs_gpu_cuda_ok(g, cudaMemcpyAsync(dev, g->h_bounce, take, cudaMemcpyHostToDevice, st),
                             "upload") ||
            !rfs_gpu_cuda_ok(g, cudaStreamSynchronize(st), "upload"))
            return RFS_E_GPU;
        dev += take;
        pos += take;
        len -= take;
    }
    return RFS_OK;
}

/* Append a device unit to the growing array *u. */
static rfs_err push_unit(rfs_gpu_dev_unit **u, size_t *n, size_t *cap, const rfs_gpu_dev_unit *x)
{
    if (rfs_array_reserve(u, cap, *n + 1, sizeof(**u)))
        return RFS_E_NOMEM;
    (*u)[(*n)++] = *x;
    return RFS_OK;
}

/* A tile span: check the unit and queue the window [unit_off, unit_off+take). */
static rfs_err queue_tile(const rfs_image *img, const rfs_span *sp, uint64_t take,
                          uint64_t dst_off, rfs_gpu_dev_unit **u, size_t *n, size_t *cap)
{
    rfs_unit_src us;
    /* Only the window is written, at its own place: no output bound here. */
    rfs_err err = rfs_image_unit_check(img, sp->unit, SIZE_MAX, &us);
    if (err != RFS_OK)
        return err;
    rfs_gpu_dev_unit x = {us.data, us.size, us.decoded_size, us.shared, dst_off,
                          sp->unit_off, (uint32_t)(sp->unit_off + take), RFS_OK};
    return push_unit(u, n, cap, &x);
}

rfs_err rfs_gpu_read_to_device(rfs_gpu *g, const rfs_image *img, uint64_t ino, uint64_t off,
                               size_t len, void *dev_dst, size_t *got)
{
    rfs_stat st;
    rfs_gpu_dev_unit *u = NULL;
    size_t n = 0, cap = 0;
    rfs_rctx *ctx = NULL;
    *got = 0;
    if (!g || !img || (!dev_dst && len))
        return RFS_E_ARG;
    rfs_err err = rfs_image_stat(img, ino, &st);
    if (err != RFS_OK)
        return err;
    if (g->broken || !rfs_gpu_cuda_ok(g, cudaSetDevice(g->o.device), "cudaSetDevice"))
        return RFS_E_GPU;
    uint64_t end = off < st.size ? (st.size - off < len ? st.size : off + len) : off;
    err = RFS_E_NOMEM;
    if (!(ctx = rfs_rctx_create(img)))
        goto fail;
    for (uint64_t pos = off; pos < end;) {
        rfs_span sp;
        if ((err = rfs_image_map(img, ino, pos, &sp)) != RFS_OK)
            goto fail;
        uint64_t take = sp.length < end - pos ? sp.length : end - pos;
        rfs_unit_src us = {0};
        if (!sp.is_raw && (err = rfs_image_unit_source(img, sp.unit, &us)) != RFS_OK)
            goto fail;
        if (!sp.is_raw && us.kind == RFS_UNIT_TILE)
            err = queue_tile(img, &sp, take, pos - off, &u, &n, &cap);
        else
            err = upload_plain(g, img, ctx, ino, pos, take, (uint8_t *)dev_dst + (pos - off));
        if (err != RFS_OK)
            goto fail;
        pos += take;
    }
    err = rfs_gpu_decode_to_device(g, dev_dst, (size_t)(end - off), u, n);
    if (err == RFS_OK)
        *got = (size_t)(end - off);
fail:
    rfs_rctx_destroy(ctx);
    free(u);
    return err;
}
