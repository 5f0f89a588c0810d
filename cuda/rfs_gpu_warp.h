/*
 * rfs_gpu_warp.h - internal: the batch descriptors the GPU kernels read,
 * and every per-lane / per-thread piece of the kernels, written once as
 * inline functions that compile both for the device (the .cu defines RFS_HD
 * as __host__ __device__ before including rfs_rans_lane.h and this) and for
 * the host, where tests/cuda/test_warp_emu.c steps 32 lanes in lock-step
 * through exactly these functions.  Not part of the public API.
 *
 * Design note (see docs/gpu.md):
 *  - Kernel 1 (decode): one block per job.  A job is one decode table and up
 *    to RFS_GPU_WARPS warp tasks that use it (tiles of one tensor sharing a
 *    RANS_SHARED table, or the single plane owning a RANS_TILE table).  The
 *    block builds the 4096-entry table in shared memory once, then each warp
 *    decodes one rANS plane: lane j is state j; per step every active lane
 *    decodes (rfs_lane_decode), the lanes below L form a ballot mask, and
 *    lane j takes word pos + popcount(mask & ((1 << j) - 1)) (format.md
 *    1.5).  Decoded plane bytes go to a scratch area, plane-major.
 *  - Stream words come from a register window: each lane holds one 32-bit
 *    pair of words from each of three consecutive 64-word lines (w0, w1,
 *    w2).  A step needs at most 32 words starting at pos, with
 *    pos - base < 64, so they lie in w0/w1 and are fetched with two
 *    shuffles; w2 is a prefetch in flight.  When pos passes base + 64 the
 *    window slides by one line (one coalesced 128-byte load).
 *  - Kernel 1b (RANS_CTX, docs/format.md 1.4.1): one block of one warp per
 *    RANS_CTX plane, launched after kernel 1 so that the plane's context
 *    (plane W-1: RAW in the input, CONST, or a rANS plane kernel 1 has
 *    decoded into scratch) is there.  It builds the plane's two tables back
 *    to back in shared memory and decodes as kernel 1 does, each lane
 *    taking its symbol's table from the context byte of its element.
 *  - Kernel 2 (interleave): each thread builds one group of 4 elements from
 *    the W planes (RAW planes read straight from the encoded input with
 *    32-bit loads, CONST broadcast, rANS planes from scratch), undoes the
 *    transform and stores 4W bytes with one wide store when aligned.
 *  - The host parses tile headers and per-tile frequency tables (small) and
 *    checks everything format.md requires of them; the device checks the
 *    streams (initial states, overrun, trailing words, final states) and
 *    sets a per-tile error code; the host then decodes that tile on the CPU.
 *
 * Buffers the kernels read (input, scratch) carry RFS_GPU_SLACK bytes after
 * their end: rfs_gw_load_u32 reads aligned 32-bit words and may touch up to
 * 3 bytes past the 4 it returns.  Those bytes are never used.
 */
#ifndef RFS_GPU_WARP_H
#define RFS_GPU_WARP_H

#include <stdint.h>
#include <string.h>

#include "rfs_rans_lane.h"
#include "rfs_tile.h"

#ifdef __cplusplus
#define RFS_GPU_STATIC_ASSERT(c, m) static_assert(c, m)
#else
#define RFS_GPU_STATIC_ASSERT(c, m) _Static_assert(c, m)
#endif

#define RFS_GPU_WARPS 4u           /* warps per decode block (one table) */
#define RFS_GPU_IL_THREADS 256u    /* threads per interleave block */
#define RFS_GPU_IL_GROUPS 2048u    /* 4-element groups per interleave block */
#define RFS_GPU_ALIGN 16u          /* alignment of every region in a batch */
#define RFS_GPU_SLACK 16u          /* readable bytes after input and scratch */
#define RFS_GPU_TABLE_WORDS 256u   /* one table record: freq | start << 16 */

