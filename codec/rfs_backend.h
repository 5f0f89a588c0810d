/*
 * rfs_backend.h - internal: the CPU decode backends (scalar, AVX2, AVX-512)
 * and the scalar pieces they share.  Not part of the public API.  The
 * encoder's paths are rfs_enc_paths.h, apart, so the decoder (and the
 * daemon) never reaches them.
 *
 * A backend decodes one rANS plane stream (32 initial states, then 16-bit
 * words) into n plane bytes, and interleaves W planes back into elements,
 * undoing the transform.  A SIMD backend runs its fast loop only while a
 * whole step of 32 symbols and 32 words (the most one step can take) remain,
 * then hands its states to rfs_rans_tail, the bounds-checked scalar tail.
 * The fused calls decode all rANS planes of a tile in one call and, for
 * W = 2 and 4, write the elements themselves: a SIMD backend stores them
 * straight from its decode loop (no plane buffer, no interleave pass) and
 * may run several planes' independent step chains in lockstep.
 */
#ifndef RFS_BACKEND_H
#define RFS_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "rfs_tile.h"

/* dst[i*W + b] = byte b of untransform(element i built from planes[b][i]). */
typedef void (*rfs_interleave_fn)(uint8_t *dst, const uint8_t *const planes[RFS_MAX_WIDTH],
                                  size_t n, unsigned width, rfs_transform xf);

/*
 * One rANS plane of a multi-plane decode: n symbols go to out from the
 * plane stream (32 initial states, then 16-bit words) with dec, a valid
 * 4096-entry table; err receives that plane's result, exactly what
 * decoding it alone would return.
 */
typedef struct rfs_plane_job {
    uint8_t *out;
    const uint8_t *stream;
    size_t stream_size;
    const uint32_t *dec;
    const struct rfs_small_plan *plan; /* dec's, where prebuilt (rfs_table.plan), or NULL */
    rfs_err err;
} rfs_plane_job;

#define RFS_MAX_JOBS RFS_MAX_WIDTH

/* Decode k (1..RFS_MAX_JOBS) planes of n symbols each, together: their
 * step chains are independent, so a SIMD backend interleaves them. */
typedef void (*rfs_rans_planes_fn)(rfs_plane_job *jobs, unsigned k, size_t n);

/*
 * W = 2 with k (1 or 2) rANS planes: decode them and write the elements
 * (ROT1 undone when xf says so) straight into dst.  With k = 2 jobs[0] is
 * plane 0 and jobs[1] plane 1; with k = 1 jobs[0] is plane `plane` and the
 * other plane's n bytes are other.  Each jobs[j].out is n bytes of scratch
 * (the tail's symbols).  Every err is set as by rfs_rans_planes_fn; dst is
 * complete only when all are RFS_OK.
 */
typedef void (*rfs_rans_w2_fn)(uint8_t *dst, size_t n, rfs_plane_job *jobs, unsigned k,
                               unsigned plane, const uint8_t *other, rfs_transform xf);

/*
 * W = 4 with k (1..4) rANS planes: jobs[j] is plane jplane[j] (ascending),
 * planes[p] the bytes of every plane (for a rANS plane: its job's out, n
 * bytes of scratch).  Decodes the jobs and writes the elements (ROT1 undone
 * when xf says so) into dst, the last job straight to elements.  Every err
 * is set as by rfs_rans_planes_fn; dst is complete only when all are RFS_OK.
 */
typedef void (*rfs_rans_w4_fn)(uint8_t *dst, size_t n, rfs_plane_job *jobs, unsigned k,
                               const unsigned *jplane, const uint8_t *const planes[RFS_MAX_WIDTH],
                               rfs_transform xf);

/*
 * Two tiles of width w (2 or 4) whose only rANS plane is the top one: for
 * tile j, jobs[j] is that plane, planes[j][b] the bytes of plane b (for the
 * top one: its job's out, n[j] bytes of scratch).  Decodes both and writes
 * their elements into dst[j], each exactly as rans_w2 / rans_w4 would with
 * k = 1; the two planes may run in lockstep.  Optional (NULL: none).
 */
typedef void (*rfs_rans_top2_fn)(uint8_t *const dst[2], const uint32_t n[2], unsigned w,
                                 rfs_plane_job *const jobs[2],
                                 const uint8_t *const *const planes[2],
                                 const rfs_transform xf[2]);

