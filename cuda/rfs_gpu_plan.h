/*
 * rfs_gpu_plan.h - internal: turn a list of encoded tiles into one GPU
 * batch (the descriptor arrays of rfs_gpu_warp.h).  Plain C, no CUDA: the
 * CUDA host code and the CPU warp emulator test build batches with it.
 *
 * Contract:
 *  - The plan copies each accepted tile's encoded bytes into the caller's
 *    input staging buffer (pinned memory on the GPU path) and records its
 *    header, planes, rANS tasks and table records (a RANS_CTX plane: a
 *    kernel 1b job with its two tables).  Tile headers and per-tile
 *    frequency tables are checked by the codec's parser (rfs_tile_parse,
 *    rfs_plane_parse_rans, rfs_plane_parse_ctx: the CPU decoder's own); a tile
 *    that fails is not added and the caller decodes it on the CPU (which
 *    returns the precise error).  The rANS streams themselves are checked
 *    by the kernel.
 *  - Memory: the plan owns its descriptor arrays (grown with realloc, kept
 *    across rfs_gpu_plan_reset); the caller owns the staging buffer.
 *  - Threads: a plan is used by one thread at a time.
 */
#ifndef RFS_GPU_PLAN_H
#define RFS_GPU_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "rfs_gpu_warp.h"
#include "rfs_tile.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rfs_gpu_plan {
    /* input staging, owned by the caller; in_cap excludes RFS_GPU_SLACK */
    uint8_t *in;
    size_t in_cap, in_used;
    size_t scratch_cap, scratch_used; /* bytes of decoded rANS planes */
    size_t out_cap, out_used;         /* auto-placed outputs (RFS_GPU_OUT_AUTO) */
    size_t max_tiles;                 /* 0: unlimited */
    size_t max_chunks;                /* 0: unlimited (set after init) */

    rfs_gpu_tile_desc *tiles;
    rfs_gpu_task *tasks;     /* in job order after rfs_gpu_plan_finish */
    uint32_t *task_table;    /* table of each task (before finish) */
    rfs_gpu_job *jobs;
    rfs_gpu_chunk *chunks;
    uint32_t *tables;        /* RFS_GPU_TABLE_WORDS per table */
    rfs_gpu_ctx_job *ctx_jobs; /* RANS_CTX planes (kernel 1b), two tables each */
    size_t n_tiles, n_tasks, n_jobs, n_chunks, n_tables, n_ctx_jobs;
    size_t cap_tiles, cap_tasks, cap_task_table, cap_jobs, cap_chunks, cap_tables, cap_ctx_jobs;

    /* shared tables already recorded in this batch: open addressing */
    const rfs_table **shared_key;
    uint32_t *shared_idx;
    size_t shared_cap; /* power of two */
    size_t n_shared;

    /* finish scratch */
    uint32_t *sort_count;
    rfs_gpu_task *sort_tmp;
    size_t cap_sort_count, cap_sort_tmp;
} rfs_gpu_plan;

/* What rfs_gpu_plan_add did with a tile. */
typedef enum rfs_gpu_plan_res {
    RFS_GPU_PLANNED = 0, /* added: it decodes on the GPU */
    RFS_GPU_FULL = 1,    /* no room left in this batch: plan unchanged */
    RFS_GPU_CPU = 2,     /* not added: decode on the CPU (*why holds the reason) */
} rfs_gpu_plan_res;

/* out value meaning "place the output in the plan's own output area". */
#define RFS_GPU_OUT_AUTO UINT64_MAX

/* Initialise an empty plan over a staging buffer of in_cap bytes (+ RFS_GPU_SLACK). */
void rfs_gpu_plan_init(rfs_gpu_plan *p, uint8_t *in, size_t in_cap, size_t scratch_cap,
                       size_t out_cap, size_t max_tiles);
void rfs_gpu_plan_free(rfs_gpu_plan *p);
/* Empty the plan for the next batch (keeps its arrays). */
void rfs_gpu_plan_reset(rfs_gpu_plan *p);

/*
 * Add one tile.  src/src_size: the encoded tile; decoded_size: the size its
 * decode must have (n*W); shared: the tensor's tables (may be NULL).  The
 * decoded bytes [win_lo, win_hi) go to out (an offset from the launch's
 * out_base), or with out == RFS_GPU_OUT_AUTO all of them to a fresh
 * RFS_GPU_ALIGN-aligned place in the plan's output area.  *tile_idx and
 * *out_off receive the tile's index and output offset when planned; *why
 * receives the reason when the result is RFS_GPU_CPU.  RFS_GPU_FULL is
 * never returned for a tile added to an empty plan that could fit at all;
 * a tile larger than an empty plan gives RFS_GPU_CPU with RFS_E_TOO_BIG.
 */
rfs_gpu_plan_res rfs_gpu_plan_add(rfs_gpu_plan *p, const uint8_t *src, size_t src_size,
                                  size_t decoded_size, const rfs_table_set *shared, uint64_t out,
                                  uint32_t win_lo, uint32_t win_hi, uint32_t *tile_idx,
                                  uint64_t *out_off, rfs_err *why);

/* Group the tasks into jobs by table (once per batch, after the last add).
 * Errors: RFS_E_NOMEM. */
rfs_err rfs_gpu_plan_finish(rfs_gpu_plan *p);

#ifdef __cplusplus
}
#endif
#endif
