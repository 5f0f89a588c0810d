/*
 * test_image_reader.c - the image reader (codec/rfs_image*.c) against an
 * image packed by rfs_pack from a small tree built here: namespace queries,
 * random reads compared with the source, and refusal of damaged images
 * (truncation at many cut points, a flipped byte in every section, bad
 * magic/version/features, and crafted records whose checksums are fixed up
 * so that only the cross-reference checks can catch them).
 * Random data comes from a fixed-seed generator; the seed is printed.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <xxhash.h>

#include "rfs_image.h"
#include "rfs_image_format.h"
#include "rfs_image_info.h"
#include "rfs_pack.h"
#include "testutil.h"

#define TILE (64u << 10)
#define SEED 20261125u

static char g_dir[256], g_img[300], g_bad[300];
static uint8_t *g_buf; /* the good image */
static size_t g_size;

typedef struct src_file {
    const char *path;
    uint8_t *data;
    size_t size;
} src_file;

static src_file g_files[3];

static uint64_t g_rng = SEED;
static uint32_t rnd(void)
{
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(g_rng >> 33);
}

static void write_file(const char *rel, const uint8_t *data, size_t size)
{
    char path[512];
    snprintf(path, sizeof path, "%s/src/%s", g_dir, rel);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, size, f), size);
    fclose(f);
}

static void make_source(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/src", g_dir);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/src/sub", g_dir);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/src/sub/dir", g_dir);
    assert_int_equal(mkdir(path, 0750), 0);
    /* bf16 weights: 3 tiles and 10 bytes; exponents around 0x3c, skewed */
    size_t n = (3 * TILE + 10) / 2;
    uint8_t *w = malloc(2 * n);
    for (size_t i = 0; i < n; i++) {
        uint16_t v = (uint16_t)(0x3c00 + (rnd() % 4) * 0x80 + (rnd() & 0x7f) + (rnd() & 1) * 0x8000);
        w[2 * i] = (uint8_t)v;
        w[2 * i + 1] = (uint8_t)(v >> 8);
    }
    g_files[0] = (src_file){"w.bf16", w, 2 * n};
    /* text: compressible, several zstd blocks */
    size_t tn = 150000;
    uint8_t *t = malloc(tn);
    for (size_t i = 0; i < tn; i++)
        t[i] = (uint8_t)("lorem ipsum dolor sit amet\n"[i % 27] + (i % 1000 == 0));
    g_files[1] = (src_file){"sub/dir/notes.txt", t, tn};
    /* random: zstd does not shrink it, so RAW extents */
    size_t rn = 2 * TILE + 333;
    uint8_t *r = malloc(rn);
    for (size_t i = 0; i < rn; i++)
        r[i] = (uint8_t)rnd();
    g_files[2] = (src_file){"rand.bin", r, rn};
    for (int i = 0; i < 3; i++)
        write_file(g_files[i].path, g_files[i].data, g_files[i].size);
    write_file("empty", (const uint8_t *)"", 0);
    snprintf(path, sizeof path, "%s/src/ln", g_dir);
    assert_int_equal(symlink("sub/dir/notes.txt", path), 0);
}

static int group_setup(void **state)
{
    printf("# seed %u\n", SEED);
    snprintf(g_dir, sizeof g_dir, "/tmp/rfs-image-reader-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    make_source();
    snprintf(g_img, sizeof g_img, "%s/t.img", g_dir);
    snprintf(g_bad, sizeof g_bad, "%s/bad.img", g_dir);
    char src[300], err[512];
    snprintf(src, sizeof src, "%s/src", g_dir);
    rfs_pack_opts o = {.source = src, .image = g_img, .tile_size = TILE, .n_threads = 2,
                       .zstd_level = 3};
    rfs_pack_stats st;
    if (rfs_pack(&o, &st, err, sizeof err) != 0)
        fail_msg("rfs_pack: %s", err);
    g_buf = tu_must_read_file(g_img, &g_size);
    return 0;
}

static int group_teardown(void **state)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
    for (int i = 0; i < 3; i++)
        free(g_files[i].data);
    free(g_buf);
    return 0;
}

/* Open a modified copy of the image; returns the error. */
static rfs_err open_copy(const uint8_t *buf, size_t size, char *why, size_t why_cap)
{
    FILE *f = fopen(g_bad, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, size, f), size);
    fclose(f);
    rfs_image *img = NULL;
    rfs_err err = rfs_image_open(&img, g_bad, why, why_cap);
    if (err == RFS_OK)
        rfs_image_close(img);
    else
        assert_null(img);
    return err;
}

/* ------------------------------------------------------------ tests */

