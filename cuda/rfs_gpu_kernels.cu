/*
 * rfs_gpu_kernels.cu - the two kernels of a batch (design: rfs_gpu_warp.h
 * and docs/gpu.md).  Every per-lane computation is an inline function of
 * rfs_rans_lane.h / rfs_gpu_warp.h, shared with the CPU warp emulator in
 * tests/cuda/test_warp_emu.c; this file adds only the warp intrinsics
 * (ballot, popcount, shuffle, any) and the loops around them, which the
 * emulator mirrors line for line.
 */
#define RFS_HD __host__ __device__
#include "rfs_rans_lane.h"
#include "rfs_gpu_launch.h"
#include "rfs_gpu_warp.h"

#include <cuda_runtime.h>

#define FULL_MASK 0xffffffffu

/* Block's decode table: warp w fills the slots of symbols w, w+WARPS, ...;
 * lane j writes slots start+j, start+j+32, ... (the emulator's order). */
static __device__ void build_table(uint32_t *dec, const uint32_t *rec, unsigned warp,
                                   unsigned lane)
{
    for (unsigned s = warp; s < 256; s += RFS_GPU_WARPS) {
        uint32_t r = __ldg(rec + s), f = r & 0xffffu, st = r >> 16;
        uint32_t e = rfs_gw_dec_entry(s, r);
        for (uint32_t i = lane; i < f; i += 32)
            dec[st + i] = e;
    }
}

/* One warp decodes one rANS plane into scratch; returns 0 or an rfs_err.
 * CTX: a RANS_CTX plane, dec its two tables, each symbol's picked by its
 * element's byte in plane W-1.  Every branch on a warp-wide value is
 * uniform, so all 32 lanes reach every ballot and shuffle. */
template <bool CTX>
static __device__ uint32_t decode_plane(const rfs_gpu_view &v, rfs_gpu_task task,
                                        const uint32_t *dec, unsigned lane)
{
    const rfs_gpu_tile_desc *t = v.tiles + task.tile;
    const rfs_gpu_plane_desc *pd = &t->plane[task.plane];
    const uint32_t n = t->n;
    const uint8_t *stream = v.in + pd->off;
    const uint8_t *words = stream + RFS_STATES_SIZE;
    const uint32_t nwords = (pd->size - RFS_STATES_SIZE) / 2;
    uint8_t *out = v.scratch + pd->scratch;

    uint32_t x = rfs_gw_state(stream, lane);
    if (__any_sync(FULL_MASK, rfs_gw_state_bad(x)))
        return RFS_E_STATE;
    uint32_t w0 = rfs_gw_pair(words, nwords, rfs_gw_line_pair(0, lane));
    uint32_t w1 = rfs_gw_pair(words, nwords, rfs_gw_line_pair(1, lane));
    uint32_t w2 = rfs_gw_pair(words, nwords, rfs_gw_line_pair(2, lane));
    uint32_t pos = 0, base = 0;
    const uint32_t steps = (uint32_t)(((uint64_t)n + 31) / 32);
    for (uint32_t k = 0; k < steps; k++) {
        int need = 0;
        if (lane < n - 32u * k) { /* all lanes but in the last step */
            uint8_t s;
            const uint32_t *d = dec;
            if (CTX)
                d = rfs_gw_ctx_table(dec,
                                     rfs_gw_ctx_byte(&t->plane[t->width - 1u], v.in, v.scratch,
                                                     32u * k + lane),
                                     pd->value);
            x = rfs_lane_decode(x, d, &s);
            out[32u * k + lane] = s;
            need = rfs_lane_needs_word(x);
        }
        const uint32_t mask = __ballot_sync(FULL_MASK, need);
        const uint32_t cnt = rfs_lane_popc(mask);
        if (cnt > nwords - pos)
            return RFS_E_OVERRUN;
        const uint32_t r = pos - base + rfs_lane_word_index(mask, lane);
        const uint32_t v0 = __shfl_sync(FULL_MASK, w0, rfs_gw_src_lane(r));
        const uint32_t v1 = __shfl_sync(FULL_MASK, w1, rfs_gw_src_lane(r));
        if (need)
            x = rfs_lane_refill(x, rfs_gw_pick(v0, v1, r));
        pos += cnt;
        if (pos - base >= 64) { /* slide the window one line; prefetch the next */
            base += 64;
            w0 = w1;
            w1 = w2;
            w2 = rfs_gw_pair(words, nwords, rfs_gw_line_pair(base / 64 + 2, lane));
        }
    }
    if (pos != nwords)
        return RFS_E_TRAILING;
    if (__any_sync(FULL_MASK, x != RFS_LANE_L))
        return RFS_E_FINAL_STATE;
    return RFS_OK;
}

