/*
 * test_fs_engine.c - the daemon's read path without FUSE, on a real image:
 * every regular file read through the engine (cache, parallel decode,
 * prefetch) equals rfs_image_read (the uncached reference); then many
 * threads do seeded random reads across unit boundaries through a small
 * cache while prefetch runs, which is the concurrency the mount sees (and
 * what the sanitizer builds check).  The CPU batch backend on its own: every
 * item of a batch (pairs of items or single ones) gets what
 * rfs_image_unit_decode gives its unit, errors included.
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
#include "rfs_batch.h"
#include "rfs_pool.h"
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

enum { BATCH_MAX = 8 };

/* Batch items u0 .. u0+n-1 (past the last unit: RFS_E_NOENT), every fifth
 * one a byte short of its unit, against single decodes; the OK items. */
static size_t batch_check(const rfs_batch *b, rfs_image *img, rfs_rctx *ctx, uint64_t u0,
                          size_t n, uint8_t *const buf[BATCH_MAX], uint8_t *want, size_t cap)
{
    rfs_batch_item it[BATCH_MAX];
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) {
        rfs_unit_src s;
        size_t c = cap;
        if ((u0 + i) % 5 == 3 && rfs_image_unit_source(img, u0 + i, &s) == RFS_OK &&
            s.decoded_size > 0)
            c = s.decoded_size - 1;
        it[i] = (rfs_batch_item){.unit = u0 + i, .dst = buf[i], .dst_cap = c, .dst_size = 77,
                                 .err = RFS_E_ARG};
    }
    b->decode(b->self, it, n, 0);
    for (size_t i = 0; i < n; i++) {
        size_t got = 0;
        rfs_err e = rfs_image_unit_decode(img, ctx, it[i].unit, want, it[i].dst_cap, &got);
        if (it[i].err != e)
            fail_msg("unit %llu in a batch of %zu: %s, alone: %s", (unsigned long long)it[i].unit,
                     n, rfs_strerror(it[i].err), rfs_strerror(e));
        assert_int_equal(it[i].dst_size, e ? 0 : got);
        if (e == RFS_OK)
            assert_memory_equal(it[i].dst, want, got);
        ok += e == RFS_OK;
    }
    return ok;
}

static void test_batch_cpu_items(void **state)
{
    (void)state;
    fixture *f = fx_open_image(g_image, 1);
    rfs_image_summary sum;
    rfs_image_get_summary(f->img, &sum);
    rfs_rctx *ctx = rfs_rctx_create(f->img);
    uint8_t *buf[BATCH_MAX], *want = malloc(sum.unit_max);
    for (int i = 0; i < BATCH_MAX; i++)
        assert_non_null(buf[i] = malloc(sum.unit_max));
    static const size_t sizes[] = {1, 2, 3, 5, 8};
    for (unsigned threads = 0; threads <= 2; threads += 2) {
        rfs_pool *pool = threads ? rfs_pool_create(threads) : NULL;
        static rfs_hist hist;
        memset(&hist, 0, sizeof hist);
        rfs_batch b;
        assert_int_equal(rfs_batch_cpu_open(&b, f->img, pool, &hist), RFS_OK);
        uint64_t ok = 0;
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
            for (uint64_t u0 = 0; u0 < sum.n_units; u0 += sizes[k])
                ok += batch_check(&b, f->img, ctx, u0, sizes[k], buf, want, sum.unit_max);
        assert_int_equal(rfs_hist_count(&hist), ok); /* one sample per unit decoded */
        b.close(b.self);
        rfs_pool_destroy(pool);
    }
    for (int i = 0; i < BATCH_MAX; i++)
        free(buf[i]);
    free(want);
    rfs_rctx_destroy(ctx);
    fx_close(f);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_engine_whole_files),
        cmocka_unit_test(test_engine_concurrent_small_cache),
        cmocka_unit_test(test_batch_cpu_items),
    };
    if (argc != 2) {
        fprintf(stderr, "usage: test_fs_engine IMAGE   (seed from RFS_TEST_SEED)\n");
        return 2;
    }
    g_image = argv[1];
    g_seed = tu_seed_clock("test_fs_engine");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
