/*
 * test_util_pool.c - unit tests of util/'s worker pool: every index of a
 * parallel for runs once, worker indices are in range and never shared by
 * two calls at the same time, a NULL pool runs everything on the caller,
 * nested parallel fors do not deadlock, destroy drains the queue.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "rfs_pool.h"

#define MAX_WORKERS 8

typedef struct pool_ctx {
    atomic_uint hits[1000];
    atomic_uint total;
    atomic_uint busy[MAX_WORKERS + 1]; /* a worker index in use right now */
    atomic_uint used[MAX_WORKERS + 1]; /* items each index ran */
    atomic_uint bad;                   /* out of range or shared index */
    unsigned threads;
} pool_ctx;

static void pool_for_fn(void *arg, unsigned worker, size_t i)
{
    pool_ctx *x = arg;
    if (worker > x->threads) {
        atomic_fetch_add(&x->bad, 1);
        return;
    }
    if (atomic_exchange(&x->busy[worker], 1) != 0)
        atomic_fetch_add(&x->bad, 1);
    atomic_fetch_add(&x->hits[i], 1);
    atomic_fetch_add(&x->total, 1);
    atomic_fetch_add(&x->used[worker], 1);
    usleep(i % 7 == 0 ? 50 : 0); /* let the others overlap this call */
    atomic_store(&x->busy[worker], 0);
}

static void run_for(rfs_pool *p, pool_ctx *x, size_t n)
{
    memset(x, 0, sizeof(*x));
    x->threads = rfs_pool_threads(p);
    rfs_pool_for(p, RFS_PRIO_HIGH, n, pool_for_fn, x);
    assert_int_equal(atomic_load(&x->total), n);
    assert_int_equal(atomic_load(&x->bad), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(atomic_load(&x->hits[i]), 1);
}

static void test_pool_for(void **state)
{
    rfs_pool *p = rfs_pool_create(4);
    static pool_ctx x;
    assert_non_null(p);
    assert_int_equal(rfs_pool_threads(p), 4);
    for (size_t n = 0; n <= 1000; n += n < 10 ? 1 : 197)
        run_for(p, &x, n);
    rfs_pool_destroy(p);
}

/* The caller is worker 0 and takes part; a NULL pool is all worker 0. */
static void test_pool_for_null(void **state)
{
    static pool_ctx x;
    assert_int_equal(rfs_pool_threads(NULL), 0);
    run_for(NULL, &x, 100);
    assert_int_equal(atomic_load(&x.used[0]), 100);
}

/* Many items on many workers: more than one index is seen (on a loaded
 * machine the caller may still do most of the work, so only the range and
 * the exclusivity are asserted, by run_for). */
static void test_pool_for_workers(void **state)
{
    rfs_pool *p = rfs_pool_create(MAX_WORKERS);
    static pool_ctx x;
    unsigned seen = 0;
    assert_non_null(p);
    for (int round = 0; round < 20; round++)
        run_for(p, &x, 1000);
    for (unsigned w = 0; w <= MAX_WORKERS; w++)
        seen += atomic_load(&x.used[w]) != 0;
    printf("worker indices used in the last round: %u of %u\n", seen, MAX_WORKERS + 1);
    rfs_pool_destroy(p);
}

static void pool_task(void *arg)
{
    atomic_fetch_add((atomic_uint *)arg, 1);
}

/* rfs_pool_for from inside pool tasks must not deadlock (prefetch does it). */
typedef struct nested_ctx {
    rfs_pool *p;
    atomic_uint done;
} nested_ctx;

static void nested_inner(void *arg, unsigned worker, size_t i)
{
    usleep(100);
}

static void nested_task(void *arg)
{
    nested_ctx *x = arg;
    rfs_pool_for(x->p, RFS_PRIO_LOW, 16, nested_inner, NULL);
    atomic_fetch_add(&x->done, 1);
}

static void test_pool_nested(void **state)
{
    nested_ctx x;
    x.p = rfs_pool_create(2);
    atomic_init(&x.done, 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(rfs_pool_submit(x.p, RFS_PRIO_LOW, nested_task, &x), 0);
    rfs_pool_destroy(x.p); /* runs every queued task first */
    assert_int_equal(atomic_load(&x.done), 20);
}

/* Pairs cover every item once, keep every worker busy where there are
 * items enough, and pair all that a worker would take twice anyway. */
static void test_pool_pairs(void **state)
{
    (void)state;
    for (unsigned w = 1; w <= 5; w++)
        for (size_t n = 0; n <= 20; n++) {
            size_t p = rfs_pool_pairs(n, w), seen[20] = {0};
            assert_true(2 * p <= n);
            assert_true(n - p >= (n < w ? n : w));
            if (n >= 2 * w)
                assert_int_equal(p, n / 2);
            for (size_t i = 0; i < n - p; i++) {
                size_t count, first = rfs_pool_pair_item(p, i, &count);
                for (size_t k = 0; k < count; k++)
                    seen[first + k]++;
            }
            for (size_t k = 0; k < n; k++)
                assert_int_equal(seen[k], 1);
        }
}

static void test_pool_submit_drain(void **state)
{
    rfs_pool *p = rfs_pool_create(3);
    atomic_uint n;
    atomic_init(&n, 0);
    for (int i = 0; i < 500; i++)
        assert_int_equal(rfs_pool_submit(p, i % 2 ? RFS_PRIO_LOW : RFS_PRIO_HIGH, pool_task, &n),
                         0);
    rfs_pool_destroy(p);
    assert_int_equal(atomic_load(&n), 500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_for),
        cmocka_unit_test(test_pool_for_null),
        cmocka_unit_test(test_pool_for_workers),
        cmocka_unit_test(test_pool_nested),
        cmocka_unit_test(test_pool_pairs),
        cmocka_unit_test(test_pool_submit_drain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
