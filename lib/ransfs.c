/*
 * ransfs.c - libransfs: open and close, errors, version, the namespace and
 * byte-range reads (see ransfs.h).  A thin layer over codec/'s image
 * reader (rfs_image.h), which validates the image and checks every unit.
 *
 * The reader's decode scratch (rfs_rctx) is per thread; ransfs_read keeps
 * the ones it has made in a small stack of spares inside the image, so a
 * program reading from many threads makes one context per concurrent
 * reader, not one per call, and the library needs no thread-local state.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rfs_gpu.h"
#include "ransfs_internal.h"

#ifndef RANSFS_VERSION_STRING
#error "the build defines RANSFS_VERSION_STRING (the project version)"
#endif

ransfs_err rfs_lib_err(rfs_err err)
{
    switch (err) {
    case RFS_OK: return RANSFS_OK;
    case RFS_E_NOMEM: return RANSFS_E_NOMEM;
    case RFS_E_ARG: return RANSFS_E_INVAL;
    case RFS_E_IO: return RANSFS_E_IO;
    case RFS_E_VERSION: return RANSFS_E_UNSUPPORTED;
    case RFS_E_NOENT: return RANSFS_E_NOENT;
    case RFS_E_NOTDIR: return RANSFS_E_NOTDIR;
    case RFS_E_ISDIR: return RANSFS_E_ISDIR;
    case RFS_E_INVAL: return RANSFS_E_INVAL;
    case RFS_E_GPU: return RANSFS_E_CUDA;
    default: return RANSFS_E_CORRUPT; /* magic, checksum, tile and zstd errors */
    }
}

const char *ransfs_strerror(int err)
{
    static const char *const msg[] = {
        [RANSFS_OK] = "success",
        [RANSFS_E_NOMEM] = "out of memory",
        [RANSFS_E_IO] = "cannot open, read or map the image file",
        [RANSFS_E_CORRUPT] = "corrupt image (not a ransfs image, or a checksum or decode error)",
        [RANSFS_E_NOENT] = "no such file or directory in the image",
        [RANSFS_E_NOTDIR] = "not a directory",
        [RANSFS_E_ISDIR] = "is a directory",
        [RANSFS_E_INVAL] = "invalid argument",
        [RANSFS_E_NOT_SAFETENSORS] = "not a valid safetensors file",
        [RANSFS_E_RANGE] = "index or byte range out of range",
        [RANSFS_E_NOCUDA] = "no CUDA support or no such CUDA device",
        [RANSFS_E_CUDA] = "a CUDA call failed",
        [RANSFS_E_UNSUPPORTED] = "unsupported image feature or tensor",
    };
    if (err < 0 || (size_t)err >= sizeof msg / sizeof msg[0] || !msg[err])
        return "unknown error";
    return msg[err];
}

const char *ransfs_version(void) { return RANSFS_VERSION_STRING; }

/* The SIMD paths compiled in (CMake checked the compiler's flags). */
#if defined(RANSFS_HAVE_AVX2) && defined(RANSFS_HAVE_AVX512)
#define RANSFS_SIMD_FEATURES "avx2 avx512"
#elif defined(RANSFS_HAVE_AVX2)
#define RANSFS_SIMD_FEATURES "avx2"
#else
#define RANSFS_SIMD_FEATURES ""
#endif

const char *ransfs_features(void)
{
    if (strcmp(rfs_gpu_build(), "cuda") == 0)
        return sizeof RANSFS_SIMD_FEATURES > 1 ? "cuda " RANSFS_SIMD_FEATURES : "cuda";
    return RANSFS_SIMD_FEATURES;
}

/* ---------------------------------------------------------- open, close */

/* The one place a name given to ransfs_open becomes an open image (a URL
 * scheme would be told apart here). */
static rfs_err image_source_open(rfs_image **out, const char *path, char *why, size_t why_cap)
{
    return rfs_image_open(out, path, why, why_cap);
}

/* "PATH: reason" into why, from the reader's reason. */
static void why_prefix(char *why, size_t why_cap, const char *path, const char *reason,
                       rfs_err err)
{
    if (!why || !why_cap)
        return;
    snprintf(why, why_cap, "%s: %s", path, reason[0] ? reason : rfs_strerror(err));
}

ransfs_err ransfs_open(ransfs **out, const char *path, char *why, size_t why_cap)
{
    char reason[512] = "";
    if (why && why_cap)
        why[0] = '\0';
    if (!out)
        return RANSFS_E_INVAL;
    *out = NULL;
    if (!path) {
        if (why && why_cap)
            snprintf(why, why_cap, "no image path given");
        return RANSFS_E_INVAL;
    }
    ransfs *img = calloc(1, sizeof *img);
    if (!img || pthread_mutex_init(&img->lock, NULL) != 0) {
        free(img);
        why_prefix(why, why_cap, path, "out of memory", RFS_E_NOMEM);
        return RANSFS_E_NOMEM;
    }
    rfs_err err = image_source_open(&img->img, path, reason, sizeof reason);
    if (err) {
        why_prefix(why, why_cap, path, reason, err);
        pthread_mutex_destroy(&img->lock);
        free(img);
        return rfs_lib_err(err);
    }
    *out = img;
    return RANSFS_OK;
}

void ransfs_close(ransfs *img)
{
    if (!img)
        return;
    rfs_lib_gpus_free(img);
    for (size_t i = 0; i < img->n_spare; i++)
        rfs_rctx_destroy(img->spare[i]);
    free(img->spare);
    rfs_image_close(img->img);
    pthread_mutex_destroy(&img->lock);
    free(img);
}

