/*
 * test_lib_api.c - every call of libransfs (lib/ransfs.h), linked against
 * the shared library, over an image packed here by rfs_pack from a small
 * tree: a safetensors file (a multi-tile BF16 tensor, F32, I64, an empty
 * tensor), a malformed safetensors file, text (zstd blocks), random bytes
 * (RAW extents), an empty file, a symlink and nested directories.
 * Each call's results are compared with the source; each error path is
 * taken (NULL arguments, bad paths, not a file, not safetensors, ranges past
 * the end, short reads at the end) and damaged images (a flipped byte in a
 * tile, in a RAW extent, in the metadata; a truncated file) give
 * RANSFS_E_CORRUPT, never wrong bytes.  Random data from a fixed seed
 * (printed).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ransfs.h"
#include "rfs_gpu.h"
#include "rfs_image.h"
#include "rfs_image_info.h"
#include "rfs_pack.h"
#include "testutil.h"

#define TILE (64u << 10)
#define SEED 20261202u

static char g_dir[256], g_img[300], g_bad[300];

typedef struct src_file {
    const char *path;
    uint8_t *data;
    size_t size;
} src_file;

enum { F_ST, F_BADST, F_TEXT, F_RAND, F_EMPTY, N_FILES };
static src_file g_files[N_FILES];

/* The tensors of model.safetensors, in file order. */
typedef struct want_tensor {
    const char *name, *dtype;
    uint32_t ndim;
    uint64_t shape[3];
    uint64_t size;
} want_tensor;

static const want_tensor g_want[] = {
    {"emb", "BF16", 2, {1000, 100}, 200000},
    {"bias", "F32", 1, {7}, 28},
    {"empty", "F32", 2, {0, 4}, 0},
    {"idx", "I64", 3, {3, 1, 5}, 120},
};
#define N_WANT (sizeof g_want / sizeof g_want[0])
static uint64_t g_data_start;

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

/* A safetensors file with the tensors of g_want: a JSON header padded to 8
 * bytes, then their data in order (skewed bf16 exponents, random rest). */
static void make_safetensors(void)
{
    char json[1024];
    size_t jl = 0;
    uint64_t off = 0;
    jl += (size_t)snprintf(json + jl, sizeof json - jl, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (size_t i = 0; i < N_WANT; i++) {
        const want_tensor *t = &g_want[i];
        jl += (size_t)snprintf(json + jl, sizeof json - jl, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                               t->name, t->dtype);
        for (uint32_t d = 0; d < t->ndim; d++)
            jl += (size_t)snprintf(json + jl, sizeof json - jl, "%s%llu", d ? "," : "",
                                   (unsigned long long)t->shape[d]);
        jl += (size_t)snprintf(json + jl, sizeof json - jl, "],\"data_offsets\":[%llu,%llu]}",
                               (unsigned long long)off, (unsigned long long)(off + t->size));
        off += t->size;
    }
    jl += (size_t)snprintf(json + jl, sizeof json - jl, "}");
    while (jl % 8)
        json[jl++] = ' ';
    g_data_start = 8 + jl;
    size_t size = g_data_start + off;
    uint8_t *b = malloc(size);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)jl >> (8 * i));
    memcpy(b + 8, json, jl);
    for (size_t i = g_data_start; i < g_data_start + g_want[0].size; i += 2) {
        uint16_t v =
            (uint16_t)(0x3c00 + (rnd() % 4) * 0x80 + (rnd() & 0x7f) + (rnd() & 1) * 0x8000);
        b[i] = (uint8_t)v;
        b[i + 1] = (uint8_t)(v >> 8);
    }
    for (size_t i = g_data_start + g_want[0].size; i < size; i++)
        b[i] = (uint8_t)rnd();
    g_files[F_ST] = (src_file){"model.safetensors", b, size};
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
    make_safetensors();
    static const char bad[] = "\x10\0\0\0\0\0\0\0{\"x\": not json}";
    uint8_t *bb = malloc(sizeof bad - 1);
    memcpy(bb, bad, sizeof bad - 1);
    g_files[F_BADST] = (src_file){"sub/bad.safetensors", bb, sizeof bad - 1};
    size_t tn = 150000;
    uint8_t *t = malloc(tn);
    for (size_t i = 0; i < tn; i++)
        t[i] = (uint8_t)("lorem ipsum dolor sit amet\n"[i % 27] + (i % 1000 == 0));
    g_files[F_TEXT] = (src_file){"sub/dir/notes.txt", t, tn};
    size_t rn = 2 * TILE + 333;
    uint8_t *r = malloc(rn);
    for (size_t i = 0; i < rn; i++)
        r[i] = (uint8_t)rnd();
    g_files[F_RAND] = (src_file){"rand.bin", r, rn};
    g_files[F_EMPTY] = (src_file){"empty", calloc(1, 1), 0};
    for (int i = 0; i < N_FILES; i++)
        write_file(g_files[i].path, g_files[i].data, g_files[i].size);
    snprintf(path, sizeof path, "%s/src/ln", g_dir);
    assert_int_equal(symlink("sub/dir/notes.txt", path), 0);
}

