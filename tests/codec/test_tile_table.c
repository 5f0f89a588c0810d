/*
 * Frequency tables: exact normalisation, serialisation round-trip, and
 * rejection of every malformed form docs/format.md 1.4 names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

static void check_normalised(const rfs_table *t, const uint64_t *counts)
{
    unsigned sum = 0;
    for (unsigned s = 0; s < 256; s++) {
        if (counts[s])
            assert_true(t->freq[s] >= 1);
        else
            assert_int_equal(t->freq[s], 0);
        sum += t->freq[s];
    }
    assert_int_equal(sum, RFS_PROB_SCALE);
    for (unsigned slot = 0; slot < RFS_PROB_SCALE; slot++) {
        uint32_t e = t->dec[slot], s = e & 0xff, f = ((e >> 8) & 0xfff) + 1, st = e >> 20;
        assert_int_equal(f, t->freq[s]);
        assert_int_equal(st, t->start[s]);
        assert_true(slot >= st && slot < st + f);
    }
}

static void roundtrip_table(const rfs_table *t)
{
    uint8_t buf[RFS_TABLE_MAX_SIZE];
    size_t w = 0, used = 0;
    static rfs_table u;
    assert_int_equal(rfs_table_write(buf, sizeof(buf), &w, t), RFS_OK);
    assert_int_equal(rfs_table_parse(&u, buf, w, &used), RFS_OK);
    assert_int_equal(used, w);
    assert_memory_equal(u.freq, t->freq, sizeof(t->freq));
    assert_memory_equal(u.dec, t->dec, sizeof(t->dec));
    for (size_t cut = 0; cut < w; cut++)
        assert_int_equal(rfs_table_parse(&u, buf, cut, &used), RFS_E_TRUNCATED);
}

static void test_normalise(void **state)
{
    (void)state;
    static rfs_table t;
    tu_rng r = {tu_seed("codec_tile_table")};
    uint64_t counts[256];
    /* all 256 symbols with extreme skew, so rare ones are bumped to 1 */
    for (unsigned s = 0; s < 256; s++)
        counts[s] = s == 7 ? 1000000000ull : 1;
    assert_int_equal(rfs_table_from_counts(&t, counts), RFS_OK);
    check_normalised(&t, counts);
    roundtrip_table(&t);
    for (int it = 0; it < 300; it++) {
        for (unsigned s = 0; s < 256; s++)
            counts[s] = (tu_next(&r) % 3 == 0) ? tu_next(&r) % (1u << (tu_next(&r) % 30)) : 0;
        counts[tu_next(&r) & 255] += 1;
        assert_int_equal(rfs_table_from_counts(&t, counts), RFS_OK);
        check_normalised(&t, counts);
        roundtrip_table(&t);
    }
    memset(counts, 0, sizeof(counts));
    assert_int_equal(rfs_table_from_counts(&t, counts), RFS_E_ARG);
    counts[200] = 5; /* one symbol takes the whole range */
    assert_int_equal(rfs_table_from_counts(&t, counts), RFS_OK);
    assert_int_equal(t.freq[200], RFS_PROB_SCALE);
    roundtrip_table(&t);
}

static void test_reject(void **state)
{
    (void)state;
    static rfs_table t;
    uint8_t b[64] = {0};
    size_t used;
    /* symbols 0 and 1: 4000 + 96 */
    b[0] = 0x03;
    b[32] = 0x80 | (4000 >> 8);
    b[33] = 4000 & 0xff;
    b[34] = 96;
    assert_int_equal(rfs_table_parse(&t, b, 35, &used), RFS_OK);
    assert_int_equal(used, 35);
    b[34] = 95; /* sum 4095 */
    assert_int_equal(rfs_table_parse(&t, b, 35, &used), RFS_E_TABLE);
    b[34] = 0; /* present symbol with frequency 0 */
    assert_int_equal(rfs_table_parse(&t, b, 35, &used), RFS_E_TABLE);
    /* non-canonical two-byte form of 96 */
    b[34] = 0x80;
    b[35] = 96;
    assert_int_equal(rfs_table_parse(&t, b, 36, &used), RFS_E_TABLE);
    /* a frequency above 4096 */
    memset(b, 0, sizeof(b));
    b[0] = 0x01;
    b[32] = 0x90;
    b[33] = 0x01;
    assert_int_equal(rfs_table_parse(&t, b, 34, &used), RFS_E_TABLE);
    /* no symbols at all */
    memset(b, 0, sizeof(b));
    assert_int_equal(rfs_table_parse(&t, b, 32, &used), RFS_E_TABLE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalise),
        cmocka_unit_test(test_reject),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