static void test_namespace(void **state)
{
    rfs_image *img;
    char why[256];
    assert_int_equal(rfs_image_open(&img, g_img, why, sizeof why), RFS_OK);
    rfs_image_summary sum;
    rfs_image_get_summary(img, &sum);
    assert_int_equal(sum.image_bytes, g_size);
    assert_int_equal(sum.tile_size, TILE);
    assert_true(sum.unit_max <= TILE);
    assert_int_equal(sum.n_inodes, 8); /* root, empty, ln, rand.bin, sub, w.bf16, dir, notes */
    assert_int_equal(sum.content_bytes, g_files[0].size + g_files[1].size + g_files[2].size);
    uint64_t n, ino, child;
    const char *name, *prev = "";
    assert_int_equal(rfs_image_dir_count(img, RFS_ROOT_INO, &n), RFS_OK);
    assert_int_equal(n, 5);
    for (uint64_t i = 0; i < n; i++) {
        assert_int_equal(rfs_image_dir_entry(img, RFS_ROOT_INO, i, &child, &name), RFS_OK);
        assert_true(strcmp(prev, name) < 0);
        assert_int_equal(rfs_image_lookup(img, RFS_ROOT_INO, name, &ino), RFS_OK);
        assert_int_equal(ino, child);
        prev = name;
    }
    assert_int_equal(rfs_image_dir_entry(img, RFS_ROOT_INO, n, &child, &name), RFS_E_NOENT);
    rfs_stat st;
    assert_int_equal(rfs_image_lookup_path(img, "/sub//dir/notes.txt", &ino), RFS_OK);
    assert_int_equal(rfs_image_stat(img, ino, &st), RFS_OK);
    assert_true(S_ISREG(st.mode));
    assert_int_equal(st.size, g_files[1].size);
    assert_int_equal(rfs_image_lookup_path(img, "sub/dir", &ino), RFS_OK);
    assert_int_equal(rfs_image_stat(img, ino, &st), RFS_OK);
    assert_int_equal(st.mode, S_IFDIR | 0750);
    uint64_t sub, parent;
    assert_int_equal(rfs_image_lookup_path(img, "sub", &sub), RFS_OK);
    assert_int_equal(rfs_image_dir_parent(img, ino, &parent), RFS_OK);
    assert_int_equal(parent, sub);
    assert_int_equal(rfs_image_dir_parent(img, sub, &parent), RFS_OK);
    assert_int_equal(parent, RFS_ROOT_INO);
    assert_int_equal(rfs_image_dir_parent(img, RFS_ROOT_INO, &parent), RFS_OK);
    assert_int_equal(parent, RFS_ROOT_INO);
    assert_int_equal(rfs_image_lookup_path(img, "sub/dir/notes.txt", &child), RFS_OK);
    assert_int_equal(rfs_image_dir_parent(img, child, &parent), RFS_E_NOTDIR);
    assert_int_equal(rfs_image_dir_parent(img, 99, &parent), RFS_E_NOENT);
    assert_int_equal(rfs_image_stat(img, RFS_ROOT_INO, &st), RFS_OK);
    assert_int_equal(st.nlink, 3);
    assert_int_equal(rfs_image_lookup_path(img, "", &ino), RFS_OK);
    assert_int_equal(ino, RFS_ROOT_INO);
    assert_int_equal(rfs_image_lookup_path(img, "nope", &ino), RFS_E_NOENT);
    assert_int_equal(rfs_image_lookup_path(img, "w.bf16/x", &ino), RFS_E_NOTDIR);
    assert_int_equal(rfs_image_lookup_path(img, "ln", &ino), RFS_OK);
    const char *target;
    assert_int_equal(rfs_image_readlink(img, ino, &target), RFS_OK);
    assert_string_equal(target, "sub/dir/notes.txt");
    assert_int_equal(rfs_image_stat(img, ino, &st), RFS_OK);
    assert_int_equal(st.size, strlen(target));
    assert_int_equal(rfs_image_readlink(img, RFS_ROOT_INO, &target), RFS_E_INVAL);
    rfs_span sp;
    assert_int_equal(rfs_image_map(img, RFS_ROOT_INO, 0, &sp), RFS_E_ISDIR);
    assert_int_equal(rfs_image_stat(img, 0, &st), RFS_E_NOENT);
    assert_int_equal(rfs_image_stat(img, 9, &st), RFS_E_NOENT);
    assert_int_equal(rfs_image_lookup_path(img, "empty", &ino), RFS_OK);
    assert_int_equal(rfs_image_map(img, ino, 0, &sp), RFS_E_INVAL);
    assert_int_equal(rfs_image_tensor_count(img), 1);
    rfs_tensor_info ti;
    assert_int_equal(rfs_image_tensor_info(img, 0, &ti), RFS_OK);
    assert_string_equal(ti.dtype, "BF16");
    assert_int_equal(ti.n_units, 4);
    assert_int_equal(ti.n_elems, g_files[0].size / 2);
    rfs_image_close(img);
}