static int group_setup(void **state)
{
    printf("# seed %u\n", SEED);
    snprintf(g_dir, sizeof g_dir, "/tmp/rfs-lib-api-XXXXXX");
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
    return 0;
}

static int group_teardown(void **state)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
    for (int i = 0; i < N_FILES; i++)
        free(g_files[i].data);
    return 0;
}

static ransfs *open_good(void)
{
    ransfs *img = NULL;
    char why[256];
    ransfs_err err = ransfs_open(&img, g_img, why, sizeof why);
    if (err)
        fail_msg("ransfs_open: %s", why);
    assert_non_null(img);
    return img;
}

/* ------------------------------------------------------------ tests */

static void test_strings(void **state)
{
    assert_string_equal(ransfs_version(), RANSFS_TEST_VERSION);
    const char *f = ransfs_features();
    assert_non_null(f);
    char buf[64];
    snprintf(buf, sizeof buf, "%s", f);
    for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " "))
        assert_true(strcmp(tok, "cuda") == 0 || strcmp(tok, "avx2") == 0 ||
                    strcmp(tok, "avx512") == 0);
    assert_int_equal(strstr(f, "cuda") != NULL, strcmp(rfs_gpu_build(), "cuda") == 0);
    for (int e = RANSFS_OK; e <= RANSFS_E_UNSUPPORTED; e++) {
        assert_non_null(ransfs_strerror(e));
        assert_string_not_equal(ransfs_strerror(e), "unknown error");
        for (int k = 0; k < e; k++)
            assert_string_not_equal(ransfs_strerror(e), ransfs_strerror(k));
    }
    assert_string_equal(ransfs_strerror(-1), "unknown error");
    assert_string_equal(ransfs_strerror(RANSFS_E_UNSUPPORTED + 1), "unknown error");
}

static void test_open_errors(void **state)
{
    ransfs *img = (ransfs *)1;
    char why[256], path[400];
    snprintf(path, sizeof path, "%s/no-such.img", g_dir);
    assert_int_equal(ransfs_open(&img, path, why, sizeof why), RANSFS_E_IO);
    assert_null(img);
    assert_non_null(strstr(why, path)); /* the reason names the file */
    snprintf(path, sizeof path, "%s/src", g_dir);
    img = (ransfs *)1;
    assert_int_not_equal(ransfs_open(&img, path, why, sizeof why), RANSFS_OK);
    assert_null(img);
    /* a file that is no image */
    snprintf(path, sizeof path, "%s/src/%s", g_dir, g_files[F_TEXT].path);
    assert_int_equal(ransfs_open(&img, path, why, sizeof why), RANSFS_E_CORRUPT);
    assert_null(img);
    assert_true(strlen(why) > strlen(path));
    /* a short reason buffer is truncated, never overrun; NULL is allowed */
    char tiny[8];
    memset(tiny, 'x', sizeof tiny);
    assert_int_equal(ransfs_open(&img, path, tiny, 5), RANSFS_E_CORRUPT);
    assert_int_equal(strlen(tiny), 4);
    assert_int_equal(tiny[5], 'x');
    assert_int_equal(ransfs_open(&img, path, NULL, 0), RANSFS_E_CORRUPT);
    assert_int_equal(ransfs_open(&img, NULL, why, sizeof why), RANSFS_E_INVAL);
    assert_int_equal(ransfs_open(NULL, g_img, why, sizeof why), RANSFS_E_INVAL);
    ransfs_close(NULL);
}

