/*
 * rfs_enc_paths.h - internal: the encoder's CPU paths (scalar, AVX2) and
 * their selection (rfs_enc_cpu.c).  Not part of the public API.  Apart from
 * the decode backends (rfs_backend.h), so that a program that only decodes
 * links no encoder code.
 */
#ifndef RFS_ENC_PATHS_H
#define RFS_ENC_PATHS_H

#include <stddef.h>
#include <stdint.h>

#include "rfs_tile.h"

/* planes[b*n + i] = byte b of transform(element i of src): the encoder's
 * plane split.  Every variant gives the same bytes. */
typedef void (*rfs_split_fn)(uint8_t *planes, const uint8_t *src, size_t n, unsigned width,
                             rfs_transform xf);

void rfs_split_planes_scalar(uint8_t *planes, const uint8_t *src, size_t n, unsigned width,
                             rfs_transform xf);
void rfs_split_planes_avx2(uint8_t *planes, const uint8_t *src, size_t n, unsigned width,
                           rfs_transform xf);

/*
 * rANS-code the whole steps of a plane: symbols plane[0..n) (n a multiple
 * of 32) into states x (lane j holds symbol i with i mod 32 = j), last step
 * first, words stored back to front ending at ptr (at least 8 writable
 * words below the lowest word produced).  tab[s] = freq | start << 16 of
 * every symbol present.  Returns the new cursor.  The same words and states
 * as the scalar loop of rfs_tile_enc.c.
 */
typedef uint16_t *(*rfs_rans_steps_fn)(uint32_t x[RFS_LANES], uint16_t *ptr,
                                       const uint8_t *plane, size_t n, const uint32_t tab[256]);

uint16_t *rfs_rans_encode_steps_avx2(uint32_t x[RFS_LANES], uint16_t *ptr, const uint8_t *plane,
                                     size_t n, const uint32_t tab[256]);

/*
 * The same for a RANS_CTX plane: symbol plane[i] is coded with entry
 * tab[plane[i] + 256 * (ctx[i] >= thr)] (tab[0..255]: the first table,
 * tab[256..511]: the second).  The same words and states as the scalar
 * RANS_CTX loop of rfs_tile_enc.c.
 */
typedef uint16_t *(*rfs_rans_ctx_steps_fn)(uint32_t x[RFS_LANES], uint16_t *ptr,
                                           const uint8_t *plane, const uint8_t *ctx,
                                           unsigned thr, size_t n, const uint32_t tab[512]);

uint16_t *rfs_rans_encode_ctx_steps_avx2(uint32_t x[RFS_LANES], uint16_t *ptr,
                                         const uint8_t *plane, const uint8_t *ctx, unsigned thr,
                                         size_t n, const uint32_t tab[512]);

/* The encoder's SIMD paths; the rANS loops are NULL where the scalar loops
 * run. */
typedef struct rfs_enc_paths {
    const char *name;
    rfs_split_fn split;
    rfs_rans_steps_fn rans_steps;
    rfs_rans_ctx_steps_fn rans_ctx_steps;
} rfs_enc_paths;

/* The process-wide default, chosen once: RANSFS_CPU=scalar forces the
 * scalar paths, avx2 or avx512 the AVX2 ones where the CPU has them;
 * unset, unknown or unsupported, the best the CPU has (as the decoder's).
 * Every choice gives the same bytes. */
const rfs_enc_paths *rfs_enc_paths_default(void);

/* By name ("scalar", "avx2", "auto"); NULL if unknown or unsupported. */
const rfs_enc_paths *rfs_enc_paths_by_name(const char *name);

#endif