static void test_read_random(void **state)
{
    rfs_image *img;
    char why[256];
    assert_int_equal(rfs_image_open(&img, g_img, why, sizeof why), RFS_OK);
    rfs_rctx *ctx = rfs_rctx_create(img);
    assert_non_null(ctx);
    uint8_t *buf = malloc(4 * TILE);
    for (int f = 0; f < 3; f++) {
        uint64_t ino;
        assert_int_equal(rfs_image_lookup_path(img, g_files[f].path, &ino), RFS_OK);
        size_t size = g_files[f].size, got;
        assert_int_equal(rfs_image_read(img, ctx, ino, 0, size + 100, buf, &got), RFS_OK);
        assert_int_equal(got, size);
        assert_memory_equal(buf, g_files[f].data, size);
        for (int k = 0; k < 300; k++) {
            uint64_t off = rnd() % (size + 10);
            size_t len = k % 3 ? rnd() % 5000 : rnd() % (3 * TILE);
            assert_int_equal(rfs_image_read(img, ctx, ino, off, len, buf, &got), RFS_OK);
            size_t want = off >= size ? 0 : (size - off < len ? size - off : len);
            assert_int_equal(got, want);
            if (want)
                assert_memory_equal(buf, g_files[f].data + off, want);
            if (off < size) {
                rfs_span sp;
                assert_int_equal(rfs_image_map(img, ino, off, &sp), RFS_OK);
                assert_true(sp.length > 0 && sp.length <= size - off);
                if (!sp.is_raw)
                    assert_true(sp.unit_off < sp.unit_size);
            }
        }
    }
    rfs_image_summary sum;
    rfs_image_get_summary(img, &sum);
    for (uint64_t u = 0; u < sum.n_units; u++) {
        rfs_unit_src src;
        size_t got;
        assert_int_equal(rfs_image_unit_source(img, u, &src), RFS_OK);
        assert_true(rfs_image_unit_verify(&src));
        assert_int_equal(rfs_image_unit_decode(img, ctx, u, buf, 4 * TILE, &got), RFS_OK);
        assert_int_equal(got, src.decoded_size);
        assert_int_equal(rfs_image_unit_decode(img, ctx, u, buf, src.decoded_size - 1, &got),
                         RFS_E_DST_SMALL);
        if (src.kind == RFS_UNIT_TILE)
            assert_non_null(src.shared); /* 4 tiles: the shared tables pay */
    }
    rfs_unit_src src;
    assert_int_equal(rfs_image_unit_source(img, sum.n_units, &src), RFS_E_NOENT);
    free(buf);
    rfs_rctx_destroy(ctx);
    rfs_image_close(img);
}

static void test_truncation(void **state)
{
    char why[256];
    size_t cuts[200], n = 0;
    for (size_t c = 0; c < 700 && n < 40; c += 23)
        cuts[n++] = c;
    for (int s = 0; s < RFS_SECT_COUNT; s++) {
        uint64_t off = rfs_ld64(g_buf + RFS_IMG_SECT_TABLE_OFF + s * RFS_IMG_SECT_ENTRY_SIZE);
        cuts[n++] = off - 1;
        cuts[n++] = off;
        cuts[n++] = off + 1;
    }
    for (int k = 1; k < 64; k++)
        cuts[n++] = g_size * k / 64;
    cuts[n++] = g_size - 1;
    for (size_t i = 0; i < n; i++) {
        if (cuts[i] >= g_size)
            continue;
        why[0] = '\0';
        rfs_err err = open_copy(g_buf, cuts[i], why, sizeof why);
        assert_int_not_equal(err, RFS_OK);
        assert_true(why[0] != '\0');
    }
    /* trailing bytes are refused too */
    uint8_t *big = calloc(1, g_size + 8);
    memcpy(big, g_buf, g_size);
    assert_int_equal(open_copy(big, g_size + 8, why, sizeof why), RFS_E_CORRUPT);
    free(big);
    assert_int_equal(open_copy(g_buf, g_size, why, sizeof why), RFS_OK);
}