static void test_stat(void **state)
{
    ransfs *img = open_good();
    struct ransfs_stat st;
    assert_int_equal(ransfs_stat(img, "/", &st), RANSFS_OK);
    assert_true(S_ISDIR(st.mode));
    assert_int_equal(st.ino, 1);
    assert_int_equal(ransfs_stat(img, "", &st), RANSFS_OK);
    assert_int_equal(st.ino, 1);
    for (int i = 0; i < N_FILES; i++) {
        char src[512];
        struct stat ss;
        snprintf(src, sizeof src, "%s/src/%s", g_dir, g_files[i].path);
        assert_int_equal(lstat(src, &ss), 0);
        assert_int_equal(ransfs_stat(img, g_files[i].path, &st), RANSFS_OK);
        assert_true(S_ISREG(st.mode));
        assert_int_equal(st.size, g_files[i].size);
        assert_int_equal(st.mode, ss.st_mode);
        assert_int_equal(st.nlink, 1);
        assert_int_equal(st.mtime_sec, ss.st_mtim.tv_sec);
        assert_int_equal(st.mtime_nsec, ss.st_mtim.tv_nsec);
    }
    assert_int_equal(ransfs_stat(img, "/sub/dir", &st), RANSFS_OK);
    assert_int_equal(st.mode, S_IFDIR | 0750);
    assert_int_equal(ransfs_stat(img, "ln", &st), RANSFS_OK); /* not followed */
    assert_true(S_ISLNK(st.mode));
    assert_int_equal(st.size, strlen("sub/dir/notes.txt"));
    assert_int_equal(ransfs_stat(img, "nope", &st), RANSFS_E_NOENT);
    assert_int_equal(ransfs_stat(img, "sub/nope/x", &st), RANSFS_E_NOENT);
    assert_int_equal(ransfs_stat(img, "rand.bin/x", &st), RANSFS_E_NOTDIR);
    assert_int_equal(ransfs_stat(NULL, "/", &st), RANSFS_E_INVAL);
    assert_int_equal(ransfs_stat(img, NULL, &st), RANSFS_E_INVAL);
    assert_int_equal(ransfs_stat(img, "/", NULL), RANSFS_E_INVAL);
    ransfs_close(img);
}

