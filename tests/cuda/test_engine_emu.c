/*
 * test_engine_emu.c - the daemon's read path (fs/rfs_engine.c) with the GPU
 * batch backend (fs/rfs_batch_gpu.c) on the real host side of the GPU
 * decoder (cuda/rfs_gpu.c) over the fake CUDA runtime, whose kernels are
 * the CPU warp emulator (fake_cuda.c, warp_emu.c).  Nothing here needs a
 * GPU.  On images made by ransfs-mkimage:
 *  - every byte of every file, read through the engine with gpu=on and
 *    gpu_min=1 (every batch to the GPU backend), equals rfs_image_read, and
 *    the stats show tiles decoded by the (emulated) GPU;
 *  - a CUDA failure injected at the k-th call (several k) is logged once,
 *    turns the backend to the CPU, and every byte still matches;
 *  - a tile corrupted in a copy of the image (found with
 *    rfs_image_unit_offset) fails with the CPU backend's error, is logged
 *    once, and the rest of the image reads;
 *  - gpu=on without a device is refused with a reason; gpu=auto then runs
 *    on the CPU;
 *  - 8 threads of random reads, with prefetch, through a small cache.
 *
 * usage: test_engine_emu IMAGE [IMAGE...]   (seed from RFS_TEST_SEED)
 */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cuda_runtime_api.h"
#include "rfs_engine.h"
#include "rfs_image_info.h"

static char **g_images;
static int g_n_images;
static unsigned g_seed;

typedef struct file_ref {
    uint64_t ino, size;
    uint8_t *bytes; /* reference contents (rfs_image_read) */
} file_ref;

typedef struct fixture {
    rfs_image *img;
    rfs_engine *eng;
    file_ref *files;
    size_t n_files;
    int log_lines, gpu_lines;
} fixture;

static void count_log(void *ctx, const char *line)
{
    fixture *f = ctx;
    f->log_lines++;
    if (strstr(line, "gpu"))
        f->gpu_lines++;
    printf("engine log: %s\n", line);
}

static void collect(fixture *f, rfs_rctx *ctx, uint64_t dir)
{
    uint64_t count = 0;
    assert_int_equal(rfs_image_dir_count(f->img, dir, &count), RFS_OK);
    for (uint64_t i = 0; i < count; i++) {
        uint64_t child;
        const char *name;
        rfs_stat st;
        assert_int_equal(rfs_image_dir_entry(f->img, dir, i, &child, &name), RFS_OK);
        assert_int_equal(rfs_image_stat(f->img, child, &st), RFS_OK);
        if (S_ISDIR(st.mode)) {
            collect(f, ctx, child);
        } else if (S_ISREG(st.mode)) {
            file_ref r = {child, st.size, malloc(st.size ? st.size : 1)};
            size_t got = 0;
            assert_non_null(r.bytes);
            /* A corrupt image (test_corrupt_tile) has unreadable files. */
            if (rfs_image_read(f->img, ctx, child, 0, st.size, r.bytes, &got) != RFS_OK) {
                free(r.bytes);
                continue;
            }
            f->files = realloc(f->files, (f->n_files + 1) * sizeof(*f->files));
            f->files[f->n_files++] = r;
        }
    }
}

static fixture *open_image(const char *path)
{
    fixture *f = calloc(1, sizeof(*f));
    char why[256] = "";
    rfs_rctx *ctx;
    assert_non_null(f);
    assert_int_equal(rfs_image_open(&f->img, path, why, sizeof(why)), RFS_OK);
    ctx = rfs_rctx_create(f->img);
    collect(f, ctx, RFS_ROOT_INO);
    rfs_rctx_destroy(ctx);
    return f;
}

static rfs_err start_engine(fixture *f, rfs_gpu_mode gpu, size_t cache, uint64_t prefetch,
                            unsigned threads, char *why, size_t why_cap)
{
    rfs_engine_opts o = {cache, threads, prefetch, gpu, count_log, f, 1};
    return rfs_engine_create(&f->eng, f->img, &o, why, why_cap);
}