/* One plane of a tile as the kernels see it. */
typedef struct rfs_gpu_plane_desc {
    uint8_t mode;     /* RFS_PM_* (RANS_TILE and RANS_SHARED decode alike) */
    uint8_t value;    /* CONST: the byte; RANS_CTX: the threshold */
    uint8_t pad[2];
    uint32_t size;    /* RAW: n; rANS: stream bytes (128 of states + words) */
    uint64_t off;     /* RAW: payload, rANS: stream; offset in the input */
    uint64_t scratch; /* rANS: offset of the decoded plane in scratch */
} rfs_gpu_plane_desc;

/* One tile of a batch. */
typedef struct rfs_gpu_tile_desc {
    uint32_t n;       /* elements */
    uint8_t width;    /* 1, 2 or 4 */
    uint8_t xf;       /* rfs_transform */
    uint8_t pad[2];
    uint32_t win_lo;  /* write decoded bytes [win_lo, win_hi) of the tile ... */
    uint32_t win_hi;
    uint64_t out;     /* ... to out_base + out + (b - win_lo) */
    rfs_gpu_plane_desc plane[RFS_MAX_WIDTH];
    uint8_t pad2[8];
} rfs_gpu_tile_desc;

/* One rANS plane to decode (a warp's work). */
typedef struct rfs_gpu_task {
    uint32_t tile;
    uint32_t plane;
} rfs_gpu_task;

/* One decode block: a table and tasks[first .. first+count), count <= RFS_GPU_WARPS. */
typedef struct rfs_gpu_job {
    uint32_t table;
    uint32_t first;
    uint32_t count;
    uint32_t pad;
} rfs_gpu_job;

/* One RANS_CTX plane (a kernel 1b block): tables table and table + 1. */
typedef struct rfs_gpu_ctx_job {
    uint32_t tile;
    uint32_t plane;
    uint32_t table;
    uint32_t pad;
} rfs_gpu_ctx_job;

/* One interleave block: groups [first, first+count) of a tile (group g =
 * elements 4g .. 4g+3). */
typedef struct rfs_gpu_chunk {
    uint32_t tile;
    uint32_t first;
    uint32_t count;
    uint32_t pad;
} rfs_gpu_chunk;

RFS_GPU_STATIC_ASSERT(sizeof(rfs_gpu_plane_desc) == 24, "plane desc layout");
RFS_GPU_STATIC_ASSERT(sizeof(rfs_gpu_tile_desc) == 128, "tile desc layout");
RFS_GPU_STATIC_ASSERT(sizeof(rfs_gpu_task) == 8, "task layout");
RFS_GPU_STATIC_ASSERT(sizeof(rfs_gpu_job) == 16, "job layout");
RFS_GPU_STATIC_ASSERT(sizeof(rfs_gpu_chunk) == 16, "chunk layout");
RFS_GPU_STATIC_ASSERT(sizeof(rfs_gpu_ctx_job) == 16, "ctx job layout");

/* Everything one launch reads and writes (device pointers on the GPU, host
 * pointers in the emulator). */
typedef struct rfs_gpu_view {
    const uint8_t *in;              /* encoded bytes (+ RFS_GPU_SLACK) */
    const rfs_gpu_tile_desc *tiles;
    const rfs_gpu_task *tasks;
    const rfs_gpu_job *jobs;
    const rfs_gpu_chunk *chunks;
    const uint32_t *tables;         /* RFS_GPU_TABLE_WORDS per table */
    uint8_t *scratch;               /* decoded rANS planes (+ RFS_GPU_SLACK) */
    uint8_t *out;                   /* out_base of rfs_gpu_tile_desc.out */
    uint32_t *err;                  /* per tile: 0 or an rfs_err */
    uint32_t n_jobs;
    uint32_t n_chunks;
    const rfs_gpu_ctx_job *ctx_jobs; /* kernel 1b's blocks */
    uint32_t n_ctx_jobs;
} rfs_gpu_view;

/* ------------------------------------------------------------- loads */