static void test_dir(void **state)
{
    ransfs *img = open_good();
    static const char *const root[] = {"empty", "ln", "model.safetensors", "rand.bin", "sub"};
    uint64_t n;
    assert_int_equal(ransfs_dir_count(img, "/", &n), RANSFS_OK);
    assert_int_equal(n, 5);
    for (uint64_t i = 0; i < n; i++) {
        const char *name;
        struct ransfs_stat st, st2;
        memset(&st, 0, sizeof st); /* padding too, for the memory compare */
        memset(&st2, 0, sizeof st2);
        assert_int_equal(ransfs_dir_entry(img, "/", i, &name, &st), RANSFS_OK);
        assert_string_equal(name, root[i]);
        assert_int_equal(ransfs_stat(img, name, &st2), RANSFS_OK);
        assert_memory_equal(&st, &st2, sizeof st);
        assert_int_equal(ransfs_dir_entry(img, "/", i, &name, NULL), RANSFS_OK);
    }
    const char *name = "unchanged";
    assert_int_equal(ransfs_dir_entry(img, "/", n, &name, NULL), RANSFS_E_RANGE);
    assert_string_equal(name, "unchanged");
    assert_int_equal(ransfs_dir_count(img, "sub", &n), RANSFS_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ransfs_dir_entry(img, "sub/", 0, &name, NULL), RANSFS_OK);
    assert_string_equal(name, "bad.safetensors");
    assert_int_equal(ransfs_dir_count(img, "rand.bin", &n), RANSFS_E_NOTDIR);
    assert_int_equal(ransfs_dir_count(img, "ln", &n), RANSFS_E_NOTDIR);
    assert_int_equal(ransfs_dir_count(img, "nope", &n), RANSFS_E_NOENT);
    assert_int_equal(ransfs_dir_entry(img, "rand.bin", 0, &name, NULL), RANSFS_E_NOTDIR);
    assert_int_equal(ransfs_dir_entry(img, "nope", 0, &name, NULL), RANSFS_E_NOENT);
    assert_int_equal(ransfs_dir_count(img, "/", NULL), RANSFS_E_INVAL);
    assert_int_equal(ransfs_dir_entry(img, "/", 0, NULL, NULL), RANSFS_E_INVAL);
    const char *target;
    assert_int_equal(ransfs_readlink(img, "/ln", &target), RANSFS_OK);
    assert_string_equal(target, "sub/dir/notes.txt");
    assert_int_equal(ransfs_readlink(img, "rand.bin", &target), RANSFS_E_INVAL);
    assert_int_equal(ransfs_readlink(img, "sub", &target), RANSFS_E_INVAL);
    assert_int_equal(ransfs_readlink(img, "nope", &target), RANSFS_E_NOENT);
    assert_int_equal(ransfs_readlink(img, "ln", NULL), RANSFS_E_INVAL);
    ransfs_close(img);
}

static void test_read(void **state)
{
    ransfs *img = open_good();
    uint8_t *buf = malloc(4 * TILE);
    size_t got;
    for (int f = 0; f < N_FILES; f++) {
        const src_file *s = &g_files[f];
        assert_int_equal(ransfs_read(img, s->path, 0, buf, s->size + 100, &got), RANSFS_OK);
        assert_int_equal(got, s->size);
        assert_memory_equal(buf, s->data, s->size);
        for (int k = 0; k < 200; k++) {
            uint64_t off = rnd() % (s->size + 10);
            size_t len = k % 3 ? rnd() % 5000 : rnd() % (3 * TILE);
            got = 12345;
            assert_int_equal(ransfs_read(img, s->path, off, buf, len, &got), RANSFS_OK);
            size_t want = off >= s->size ? 0 : (s->size - off < len ? s->size - off : len);
            assert_int_equal(got, want);
            if (want)
                assert_memory_equal(buf, s->data + off, want);
        }
    }
    assert_int_equal(ransfs_read(img, "rand.bin", UINT64_MAX, buf, 10, &got), RANSFS_OK);
    assert_int_equal(got, 0);
    assert_int_equal(ransfs_read(img, "rand.bin", 0, NULL, 0, &got), RANSFS_OK);
    assert_int_equal(got, 0);
    assert_int_equal(ransfs_read(img, "rand.bin", 0, NULL, 10, &got), RANSFS_E_INVAL);
    assert_int_equal(ransfs_read(img, "rand.bin", 0, buf, 10, NULL), RANSFS_E_INVAL);
    assert_int_equal(ransfs_read(img, "sub", 0, buf, 10, &got), RANSFS_E_ISDIR);
    assert_int_equal(ransfs_read(img, "/", 0, buf, 10, &got), RANSFS_E_ISDIR);
    assert_int_equal(ransfs_read(img, "ln", 0, buf, 10, &got), RANSFS_E_INVAL);
    assert_int_equal(ransfs_read(img, "nope", 0, buf, 10, &got), RANSFS_E_NOENT);
    assert_int_equal(ransfs_read(img, "rand.bin/x", 0, buf, 10, &got), RANSFS_E_NOTDIR);
    assert_int_equal(got, 0);
    free(buf);
    ransfs_close(img);
}

