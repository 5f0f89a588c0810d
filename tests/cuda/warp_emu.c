/*
 * warp_emu.c - see warp_emu.h.
 */
#include <stddef.h>
#include <stdint.h>

#include "rfs_gpu_warp.h"
#include "rfs_rans_lane.h"
#include "warp_emu.h"

#define LANES 32u

/* Kernel 1, table build: warp w fills the slots of symbols w, w+WARPS, ...;
 * lane j writes slots start+j, start+j+32, ... */
static void emu_build_table(uint32_t dec[RFS_PROB_SCALE], const uint32_t *rec)
{
    for (unsigned w = 0; w < RFS_GPU_WARPS; w++)
        for (unsigned s = w; s < 256; s += RFS_GPU_WARPS) {
            uint32_t r = rec[s], f = r & 0xffffu, st = r >> 16;
            uint32_t e = rfs_gw_dec_entry(s, r);
            for (unsigned lane = 0; lane < LANES; lane++)
                for (uint32_t i = lane; i < f; i += LANES)
                    dec[st + i] = e;
        }
}

/* Kernel 1 (ctx 0) or 1b (ctx 1, a RANS_CTX plane, dec its two tables),
 * one warp decoding one rANS plane: the lanes in lock-step. */
static rfs_err emu_warp_plane(const rfs_gpu_view *v, const rfs_gpu_task *task,
                              const uint32_t *dec, int ctx)
{
    const rfs_gpu_tile_desc *t = &v->tiles[task->tile];
    const rfs_gpu_plane_desc *pd = &t->plane[task->plane];
    const rfs_gpu_plane_desc *cd = &t->plane[t->width - 1u];
    const uint8_t *stream = v->in + pd->off;
    const uint8_t *words = stream + RFS_STATES_SIZE;
    uint32_t nwords = (pd->size - RFS_STATES_SIZE) / 2;
    uint8_t *out = v->scratch + pd->scratch;
    uint32_t x[LANES], w0[LANES], w1[LANES], w2[LANES], r[LANES], v0[LANES], v1[LANES];
    int need[LANES];
    uint32_t bad = 0; /* __any_sync */
    for (unsigned l = 0; l < LANES; l++) {
        x[l] = rfs_gw_state(stream, l);
        bad |= (uint32_t)rfs_gw_state_bad(x[l]) << l;
    }
    if (bad)
        return RFS_E_STATE;
    for (unsigned l = 0; l < LANES; l++) {
        w0[l] = rfs_gw_pair(words, nwords, rfs_gw_line_pair(0, l));
        w1[l] = rfs_gw_pair(words, nwords, rfs_gw_line_pair(1, l));
        w2[l] = rfs_gw_pair(words, nwords, rfs_gw_line_pair(2, l));
    }
    uint32_t pos = 0, base = 0, steps = (uint32_t)(((uint64_t)t->n + 31) / 32);
    for (uint32_t k = 0; k < steps; k++) {
        uint32_t mask = 0; /* __ballot_sync */
        for (unsigned l = 0; l < LANES; l++) {
            need[l] = 0;
            if (l < t->n - 32u * k) {
                uint8_t s;
                const uint32_t *d = dec;
                if (ctx)
                    d = rfs_gw_ctx_table(dec, rfs_gw_ctx_byte(cd, v->in, v->scratch, 32u * k + l),
                                         pd->value);
                x[l] = rfs_lane_decode(x[l], d, &s);
                out[32u * k + l] = s;
                need[l] = rfs_lane_needs_word(x[l]);
            }
            mask |= (uint32_t)need[l] << l;
        }
        uint32_t cnt = rfs_lane_popc(mask);
        if (cnt > nwords - pos)
            return RFS_E_OVERRUN;
        for (unsigned l = 0; l < LANES; l++)
            r[l] = pos - base + rfs_lane_word_index(mask, l);
        for (unsigned l = 0; l < LANES; l++) { /* __shfl_sync: all read, then all use */
            v0[l] = w0[rfs_gw_src_lane(r[l])];
            v1[l] = w1[rfs_gw_src_lane(r[l])];
        }
        for (unsigned l = 0; l < LANES; l++)
            if (need[l])
                x[l] = rfs_lane_refill(x[l], rfs_gw_pick(v0[l], v1[l], r[l]));
        pos += cnt;
        if (pos - base >= 64) {
            base += 64;
            for (unsigned l = 0; l < LANES; l++) {
                w0[l] = w1[l];
                w1[l] = w2[l];
                w2[l] = rfs_gw_pair(words, nwords, rfs_gw_line_pair(base / 64 + 2, l));
            }
        }
    }
    if (pos != nwords)
        return RFS_E_TRAILING;
    for (unsigned l = 0; l < LANES; l++)
        if (x[l] != RFS_LANE_L)
            return RFS_E_FINAL_STATE;
    return RFS_OK;
}

void emu_decode_kernel(const rfs_gpu_view *v)
{
    static uint32_t dec[RFS_PROB_SCALE]; /* the block's shared memory */
    for (uint32_t b = 0; b < v->n_jobs; b++) {
        const rfs_gpu_job *job = &v->jobs[b];
        emu_build_table(dec, v->tables + (size_t)job->table * RFS_GPU_TABLE_WORDS);
        for (uint32_t w = 0; w < job->count; w++) {
            const rfs_gpu_task *task = &v->tasks[job->first + w];
            rfs_err err = emu_warp_plane(v, task, dec, 0);
            if (err != RFS_OK)
                v->err[task->tile] = err;
        }
    }
}

void emu_ctx_kernel(const rfs_gpu_view *v)
{
    static uint32_t dec[2 * RFS_PROB_SCALE]; /* the block's shared memory */
    for (uint32_t b = 0; b < v->n_ctx_jobs; b++) {
        const rfs_gpu_ctx_job *job = &v->ctx_jobs[b];
        for (unsigned c = 0; c < 2; c++)
            emu_build_table(dec + c * RFS_PROB_SCALE,
                            v->tables + (size_t)(job->table + c) * RFS_GPU_TABLE_WORDS);
        if (v->err[job->tile])
            continue;
        const rfs_gpu_task task = {job->tile, job->plane};
        rfs_err err = emu_warp_plane(v, &task, dec, 1);
        if (err != RFS_OK)
            v->err[job->tile] = err;
    }
}

void emu_interleave_kernel(const rfs_gpu_view *v)
{
    for (uint32_t b = 0; b < v->n_chunks; b++) {
        const rfs_gpu_chunk *c = &v->chunks[b];
        const rfs_gpu_tile_desc *t = &v->tiles[c->tile];
        if (v->err[c->tile])
            continue;
        for (uint32_t th = 0; th < RFS_GPU_IL_THREADS; th++)
            for (uint32_t g = c->first + th; g < c->first + c->count; g += RFS_GPU_IL_THREADS) {
                uint32_t pw[4] = {0, 0, 0, 0}, o[4] = {0, 0, 0, 0};
                for (unsigned p = 0; p < t->width; p++)
                    pw[p] = rfs_gi_plane_word(&t->plane[p], v->in, v->scratch, g);
                rfs_gi_group(o, pw, t->width, t->xf);
                rfs_gi_store(v->out, t, g, o);
            }
    }
}

