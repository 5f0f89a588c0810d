/*
 * test_fs_engine.c - the daemon's read path without FUSE, on a real image:
 * every regular file read through the engine (cache, parallel decode,
 * prefetch) equals rfs_image_read (the uncached reference); then many
 * threads do seeded random reads across unit boundaries through a small
 * cache while prefetch runs, which is the concurrency the mount sees (and
 * what the sanitizer builds check).
 *
 * usage: test_fs_engine IMAGE [SEED]
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "engine_fixture.h"
#include "testseed.h"

static const char *g_image;
static unsigned g_seed;

static void test_engine_whole_files(void **state)
{
    (void)state;
    fixture *f = fx_open(g_image, RFS_GPU_OFF, 64u << 20, 8u << 20, 0);
    assert_int_equal(fx_read_all(f), 0);
    assert_int_equal(f->log_lines, 0);
    fx_close(f);
}

static void test_engine_concurrent_small_cache(void **state)
{
    (void)state;
    fixture *f = fx_open(g_image, RFS_GPU_OFF, 1u << 20, 512u << 10, 2);
    assert_int_equal(fx_concurrent(f, g_seed, 8, 400, 600u * 1024, 16), 0);
    fx_print_stats(f);
    (void)fx_stat(f, "cache_over_budget"); /* present */
    assert_int_equal(f->log_lines, 0);
    fx_close(f);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_engine_whole_files),
        cmocka_unit_test(test_engine_concurrent_small_cache),
    };
    if (argc != 2) {
        fprintf(stderr, "usage: test_fs_engine IMAGE   (seed from RFS_TEST_SEED)\n");
        return 2;
    }
    g_image = argv[1];
    g_seed = tu_seed_clock("test_fs_engine");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
