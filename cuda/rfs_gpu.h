/*
 * rfs_gpu.h - batch tile decode on an NVIDIA GPU, with a CPU fallback.
 * A C header with no CUDA types: fs/, the tools and loaders include it.
 *
 * Two ways in:
 *  - rfs_gpu_decode_batch: host to host.  Encoded tiles (e.g. inside the
 *    image mapping) are gathered into pinned staging buffers, copied to the
 *    GPU, decoded, and the decoded tiles copied back into the caller's
 *    buffers (the daemon's tile cache).  Two batches are in flight (the next
 *    one is gathered and copied in while the current one decodes).
 *  - rfs_gpu_decode_to_device / rfs_gpu_read_to_device: decoded bytes land
 *    in device memory the caller owns; only compressed bytes cross PCIe.
 *
 * Contract:
 *  - Memory: an rfs_gpu owns its pinned and device staging buffers (about
 *    2 x (2.3 x batch_bytes) pinned and 2 x (3.3 x batch_bytes) device);
 *    the caller owns every unit, source and destination.
 *  - Threads: an rfs_gpu is used by one thread at a time (the daemon holds a
 *    lock around it); several may exist in one process.
 *  - Errors: per-unit rfs_err codes are exactly what rfs_tile_decode gives
 *    (a tile the GPU flags is re-decoded on the CPU, which names the error).
 *    A CUDA failure is reported once through opts.log; the decoder then
 *    marks itself unusable and rfs_gpu_decode_batch carries on on the CPU,
 *    while the to-device calls return RFS_E_GPU.
 *  - Without CUDA support in the build (CMake's RFS_HAVE_CUDA off), the
 *    library rfs_gpu is cuda/rfs_gpu_none.c instead: the same functions,
 *    no device, create fails with RFS_E_GPU and the reason.  Callers link
 *    rfs_gpu either way and need no #ifdef (rfs_gpu_build tells which).
 */
#ifndef RFS_GPU_H
#define RFS_GPU_H

#include <stddef.h>
#include <stdint.h>

#include "rfs_image.h"
#include "rfs_tile.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rfs_gpu rfs_gpu;

typedef struct rfs_gpu_opts {
    int device;          /* CUDA device ordinal (default 0) */
    size_t batch_bytes;  /* decoded bytes per batch (default 64 MiB, min 1 MiB) */
    size_t max_unit;     /* largest decoded unit, bytes (default 4 MiB) */
    /* Called (at most once per failure) with a one-line message when a
     * CUDA call fails; may be NULL. */
    void (*log)(void *ctx, const char *msg);
    void *log_ctx;
} rfs_gpu_opts;

/* Counters since create (for stats). */
typedef struct rfs_gpu_stats {
    uint64_t batches;      /* GPU launches */
    uint64_t units_gpu;    /* units decoded on the GPU */
    uint64_t units_cpu;    /* units decoded on the CPU (fallback) */
    uint64_t bytes_gpu;    /* decoded bytes produced on the GPU */
    uint64_t cuda_errors;
} rfs_gpu_stats;

/* A unit for host-to-host decode. */
typedef struct rfs_gpu_unit {
    const uint8_t *src;          /* encoded tile */
    size_t src_size;
    size_t decoded_size;         /* its decoded size (n*W) */
    const rfs_table_set *shared; /* tensor tables, NULL if none */
    void *dst;                   /* decoded_size bytes, host memory */
    rfs_err err;                 /* out: RFS_OK or the tile's decode error */
    int on_gpu;                  /* out: 1 when the GPU decoded it */
} rfs_gpu_unit;

/* A unit for decode into device memory: decoded bytes [lo, hi) of the
 * tile go to dev_dst + dst_off. */
typedef struct rfs_gpu_dev_unit {
    const uint8_t *src;
    size_t src_size;
    size_t decoded_size;
    const rfs_table_set *shared;
    uint64_t dst_off;
    uint32_t lo, hi;
    rfs_err err;                 /* out */
} rfs_gpu_dev_unit;

/* What this build's rfs_gpu is: "cuda" (the CUDA decoder) or "not built"
 * (rfs_gpu_none.c).  A static string; thread-safe. */
const char *rfs_gpu_build(void);

/* Fill opts with the defaults. */
void rfs_gpu_opts_default(rfs_gpu_opts *opts);

/* Number of usable CUDA devices; 0 without a driver or device.  Never fails. */
int rfs_gpu_device_count(void);

