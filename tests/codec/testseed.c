/*
 * testseed.c - see testseed.h.
 */
#include "testseed.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

uint64_t tu_seed(const char *test)
{
    const char *env = getenv("RFS_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : 0x5eed1234abcdULL;
    if (!seed)
        seed = 1;
    printf("%s: seed 0x%llx (set RFS_TEST_SEED to change)\n", test, (unsigned long long)seed);
    return seed;
}

unsigned tu_seed_clock(const char *test)
{
    const char *env = getenv("RFS_TEST_SEED");
    unsigned seed = env ? (unsigned)strtoul(env, NULL, 0) : (unsigned)time(NULL);
    printf("%s: seed %u (replay with RFS_TEST_SEED=%u)\n", test, seed, seed);
    fflush(stdout);
    return seed;
}