static void test_flip_sections(void **state)
{
    char why[256];
    uint8_t *b = malloc(g_size);
    for (int s = 0; s < RFS_SECT_COUNT; s++) {
        const uint8_t *e = g_buf + RFS_IMG_SECT_TABLE_OFF + s * RFS_IMG_SECT_ENTRY_SIZE;
        uint64_t off = rfs_ld64(e), len = rfs_ld64(e + 8);
        if (len == 0)
            continue;
        uint64_t at[3] = {off, off + len / 2, off + len - 1};
        for (int k = 0; k < 3; k++) {
            memcpy(b, g_buf, g_size);
            b[at[k]] ^= 0x10;
            assert_int_equal(open_copy(b, g_size, why, sizeof why), RFS_E_CHECKSUM);
            assert_non_null(strstr(why, "checksum mismatch"));
        }
    }
    size_t sb_at[] = {16, 20, 33, 70, 200, 400, 503, 504, 511};
    for (size_t k = 0; k < sizeof sb_at / sizeof sb_at[0]; k++) {
        memcpy(b, g_buf, g_size);
        b[sb_at[k]] ^= 0x01;
        assert_int_equal(open_copy(b, g_size, why, sizeof why), RFS_E_CHECKSUM);
    }
    free(b);
}

static void sb_rehash(uint8_t *b) { rfs_sb_seal(b); }

static void test_magic_version(void **state)
{
    char why[256];
    uint8_t *b = malloc(g_size);
    memcpy(b, g_buf, g_size);
    b[0] = 'X';
    assert_int_equal(open_copy(b, g_size, why, sizeof why), RFS_E_MAGIC);
    memcpy(b, g_buf, g_size);
    rfs_st32(b + 8, 2);
    sb_rehash(b);
    assert_int_equal(open_copy(b, g_size, why, sizeof why), RFS_E_VERSION);
    assert_non_null(strstr(why, "version 2"));
    /* a newer minor version of major 1 is read (docs/format.md 2.1) */
    memcpy(b, g_buf, g_size);
    rfs_st16(b + 10, 7);
    sb_rehash(b);
    assert_int_equal(open_copy(b, g_size, why, sizeof why), RFS_OK);
    memcpy(b, g_buf, g_size);
    rfs_st32(b + 12, 0x80000001u);
    sb_rehash(b);
    assert_int_equal(open_copy(b, g_size, why, sizeof why), RFS_E_VERSION);
    assert_non_null(strstr(why, "unknown feature flags 0x80000000"));
    memcpy(b, g_buf, g_size);
    b[450] = 1;
    sb_rehash(b);
    assert_int_equal(open_copy(b, g_size, why, sizeof why), RFS_E_CORRUPT);
    memcpy(b, g_buf, g_size);
    rfs_st32(b + 20, TILE + 1);
    sb_rehash(b);
    assert_int_equal(open_copy(b, g_size, why, sizeof why), RFS_E_CORRUPT);
    assert_int_equal(open_copy(b, 0, why, sizeof why), RFS_E_TRUNCATED);
    free(b);
    rfs_image *img;
    assert_int_equal(rfs_image_open(&img, "/nonexistent/x.img", why, sizeof why), RFS_E_IO);
    assert_null(img);
}

/* Patch bytes of record rec of section s, then fix both checksums. */
static rfs_err crafted(int s, uint64_t rec, size_t rec_size, size_t field, const void *val,
                       size_t val_size, char *why, size_t why_cap)
{
    uint8_t *b = malloc(g_size);
    memcpy(b, g_buf, g_size);
    uint8_t *e = b + RFS_IMG_SECT_TABLE_OFF + s * RFS_IMG_SECT_ENTRY_SIZE;
    uint64_t off = rfs_ld64(e), len = rfs_ld64(e + 8);
    assert_true((rec + 1) * rec_size <= len);
    memcpy(b + off + rec * rec_size + field, val, val_size);
    rfs_st64(e + 24, XXH3_64bits(b + off, len));
    sb_rehash(b);
    rfs_err err = open_copy(b, g_size, why, why_cap);
    free(b);
    return err;
}

static void expect_corrupt(int s, uint64_t rec, size_t rec_size, size_t field, uint64_t v,
                           size_t v_size, const char *needle)
{
    char why[256] = "";
    uint8_t val[8];
    rfs_st64(val, v);
    rfs_err err = crafted(s, rec, rec_size, field, val, v_size, why, sizeof why);
    if (err != RFS_E_CORRUPT || !strstr(why, needle))
        fail_msg("section %d record %llu field %zu = %llu: got %d \"%s\", wanted \"%s\"", s,
                 (unsigned long long)rec, field, (unsigned long long)v, err, why, needle);
}