static void test_tensors(void **state)
{
    ransfs *img = open_good();
    ransfs_tensor *t;
    size_t n;
    assert_int_equal(ransfs_tensors(img, "/model.safetensors", &t, &n), RANSFS_OK);
    assert_int_equal(n, N_WANT);
    uint64_t off = g_data_start;
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(t[i].name, g_want[i].name);
        assert_string_equal(t[i].dtype, g_want[i].dtype);
        assert_int_equal(t[i].ndim, g_want[i].ndim);
        for (uint32_t d = 0; d < 8; d++)
            assert_int_equal(t[i].shape[d], d < g_want[i].ndim ? g_want[i].shape[d] : 0);
        assert_int_equal(t[i].offset, off);
        assert_int_equal(t[i].size, g_want[i].size);
        off += t[i].size;
    }
    ransfs_tensors_free(t, n);
    ransfs_tensors_free(NULL, 0);
    t = (ransfs_tensor *)1;
    assert_int_equal(ransfs_tensors(img, "sub/bad.safetensors", &t, &n), RANSFS_E_NOT_SAFETENSORS);
    assert_ptr_equal(t, (ransfs_tensor *)1); /* untouched on an error */
    assert_int_equal(ransfs_tensors(img, "sub/dir/notes.txt", &t, &n), RANSFS_E_NOT_SAFETENSORS);
    assert_int_equal(ransfs_tensors(img, "rand.bin", &t, &n), RANSFS_E_NOT_SAFETENSORS);
    assert_int_equal(ransfs_tensors(img, "empty", &t, &n), RANSFS_E_NOT_SAFETENSORS);
    assert_int_equal(ransfs_tensors(img, "sub", &t, &n), RANSFS_E_ISDIR);
    assert_int_equal(ransfs_tensors(img, "ln", &t, &n), RANSFS_E_INVAL);
    assert_int_equal(ransfs_tensors(img, "nope", &t, &n), RANSFS_E_NOENT);
    assert_int_equal(ransfs_tensors(img, "model.safetensors", NULL, &n), RANSFS_E_INVAL);
    assert_int_equal(ransfs_tensors(img, "model.safetensors", &t, NULL), RANSFS_E_INVAL);
    ransfs_close(img);
}

/* Decode t[0..n) with `threads` and compare with the source file. */
static void read_tensors_check(ransfs *img, const ransfs_tensor *t, size_t n, int threads)
{
    const src_file *s = &g_files[F_ST];
    void **dst = calloc(n, sizeof *dst);
    for (size_t i = 0; i < n; i++) {
        dst[i] = malloc(t[i].size + 1);
        memset(dst[i], 0xa5, t[i].size + 1);
    }
    assert_int_equal(ransfs_read_tensors(img, s->path, t, n, dst, threads), RANSFS_OK);
    for (size_t i = 0; i < n; i++) {
        assert_memory_equal(dst[i], s->data + t[i].offset, t[i].size);
        assert_int_equal(((uint8_t *)dst[i])[t[i].size], 0xa5); /* not one byte more */
        free(dst[i]);
    }
    free(dst);
}

