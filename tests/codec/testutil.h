/*
 * testutil.h - data generators and helpers shared by the codec tests:
 * seeded random data, fp16/bf16 conversion, round-trip through every CPU
 * backend, loading F32 tensors from a safetensors file, and whole-file
 * reads and writes for the image, library and remote tests.
 */
#ifndef RFS_TESTUTIL_H
#define RFS_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "rfs_tile.h"
#include "testseed.h"

/* Seeded xorshift64* generator; tests print their seed. */
typedef struct tu_rng {
    uint64_t s;
} tu_rng;
uint64_t tu_next(tu_rng *r);
double tu_gauss(tu_rng *r);

uint16_t tu_f32_to_bf16(float f);
uint16_t tu_f32_to_fp16(float f);

/* The CPU backends this machine supports (NULL-terminated). */
const char *const *tu_backends(void);

/*
 * Encode src (size bytes, width w) and decode it with every supported
 * backend; fails the current cmocka test on any error or byte difference.
 * Returns the encoded size.
 */
size_t tu_roundtrip(const void *src, size_t size, unsigned w, rfs_transform xf,
                    const rfs_table_set *shared);

/*
 * The tensor-level tables of src (n elements of width w under xf), as the
 * packer makes them: tab[p] for each plane whose histogram makes a table,
 * and set (cleared first) pointing at them.
 */
void tu_table_set(rfs_table_set *set, rfs_table tab[RFS_MAX_WIDTH], const void *src, size_t n,
                  unsigned w, rfs_transform xf);

/*
 * Load all F32 tensors of a safetensors file, concatenated, into a new
 * buffer (*n floats).  Returns NULL when the file cannot be read.
 */
float *tu_load_safetensors_f32(const char *path, size_t *n);

/* Read a whole file; NULL when absent. */
uint8_t *tu_read_file(const char *path, size_t *size);
/* Read a whole file (a new buffer, at least 1 byte); fails the test when
 * it cannot. */
uint8_t *tu_must_read_file(const char *path, size_t *size);
/* Write size bytes to path (created or truncated); fails the test when it
 * cannot. */
void tu_must_write_file(const char *path, const void *data, size_t size);

#endif