/* ------------------------------------------------------ decode contexts */

rfs_rctx *rfs_lib_ctx_get(ransfs *img)
{
    rfs_rctx *ctx = NULL;
    pthread_mutex_lock(&img->lock);
    if (img->n_spare)
        ctx = img->spare[--img->n_spare];
    pthread_mutex_unlock(&img->lock);
    return ctx ? ctx : rfs_rctx_create(img->img);
}

void rfs_lib_ctx_put(ransfs *img, rfs_rctx *ctx)
{
    if (!ctx)
        return;
    pthread_mutex_lock(&img->lock);
    if (img->n_spare == img->cap_spare) {
        size_t cap = img->cap_spare ? 2 * img->cap_spare : 4;
        rfs_rctx **s = realloc(img->spare, cap * sizeof *s);
        if (s) {
            img->spare = s;
            img->cap_spare = cap;
        }
    }
    int kept = img->n_spare < img->cap_spare;
    if (kept)
        img->spare[img->n_spare++] = ctx;
    pthread_mutex_unlock(&img->lock);
    if (!kept)
        rfs_rctx_destroy(ctx); /* no memory to keep it: just free it */
}

/* ------------------------------------------------------------ namespace */

static void stat_out(struct ransfs_stat *dst, const rfs_stat *src)
{
    dst->ino = src->ino;
    dst->mode = src->mode;
    dst->nlink = src->nlink;
    dst->size = src->size;
    dst->mtime_sec = src->mtime_sec;
    dst->mtime_nsec = src->mtime_nsec;
}

ransfs_err rfs_lib_resolve(const ransfs *img, const char *path, uint64_t *ino, rfs_stat *st)
{
    rfs_err err = rfs_image_lookup_path(img->img, path, ino);
    if (err == RFS_OK)
        err = rfs_image_stat(img->img, *ino, st);
    return rfs_lib_err(err);
}

ransfs_err rfs_lib_resolve_file(const ransfs *img, const char *path, uint64_t *ino,
                               uint64_t *size)
{
    rfs_stat st;
    ransfs_err err = rfs_lib_resolve(img, path, ino, &st);
    if (err)
        return err;
    if (S_ISDIR(st.mode))
        return RANSFS_E_ISDIR;
    if (!S_ISREG(st.mode))
        return RANSFS_E_INVAL;
    *size = st.size;
    return RANSFS_OK;
}

ransfs_err ransfs_stat(ransfs *img, const char *path, struct ransfs_stat *st)
{
    if (!img || !path || !st)
        return RANSFS_E_INVAL;
    uint64_t ino;
    rfs_stat rs;
    ransfs_err err = rfs_lib_resolve(img, path, &ino, &rs);
    if (err == RANSFS_OK)
        stat_out(st, &rs);
    return err;
}

ransfs_err ransfs_dir_count(ransfs *img, const char *path, uint64_t *n)
{
    if (!img || !path || !n)
        return RANSFS_E_INVAL;
    uint64_t ino;
    rfs_err err = rfs_image_lookup_path(img->img, path, &ino);
    if (err == RFS_OK)
        err = rfs_image_dir_count(img->img, ino, n);
    return rfs_lib_err(err);
}

ransfs_err ransfs_dir_entry(ransfs *img, const char *path, uint64_t idx, const char **name,
                            struct ransfs_stat *st)
{
    if (!img || !path || !name)
        return RANSFS_E_INVAL;
    uint64_t dir, count, child;
    rfs_err err = rfs_image_lookup_path(img->img, path, &dir);
    if (err == RFS_OK)
        err = rfs_image_dir_count(img->img, dir, &count);
    if (err)
        return rfs_lib_err(err);
    if (idx >= count)
        return RANSFS_E_RANGE;
    const char *nm;
    rfs_stat rs;
    if ((err = rfs_image_dir_entry(img->img, dir, idx, &child, &nm)) ||
        (st && (err = rfs_image_stat(img->img, child, &rs))))
        return rfs_lib_err(err);
    *name = nm;
    if (st)
        stat_out(st, &rs);
    return RANSFS_OK;
}

ransfs_err ransfs_readlink(ransfs *img, const char *path, const char **target)
{
    if (!img || !path || !target)
        return RANSFS_E_INVAL;
    uint64_t ino;
    rfs_err err = rfs_image_lookup_path(img->img, path, &ino);
    if (err == RFS_OK)
        err = rfs_image_readlink(img->img, ino, target);
    return rfs_lib_err(err);
}

/* ------------------------------------------------------------ file data */

ransfs_err ransfs_read(ransfs *img, const char *path, uint64_t off, void *buf, size_t len,
                       size_t *got)
{
    if (got)
        *got = 0;
    if (!img || !path || !got || (!buf && len))
        return RANSFS_E_INVAL;
    uint64_t ino, size;
    ransfs_err err = rfs_lib_resolve_file(img, path, &ino, &size);
    if (err || off >= size || len == 0)
        return err;
    rfs_rctx *ctx = rfs_lib_ctx_get(img);
    if (!ctx)
        return RANSFS_E_NOMEM;
    size_t n = 0;
    rfs_err e = rfs_image_read(img->img, ctx, ino, off, len, buf, &n);
    rfs_lib_ctx_put(img, ctx);
    if (e)
        return rfs_lib_err(e);
    *got = n;
    return RANSFS_OK;
}