static void test_read_tensors(void **state)
{
    ransfs *img = open_good();
    ransfs_tensor *t;
    size_t n;
    assert_int_equal(ransfs_tensors(img, "model.safetensors", &t, &n), RANSFS_OK);
    static const int threads[] = {1, 2, 0, -3, 8};
    for (size_t k = 0; k < sizeof threads / sizeof threads[0]; k++)
        read_tensors_check(img, t, n, threads[k]);
    /* any ranges: cut inside tiles, across tiles, overlapping, the whole file */
    uint64_t fsize = g_files[F_ST].size;
    ransfs_tensor r[40];
    memset(r, 0, sizeof r);
    for (size_t i = 0; i < 39; i++) {
        r[i].offset = rnd() % fsize;
        r[i].size = i % 4 ? rnd() % (fsize - r[i].offset + 1) : rnd() % 300;
    }
    r[39].offset = 0;
    r[39].size = fsize;
    read_tensors_check(img, r, 40, 2);
    read_tensors_check(img, r, 40, 1);
    assert_int_equal(ransfs_read_tensors(img, "model.safetensors", NULL, 0, NULL, 2), RANSFS_OK);
    /* errors: nothing is decoded when an argument is wrong */
    uint8_t one[16];
    void *d1[1] = {one};
    ransfs_tensor bad = {.offset = fsize - 4, .size = 5};
    assert_int_equal(ransfs_read_tensors(img, "model.safetensors", &bad, 1, d1, 2), RANSFS_E_RANGE);
    bad = (ransfs_tensor){.offset = UINT64_MAX, .size = 2};
    assert_int_equal(ransfs_read_tensors(img, "model.safetensors", &bad, 1, d1, 2), RANSFS_E_RANGE);
    bad = (ransfs_tensor){.offset = fsize + 1, .size = 0};
    assert_int_equal(ransfs_read_tensors(img, "model.safetensors", &bad, 1, d1, 2), RANSFS_E_RANGE);
    bad = (ransfs_tensor){.offset = 0, .size = 4};
    void *dnull[1] = {NULL};
    assert_int_equal(ransfs_read_tensors(img, "model.safetensors", &bad, 1, dnull, 2),
                     RANSFS_E_INVAL);
    assert_int_equal(ransfs_read_tensors(img, "model.safetensors", &bad, 1, NULL, 2),
                     RANSFS_E_INVAL);
    assert_int_equal(ransfs_read_tensors(img, "model.safetensors", NULL, 1, d1, 2), RANSFS_E_INVAL);
    assert_int_equal(ransfs_read_tensors(img, "sub", &bad, 1, d1, 2), RANSFS_E_ISDIR);
    assert_int_equal(ransfs_read_tensors(img, "ln", &bad, 1, d1, 2), RANSFS_E_INVAL);
    assert_int_equal(ransfs_read_tensors(img, "nope", &bad, 1, d1, 2), RANSFS_E_NOENT);
    /* a range of another file: any regular file works */
    bad = (ransfs_tensor){.offset = 7, .size = 16};
    assert_int_equal(ransfs_read_tensors(img, "rand.bin", &bad, 1, d1, 2), RANSFS_OK);
    assert_memory_equal(one, g_files[F_RAND].data + 7, 16);
    ransfs_tensors_free(t, n);
    ransfs_close(img);
}

/* The device call: RANSFS_E_NOCUDA without CUDA or a device; with one,
 * every tensor decoded into device memory and downloaded equals the
 * source. */
static void test_device(void **state)
{
    ransfs *img = open_good();
    ransfs_tensor *t;
    size_t n;
    assert_int_equal(ransfs_tensors(img, "model.safetensors", &t, &n), RANSFS_OK);
    void **dev = calloc(n, sizeof *dev);
    int have = strcmp(rfs_gpu_build(), "cuda") == 0 && rfs_gpu_device_count() > 0;
    assert_int_equal(ransfs_read_tensors_device(img, "nope", t, n, dev, 0, NULL), RANSFS_E_NOENT);
    assert_int_equal(ransfs_read_tensors_device(img, "model.safetensors", t, n, dev, -1, NULL),
                     n && t[0].size ? RANSFS_E_INVAL : RANSFS_E_NOCUDA);
    assert_int_equal(ransfs_read_tensors_device(img, "model.safetensors", t, 0, dev, 999, NULL),
                     RANSFS_E_NOCUDA);
    if (!have) {
        uint8_t x[1];
        for (size_t i = 0; i < n; i++)
            dev[i] = x; /* never written: the call fails first */
        assert_int_equal(ransfs_read_tensors_device(img, "model.safetensors", t, n, dev, 0, NULL),
                         RANSFS_E_NOCUDA);
        printf("# no CUDA device (%s build): only RANSFS_E_NOCUDA checked\n", rfs_gpu_build());
    } else {
        rfs_gpu *g;
        char why[256];
        assert_int_equal(rfs_gpu_create(&g, NULL, why, sizeof why), RFS_OK);
        for (size_t i = 0; i < n; i++)
            assert_non_null(dev[i] = rfs_gpu_dev_alloc(g, t[i].size ? t[i].size : 1));
        assert_int_equal(ransfs_read_tensors_device(img, "model.safetensors", t, n, dev, 0, NULL),
                         RANSFS_OK);
        for (size_t i = 0; i < n; i++) {
            uint8_t *h = malloc(t[i].size + 1);
            assert_int_equal(rfs_gpu_dev_download(g, h, dev[i], t[i].size), RFS_OK);
            assert_memory_equal(h, g_files[F_ST].data + t[i].offset, t[i].size);
            free(h);
            rfs_gpu_dev_free(g, dev[i]);
        }
        rfs_gpu_destroy(g);
        printf("# CUDA device 0: %zu tensors decoded in device memory, byte-exact\n", n);
    }
    free(dev);
    ransfs_tensors_free(t, n);
    ransfs_close(img);
}