/*
 * Create a decoder on opts->device (opts may be NULL for the defaults):
 * allocates streams and staging buffers.  On failure *gpu is NULL and a
 * one-line reason goes to why (when non-NULL).
 * Errors: RFS_E_GPU (no device, CUDA failure, out of device memory),
 * RFS_E_NOMEM, RFS_E_ARG.
 */
rfs_err rfs_gpu_create(rfs_gpu **gpu, const rfs_gpu_opts *opts, char *why, size_t why_cap);
void rfs_gpu_destroy(rfs_gpu *gpu);

/* "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs)" or similar. */
const char *rfs_gpu_name(const rfs_gpu *gpu);

/* 1 while the GPU path works; 0 after a CUDA failure (CPU from then on). */
int rfs_gpu_usable(const rfs_gpu *gpu);

void rfs_gpu_get_stats(const rfs_gpu *gpu, rfs_gpu_stats *st);

/*
 * Decode n units into their host dst buffers.  Every unit is attempted:
 * on return each unit's err and on_gpu are set.  Tiles the GPU cannot take
 * (bad header or table, too large) or flags (bad stream) are decoded on the
 * CPU.  Returns RFS_OK, or RFS_E_ARG for a NULL gpu/units.
 */
rfs_err rfs_gpu_decode_batch(rfs_gpu *gpu, rfs_gpu_unit *units, size_t n);

/*
 * Decode n units into device memory dev_dst (dev_cap bytes, from
 * cudaMalloc or cudaMallocManaged).  Synchronous: returns when every byte
 * is in place.  Each unit's err is set.  Returns RFS_OK when all units
 * decoded, RFS_E_GPU when the GPU failed (dev_dst contents then undefined),
 * else the first unit's error.  A unit whose range falls outside dev_cap
 * gets RFS_E_ARG.
 */
rfs_err rfs_gpu_decode_to_device(rfs_gpu *gpu, void *dev_dst, size_t dev_cap,
                                 rfs_gpu_dev_unit *units, size_t n);

/*
 * Read bytes [off, off+len) of regular file ino of an open image straight
 * into device memory dev_dst (at least len bytes).  Tensor tiles decode on
 * the GPU; RAW extents and zstd units go up as bytes (zstd decoded on the
 * CPU).  A tensor is a byte range of its file (for safetensors: 8 + header
 * length + its data_offsets).  *got receives the bytes read (less than len
 * only at end of file).  Errors: RFS_E_GPU, RFS_E_CHECKSUM, image errors,
 * tile decode errors.
 */
rfs_err rfs_gpu_read_to_device(rfs_gpu *gpu, const rfs_image *img, uint64_t ino, uint64_t off,
                               size_t len, void *dev_dst, size_t *got);

/* Device memory on the decoder's GPU, for callers without CUDA headers
 * (tests, benchmarks, simple loaders).  alloc returns NULL on failure. */
void *rfs_gpu_dev_alloc(rfs_gpu *gpu, size_t size);
void rfs_gpu_dev_free(rfs_gpu *gpu, void *dev);
/* Copy size bytes from device memory to host memory.  Errors: RFS_E_GPU. */
rfs_err rfs_gpu_dev_download(rfs_gpu *gpu, void *dst, const void *dev_src, size_t size);
/* Set size bytes of device memory to byte.  Errors: RFS_E_GPU. */
rfs_err rfs_gpu_dev_fill(rfs_gpu *gpu, void *dev, int byte, size_t size);
/* Copy size bytes from host memory src to device memory (synchronous).
 * Errors: RFS_E_GPU. */
rfs_err rfs_gpu_dev_upload(rfs_gpu *gpu, void *dev_dst, const void *src, size_t size);
/* Pinned (page-locked) host memory, e.g. for a loader's own uploads (the
 * benchmark's uncompressed baseline).  alloc returns NULL on failure; free
 * takes NULL. */
void *rfs_gpu_host_alloc(rfs_gpu *gpu, size_t size);
void rfs_gpu_host_free(rfs_gpu *gpu, void *host);

/*
 * Benchmark support: plan the first units that fit in one batch (tiles the
 * GPU refuses are skipped), upload them once, then time iters runs of the
 * two kernels with CUDA events.  *seconds: kernel time of one run; *bytes:
 * decoded bytes of one run; *n_used: units in the batch.  Returns
 * RFS_E_CORRUPT when the kernel flags a tile.  Errors: RFS_E_GPU, RFS_E_ARG.
 */
rfs_err rfs_gpu_bench_kernels(rfs_gpu *gpu, const rfs_gpu_unit *units, size_t n, unsigned iters,
                              double *seconds, uint64_t *bytes, size_t *n_used);

#ifdef __cplusplus
}
#endif
#endif
