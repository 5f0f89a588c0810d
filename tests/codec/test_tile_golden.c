/*
 * Golden tiles: tests/data/golden/NAME.tile must decode to NAME.raw on
 * every backend (NAME.table, when present, is the serialised shared table
 * of plane 1).  These pin the format: an encoder change may produce other
 * bytes, but these must keep decoding.  `test_tile_golden --write DIR`
 * regenerates them (only when the format version changes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

#define GOLDEN RFS_TEST_DATA "/golden"

static const char *const names[] = {"bf16_gauss", "fp16_gauss", "f32_gauss", "i8_gauss",
                                    "const_f32", "raw_random", "special_bf16", "example_3",
                                    "bf16_shared"};
#define N_NAMES (sizeof(names) / sizeof(names[0]))

/* Build golden input k: its bytes, width and transform. */
static uint8_t *golden_input(unsigned k, size_t *size, unsigned *w, rfs_transform *xf,
                             rfs_table *shared)
{
    tu_rng r = {0x601d + k};
    size_t n = 777 + 100 * k;
    uint8_t *buf = malloc(n * 4);
    *w = 2;
    *xf = RFS_XF_ROT1;
    for (size_t i = 0; i < n; i++) {
        float f = (float)(tu_gauss(&r) * 0.02);
        uint16_t b = tu_f32_to_bf16(f), h = tu_f32_to_fp16(f);
        uint32_t u = (uint32_t)tu_next(&r);
        switch (k) {
        case 0: case 8: memcpy(buf + 2 * i, &b, 2); break;
        case 1: memcpy(buf + 2 * i, &h, 2); break;
        case 2: memcpy(buf + 4 * i, &f, 4); *w = 4; break;
        case 3: buf[i] = (uint8_t)(int8_t)(f * 3000); *w = 1; *xf = RFS_XF_NONE; break;
        case 4: memset(buf + 4 * i, 0x42, 4); *w = 4; *xf = RFS_XF_NONE; break;
        case 5: memcpy(buf + 4 * i, &u, 4); *w = 4; *xf = RFS_XF_NONE; break;
        case 6: { static const uint16_t sp[] = {0x7fc1, 0xff80, 0x8000, 0x0001, 0x3f80};
                  memcpy(buf + 2 * i, &sp[u % 5], 2); break; }
        default: break;
        }
    }
    if (k == 7) {
        n = 3;
        for (int i = 0; i < 3; i++) { buf[2 * i] = 0x80; buf[2 * i + 1] = 0x3f; }
    }
    if (k == 8) {
        uint64_t counts[256] = {0};
        rfs_plane_histogram(counts, buf, n, 2, RFS_XF_ROT1, 1);
        rfs_table_from_counts(shared, counts);
    }
    *size = n * *w;
    return buf;
}

static void write_file(const char *dir, const char *name, const char *ext, const void *p,
                       size_t n)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s.%s", dir, name, ext);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f)) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

static int write_golden(const char *dir)
{
    static rfs_table shared;
    for (unsigned k = 0; k < N_NAMES; k++) {
        size_t size, es = 0;
        unsigned w;
        rfs_transform xf;
        uint8_t *src = golden_input(k, &size, &w, &xf, &shared);
        rfs_table_set set = {{NULL, &shared, NULL, NULL}};
        rfs_tile_params p = {.width = w, .transform = xf, .shared = k == 8 ? &set : NULL};
        rfs_enc *e = rfs_enc_create(size);
        uint8_t *enc = malloc(rfs_tile_bound(size, w));
        if (rfs_tile_encode(e, enc, rfs_tile_bound(size, w), &es, src, size, &p) != RFS_OK)
            return 1;
        write_file(dir, names[k], "tile", enc, es);
        write_file(dir, names[k], "raw", src, size);
        if (k == 8) {
            uint8_t tb[RFS_TABLE_MAX_SIZE];
            size_t tn = 0;
            rfs_table_write(tb, sizeof(tb), &tn, &shared);
            write_file(dir, names[k], "table", tb, tn);
        }
        rfs_enc_destroy(e);
        free(enc);
        free(src);
    }
    return 0;
}

static void test_golden(void **state)
{
    (void)state;
    static rfs_table shared;
    for (unsigned k = 0; k < N_NAMES; k++) {
        char path[1024];
        size_t ts = 0, rs = 0, tbs = 0, got = 0, used = 0;
        snprintf(path, sizeof(path), GOLDEN "/%s.tile", names[k]);
        uint8_t *tile = tu_read_file(path, &ts);
        snprintf(path, sizeof(path), GOLDEN "/%s.raw", names[k]);
        uint8_t *raw = tu_read_file(path, &rs);
        snprintf(path, sizeof(path), GOLDEN "/%s.table", names[k]);
        uint8_t *tb = tu_read_file(path, &tbs);
        if (!tile || !raw)
            fail_msg("golden %s missing", names[k]);
        rfs_table_set set = {{NULL, NULL, NULL, NULL}};
        if (tb) {
            assert_int_equal(rfs_table_parse(&shared, tb, tbs, &used), RFS_OK);
            set.plane[1] = &shared;
        }
        rfs_dec *d = rfs_dec_create(rs);
        uint8_t *out = malloc(rs);
        for (const char *const *b = tu_backends(); *b; b++) {
            rfs_dec_set_backend(d, *b);
            rfs_err err = rfs_tile_decode(d, out, rs, &got, tile, ts, &set);
            if (err != RFS_OK)
                fail_msg("golden %s on %s: %s", names[k], *b, rfs_strerror(err));
            assert_int_equal(got, rs);
            assert_memory_equal(out, raw, rs);
        }
        rfs_dec_destroy(d);
        free(out);
        free(tile);
        free(raw);
        free(tb);
    }
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--write"))
        return write_golden(argv[2]);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_golden)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