static void test_crafted(void **state)
{
    /* inodes: a fifo, bad mtime nsec, reserved, symlink target out of range */
    expect_corrupt(RFS_SECT_INODES, 1, RFS_INODE_SIZE, 0, S_IFIFO | 0644, 4, "unsupported file type");
    expect_corrupt(RFS_SECT_INODES, 1, RFS_INODE_SIZE, 16, 1000000000u, 4, "nanoseconds");
    expect_corrupt(RFS_SECT_INODES, 1, RFS_INODE_SIZE, 4, 1, 4, "reserved");
    expect_corrupt(RFS_SECT_INODES, 0, RFS_INODE_SIZE, 0, S_IFREG | 0755, 4, "root inode");
    expect_corrupt(RFS_SECT_INODES, 0, RFS_INODE_SIZE, 40, 99, 8, "out of range");
    /* dirents: a child pointing at the root, an unsorted pair, a bad name */
    expect_corrupt(RFS_SECT_DIRENTS, 0, RFS_DIRENT_SIZE, 0, 1, 4, "out of range");
    expect_corrupt(RFS_SECT_DIRENTS, 1, RFS_DIRENT_SIZE, 0, 2, 4, "more than one");
    expect_corrupt(RFS_SECT_DIRENTS, 0, RFS_DIRENT_SIZE, 4, 0, 2, "bad name");
    expect_corrupt(RFS_SECT_DIRENTS, 0, RFS_DIRENT_SIZE, 8, 1u << 30, 8, "bad name");
    /* extents: length off by one, unknown kind, unit out of range */
    expect_corrupt(RFS_SECT_EXTENTS, 0, RFS_EXTENT_SIZE, 8, 1, 8, "");
    expect_corrupt(RFS_SECT_EXTENTS, 0, RFS_EXTENT_SIZE, 24, 7, 1, "unknown kind");
    expect_corrupt(RFS_SECT_EXTENTS, 0, RFS_EXTENT_SIZE, 16, 1u << 20, 8, "");
    /* units: outside the data, decoded size, kind, tensor */
    expect_corrupt(RFS_SECT_UNITS, 0, RFS_UNIT_SIZE, 0, g_size, 8, "outside the data region");
    expect_corrupt(RFS_SECT_UNITS, 0, RFS_UNIT_SIZE, 12, TILE + 1, 4, "decoded size");
    expect_corrupt(RFS_SECT_UNITS, 0, RFS_UNIT_SIZE, 24, 5, 1, "unknown kind");
    expect_corrupt(RFS_SECT_UNITS, 0, RFS_UNIT_SIZE, 28, 77, 4, "");
    /* tensor: tile count, dtype, transform, elements, shared mask */
    expect_corrupt(RFS_SECT_TENSORS, 0, RFS_TENSOR_SIZE, 44, 5, 4, "tiles");
    expect_corrupt(RFS_SECT_TENSORS, 0, RFS_TENSOR_SIZE, 59, 9, 1, "dtype");
    expect_corrupt(RFS_SECT_TENSORS, 0, RFS_TENSOR_SIZE, 61, 2, 1, "transform");
    expect_corrupt(RFS_SECT_TENSORS, 0, RFS_TENSOR_SIZE, 16, 12345, 8, "elements");
    expect_corrupt(RFS_SECT_TENSORS, 0, RFS_TENSOR_SIZE, 62, 0x10, 1, "mask");
    expect_corrupt(RFS_SECT_TENSORS, 0, RFS_TENSOR_SIZE, 40, 3, 4, "not a regular file");
    /* a shared table that no longer sums to 4096 */
    expect_corrupt(RFS_SECT_TABLES, 0, 1, 0, 0xff, 1, "shared table");
}

static void test_payload_corrupt(void **state)
{
    char why[256];
    uint8_t *b = malloc(g_size);
    rfs_image *img;
    for (int f = 0; f < 3; f += 2) { /* a tile of w.bf16, a RAW extent of rand.bin */
        memcpy(b, g_buf, g_size);
        assert_int_equal(rfs_image_open(&img, g_img, why, sizeof why), RFS_OK);
        uint64_t ino;
        rfs_span sp;
        assert_int_equal(rfs_image_lookup_path(img, g_files[f].path, &ino), RFS_OK);
        assert_int_equal(rfs_image_map(img, ino, 100, &sp), RFS_OK);
        assert_int_equal(sp.is_raw, f == 2);
        uint64_t at = sp.raw_off + 7;
        rfs_image_close(img);
        if (!sp.is_raw) { /* the middle of the unit's payload, from the unit index */
            const uint8_t *e =
                g_buf + RFS_IMG_SECT_TABLE_OFF + RFS_SECT_UNITS * RFS_IMG_SECT_ENTRY_SIZE;
            rfs_unit_rec u;
            rfs_unit_load(&u, g_buf + rfs_ld64(e) + sp.unit * RFS_UNIT_SIZE);
            at = u.off + u.size / 2;
        }
        b[at] ^= 0x01;
        assert_int_equal(open_copy(b, g_size, why, sizeof why), RFS_OK);
        assert_int_equal(rfs_image_open(&img, g_bad, why, sizeof why), RFS_OK);
        rfs_rctx *ctx = rfs_rctx_create(img);
        uint8_t buf[64];
        size_t got;
        assert_int_equal(rfs_image_read(img, ctx, ino, 100, sizeof buf, buf, &got),
                         RFS_E_CHECKSUM);
        rfs_rctx_destroy(ctx);
        rfs_image_close(img);
    }
    free(b);
}