static fixture *open_fixture(const char *path, rfs_gpu_mode gpu, size_t cache, uint64_t prefetch,
                             unsigned threads)
{
    fixture *f = open_image(path);
    char why[256] = "";
    rfs_err err = start_engine(f, gpu, cache, prefetch, threads, why, sizeof(why));
    if (err != RFS_OK)
        fail_msg("engine: %s", why);
    return f;
}

static void close_fixture(fixture *f)
{
    rfs_engine_destroy(f->eng);
    for (size_t i = 0; i < f->n_files; i++)
        free(f->files[i].bytes);
    free(f->files);
    rfs_image_close(f->img);
    free(f);
}

/* Read [off, off+len) through the engine into out (RAW pieces by pread). */
static rfs_err engine_read(fixture *f, uint64_t ino, uint64_t off, size_t len, uint8_t *out)
{
    rfs_readv rv;
    size_t pos = 0;
    rfs_readv_init(&rv);
    rfs_err err = rfs_engine_read(f->eng, ino, off, len, &rv);
    if (err != RFS_OK)
        return err;
    for (size_t i = 0; i < rv.n_pieces; i++) {
        const rfs_piece *p = &rv.pieces[i];
        if (p->mem)
            memcpy(out + pos, p->mem, p->len);
        else if (pread(rfs_image_fd(f->img), out + pos, p->len, (off_t)p->raw_off) !=
                 (ssize_t)p->len)
            err = RFS_E_IO;
        pos += p->len;
    }
    rfs_readv_release(f->eng, &rv);
    return err == RFS_OK && pos != len ? RFS_E_CORRUPT : err;
}

/* 0 when [off, off+len) reads back equal to the reference. */
static int engine_check(fixture *f, const file_ref *r, uint64_t off, size_t len)
{
    uint8_t *tmp = malloc(len ? len : 1);
    int bad = engine_read(f, r->ino, off, len, tmp) != RFS_OK ||
              memcmp(tmp, r->bytes + off, len) != 0;
    free(tmp);
    return bad;
}

/* Every file in 1 MiB reads, with prefetch ahead; returns mismatches. */
static int read_all(fixture *f)
{
    int bad = 0;
    for (size_t i = 0; i < f->n_files; i++) {
        const file_ref *r = &f->files[i];
        for (uint64_t off = 0; off < r->size; off += 1u << 20) {
            size_t len = r->size - off < (1u << 20) ? (size_t)(r->size - off) : 1u << 20;
            uint64_t pf_end = off + len + (4u << 20) < r->size ? off + len + (4u << 20) : r->size;
            bad += engine_check(f, r, off, len);
            rfs_engine_prefetch(f->eng, r->ino, off + len, pf_end);
        }
    }
    return bad;
}

/* A number from the stats JSON (0 when the key is absent). */
static unsigned long long stat_of(fixture *f, const char *key)
{
    char json[4096], pat[64];
    assert_true(rfs_engine_stats_json(f->eng, json, sizeof(json)) < sizeof(json));
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(json, pat);
    if (!p)
        fail_msg("stats lack %s: %s", key, json);
    p += strlen(pat);
    return !strncmp(p, "true", 4) ? 1 : strtoull(p, NULL, 10);
}

static void print_stats(fixture *f)
{
    char json[4096];
    rfs_engine_stats_json(f->eng, json, sizeof(json));
    printf("%s\n", json);
}

static void test_whole_files_on_gpu(void **state)
{
    (void)state;
    for (int k = 0; k < g_n_images; k++) {
        long l0 = fake_cuda_launches();
        fixture *f = open_fixture(g_images[k], RFS_GPU_ON, 64u << 20, 8u << 20, 2);
        printf("%s: %zu files\n", g_images[k], f->n_files);
        assert_int_equal(read_all(f), 0);
        print_stats(f);
        assert_true(stat_of(f, "gpu_batches") > 0);
        assert_true(stat_of(f, "gpu_tiles") > 0);
        assert_int_equal(stat_of(f, "gpu_launches"), fake_cuda_launches() - l0);
        assert_int_equal(stat_of(f, "gpu_errors"), 0);
        assert_int_equal(stat_of(f, "gpu_usable"), 1);
        assert_int_equal(stat_of(f, "decode_errors"), 0);
        assert_int_equal(f->log_lines, 0);
        close_fixture(f);
    }
}