/* Kernel 1: one block per job (a table and up to RFS_GPU_WARPS planes). */
__global__ void __launch_bounds__(RFS_GPU_WARPS * 32, 12) rfs_gpu_decode_kernel(rfs_gpu_view v)
{
    __shared__ uint32_t dec[RFS_PROB_SCALE];
    const rfs_gpu_job job = v.jobs[blockIdx.x];
    const unsigned warp = threadIdx.x >> 5, lane = threadIdx.x & 31u;
    build_table(dec, v.tables + (size_t)job.table * RFS_GPU_TABLE_WORDS, warp, lane);
    __syncthreads();
    if (warp >= job.count)
        return;
    const rfs_gpu_task task = v.tasks[job.first + warp];
    const uint32_t err = decode_plane<false>(v, task, dec, lane);
    if (err && lane == 0)
        v.err[task.tile] = err;
}

/* Kernel 1b: one block of one warp per RANS_CTX plane, after kernel 1 (the
 * plane's context may be a plane kernel 1 decodes).  Both tables are built
 * as kernel 1 builds one, lane j writing slots start+j, start+j+32, ... */
__global__ void __launch_bounds__(32) rfs_gpu_ctx_kernel(rfs_gpu_view v)
{
    __shared__ uint32_t dec[2 * RFS_PROB_SCALE];
    const rfs_gpu_ctx_job job = v.ctx_jobs[blockIdx.x];
    const unsigned lane = threadIdx.x;
    for (unsigned c = 0; c < 2; c++)
        for (unsigned w = 0; w < RFS_GPU_WARPS; w++)
            build_table(dec + c * RFS_PROB_SCALE,
                        v.tables + (size_t)(job.table + c) * RFS_GPU_TABLE_WORDS, w, lane);
    __syncwarp();
    if (v.err[job.tile]) /* the context plane failed: the host decodes the tile */
        return;
    const rfs_gpu_task task = {job.tile, job.plane};
    const uint32_t err = decode_plane<true>(v, task, dec, lane);
    if (err && lane == 0)
        v.err[job.tile] = err;
}

/* Kernel 2 body for width W (constant, so the group code unrolls). */
template <unsigned W>
static __device__ void interleave_chunk(const rfs_gpu_view &v, const rfs_gpu_chunk &c,
                                        const rfs_gpu_tile_desc *t)
{
    const unsigned xf = t->xf;
    for (uint32_t g = c.first + threadIdx.x; g < c.first + c.count; g += RFS_GPU_IL_THREADS) {
        uint32_t pw[4] = {0, 0, 0, 0}, o[4];
#pragma unroll
        for (unsigned p = 0; p < W; p++)
            pw[p] = rfs_gi_plane_word(&t->plane[p], v.in, v.scratch, g);
        rfs_gi_group(o, pw, W, xf);
        rfs_gi_store(v.out, t, g, o);
    }
}

/* Kernel 2: one block per chunk of up to RFS_GPU_IL_GROUPS groups of a tile. */
__global__ void __launch_bounds__(RFS_GPU_IL_THREADS) rfs_gpu_interleave_kernel(rfs_gpu_view v)
{
    const rfs_gpu_chunk c = v.chunks[blockIdx.x];
    if (v.err[c.tile]) /* the host decodes this tile on the CPU */
        return;
    const rfs_gpu_tile_desc *t = v.tiles + c.tile;
    if (t->width == 1)
        interleave_chunk<1>(v, c, t);
    else if (t->width == 2)
        interleave_chunk<2>(v, c, t);
    else
        interleave_chunk<4>(v, c, t);
}

extern "C" int rfs_gpu_launch(const rfs_gpu_view *v, void *stream)
{
    cudaStream_t s = (cudaStream_t)stream;
    if (v->n_jobs)
        rfs_gpu_decode_kernel<<<v->n_jobs, RFS_GPU_WARPS * 32, 0, s>>>(*v);
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess && v->n_ctx_jobs) {
        rfs_gpu_ctx_kernel<<<v->n_ctx_jobs, 32, 0, s>>>(*v);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess && v->n_chunks)
        rfs_gpu_interleave_kernel<<<v->n_chunks, RFS_GPU_IL_THREADS, 0, s>>>(*v);
    return e == cudaSuccess ? (int)cudaGetLastError() : (int)e;
}