/* ------------------------------------------------------- golden images */

/*
 * A committed image (tests/data/golden/NAME.img, made by
 * make_golden_images.py) against its manifest: every name resolves, with
 * the mode, mtime, link count, size, contents (XXH3-64) or link target the
 * manifest gives; a second name ("h") is the same inode as the first; and
 * nothing else is in the image.  Returns the number of names checked.
 */
static unsigned golden_check(const char *name)
{
    char path[512], line[1024], why[256];
    snprintf(path, sizeof path, "%s/golden/%s.img", RFS_TEST_DATA, name);
    rfs_image *img;
    if (rfs_image_open(&img, path, why, sizeof why) != RFS_OK)
        fail_msg("%s: %s", path, why);
    rfs_rctx *ctx = rfs_rctx_create(img);
    assert_non_null(ctx);
    snprintf(path, sizeof path, "%s/golden/%s.manifest", RFS_TEST_DATA, name);
    FILE *m = fopen(path, "r");
    assert_non_null(m);
    unsigned names = 0;
    while (fgets(line, sizeof line, m)) {
        char type, a[300], b[300];
        unsigned mode, nsec, nlink;
        long long sec;
        unsigned long long size, hash;
        uint64_t ino, ino2;
        rfs_stat st;
        names++;
        if (sscanf(line, "h %299s %299s", a, b) == 2) {
            assert_int_equal(rfs_image_lookup_path(img, a, &ino), RFS_OK);
            assert_int_equal(rfs_image_lookup_path(img, b, &ino2), RFS_OK);
            assert_int_equal(ino, ino2);
            continue;
        }
        int k = sscanf(line, "%c %o %lld %u %u %299s %299s", &type, &mode, &sec, &nsec, &nlink, a,
                       b);
        assert_true(k >= 6);
        line[strcspn(line, "\n")] = '\0';
        const char *p = strrchr(line, ' ') + 1; /* the path is the last field */
        assert_int_equal(rfs_image_lookup_path(img, strcmp(p, ".") ? p : "", &ino), RFS_OK);
        assert_int_equal(rfs_image_stat(img, ino, &st), RFS_OK);
        if ((st.mode & 07777) != mode || st.mtime_sec != sec || st.mtime_nsec != nsec ||
            st.nlink != nlink)
            fail_msg("%s: %s: mode %o mtime %lld.%u nlink %u, manifest: %o %lld.%u %u", name, p,
                     st.mode & 07777, (long long)st.mtime_sec, st.mtime_nsec, st.nlink, mode, sec,
                     nsec, nlink);
        if (type == 'l') {
            const char *target;
            assert_true(S_ISLNK(st.mode));
            assert_int_equal(rfs_image_readlink(img, ino, &target), RFS_OK);
            assert_string_equal(target, a);
        } else if (type == 'f') {
            assert_int_equal(sscanf(line, "f %*o %*d %*u %*u %llu %llx %299s", &size, &hash, b), 3);
            assert_true(S_ISREG(st.mode));
            assert_int_equal(st.size, size);
            uint8_t *buf = malloc(size + 1);
            size_t got;
            assert_int_equal(rfs_image_read(img, ctx, ino, 0, size + 1, buf, &got), RFS_OK);
            assert_int_equal(got, size);
            assert_int_equal(XXH3_64bits(buf, size), hash);
            free(buf);
        } else {
            assert_int_equal(type, 'd');
            assert_true(S_ISDIR(st.mode));
        }
    }
    fclose(m);
    rfs_rctx_destroy(ctx);
    rfs_image_close(img);
    return names;
}

/* An image written by the format-1 packer (no hard links) still reads. */
static void test_golden_v1(void **state)
{
    assert_int_equal(golden_check("tree_v1"), 10);
}

/* Fix the checksum of section s of image b, and the superblock's. */
static void reseal(uint8_t *b, int s)
{
    uint8_t *e = b + RFS_IMG_SECT_TABLE_OFF + s * RFS_IMG_SECT_ENTRY_SIZE;
    rfs_st64(e + 24, XXH3_64bits(b + rfs_ld64(e), rfs_ld64(e + 8)));
    rfs_sb_seal(b);
}