/* A CUDA call fails: logged once, CPU from then on, every byte right.
 * Calls 1..11 all happen on the tests/data image (2 launches); the later
 * ones on the real model's (about 40 launches) when it is there. */
static void test_cuda_failure_falls_back(void **state)
{
    (void)state;
    static const long at[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 23, 60, 150};
    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        int img = at[i] <= 11 ? 0 : g_n_images - 1;
        if (img == 0 && at[i] > 11)
            break;
        fixture *f = open_fixture(g_images[img], RFS_GPU_ON, 64u << 20, 8u << 20, 2);
        fake_cuda_fail_at(at[i]);
        assert_int_equal(read_all(f), 0);
        fake_cuda_fail_at(0);
        assert_int_equal(read_all(f), 0); /* again, from the cache and the CPU */
        printf("fail at call %ld: ", at[i]);
        print_stats(f);
        assert_int_equal(f->gpu_lines, 1);
        assert_int_equal(f->log_lines, 1);
        assert_int_equal(stat_of(f, "gpu_usable"), 0);
        assert_true(stat_of(f, "gpu_errors") >= 1);
        assert_true(stat_of(f, "gpu_fallback_tiles") > 0);
        assert_int_equal(stat_of(f, "decode_errors"), 0);
        close_fixture(f);
    }
}

/* The first tile unit of the largest file: its file, offset and unit. */
static int find_tile(fixture *f, const file_ref **fr, uint64_t *file_off, rfs_span *sp)
{
    const file_ref *best = NULL;
    for (size_t i = 0; i < f->n_files; i++)
        if (!best || f->files[i].size > best->size)
            best = &f->files[i];
    for (uint64_t off = best ? best->size / 2 : 0; best && off < best->size; off += sp->length) {
        rfs_unit_src src;
        assert_int_equal(rfs_image_map(f->img, best->ino, off, sp), RFS_OK);
        if (!sp->is_raw && rfs_image_unit_source(f->img, sp->unit, &src) == RFS_OK &&
            src.kind == RFS_UNIT_TILE && src.size > 16) {
            *fr = best;
            *file_off = off;
            return 1;
        }
    }
    return 0;
}

/* Copy path to a temporary file with one byte at `at` flipped. */
static void corrupt_copy(const char *path, uint64_t at, char *out, size_t out_cap)
{
    FILE *in = fopen(path, "rb");
    int fd;
    char buf[1 << 16];
    size_t n;
    uint64_t pos = 0;
    snprintf(out, out_cap, "/tmp/rfs_engine_emu_XXXXXX");
    fd = mkstemp(out);
    assert_true(in && fd >= 0);
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
        if (at >= pos && at < pos + n)
            buf[at - pos] ^= 0x5A;
        assert_int_equal(write(fd, buf, n), (ssize_t)n);
        pos += n;
    }
    fclose(in);
    close(fd);
}

/* Read the bad unit's range and a good file through an engine. */
static rfs_err bad_read(const char *path, rfs_gpu_mode gpu, uint64_t ino, uint64_t off,
                        uint32_t len, int *logs)
{
    fixture *f = open_fixture(path, gpu, 64u << 20, 8u << 20, 2);
    uint8_t *tmp = malloc(len);
    rfs_err err = engine_read(f, ino, off, len, tmp);
    assert_int_not_equal(engine_read(f, ino, off, len, tmp), RFS_OK); /* twice: logged once */
    assert_int_equal(read_all(f), 0); /* everything that rfs_image_read could read */
    *logs = f->log_lines;
    free(tmp);
    close_fixture(f);
    return err;
}

