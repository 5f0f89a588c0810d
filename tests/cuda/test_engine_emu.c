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
#include "engine_fixture.h"
#include "rfs_engine.h"
#include "rfs_image_info.h"
#include "testseed.h"

static char **g_images;
static int g_n_images;
static unsigned g_seed;

static void test_whole_files_on_gpu(void **state)
{
    (void)state;
    for (int k = 0; k < g_n_images; k++) {
        long l0 = fake_cuda_launches();
        fixture *f = fx_open(g_images[k], RFS_GPU_ON, 64u << 20, 8u << 20, 2);
        printf("%s: %zu files\n", g_images[k], f->n_files);
        assert_int_equal(fx_read_all(f), 0);
        fx_print_stats(f);
        assert_true(fx_stat(f, "gpu_batches") > 0);
        assert_true(fx_stat(f, "gpu_tiles") > 0);
        assert_int_equal(fx_stat(f, "gpu_launches"), fake_cuda_launches() - l0);
        assert_int_equal(fx_stat(f, "gpu_errors"), 0);
        assert_int_equal(fx_stat(f, "gpu_usable"), 1);
        assert_int_equal(fx_stat(f, "decode_errors"), 0);
        assert_int_equal(f->log_lines, 0);
        fx_close(f);
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
        fixture *f = fx_open(g_images[img], RFS_GPU_ON, 64u << 20, 8u << 20, 2);
        fake_cuda_fail_at(at[i]);
        assert_int_equal(fx_read_all(f), 0);
        fake_cuda_fail_at(0);
        assert_int_equal(fx_read_all(f), 0); /* again, from the cache and the CPU */
        printf("fail at call %ld: ", at[i]);
        fx_print_stats(f);
        assert_int_equal(f->gpu_lines, 1);
        assert_int_equal(f->log_lines, 1);
        assert_int_equal(fx_stat(f, "gpu_usable"), 0);
        assert_true(fx_stat(f, "gpu_errors") >= 1);
        assert_true(fx_stat(f, "gpu_fallback_tiles") > 0);
        assert_int_equal(fx_stat(f, "decode_errors"), 0);
        fx_close(f);
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
    fixture *f = fx_open_image(path, 0); /* the files that still read */
    char why[256] = "";
    if (fx_start_engine(f, gpu, 64u << 20, 8u << 20, 2, why, sizeof(why)) != RFS_OK)
        fail_msg("engine: %s", why);
    uint8_t *tmp = malloc(len);
    rfs_err err = fx_read(f, ino, off, len, tmp);
    assert_int_not_equal(fx_read(f, ino, off, len, tmp), RFS_OK); /* twice: logged once */
    assert_int_equal(fx_read_all(f), 0); /* everything that rfs_image_read could read */
    *logs = f->log_lines;
    free(tmp);
    fx_close(f);
    return err;
}

static void test_corrupt_tile(void **state)
{
    (void)state;
    fixture *f = fx_open_image(g_images[0], 1);
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
    fx_close(f);
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
    fixture *f = fx_open_image(g_images[0], 1);
    char why[256] = "";
    fake_cuda_set_devices(0);
    assert_int_not_equal(fx_start_engine(f, RFS_GPU_ON, 64u << 20, 8u << 20, 2, why, sizeof(why)),
                         RFS_OK);
    printf("gpu=on refused: %s\n", why);
    assert_non_null(strstr(why, "gpu=on"));
    assert_non_null(strstr(why, "no CUDA device"));
    assert_null(f->eng);
    assert_int_equal(fx_start_engine(f, RFS_GPU_AUTO, 64u << 20, 8u << 20, 2, why, sizeof(why)),
                     RFS_OK);
    fake_cuda_set_devices(1);
    assert_int_equal(fx_read_all(f), 0);
    char json[4096];
    rfs_engine_stats_json(f->eng, json, sizeof(json));
    assert_non_null(strstr(json, "\"gpu\":\"off\""));
    assert_int_equal(fx_stat(f, "gpu_batches"), 0);
    fx_close(f);
}

static void test_concurrent(void **state)
{
    (void)state;
    fixture *f = fx_open(g_images[g_n_images - 1], RFS_GPU_ON, 4u << 20, 1u << 20, 2);
    assert_int_equal(fx_concurrent(f, g_seed, 8, 150, 1200u * 1024, 8), 0);
    fx_print_stats(f);
    assert_true(fx_stat(f, "gpu_tiles") > 0);
    assert_int_equal(f->log_lines, 0);
    fx_close(f);
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
    if (argc < 2) {
        fprintf(stderr, "usage: test_engine_emu IMAGE [IMAGE...]\n");
        return 2;
    }
    g_images = argv + 1;
    g_n_images = argc - 1;
    g_seed = tu_seed_clock("test_engine_emu");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
