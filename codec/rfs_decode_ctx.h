/*
 * rfs_decode_ctx.h - internal: decoding a RANS_CTX plane (docs/format.md
 * 1.4.1): one rANS stream whose symbol i is decoded with table 0 or 1, as
 * byte i of the context plane (W-1) is below the threshold or not.  Not
 * part of the public API.
 *
 * Design note: the two 4096-entry decode tables sit back to back, so the
 * table of a symbol is an offset of 0 or 4096 added to its slot, and a SIMD
 * lane still does one gather per step.  Lanes, words and their order are
 * those of an order-0 stream (1.5 "Lane order"); only the table changes per
 * symbol.  As in rfs_backend.h, a SIMD path runs its fast loop only while a
 * whole step's 32 symbols and 32 words remain and then hands its states to
 * rfs_ctx_tail, the checked scalar loop that detects every error, so every
 * path returns the scalar path's bytes and error code.  The fast loops are
 * apart from the order-0 ones (rfs_decode_*.c) on purpose: those are tuned
 * for one table and change on their own; the checked tail, which is not
 * tuned, is one loop for both (rfs_decode_scalar.c).
 */
#ifndef RFS_DECODE_CTX_H
#define RFS_DECODE_CTX_H

#include <stddef.h>
#include <stdint.h>

#include "rfs_backend.h"
#include "rfs_tile.h"

/* Entries of the two decode tables of a RANS_CTX plane. */
#define RFS_CTX_DEC_ENTRIES (2u * RFS_PROB_SCALE)

/* One RANS_CTX plane of n symbols. */
typedef struct rfs_ctx_job {
    uint8_t *out;          /* n bytes: the plane (scratch for the fused form's tail) */
    const uint8_t *stream; /* 32 initial states, then 16-bit words */
    size_t stream_size;
    const uint32_t *dec;   /* RFS_CTX_DEC_ENTRIES: table 0's lookup, then table 1's */
    const uint8_t *ctx;    /* n context bytes: plane W-1 of the tile */
    uint8_t threshold;     /* ctx[i] >= threshold: table 1 */
} rfs_ctx_job;

/* Decode the plane into job->out.  Errors as rfs_rans_tail. */
typedef rfs_err (*rfs_ctx_plane_fn)(const rfs_ctx_job *job, size_t n);

/* W = 2 or 4 (the coded plane W-2, its context plane W-1): decode and
 * write the n elements (ROT1 undone when xf says so) into dst, the other
 * bytes of each element from planes[] (planes[W-1] is job->ctx;
 * planes[W-2] is not read); job->out is scratch for the tail's symbols.
 * dst is complete only on RFS_OK. */
typedef rfs_err (*rfs_ctx_elems_fn)(uint8_t *dst, const rfs_ctx_job *job,
                                    const uint8_t *const planes[RFS_MAX_WIDTH], size_t n,
                                    unsigned w, rfs_transform xf);

typedef struct rfs_ctx_paths {
    rfs_ctx_plane_fn plane;
    rfs_ctx_elems_fn elems; /* NULL: plane, then the backend's interleave */
} rfs_ctx_paths;

/* The paths that go with a decode backend: scalar for the scalar one, AVX2
 * with scalar table loads for avx2-loads, AVX2 with gathers for avx2 and
 * the AVX-512 ones (their CPUs have AVX2). */
const rfs_ctx_paths *rfs_ctx_paths_for(const rfs_backend *b);

/* Build the two lookups (entry as rfs_table.dec) from checked frequencies. */
void rfs_ctx_build_dec(uint32_t dec[RFS_CTX_DEC_ENTRIES], const uint16_t freq0[256],
                       const uint16_t freq1[256]);

/* Go on from symbol i (a multiple of 32) with states x and the word cursor
 * wpos into words[0..nwords) (rfs_rans_begin): the checked loop, then the
 * end-of-stream checks. */
rfs_err rfs_ctx_tail(uint32_t x[RFS_LANES], const rfs_ctx_job *job, size_t i, size_t n,
                     const uint8_t *words, size_t wpos, size_t nwords);

extern const rfs_ctx_paths rfs_ctx_paths_scalar;
extern const rfs_ctx_paths rfs_ctx_paths_avx2;
extern const rfs_ctx_paths rfs_ctx_paths_avx2_loads;

#endif
