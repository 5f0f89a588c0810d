/*
 * test_unit_pair.c - rfs_image_unit_decode2 (codec/rfs_image_read.c) against
 * two rfs_image_unit_decode calls, on real weights: tests/data/human32-mini
 * (f32 safetensors) and a bf16 file rounded from it, plus a text file for
 * zstd blocks, packed here.  Every pair gives each unit exactly the error,
 * size and bytes its single decode gives, on every CPU backend this machine
 * has (avx512vbmi runs tile pairs in lockstep): neighbours, far pairs,
 * tile+zstd, f32+bf16, a unit with itself, bad unit numbers and small
 * buffers, and units corrupted in either slot (checksum mismatch, and
 * damage behind a fixed-up checksum that only the tile decoder sees).
 * No random input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <xxhash.h>

#include "rfs_image.h"
#include "rfs_image_format.h"
#include "rfs_pack.h"
#include "testutil.h"

#define TILE (64u << 10)

static char g_dir[256], g_img[300], g_bad[300];
static uint8_t *g_buf; /* the good image */
static size_t g_size;

/* f32 bits to bf16 by round-to-nearest-even (NaN kept quiet), as the
 * corpus README derives bf16. */
static uint16_t bf16_rne(uint32_t x)
{
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* src/: the mini model as it is, its tensor data rounded to bf16 as a raw
 * w.bf16 file, and a text of several zstd blocks. */
static void make_source(const char *src)
{
    char path[512];
    size_t n;
    assert_int_equal(mkdir(src, 0755), 0);
    uint8_t *st = tu_must_read_file(RFS_TEST_DATA "/human32-mini/model.safetensors", &n);
    snprintf(path, sizeof path, "%s/model.safetensors", src);
    tu_must_write_file(path, st, n);
    size_t head = 8 + (size_t)rfs_ld64(st), words = (n - head) / 4;
    uint8_t *w = malloc(2 * words);
    for (size_t i = 0; i < words; i++) {
        uint16_t v = bf16_rne(rfs_ld32(st + head + 4 * i));
        w[2 * i] = (uint8_t)v;
        w[2 * i + 1] = (uint8_t)(v >> 8);
    }
    snprintf(path, sizeof path, "%s/w.bf16", src);
    tu_must_write_file(path, w, 2 * words);
    size_t tn = 300000;
    uint8_t *t = malloc(tn);
    for (size_t i = 0; i < tn; i++)
        t[i] = (uint8_t)("lorem ipsum dolor sit amet\n"[i % 27] + (i % 1000 == 0));
    snprintf(path, sizeof path, "%s/notes.txt", src);
    tu_must_write_file(path, t, tn);
    free(st);
    free(w);
    free(t);
}

static int group_setup(void **state)
{
    (void)state;
    char src[300], err[512];
    snprintf(g_dir, sizeof g_dir, "/tmp/rfs-unit-pair-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    snprintf(src, sizeof src, "%s/src", g_dir);
    snprintf(g_img, sizeof g_img, "%s/t.img", g_dir);
    snprintf(g_bad, sizeof g_bad, "%s/bad.img", g_dir);
    make_source(src);
    rfs_pack_opts o = {.source = src, .image = g_img, .tile_size = TILE, .n_threads = 2,
                       .zstd_level = 3};
    rfs_pack_stats ps;
    if (rfs_pack(&o, &ps, err, sizeof err) != 0)
        fail_msg("rfs_pack: %s", err);
    g_buf = tu_must_read_file(g_img, &g_size);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
    free(g_buf);
    return 0;
}

/* ------------------------------------------------------------ helpers */

/* An open image with one decode context and buffers for two units. */
typedef struct fixture {
    rfs_image *img;
    rfs_rctx *ctx;
    rfs_image_summary sum;
    uint8_t *single[2], *pair[2];
} fixture;

static void fix_open(fixture *f, const char *path)
{
    char why[256];
    if (rfs_image_open(&f->img, path, why, sizeof why) != RFS_OK)
        fail_msg("%s: %s", path, why);
    rfs_image_get_summary(f->img, &f->sum);
    assert_non_null(f->ctx = rfs_rctx_create(f->img));
    for (int j = 0; j < 2; j++) {
        f->single[j] = malloc(f->sum.unit_max);
        f->pair[j] = malloc(f->sum.unit_max);
    }
}

static void fix_close(fixture *f)
{
    for (int j = 0; j < 2; j++) {
        free(f->single[j]);
        free(f->pair[j]);
    }
    rfs_rctx_destroy(f->ctx);
    rfs_image_close(f->img);
}

/* Tile width of unit u (1, 2 or 4), or 0 for a zstd block or a bad unit. */
static unsigned unit_width(const rfs_image *img, uint64_t u)
{
    rfs_unit_src s;
    unsigned w;
    uint32_t n;
    rfs_transform xf;
    if (rfs_image_unit_source(img, u, &s) != RFS_OK || s.kind != RFS_UNIT_TILE ||
        rfs_tile_info(s.data, s.size, &w, &n, &xf) != RFS_OK)
        return 0;
    return w;
}

/*
 * Units a and b (dst capacities cap[0], cap[1]) decoded as a pair and one by
 * one: each gets the same error, and when OK the same size and bytes; the
 * pair's return is the first error.  Returns the first unit's error.
 */
static rfs_err pair_check(fixture *f, uint64_t a, uint64_t b, const size_t cap[2])
{
    const uint64_t unit[2] = {a, b};
    rfs_err want[2];
    size_t size[2] = {0, 0};
    rfs_unit_io io[2];
    for (int j = 0; j < 2; j++) {
        want[j] = rfs_image_unit_decode(f->img, f->ctx, unit[j], f->single[j], cap[j], &size[j]);
        memset(f->pair[j], 0xa5, f->sum.unit_max);
        io[j] = (rfs_unit_io){.unit = unit[j], .dst = f->pair[j], .dst_cap = cap[j],
                              .dst_size = 123, .err = RFS_E_ARG};
    }
    rfs_err all = rfs_image_unit_decode2(f->img, f->ctx, io);
    assert_int_equal(all, want[0] ? want[0] : want[1]);
    for (int j = 0; j < 2; j++) {
        if (io[j].err != want[j])
            fail_msg("units %llu, %llu (%s): slot %d: pair %s, single %s", (unsigned long long)a,
                     (unsigned long long)b, rfs_dec_backend(rfs_rctx_decoder(f->ctx)), j,
                     rfs_strerror(io[j].err), rfs_strerror(want[j]));
        assert_int_equal(io[j].dst_size, want[j] ? 0 : size[j]);
        if (want[j] == RFS_OK)
            assert_memory_equal(f->pair[j], f->single[j], size[j]);
    }
    return want[0];
}

static rfs_err pair_full(fixture *f, uint64_t a, uint64_t b)
{
    const size_t cap[2] = {f->sum.unit_max, f->sum.unit_max};
    return pair_check(f, a, b, cap);
}

/* The first unit at or after `from` that unit_width says is w wide. */
static uint64_t unit_find(const fixture *f, uint64_t from, unsigned w)
{
    for (uint64_t u = from; u < f->sum.n_units; u++)
        if (unit_width(f->img, u) == w)
            return u;
    fail_msg("no unit of width %u from %llu", w, (unsigned long long)from);
    return 0;
}

/* ------------------------------------------------------------ tests */

/* Every unit paired with its neighbour, its mirror and itself, on every
 * backend: the kinds of pair the product makes all occur. */
static void test_pairs_real(void **state)
{
    (void)state;
    fixture f;
    fix_open(&f, g_img);
    const uint64_t n = f.sum.n_units;
    unsigned runs = 0;
    const char *const *backends = rfs_dec_backend_names();
    for (size_t k = 0; backends[k]; k++) {
        if (!rfs_cpu_supports(backends[k]))
            continue;
        assert_int_equal(rfs_dec_set_backend(rfs_rctx_decoder(f.ctx), backends[k]), RFS_OK);
        unsigned same2 = 0, same4 = 0, mixed = 0, zstd = 0;
        for (uint64_t u = 0; u < n; u++) {
            const uint64_t other[3] = {(u + 1) % n, n - 1 - u, u};
            for (int o = 0; o < 3; o++) {
                unsigned wa = unit_width(f.img, u), wb = unit_width(f.img, other[o]);
                assert_int_equal(pair_full(&f, u, other[o]), RFS_OK);
                same2 += wa == 2 && wb == 2;
                same4 += wa == 4 && wb == 4;
                mixed += (wa == 0) != (wb == 0) || (wa && wb && wa != wb);
                zstd += wa == 0 && wb == 0;
            }
        }
        printf("# %s: %llu units; pairs bf16 %u, f32 %u, mixed %u, zstd %u\n", backends[k],
               (unsigned long long)n, same2, same4, mixed, zstd);
        assert_true(same2 > 0 && same4 > 0 && mixed > 0 && zstd > 0);
        runs++;
    }
    assert_true(runs > 0);
    fix_close(&f);
}

/* A unit that does not exist, or a dst one byte short, in either slot:
 * that unit gets its single-decode error, the other its bytes. */
static void test_pair_arg_errors(void **state)
{
    (void)state;
    fixture f;
    fix_open(&f, g_img);
    const uint64_t t2 = unit_find(&f, 0, 2), t4 = unit_find(&f, 0, 4), z = unit_find(&f, 0, 0);
    const uint64_t partner[3] = {t2, t4, z};
    const size_t full[2] = {f.sum.unit_max, f.sum.unit_max};
    for (int p = 0; p < 3; p++) {
        uint64_t u = partner[p], v = p == 2 ? t2 : u + 1;
        rfs_unit_src s;
        assert_int_equal(rfs_image_unit_source(f.img, u, &s), RFS_OK);
        const size_t shortcap[2][2] = {{s.decoded_size - 1, f.sum.unit_max},
                                       {f.sum.unit_max, s.decoded_size - 1}};
        assert_int_equal(pair_full(&f, f.sum.n_units, u), RFS_E_NOENT);
        assert_int_equal(pair_full(&f, u, f.sum.n_units), RFS_OK);
        assert_int_equal(pair_check(&f, u, v, shortcap[0]), RFS_E_DST_SMALL);
        assert_int_equal(pair_check(&f, v, u, shortcap[1]), RFS_OK);
        assert_int_equal(pair_check(&f, u, u, full), RFS_OK);
    }
    fix_close(&f);
}

/* The unit record of unit u in image b. */
static uint8_t *unit_rec_at(uint8_t *b, uint64_t u)
{
    const uint8_t *e = b + RFS_IMG_SECT_TABLE_OFF + RFS_SECT_UNITS * RFS_IMG_SECT_ENTRY_SIZE;
    return b + rfs_ld64(e) + u * RFS_UNIT_SIZE;
}

/* Fix the checksum of section s of image b, and the superblock's. */
static void reseal(uint8_t *b, int s)
{
    uint8_t *e = b + RFS_IMG_SECT_TABLE_OFF + s * RFS_IMG_SECT_ENTRY_SIZE;
    rfs_st64(e + 24, XXH3_64bits(b + rfs_ld64(e), rfs_ld64(e + 8)));
    rfs_sb_seal(b);
}

/* A copy of the image with byte pos of unit u's payload flipped; with
 * fix_sum, the unit's XXH3 is made to match so the decoder meets it. */
static void corrupt_copy(uint64_t u, uint32_t pos, int fix_sum)
{
    uint8_t *b = malloc(g_size);
    memcpy(b, g_buf, g_size);
    rfs_unit_rec r;
    rfs_unit_load(&r, unit_rec_at(b, u));
    b[r.off + pos % r.size] ^= 0x10;
    if (fix_sum) {
        r.xxh3 = XXH3_64bits(b + r.off, r.size);
        rfs_unit_store(unit_rec_at(b, u), &r);
        reseal(b, RFS_SECT_UNITS);
    }
    tu_must_write_file(g_bad, b, g_size);
    free(b);
}

/* A damaged tile (bf16 or f32) in either slot, beside a good tile of the
 * same and of the other width and a zstd block: the damaged one gets
 * exactly its single-decode error (checked against it), the other its
 * bytes; with the checksum fixed up, some damage reaches the decoder. */
static void test_pair_corrupt(void **state)
{
    (void)state;
    fixture g;
    fix_open(&g, g_img);
    const uint64_t t2 = unit_find(&g, 0, 2), t4 = unit_find(&g, 0, 4), z = unit_find(&g, 0, 0);
    const uint64_t bad[2] = {t2, t4};
    const uint64_t good[4] = {unit_find(&g, t2 + 1, 2), unit_find(&g, t4 + 1, 4), z, t2 + 1};
    fix_close(&g);
    const uint32_t pos[] = {0, 3, 9, 40, 1000, 20000, 0xffffffffu, 0xfffffffeu};
    unsigned decoder_errors = 0;
    for (int a = 0; a < 2; a++)
        for (size_t p = 0; p < sizeof pos / sizeof pos[0]; p++)
            for (int fix_sum = 0; fix_sum < 2; fix_sum++) {
                corrupt_copy(bad[a], pos[p], fix_sum);
                fixture f;
                fix_open(&f, g_bad);
                const char *const *backends = rfs_dec_backend_names();
                for (size_t k = 0; backends[k]; k++) {
                    if (!rfs_cpu_supports(backends[k]))
                        continue;
                    rfs_dec_set_backend(rfs_rctx_decoder(f.ctx), backends[k]);
                    for (int o = 0; o < 4; o++) {
                        rfs_err e = pair_full(&f, bad[a], good[o]);
                        assert_int_equal(pair_full(&f, good[o], bad[a]), RFS_OK);
                        if (!fix_sum)
                            assert_int_equal(e, RFS_E_CHECKSUM);
                        decoder_errors += fix_sum && e != RFS_OK;
                    }
                }
                fix_close(&f);
            }
    printf("# damage behind a good checksum that the decoder refused: %u pairs\n",
           decoder_errors);
    assert_true(decoder_errors > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pairs_real),
        cmocka_unit_test(test_pair_arg_errors),
        cmocka_unit_test(test_pair_corrupt),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