/* Aligned little-endian 32-bit load. */
static inline RFS_HD uint32_t rfs_gw_ld32a(const uint8_t *p)
{
#ifdef __CUDA_ARCH__
    return __ldg((const unsigned int *)p);
#else
    uint32_t v;
    memcpy(&v, p, 4);
    return v; /* host is little-endian (x86-64, arm64) like the GPU */
#endif
}

/* Unaligned 32-bit load made of one or two aligned loads and a funnel
 * shift (device: no byte loads).  May read up to 3 bytes past p + 4. */
static inline RFS_HD uint32_t rfs_gw_load_u32(const uint8_t *p)
{
    uintptr_t a = (uintptr_t)p;
    const uint8_t *b = (const uint8_t *)(a & ~(uintptr_t)3);
    unsigned sh = (unsigned)(a & 3u) * 8u;
    uint32_t lo = rfs_gw_ld32a(b);
    if (sh == 0)
        return lo;
    uint32_t hi = rfs_gw_ld32a(b + 4);
#ifdef __CUDA_ARCH__
    return __funnelshift_r(lo, hi, sh);
#else
    return (uint32_t)((((uint64_t)hi << 32) | lo) >> sh);
#endif
}

/* --------------------------------------------------- decode (kernel 1) */

/* Decode table entry for symbol s from its record (freq | start << 16):
 * s | (freq-1) << 8 | start << 20, as rfs_lane_decode expects. */
static inline RFS_HD uint32_t rfs_gw_dec_entry(unsigned s, uint32_t rec)
{
    return s | (((rec & 0xffffu) - 1u) << 8) | ((rec >> 16) << 20);
}

/* Lane's initial state: bytes 4*lane .. 4*lane+3 of the stream. */
static inline RFS_HD uint32_t rfs_gw_state(const uint8_t *stream, unsigned lane)
{
    return rfs_gw_load_u32(stream + 4u * lane);
}

static inline RFS_HD int rfs_gw_state_bad(uint32_t x)
{
    return x < RFS_LANE_L || x >= 0x80000000u;
}

/* Pair q of the word stream (words 2q and 2q+1, low half first); 0 for a
 * pair past the end (such words are never used: overrun is checked first). */
static inline RFS_HD uint32_t rfs_gw_pair(const uint8_t *words, uint32_t nwords, uint32_t q)
{
    return 2u * q < nwords ? rfs_gw_load_u32(words + 4u * q) : 0u;
}

/* Pair index lane holds in window line `line` (a line is 64 words). */
static inline RFS_HD uint32_t rfs_gw_line_pair(uint32_t line, unsigned lane)
{
    return 32u * line + lane;
}

/* Word r (0 <= r < 128) of the window w0|w1: held by this lane ... */
static inline RFS_HD unsigned rfs_gw_src_lane(uint32_t r)
{
    return (r >> 1) & 31u;
}

/* ... and picked from the shuffled pairs v0 (from w0) and v1 (from w1). */
static inline RFS_HD uint16_t rfs_gw_pick(uint32_t v0, uint32_t v1, uint32_t r)
{
    uint32_t v = r < 64u ? v0 : v1;
    return (uint16_t)((r & 1u) ? v >> 16 : v);
}

/* Context byte of element i for a RANS_CTX plane: byte i of plane W-1,
 * described by cd (RAW in the input, CONST, or decoded into scratch). */
static inline RFS_HD uint32_t rfs_gw_ctx_byte(const rfs_gpu_plane_desc *cd, const uint8_t *in,
                                              const uint8_t *scratch, uint32_t i)
{
    if (cd->mode == RFS_PM_CONST)
        return cd->value;
    if (cd->mode == RFS_PM_RAW)
        return in[cd->off + i];
    return scratch[cd->scratch + i];
}

/* The decode table of a symbol whose context byte is c: the second of the
 * two tables laid back to back when c >= the threshold. */
static inline RFS_HD const uint32_t *rfs_gw_ctx_table(const uint32_t *dec, uint32_t c,
                                                      uint32_t threshold)
{
    return dec + (c >= threshold ? RFS_PROB_SCALE : 0u);
}