typedef struct reader_arg {
    ransfs *img;
    uint64_t seed;
    int bad; /* out: wrong bytes or an error */
} reader_arg;

static void *reader_run(void *p)
{
    reader_arg *a = p;
    uint8_t *buf = malloc(2 * TILE);
    for (int k = 0; k < 300 && !a->bad; k++) {
        a->seed = a->seed * 6364136223846793005ull + 1442695040888963407ull;
        const src_file *s = &g_files[(a->seed >> 40) % N_FILES];
        uint64_t off = s->size ? (a->seed >> 20) % s->size : 0;
        size_t len = (size_t)((a->seed >> 8) % (2 * TILE)), got;
        if (ransfs_read(a->img, s->path, off, buf, len, &got) != RANSFS_OK ||
            (got && memcmp(buf, s->data + off, got) != 0))
            a->bad = 1;
    }
    free(buf);
    return NULL;
}

/* One image, many threads at once: ransfs_read and ransfs_read_tensors. */
static void test_threads(void **state)
{
    ransfs *img = open_good();
    pthread_t th[4];
    reader_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (reader_arg){img, SEED + (uint64_t)i, 0};
        assert_int_equal(pthread_create(&th[i], NULL, reader_run, &a[i]), 0);
    }
    ransfs_tensor *t;
    size_t n;
    assert_int_equal(ransfs_tensors(img, "model.safetensors", &t, &n), RANSFS_OK);
    read_tensors_check(img, t, n, 3);
    ransfs_tensors_free(t, n);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_false(a[i].bad);
    }
    ransfs_close(img);
}

/* ------------------------------------------------------ damaged images */

static uint8_t *g_good;
static size_t g_good_size;

static void write_bad(const uint8_t *buf, size_t size)
{
    FILE *f = fopen(g_bad, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, size, f), size);
    fclose(f);
}

/* Image offset of byte off of file path's data (a unit's encoded bytes for
 * a coded span, the stored bytes for a RAW one), through the reader. */
static uint64_t image_offset_of(const char *path, uint64_t off, int *is_raw)
{
    rfs_image *ri;
    char why[256];
    uint64_t ino, at;
    rfs_span sp;
    assert_int_equal(rfs_image_open(&ri, g_img, why, sizeof why), RFS_OK);
    assert_int_equal(rfs_image_lookup_path(ri, path, &ino), RFS_OK);
    assert_int_equal(rfs_image_map(ri, ino, off, &sp), RFS_OK);
    *is_raw = sp.is_raw;
    if (sp.is_raw)
        at = sp.raw_off;
    else
        assert_int_equal(rfs_image_unit_offset(ri, sp.unit, &at), RFS_OK);
    rfs_image_close(ri);
    return at;
}