static void golden_read(const char *name, uint8_t **buf, size_t *size)
{
    char path[512];
    snprintf(path, sizeof path, "%s/golden/%s.img", RFS_TEST_DATA, name);
    *buf = tu_must_read_file(path, size);
}

/* Feature flags f in the superblock at sb, resealed. */
static void features_reseal(uint8_t *sb, uint32_t f)
{
    rfs_st32(sb + 12, f);
    rfs_sb_seal(sb);
}

/* Opening the image buf refuses it with err and a reason that says needle. */
static void open_refused(const uint8_t *buf, size_t size, rfs_err err, const char *needle)
{
    char why[256];
    assert_int_equal(open_copy(buf, size, why, sizeof why), err);
    assert_non_null(strstr(why, needle));
}

/* Hard links (feature HARDLINKS): both names, one inode, nlink right; the
 * flag must match the tree, and a directory is never named twice. */
static void test_golden_hardlinks(void **state)
{
    char why[256];
    uint8_t *v1, *hl;
    size_t v1_size, hl_size;
    assert_int_equal(golden_check("tree_hardlinks"), 13);
    golden_read("tree_v1", &v1, &v1_size);
    golden_read("tree_hardlinks", &hl, &hl_size);
    assert_int_equal(rfs_ld32(v1 + 12), 0);
    assert_int_equal(rfs_ld32(hl + 12), RFS_IMG_F_HARDLINKS);
    features_reseal(hl, 0);
    open_refused(hl, hl_size, RFS_E_CORRUPT, "feature HARDLINKS is not set");
    features_reseal(v1, RFS_IMG_F_HARDLINKS);
    open_refused(v1, v1_size, RFS_E_CORRUPT, "no inode has two names");
    /* root entry 5 (w2.fp16, a second name) made to name directory sub */
    rfs_st32(hl + 12, RFS_IMG_F_HARDLINKS);
    uint8_t *e = hl + RFS_IMG_SECT_TABLE_OFF + RFS_SECT_DIRENTS * RFS_IMG_SECT_ENTRY_SIZE;
    uint8_t *d5 = hl + rfs_ld64(e) + 5 * RFS_DIRENT_SIZE;
    assert_int_equal(rfs_ld32(d5), 7);
    rfs_st32(d5, 6);
    reseal(hl, RFS_SECT_DIRENTS);
    assert_int_equal(open_copy(hl, hl_size, why, sizeof why), RFS_E_CORRUPT);
    assert_non_null(strstr(why, "(a directory)"));
    free(v1);
    free(hl);
}

/* A TRAILER image (tree_v1's tree streamed to a pipe): the manifest reads
 * back, and the image is tree_v1.img but for the stub at offset 0 and the
 * superblock moved to the end (docs/format.md 2.1.3).  A stub that
 * disagrees with the trailer, or a trailer without TRAILER, is refused. */
static void test_golden_stream(void **state)
{
    char why[256];
    uint8_t *v1, *st, stub[RFS_IMG_SB_SIZE];
    size_t v1_size, st_size;
    assert_int_equal(golden_check("tree_stream"), 10);
    golden_read("tree_v1", &v1, &v1_size);
    golden_read("tree_stream", &st, &st_size);
    assert_int_equal(st_size, v1_size + RFS_IMG_SB_SIZE);
    assert_memory_equal(st + RFS_IMG_SB_SIZE, v1 + RFS_IMG_SB_SIZE, v1_size - RFS_IMG_SB_SIZE);
    uint8_t *tr = st + st_size - RFS_IMG_SB_SIZE;
    rfs_sb_rec r;
    rfs_sb_load(&r, tr);
    assert_int_equal(r.features, RFS_IMG_F_TRAILER);
    assert_int_equal(r.image_size, st_size);
    rfs_sb_stub_store(stub, &r);
    assert_memory_equal(st, stub, RFS_IMG_SB_SIZE);
    /* the trailer, TRAILER cleared and 512 bytes shorter, is v1's superblock */
    r.features = 0;
    r.image_size -= RFS_IMG_SB_SIZE;
    rfs_sb_store(stub, &r);
    assert_memory_equal(stub, v1, RFS_IMG_SB_SIZE);
    st[16] ^= 1; /* stub superblock size */
    open_refused(st, st_size, RFS_E_CORRUPT, "stub at offset 0 does not match");
    st[16] ^= 1;
    features_reseal(tr, 0);
    open_refused(st, st_size, RFS_E_CORRUPT, "does not have the TRAILER flag");
    features_reseal(tr, RFS_IMG_F_TRAILER);
    assert_int_equal(open_copy(st, st_size, why, sizeof why), RFS_OK);
    open_refused(st, st_size - 1, RFS_E_TRUNCATED, "truncated stream");
    free(v1);
    free(st);
}

