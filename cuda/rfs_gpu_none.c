/*
 * rfs_gpu_none.c - rfs_gpu.h in a build without CUDA (RFS_HAVE_CUDA off: no
 * nvcc, -DRFS_CUDA=OFF, or a sanitizer build).
 *
 * This is the one GPU switch of the project: the CMake target rfs_gpu is
 * either the CUDA decoder or this file, so every program links rfs_gpu the
 * same way and no source needs an #ifdef.  Here there is never a device:
 * rfs_gpu_create fails with RFS_E_GPU and the reason, which is what turns
 * `-o gpu=on` into a mount error (fs/rfs_engine.c), in the same place and
 * the same words as "no CUDA device".  No rfs_gpu can exist, so the calls
 * that take one answer as for a decoder that is not there.
 */
#include <stdio.h>
#include <string.h>

#include "rfs_gpu.h"

const char *rfs_gpu_build(void)
{
    return "not built";
}

int rfs_gpu_device_count(void)
{
    return 0;
}

rfs_err rfs_gpu_create(rfs_gpu **gpu, const rfs_gpu_opts *opts, char *why, size_t why_cap)
{
    (void)opts;
    *gpu = NULL;
    if (why && why_cap)
        snprintf(why, why_cap, "this build has no GPU support (configured without CUDA)");
    return RFS_E_GPU;
}

void rfs_gpu_destroy(rfs_gpu *gpu)
{
    (void)gpu;
}

const char *rfs_gpu_name(const rfs_gpu *gpu)
{
    (void)gpu;
    return "none";
}

int rfs_gpu_usable(const rfs_gpu *gpu)
{
    (void)gpu;
    return 0;
}

void rfs_gpu_get_stats(const rfs_gpu *gpu, rfs_gpu_stats *st)
{
    (void)gpu;
    memset(st, 0, sizeof(*st));
}

rfs_err rfs_gpu_decode_batch(rfs_gpu *gpu, rfs_gpu_unit *units, size_t n)
{
    (void)gpu, (void)units, (void)n;
    return RFS_E_ARG; /* what the CUDA decoder says for a NULL gpu */
}

rfs_err rfs_gpu_decode_to_device(rfs_gpu *gpu, void *dev_dst, size_t dev_cap,
                                 rfs_gpu_dev_unit *units, size_t n)
{
    (void)gpu, (void)dev_dst, (void)dev_cap, (void)units, (void)n;
    return RFS_E_GPU;
}

rfs_err rfs_gpu_read_to_device(rfs_gpu *gpu, const rfs_image *img, uint64_t ino, uint64_t off,
                               size_t len, void *dev_dst, size_t *got)
{
    (void)gpu, (void)img, (void)ino, (void)off, (void)len, (void)dev_dst;
    *got = 0;
    return RFS_E_GPU;
}

void *rfs_gpu_dev_alloc(rfs_gpu *gpu, size_t size)
{
    (void)gpu, (void)size;
    return NULL;
}

void rfs_gpu_dev_free(rfs_gpu *gpu, void *dev)
{
    (void)gpu, (void)dev;
}

rfs_err rfs_gpu_dev_download(rfs_gpu *gpu, void *dst, const void *dev_src, size_t size)
{
    (void)gpu, (void)dst, (void)dev_src, (void)size;
    return RFS_E_GPU;
}

rfs_err rfs_gpu_dev_fill(rfs_gpu *gpu, void *dev, int byte, size_t size)
{
    (void)gpu, (void)dev, (void)byte, (void)size;
    return RFS_E_GPU;
}

rfs_err rfs_gpu_dev_upload(rfs_gpu *gpu, void *dev_dst, const void *src, size_t size)
{
    (void)gpu, (void)dev_dst, (void)src, (void)size;
    return RFS_E_GPU;
}

void *rfs_gpu_host_alloc(rfs_gpu *gpu, size_t size)
{
    (void)gpu, (void)size;
    return NULL;
}

void rfs_gpu_host_free(rfs_gpu *gpu, void *host)
{
    (void)gpu, (void)host;
}

rfs_err rfs_gpu_bench_kernels(rfs_gpu *gpu, const rfs_gpu_unit *units, size_t n, unsigned iters,
                              double *seconds, uint64_t *bytes, size_t *n_used)
{
    (void)gpu, (void)units, (void)n, (void)iters, (void)seconds, (void)bytes, (void)n_used;
    return RFS_E_GPU;
}
