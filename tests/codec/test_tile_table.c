/*
 * Frequency tables: exact normalisation, serialisation round-trip, and
 * rejection of every malformed form docs/format.md 1.4 names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "rfs_backend.h"
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

/* The rank rule of rfs_small_plan (rfs_backend.h), as the VBMI loop runs it. */
static unsigned plan_rank(const rfs_small_plan *p, uint32_t slot)
{
    unsigned r = p->r0[slot >> 5];
    r += slot >= p->next[r];
    for (unsigned w = 0; w < p->nwin; w++)
        if (slot - p->win[w] < 128)
            r = p->fine[w][slot - p->win[w]];
    return r;
}

/* Build the plan of t; when it is taken, check it gives dec[] for every
 * slot.  Returns whether it was taken. */
static int check_plan(const rfs_table *t, unsigned *nwin)
{
    static rfs_small_plan p;
    unsigned nsym = 0;
    for (unsigned s = 0; s < 256; s++)
        nsym += t->freq[s] != 0;
    if (!rfs_small_plan_build(&p, t->dec))
        return 0;
    assert_true(nsym <= RFS_SMALL_MAX_SYMS);
    assert_int_equal(p.nsym, nsym);
    assert_true(p.nwin <= RFS_SMALL_MAX_WIN);
    for (uint32_t slot = 0; slot < RFS_PROB_SCALE; slot++) {
        unsigned r = plan_rank(&p, slot);
        assert_true(r < p.nsym);
        if (p.entry[r] != t->dec[slot])
            fail_msg("slot %u: rank %u gives %08x, dec %08x", slot, r, p.entry[r], t->dec[slot]);
    }
    *nwin = p.nwin;
    return 1;
}

/* Exponent-like tables (a geometric tail of rare symbols below a peak) take
 * the plan, with windows over the rare runs; wide alphabets and scattered
 * rare symbols fall back; every plan taken is exact. */
static void test_small_plan(void **state)
{
    (void)state;
    static rfs_table t;
    tu_rng r = {tu_seed("codec_tile_table") ^ 0x5a};
    unsigned taken = 0, windowed = 0, nwin = 0;
    for (unsigned it = 0; it < 400; it++) {
        uint64_t counts[256] = {0};
        unsigned shape = it % 4, base = (unsigned)(tu_next(&r) % 200);
        unsigned nsym = 1 + (unsigned)(tu_next(&r) % (shape == 3 ? 200 : 60));
        for (unsigned k = 0; k < nsym && base + k < 256; k++) {
            unsigned d = nsym - 1 - k; /* below the top symbol */
            if (shape == 0) /* geometric: a peak at the top, halving below */
                counts[base + k] = 1 + (1ull << 40 >> (d < 40 ? d : 40));
            else if (shape == 1) /* uniform */
                counts[base + k] = 1000;
            else /* random, some tiny */
                counts[base + k] = tu_next(&r) % 3 ? tu_next(&r) % 100000 + 1 : 1;
        }
        if (rfs_table_from_counts(&t, counts) != RFS_OK)
            continue;
        int ok = check_plan(&t, &nwin);
        taken += ok;
        windowed += ok && nwin > 0;
        if (shape == 0 && nsym <= 24)
            assert_true(ok); /* the shape it is for */
    }
    assert_true(taken > 100);
    assert_true(windowed > 10);
    /* more than 64 symbols: never */
    uint64_t counts[256];
    for (unsigned s = 0; s < 256; s++)
        counts[s] = s < 65 ? 100 : 0;
    assert_int_equal(rfs_table_from_counts(&t, counts), RFS_OK);
    assert_false(check_plan(&t, &nwin));
    counts[64] = 0; /* 64: yes */
    assert_int_equal(rfs_table_from_counts(&t, counts), RFS_OK);
    assert_true(check_plan(&t, &nwin));
    /* one symbol */
    memset(counts, 0, sizeof counts);
    counts[200] = 7;
    assert_int_equal(rfs_table_from_counts(&t, counts), RFS_OK);
    assert_true(check_plan(&t, &nwin));
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
        cmocka_unit_test(test_small_plan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