static void test_corrupt_tile(void **state)
{
    (void)state;
    fixture *f = open_image(g_images[0]);
    const file_ref *r = NULL;
    uint64_t off = 0, at = 0;
    rfs_span sp;
    rfs_unit_src src;
    char bad[64];
    int logs_gpu = 0, logs_cpu = 0;
    assert_true(find_tile(f, &r, &off, &sp));
    assert_int_equal(rfs_image_unit_offset(f->img, sp.unit, &at), RFS_OK);
    assert_int_equal(rfs_image_unit_source(f->img, sp.unit, &src), RFS_OK);
    uint64_t ino = r->ino, start = off - sp.unit_off;
    uint32_t len = sp.unit_size;
    printf("corrupting unit %llu: image bytes [%llu, %llu)\n", (unsigned long long)sp.unit,
           (unsigned long long)at, (unsigned long long)(at + src.size));
    close_fixture(f);
    corrupt_copy(g_images[0], at + src.size / 2, bad, sizeof(bad));
    rfs_err e_gpu = bad_read(bad, RFS_GPU_ON, ino, start, len, &logs_gpu);
    rfs_err e_cpu = bad_read(bad, RFS_GPU_OFF, ino, start, len, &logs_cpu);
    unlink(bad);
    printf("gpu backend: %s, cpu backend: %s\n", rfs_strerror(e_gpu), rfs_strerror(e_cpu));
    assert_int_equal(e_gpu, RFS_E_CHECKSUM);
    assert_int_equal(e_gpu, e_cpu);
    assert_int_equal(logs_gpu, 1);
    assert_int_equal(logs_cpu, 1);
}

static void test_no_device(void **state)
{
    (void)state;
    fixture *f = open_image(g_images[0]);
    char why[256] = "";
    fake_cuda_set_devices(0);
    assert_int_not_equal(start_engine(f, RFS_GPU_ON, 64u << 20, 8u << 20, 2, why, sizeof(why)),
                         RFS_OK);
    printf("gpu=on refused: %s\n", why);
    assert_non_null(strstr(why, "gpu=on"));
    assert_non_null(strstr(why, "no CUDA device"));
    assert_null(f->eng);
    assert_int_equal(start_engine(f, RFS_GPU_AUTO, 64u << 20, 8u << 20, 2, why, sizeof(why)),
                     RFS_OK);
    fake_cuda_set_devices(1);
    assert_int_equal(read_all(f), 0);
    char json[4096];
    rfs_engine_stats_json(f->eng, json, sizeof(json));
    assert_non_null(strstr(json, "\"gpu\":\"off\""));
    assert_int_equal(stat_of(f, "gpu_batches"), 0);
    close_fixture(f);
}

typedef struct worker_arg {
    fixture *f;
    unsigned seed;
    int bad;
} worker_arg;

static void *random_reader(void *arg)
{
    worker_arg *w = arg;
    fixture *f = w->f;
    for (int i = 0; i < 150; i++) {
        const file_ref *r = &f->files[(size_t)rand_r(&w->seed) % f->n_files];
        uint64_t off, len;
        if (r->size == 0)
            continue;
        off = (uint64_t)rand_r(&w->seed) % r->size;
        len = 1 + (uint64_t)rand_r(&w->seed) % (1200u * 1024);
        if (len > r->size - off)
            len = r->size - off;
        w->bad += engine_check(f, r, off, (size_t)len);
        if (i % 8 == 0)
            rfs_engine_prefetch(f->eng, r->ino, off, r->size < off + (2u << 20) ? r->size
                                                                               : off + (2u << 20));
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    fixture *f = open_fixture(g_images[g_n_images - 1], RFS_GPU_ON, 4u << 20, 1u << 20, 2);
    pthread_t t[8];
    worker_arg w[8];
    printf("seed %u (replay with RFS_TEST_SEED=%u)\n", g_seed, g_seed);
    for (int i = 0; i < 8; i++) {
        w[i] = (worker_arg){f, g_seed + (unsigned)i, 0};
        assert_int_equal(pthread_create(&t[i], NULL, random_reader, &w[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].bad, 0);
    }
    print_stats(f);
    assert_true(stat_of(f, "gpu_tiles") > 0);
    assert_int_equal(f->log_lines, 0);
    close_fixture(f);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_files_on_gpu),
        cmocka_unit_test(test_cuda_failure_falls_back),
        cmocka_unit_test(test_corrupt_tile),
        cmocka_unit_test(test_no_device),
        cmocka_unit_test(test_concurrent),
    };
    const char *s = getenv("RFS_TEST_SEED");
    if (argc < 2) {
        fprintf(stderr, "usage: test_engine_emu IMAGE [IMAGE...]\n");
        return 2;
    }
    g_images = argv + 1;
    g_n_images = argc - 1;
    g_seed = s ? (unsigned)strtoul(s, NULL, 0) : (unsigned)time(NULL);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
