/*
 * Golden tiles: tests/data/golden/NAME.tile must decode to NAME.raw on
 * every backend (NAME.table, when present, is the serialised shared table
 * of plane 1).  These pin the format: an encoder change may produce other
 * bytes, but these must keep decoding.  NAME_ctx tiles have a RANS_CTX
 * plane (tile format 2); the others are tile format 1.  `test_tile_golden --write DIR`
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
                                    "bf16_shared", "bf16_ctx",  "fp16_ctx",  "f32_ctx"};
#define N_NAMES (sizeof(names) / sizeof(names[0]))

/* 1 for the inputs coded with RANS_CTX allowed. */
static int golden_ctx(unsigned k)
{
    return k >= 9;
}

/* Element i of a RANS_CTX input of width w: in transformed form, plane
 * W-1 in one of two ranges, plane W-2 a byte whose distribution depends on
 * the range (so two tables pay), the rest noise; returned untransformed. */
static uint32_t ctx_elem(uint64_t u, unsigned w, rfs_transform xf)
{
    unsigned up = u & 1;
    unsigned hi = (up ? 0x7c : 0x70) + (unsigned)(u >> 8 & 3);
    unsigned lo = (up ? 0 : 128) + (unsigned)(u >> 16 & 15);
    uint32_t t = (uint32_t)hi << (8 * (w - 1)) | (uint32_t)lo << (8 * (w - 2));
    if (w == 4)
        t |= (uint32_t)(u >> 24) & 0xffff;
    if (xf == RFS_XF_ROT1)
        t = w == 2 ? ((t >> 1) | (t << 15)) & 0xffff : (t >> 1) | (t << 31);
    return t;
}

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
        case 9: case 10: case 11: {
            *w = k == 11 ? 4 : 2;
            *xf = k == 10 ? RFS_XF_NONE : RFS_XF_ROT1;
            uint32_t e = ctx_elem(tu_next(&r), *w, *xf);
            memcpy(buf + *w * i, &e, *w); /* little-endian host */
            break; }
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
        rfs_tile_params p = {.width = w, .transform = xf, .shared = k == 8 ? &set : NULL,
                             .ctx = golden_ctx(k)};
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
        /* each golden is of the tile format it stands for */
        assert_int_equal(rfs_tile_uses_ctx(tile, ts), golden_ctx(k));
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
