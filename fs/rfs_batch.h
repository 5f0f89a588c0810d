/*
 * rfs_batch.h - batch decode: many units of an image into caller buffers.
 *
 * The daemon sends every group of missing units (the misses of one read, or
 * one prefetch window) through this interface.  A backend is a small struct
 * of function pointers, so the CPU implementation below and the GPU one
 * (rfs_batch_gpu.c over cuda/rfs_gpu.h, optional) plug in the same way; the
 * daemon picks per batch:
 * the GPU when present and the batch holds at least its min_bytes of decoded
 * data, else the CPU.
 *
 * Contract (for every backend):
 *  - decode() is blocking: it returns when every item has its err and
 *    dst_size set.  One failing item never stops the others.  Items are
 *    checked (rfs_image_unit_check) and decoded exactly like
 *    rfs_image_unit_decode: an item gets RFS_OK and the exact bytes, or an
 *    error; never wrong bytes.
 *  - decode() may be called by many threads at once on one backend.
 *  - Memory: the caller owns items and dst buffers (host memory, dst_cap >=
 *    the unit's decoded size) for the duration of the call; the backend owns
 *    its own state, freed by close().
 *  - A backend should drop its mapping of the encoded bytes it has read
 *    (madvise MADV_DONTNEED on the image pages, see rfs_batch_cpu.c), or the
 *    image's pages accumulate in the daemon's RSS.
 *  - A backend that hits an internal failure (e.g. a CUDA error) must still
 *    produce correct results, e.g. by decoding on the CPU, and may report
 *    the failure through its own log.
 *  - No FUSE here.
 */
#ifndef RFS_BATCH_H
#define RFS_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "rfs_image.h"
#include "rfs_hist.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rfs_batch_item {
    uint64_t unit;   /* in: unit number (rfs_image.h) */
    void *dst;       /* in: where the decoded bytes go */
    size_t dst_cap;  /* in: capacity of dst */
    size_t dst_size; /* out: decoded bytes written */
    rfs_err err;     /* out: RFS_OK, or why this unit failed */
} rfs_batch_item;

struct rfs_batch_stats;

typedef struct rfs_batch {
    const char *name; /* "cpu", "cuda", ... for stats and logs */
    void *self;       /* backend state */
    /*
     * Decode items[0..n).  background = 1 for prefetch: the backend may
     * give it lower priority than demand reads.
     */
    void (*decode)(void *self, rfs_batch_item *items, size_t n, int background);
    /* The daemon sends a batch here only when it holds >= min_bytes. */
    size_t min_bytes;
    /* Free the backend (no decode may be running). */
    void (*close)(void *self);
    /* Optional (may be NULL): the backend's own counters, for the stats. */
    void (*get_stats)(void *self, struct rfs_batch_stats *st);
} rfs_batch;

/* Counters of a backend that has its own device (all since open). */
typedef struct rfs_batch_stats {
    uint64_t launches;    /* device launches (a decode call may need several) */
    uint64_t units_dev;   /* units decoded on the device */
    uint64_t units_cpu;   /* units of its batches decoded on the CPU instead:
                           * zstd units, tiles the device refused or flagged,
                           * and everything after a device failure */
    uint64_t dev_errors;  /* failed device (CUDA) calls */
    int usable;           /* 0 once a device failure turned it to the CPU */
} rfs_batch_stats;

struct rfs_pool;

/*
 * The CPU backend: items spread over pool's workers and the calling thread,
 * each thread with its own rfs_rctx (created on first use, destroyed when
 * the thread exits or at close).  Where a batch holds more items than
 * there are threads, some go two at a time (rfs_image_unit_decode2), with
 * the same per-item results.  Each unit's decode time in nanoseconds (half
 * a pair's) is added to hist when hist is non-NULL.  img, pool and hist
 * must outlive the backend.  Errors: RFS_E_NOMEM.
 */
rfs_err rfs_batch_cpu_open(rfs_batch *b, const rfs_image *img, struct rfs_pool *pool,
                           rfs_hist *hist);

/*
 * Drop the daemon's mapping of a unit's encoded bytes once it is decoded
 * (madvise MADV_DONTNEED): they stay in the page cache, but not in the
 * daemon's RSS.  A local image is dropped in whole 2 MiB regions: with
 * in_stream (a prefetch batch, decoded in unit order) the regions behind
 * the stream once this unit completes one, else the regions the unit's
 * pages lie in.  For every backend; harmless on a bad unit number.
 * Thread-safe.
 */
void rfs_batch_drop_source(const rfs_image *img, uint64_t unit, int in_stream);
/* Start reading unit's encoded bytes into the page cache (MADV_WILLNEED),
 * so a batch's cold reads are issued together rather than fault by fault.
 * The CPU backend does this for batches a read waits on; its workers map
 * each unit in just before decoding it (MADV_POPULATE_READ). */
void rfs_batch_want_source(const rfs_image *img, uint64_t unit);

typedef struct rfs_gpu_batch_opts {
    /* The CPU backend: zstd units go there, and whole batches once the GPU
     * has failed.  Required; must outlive the GPU backend. */
    const rfs_batch *cpu;
    /* min_bytes of the backend; 0 = RFS_GPU_BATCH_MIN. */
    size_t min_bytes;
    /* Called once with one line (no newline) when a CUDA call fails; may
     * be NULL. */
    void (*log)(void *log_ctx, const char *line);
    void *log_ctx;
} rfs_gpu_batch_opts;

/* Default smallest batch (decoded bytes) worth a trip to the GPU. */
#define RFS_GPU_BATCH_MIN (8u << 20)

/*
 * The GPU backend (fs/rfs_batch_gpu.c over cuda/rfs_gpu.h), in every build:
 * without CUDA, rfs_gpu_create fails and so does this, with the reason
 * ("this build has no GPU support ...").  One rfs_gpu decoder behind a
 * lock: concurrent decode() calls take turns on the GPU.  Each unit is
 * checked (XXH3) on the CPU, then its tile decodes on the GPU; tiles the
 * GPU refuses or flags decode on the CPU with the CPU decoder's error, zstd
 * units go to opts->cpu.  A CUDA failure is logged once and every later
 * batch goes to opts->cpu.  Fills b, or returns RFS_E_GPU with a one-line
 * reason in why (no device, driver too old, out of device memory), or
 * RFS_E_NOMEM / RFS_E_ARG.  Its buffers are sized for the image's largest
 * unit and about 16 MiB batches (docs/gpu.md).
 */
rfs_err rfs_gpu_batch_open(rfs_batch *b, const rfs_image *img, const rfs_gpu_batch_opts *opts,
                           char *why, size_t why_cap);

#ifdef __cplusplus
}
#endif
#endif
