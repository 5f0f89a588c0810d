/*
 * testseed.h - the seed of every random C test: RFS_TEST_SEED when set,
 * printed either way so a failure can be replayed.  A library of its own
 * (rfs_testseed, libc only) so that tests outside codec/ use it without
 * testutil.c (which needs _Float16, and so GCC or a newer clang).
 */
#ifndef RFS_TESTSEED_H
#define RFS_TESTSEED_H

#include <stdint.h>

/* Seed from RFS_TEST_SEED if set, else a fixed default; printed once. */
uint64_t tu_seed(const char *test);

/* Seed from RFS_TEST_SEED if set, else from the clock (each run explores
 * new cases: the concurrent tests); printed with how to replay it. */
unsigned tu_seed_clock(const char *test);

#endif
