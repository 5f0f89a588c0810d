/*
 * test_util_array.c - unit tests of util/rfs_array: growth keeps the
 * contents and zeroes new slots, a reserve within capacity does nothing,
 * and overflow fails leaving the array as it was.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "rfs_array.h"

typedef struct rec {
    uint64_t a;
    uint32_t b;
} rec;

static void test_array_grow(void **state)
{
    rec *r = NULL;
    size_t cap = 0;
    for (size_t n = 0; n < 5000; n++) {
        assert_int_equal(rfs_array_reserve(&r, &cap, n + 1, sizeof *r), 0);
        assert_true(cap >= n + 1);
        assert_true(r[n].a == 0 && r[n].b == 0); /* new slots are zero */
        r[n] = (rec){n * 3, (uint32_t)n};
    }
    for (size_t n = 0; n < 5000; n++)
        assert_true(r[n].a == n * 3 && r[n].b == n);
    free(r);
}

static void test_array_within_capacity(void **state)
{
    char *b = NULL;
    size_t cap = 0;
    assert_int_equal(rfs_array_reserve(&b, &cap, 100, 1), 0);
    assert_true(cap >= 100 && cap < 256); /* doubling from 16 */
    char *before = b;
    size_t cap_before = cap;
    assert_int_equal(rfs_array_reserve(&b, &cap, cap, 1), 0);
    assert_ptr_equal(b, before);
    assert_int_equal(cap, cap_before);
    assert_int_equal(rfs_array_reserve(&b, &cap, 0, 1), 0);
    free(b);
}

static void test_array_overflow(void **state)
{
    rec *r = NULL;
    size_t cap = 0;
    assert_int_equal(rfs_array_reserve(&r, &cap, 4, sizeof *r), 0);
    rec *before = r;
    size_t cap_before = cap;
    assert_int_equal(rfs_array_reserve(&r, &cap, SIZE_MAX / 2, sizeof *r), -1);
    assert_int_equal(rfs_array_reserve(&r, &cap, SIZE_MAX, 1), -1);
    assert_ptr_equal(r, before);
    assert_int_equal(cap, cap_before);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_array_grow),
        cmocka_unit_test(test_array_within_capacity),
        cmocka_unit_test(test_array_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