/* A copy of the image with byte at flipped, opened. */
static ransfs *open_flipped(uint64_t at)
{
    uint8_t *b = malloc(g_good_size);
    memcpy(b, g_good, g_good_size);
    b[at] ^= 0x5a;
    write_bad(b, g_good_size);
    free(b);
    ransfs *img = NULL;
    char why[256];
    assert_int_equal(ransfs_open(&img, g_bad, why, sizeof why), RANSFS_OK);
    return img;
}

static void test_corrupt_tile(void **state)
{
    g_good = tu_must_read_file(g_img, &g_good_size);
    int raw;
    /* the second tile of tensor emb */
    uint64_t at = image_offset_of("model.safetensors", g_data_start + TILE + 10, &raw);
    assert_false(raw);
    ransfs *img = open_flipped(at + 40);
    ransfs_tensor *t;
    size_t n, got;
    assert_int_equal(ransfs_tensors(img, "model.safetensors", &t, &n), RANSFS_OK);
    uint8_t *buf = malloc(g_files[F_ST].size);
    void *dst[N_WANT];
    for (size_t i = 0; i < n; i++)
        dst[i] = malloc(t[i].size + 1);
    for (int threads = 1; threads <= 3; threads++)
        assert_int_equal(ransfs_read_tensors(img, "model.safetensors", t, n, dst, threads),
                         RANSFS_E_CORRUPT);
    assert_int_equal(ransfs_read(img, "model.safetensors", 0, buf, g_files[F_ST].size, &got),
                     RANSFS_E_CORRUPT);
    assert_int_equal(got, 0);
    /* the first tile is intact and still reads */
    assert_int_equal(ransfs_read(img, "model.safetensors", 0, buf, g_data_start + 100, &got),
                     RANSFS_OK);
    assert_memory_equal(buf, g_files[F_ST].data, got);
    for (size_t i = 0; i < n; i++)
        free(dst[i]);
    ransfs_tensors_free(t, n);
    free(buf);
    ransfs_close(img);
}

static void test_corrupt_raw(void **state)
{
    int raw;
    uint64_t at = image_offset_of("rand.bin", TILE + 5, &raw);
    assert_true(raw);
    ransfs *img = open_flipped(at + 1);
    uint8_t buf[64];
    size_t got = 1;
    assert_int_equal(ransfs_read(img, "rand.bin", TILE + 5, buf, sizeof buf, &got),
                     RANSFS_E_CORRUPT);
    assert_int_equal(got, 0);
    ransfs_tensor r = {.offset = TILE, .size = 10};
    void *d[1] = {buf};
    assert_int_equal(ransfs_read_tensors(img, "rand.bin", &r, 1, d, 2), RANSFS_E_CORRUPT);
    ransfs_close(img);
}

static void test_corrupt_meta(void **state)
{
    ransfs *img = (ransfs *)1;
    char why[256];
    /* the last byte (the superblock or the metadata's end) and a cut file */
    uint8_t *b = malloc(g_good_size);
    memcpy(b, g_good, g_good_size);
    b[g_good_size - 1] ^= 0xff;
    b[g_good_size - 9] ^= 0xff;
    write_bad(b, g_good_size);
    assert_int_equal(ransfs_open(&img, g_bad, why, sizeof why), RANSFS_E_CORRUPT);
    assert_null(img);
    assert_non_null(strstr(why, g_bad));
    write_bad(g_good, g_good_size - 100);
    assert_int_equal(ransfs_open(&img, g_bad, why, sizeof why), RANSFS_E_CORRUPT);
    assert_null(img);
    write_bad(g_good, 3);
    assert_int_equal(ransfs_open(&img, g_bad, why, sizeof why), RANSFS_E_CORRUPT);
    free(b);
    free(g_good);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strings),      cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_stat),         cmocka_unit_test(test_dir),
        cmocka_unit_test(test_read),         cmocka_unit_test(test_tensors),
        cmocka_unit_test(test_read_tensors), cmocka_unit_test(test_device),
        cmocka_unit_test(test_threads),      cmocka_unit_test(test_corrupt_tile),
        cmocka_unit_test(test_corrupt_raw),  cmocka_unit_test(test_corrupt_meta),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