/* ----------------------------------------------- interleave (kernel 2) */

/* 4 plane bytes (elements 4g .. 4g+3) of plane pd.  May read past the
 * plane's end within the buffer's slack; those bytes are not stored. */
static inline RFS_HD uint32_t rfs_gi_plane_word(const rfs_gpu_plane_desc *pd, const uint8_t *in,
                                                const uint8_t *scratch, uint32_t g)
{
    if (pd->mode == RFS_PM_CONST)
        return pd->value * 0x01010101u;
    if (pd->mode == RFS_PM_RAW)
        return rfs_gw_load_u32(in + pd->off + 4u * (uint64_t)g);
    return rfs_gw_ld32a(scratch + pd->scratch + 4u * (uint64_t)g);
}

/* Byte k of v. */
static inline RFS_HD uint32_t rfs_gi_byte(uint32_t v, unsigned k)
{
    return (v >> (8u * k)) & 0xffu;
}

/* Elements of a group from its plane words pw[0..width), transform undone:
 * the group's 4*width bytes, little-endian, in o[0 .. width). */
static inline RFS_HD void rfs_gi_group(uint32_t o[4], const uint32_t pw[4], unsigned width,
                                       unsigned xf)
{
    if (width == 1) {
        o[0] = pw[0];
    } else if (width == 2) {
        for (unsigned h = 0; h < 2; h++) {
            /* elements 2h, 2h+1: t = plane0 byte | plane1 byte << 8 */
            uint32_t t = rfs_gi_byte(pw[0], 2 * h) | rfs_gi_byte(pw[1], 2 * h) << 8 |
                         rfs_gi_byte(pw[0], 2 * h + 1) << 16 | rfs_gi_byte(pw[1], 2 * h + 1) << 24;
            if (xf == RFS_XF_ROT1) /* rotate each 16-bit half right by 1 */
                t = ((t >> 1) & 0x7fff7fffu) | ((t << 15) & 0x80008000u);
            o[h] = t;
        }
    } else {
        for (unsigned k = 0; k < 4; k++) {
            uint32_t t = rfs_gi_byte(pw[0], k) | rfs_gi_byte(pw[1], k) << 8 |
                         rfs_gi_byte(pw[2], k) << 16 | rfs_gi_byte(pw[3], k) << 24;
            o[k] = xf == RFS_XF_ROT1 ? (t >> 1) | (t << 31) : t;
        }
    }
}

/* Store the group's bytes that fall in the tile's window.  One wide store
 * when the whole group is wanted and its destination is aligned. */
static inline RFS_HD void rfs_gi_store(uint8_t *out_base, const rfs_gpu_tile_desc *t, uint32_t g,
                                       const uint32_t o[4])
{
    unsigned w = t->width;
    uint64_t e1 = 4u * (uint64_t)g + 4u < t->n ? 4u * (uint64_t)g + 4u : t->n;
    uint64_t b0 = 4u * (uint64_t)g * w, b1 = e1 * w;
    uint64_t lo = b0 > t->win_lo ? b0 : t->win_lo;
    uint64_t hi = b1 < t->win_hi ? b1 : t->win_hi;
    uint8_t *dst = out_base + t->out; /* tile byte b goes to dst[b - win_lo] */
    if (lo == b0 && hi == b0 + 4u * w && (uintptr_t)(dst + (b0 - t->win_lo)) % (4u * w) == 0) {
        uint8_t *d = dst + (b0 - t->win_lo);
#ifdef __CUDA_ARCH__
        if (w == 1)
            *(uint32_t *)d = o[0];
        else if (w == 2)
            *(uint2 *)d = make_uint2(o[0], o[1]);
        else
            *(uint4 *)d = make_uint4(o[0], o[1], o[2], o[3]);
#else
        memcpy(d, o, 4u * w);
#endif
        return;
    }
    for (uint64_t b = lo; b < hi; b++)
        dst[b - t->win_lo] = (uint8_t)(o[(b - b0) >> 2] >> (8u * ((b - b0) & 3u)));
}

#endif
