/*
 * rfs_gpu_internal.h - internal: the rfs_gpu object, shared by the host
 * files of cuda/ (rfs_gpu.c, rfs_gpu_image.c).  Includes the CUDA runtime
 * API (a C header); nothing outside cuda/ includes this.
 */
#ifndef RFS_GPU_INTERNAL_H
#define RFS_GPU_INTERNAL_H

#include <cuda_runtime_api.h>

#include "rfs_gpu.h"
#include "rfs_gpu_plan.h"

/* One batch in flight: its stream, staging buffers and units. */
typedef struct rfs_gpu_slot {
    cudaStream_t stream;
    cudaEvent_t done;
    uint8_t *h_stage, *d_stage; /* encoded input, then the descriptors */
    uint8_t *h_out, *d_out;     /* host-to-host: decoded tiles */
    uint8_t *d_scratch;         /* decoded rANS planes */
    uint32_t *h_err, *d_err;    /* per tile */
    rfs_gpu_plan plan;
    size_t *unit;               /* caller's index of each planned tile */
    uint32_t *tile;
    uint64_t *off;              /* host-to-host: offset in h_out */
    size_t n;
    int busy;                   /* launched, not yet finished */
    int failed;                 /* a CUDA call of this batch failed */
} rfs_gpu_slot;

struct rfs_gpu {
    rfs_gpu_opts o;
    char name[320];
    size_t in_cap, meta_cap, scratch_cap, out_cap, max_tiles, max_chunks;
    rfs_gpu_slot slot[2];
    rfs_dec *cpu;           /* CPU fallback */
    uint8_t *cpu_buf;       /* max_unit bytes: a fallback tile for the device path */
    uint8_t *h_bounce;      /* pinned, bounce_cap: bytes uploaded as they are */
    size_t bounce_cap;
    int broken;             /* a CUDA failure: CPU only from now on */
    rfs_gpu_stats st;
};

/* Record a CUDA failure (log once); returns 0 when e is an error. */
int rfs_gpu_cuda_ok(rfs_gpu *g, cudaError_t e, const char *what);

#endif
