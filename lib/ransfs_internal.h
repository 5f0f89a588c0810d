/*
 * ransfs_internal.h - what the files of libransfs share: the open image
 * object and the conversion of the reader's rfs_err codes to ransfs_err.
 * Not installed.
 */
#ifndef RANSFS_INTERNAL_H
#define RANSFS_INTERNAL_H

#include <pthread.h>

#include "ransfs.h"
#include "rfs_image.h"

/* A GPU decoder kept per CUDA device (rfs_gpu is one thread at a time). */
typedef struct rfs_lib_gpu_slot {
    int device;
    struct rfs_gpu *gpu;
    pthread_mutex_t lock;
    struct rfs_lib_gpu_slot *next;
} rfs_lib_gpu_slot;

struct ransfs {
    rfs_image *img;
    pthread_mutex_t lock;    /* guards spare and gpus */
    rfs_rctx **spare;        /* decode contexts not in use, for ransfs_read */
    size_t n_spare, cap_spare;
    rfs_lib_gpu_slot *gpus;   /* created on first use of each device */
};

/* The public code for a reader error: every damage is RANSFS_E_CORRUPT. */
ransfs_err rfs_lib_err(rfs_err err);

/* Inode of path, with its stat.  Errors: those of the lookup. */
ransfs_err rfs_lib_resolve(const ransfs *img, const char *path, uint64_t *ino, rfs_stat *st);

/* Inode and size of regular file path.  Errors: rfs_lib_resolve's,
 * RANSFS_E_ISDIR, RANSFS_E_INVAL (not a regular file). */
ransfs_err rfs_lib_resolve_file(const ransfs *img, const char *path, uint64_t *ino,
                               uint64_t *size);

/* Check the arguments of a read_tensors call: a regular file (its inode in
 * *ino), every range inside it, a dst for every non-empty range. */
ransfs_err rfs_lib_ranges_check(const ransfs *img, const char *path, const ransfs_tensor *t,
                               size_t n, void *const *dst, uint64_t *ino);

/* A decode context for the calling thread: a spare one or a new one; NULL
 * without memory.  Give it back with rfs_lib_ctx_put. */
rfs_rctx *rfs_lib_ctx_get(ransfs *img);
void rfs_lib_ctx_put(ransfs *img, rfs_rctx *ctx);

/* Free every GPU decoder of img (ransfs_device.c). */
void rfs_lib_gpus_free(ransfs *img);

#endif