/* Pack a directory holding one bf16 file of data into image (with RANS_CTX
 * allowed unless no_ctx); returns the image bytes. */
static uint8_t *pack_one(const char *dir, const char *image, int no_ctx, size_t *size)
{
    char err[512];
    rfs_pack_opts o = {.source = dir, .image = image, .tile_size = TILE, .n_threads = 2,
                       .zstd_level = 3, .no_ctx = no_ctx};
    rfs_pack_stats st;
    if (rfs_pack(&o, &st, err, sizeof err) != 0)
        fail_msg("rfs_pack: %s", err);
    return tu_must_read_file(image, size);
}

/* Read file c.bf16 of the image buf back whole; returns the error. */
static rfs_err read_back(const uint8_t *buf, size_t size, const uint8_t *want, size_t want_size)
{
    char why[256];
    FILE *f = fopen(g_bad, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, size, f), size);
    fclose(f);
    rfs_image *img = NULL;
    assert_int_equal(rfs_image_open(&img, g_bad, why, sizeof why), RFS_OK);
    rfs_rctx *ctx = rfs_rctx_create(img);
    uint64_t ino;
    assert_int_equal(rfs_image_lookup_path(img, "c.bf16", &ino), RFS_OK);
    uint8_t *got_buf = malloc(want_size + 1);
    size_t got = 0;
    rfs_err err = rfs_image_read(img, ctx, ino, 0, want_size, got_buf, &got);
    if (err == RFS_OK && (got != want_size || memcmp(got_buf, want, want_size)))
        fail_msg("c.bf16 reads back other bytes");
    free(got_buf);
    rfs_rctx_destroy(ctx);
    rfs_image_close(img);
    return err;
}

/* Feature CTX (docs/format.md 1.4.1, 2.1.1): a bf16 file whose low byte
 * depends on the exponent packs with RANS_CTX tiles and the flag, smaller
 * than with --no-ctx (flag clear, tile format 1 only); both read back.
 * A RANS_CTX tile in an image without the flag is corruption. */
static void test_ctx_feature(void **state)
{
    char dir[300], img[320];
    snprintf(dir, sizeof dir, "%s/ctxsrc", g_dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    size_t n = TILE; /* two tiles */
    uint8_t *w = malloc(2 * n);
    for (size_t i = 0; i < n; i++) {
        unsigned up = rnd() & 1; /* exponent 0x7c-0x7f or 0x70-0x73; mantissa by range */
        uint16_t v = (uint16_t)((up ? 0x7c : 0x70) + rnd() % 4) << 7 |
                     (uint16_t)((up ? 0 : 64) + rnd() % 8) | (uint16_t)(rnd() & 1) << 15;
        w[2 * i] = (uint8_t)v;
        w[2 * i + 1] = (uint8_t)(v >> 8);
    }
    char path[400];
    snprintf(path, sizeof path, "%s/c.bf16", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(w, 1, 2 * n, f), 2 * n);
    fclose(f);
    size_t cs = 0, ps = 0;
    snprintf(img, sizeof img, "%s/ctx.img", g_dir);
    uint8_t *c = pack_one(dir, img, 0, &cs);
    snprintf(img, sizeof img, "%s/noctx.img", g_dir);
    uint8_t *p = pack_one(dir, img, 1, &ps);
    assert_int_equal(rfs_ld32(c + 12), RFS_IMG_F_CTX);
    assert_int_equal(rfs_ld32(p + 12), 0);
    assert_true(cs < ps);
    assert_int_equal(read_back(c, cs, w, 2 * n), RFS_OK);
    assert_int_equal(read_back(p, ps, w, 2 * n), RFS_OK);
    features_reseal(c, 0);
    assert_int_equal(read_back(c, cs, w, 2 * n), RFS_E_CORRUPT);
    free(c);
    free(p);
    free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_namespace),     cmocka_unit_test(test_read_random),
        cmocka_unit_test(test_truncation),    cmocka_unit_test(test_flip_sections),
        cmocka_unit_test(test_magic_version), cmocka_unit_test(test_crafted),
        cmocka_unit_test(test_payload_corrupt), cmocka_unit_test(test_golden_v1),
        cmocka_unit_test(test_golden_hardlinks), cmocka_unit_test(test_golden_stream),
        cmocka_unit_test(test_ctx_feature),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