typedef struct rfs_backend {
    const char *name;
    rfs_interleave_fn interleave;
    rfs_rans_planes_fn rans_planes;
    rfs_rans_w2_fn rans_w2;
    rfs_rans_w4_fn rans_w4;
    rfs_rans_top2_fn rans_top2;
} rfs_backend;

/*
 * A decode table rewritten for lookups by register permutes instead of a
 * gather (the AVX-512 VBMI backend; docs/benchmarks.md "Decode without
 * gathers").  Symbols present are ranked 0..nsym-1 in symbol order; rank r
 * covers slots [start[r], next[r]) and dec[slot] = entry[r] there.  The rank
 * of a slot is
 *
 *     r = r0[slot >> 5];  r += slot >= next[r];      (a 32-slot bucket holds
 *                                                     at most one boundary)
 *     and where slot - win[w] < 128:  r = fine[w][slot - win[w]]
 *
 * exactly, for every slot, when rfs_small_plan_build returned 1: at most 64
 * symbols, and the buckets with more than one boundary inside (runs of rare
 * symbols) all lie in the nwin (<= 2) windows of 128 slots.
 */
#define RFS_SMALL_MAX_SYMS 64u
#define RFS_SMALL_MAX_WIN 2u
typedef struct rfs_small_plan {
    _Alignas(64) uint8_t r0[128];
    uint32_t entry[RFS_SMALL_MAX_SYMS]; /* dec[start[r]]: symbol, freq-1, start */
    uint16_t next[RFS_SMALL_MAX_SYMS];  /* start[r + 1]; 4096 past the last */
    uint16_t start[RFS_SMALL_MAX_SYMS];
    uint8_t fine[RFS_SMALL_MAX_WIN][128];
    uint32_t win[RFS_SMALL_MAX_WIN];
    unsigned nsym, nwin;
} rfs_small_plan;

/* Build p from dec, a valid 4096-entry table (rfs_table_build_lookup).
 * Returns 1 when the rule above is exact for dec, else 0 (p then unused). */
int rfs_small_plan_build(rfs_small_plan *p, const uint32_t *dec);

/* The plans of n tables that decode many tiles each (an image's shared
 * tables), built once: each table that fits one gets its plan in
 * tabs[i].plan.  Returns the array of plans for the caller to free, or NULL
 * where this CPU cannot run the VBMI backend or memory is short (the plans
 * are an optimisation: without one the backend builds it per tile). */
rfs_small_plan *rfs_tables_plan(rfs_table *tabs, size_t n);

extern const rfs_backend rfs_backend_scalar;
extern const rfs_backend rfs_backend_avx2;
extern const rfs_backend rfs_backend_avx2_loads;
extern const rfs_backend rfs_backend_avx512;
extern const rfs_backend rfs_backend_avx512vbmi;

/* The AVX2 plane interleave (rfs_decode_avx2.c), shared by both AVX2
 * backends. */
void rfs_interleave_avx2(uint8_t *dst, const uint8_t *const planes[RFS_MAX_WIDTH], size_t n,
                         unsigned width, rfs_transform xf);

/* The best of the gather backends (scalar, AVX2, AVX-512) for this CPU: what
 * the VBMI backend hands the planes its lookups do not take. */
const rfs_backend *rfs_backend_gather_best(void);

/* The process-wide default: cpuid, overridden by RANSFS_CPU (once). */
const rfs_backend *rfs_backend_default(void);
/* By name (one of rfs_dec_backend_names(), or "auto"); NULL if unknown or
 * unsupported. */
const rfs_backend *rfs_backend_by_name(const char *name);

/* Begin a plane's stream (32 initial states, then 16-bit words): load and
 * range-check the states into x, and set *words and *nwords to the words
 * that follow.  RFS_E_TRUNCATED/RFS_E_STATE. */
rfs_err rfs_rans_begin(uint32_t x[RFS_LANES], const uint8_t **words, size_t *nwords,
                       const uint8_t *stream, size_t stream_size);

/*
 * Continue decoding at symbol i (a multiple of 32) with states x and the
 * word cursor *wpos into words[0..nwords): the checked scalar loop.  Then
 * checks that every word was used and every state is back at L.
 */
rfs_err rfs_rans_tail(uint32_t x[RFS_LANES], uint8_t *out, size_t i, size_t n,
                      const uint8_t *words, size_t wpos, size_t nwords, const uint32_t *dec);

/* Scalar interleave (also the SIMD backends' tail). */
void rfs_interleave_scalar(uint8_t *dst, const uint8_t *const planes[RFS_MAX_WIDTH], size_t n,
                           unsigned width, rfs_transform xf);

#endif
