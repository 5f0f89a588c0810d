/*
 * bench_lib.c - ransfs-bench lib: libransfs's ransfs_read_tensors, as a
 * loader calls it.
 *
 *   ransfs-bench lib IMAGE PATH [--threads N] [--rounds R] [--json]
 *
 * Opens IMAGE with ransfs_open, lists the tensors of safetensors file PATH
 * and decodes all of them into preallocated (and once touched) host buffers
 * with one ransfs_read_tensors call on N threads (default 1), R times
 * (default 5); reports the best round: tensor bytes / wall seconds, in MB/s
 * (10^6).  The first round also compares every tensor with ransfs_read of
 * the same bytes, so a wrong decode cannot pass for a fast one.  The image
 * is expected in the page cache (bench_lib.sh reads it once first).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "ransfs.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Every tensor against a plain ransfs_read of its bytes. */
static int tensors_verify(ransfs *img, const char *path, const ransfs_tensor *t, size_t n,
                          void *const *dst)
{
    for (size_t i = 0; i < n; i++) {
        void *b = malloc(t[i].size ? t[i].size : 1);
        size_t got = 0;
        int err = b ? ransfs_read(img, path, t[i].offset, b, t[i].size, &got) : RANSFS_E_NOMEM;
        int bad = err || got != t[i].size || memcmp(b, dst[i], t[i].size) != 0;
        free(b);
        if (bad) {
            fprintf(stderr, "ransfs-bench lib: %s: tensor %s differs from ransfs_read\n", path,
                    t[i].name);
            return 1;
        }
    }
    return 0;
}

int rfs_bench_lib(int argc, char **argv)
{
    int threads = 1, rounds = 5, json = 0;
    const char *image = NULL, *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!image)
            image = argv[i];
        else if (!path)
            path = argv[i];
        else {
            fprintf(stderr, "ransfs-bench lib: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!image || !path || rounds < 1) {
        fprintf(stderr, "usage: ransfs-bench lib IMAGE PATH [--threads N] [--rounds R] [--json]\n");
        return 2;
    }
    char why[512];
    ransfs *img;
    ransfs_tensor *t;
    size_t n;
    int err = ransfs_open(&img, image, why, sizeof why);
    if (err) {
        fprintf(stderr, "ransfs-bench lib: %s\n", why);
        return 1;
    }
    if ((err = ransfs_tensors(img, path, &t, &n))) {
        fprintf(stderr, "ransfs-bench lib: %s: %s\n", path, ransfs_strerror(err));
        ransfs_close(img);
        return 1;
    }
    void **dst = calloc(n ? n : 1, sizeof *dst);
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        dst[i] = malloc(t[i].size ? t[i].size : 1);
        memset(dst[i], 0, t[i].size); /* fault the pages in outside the timing */
        bytes += t[i].size;
    }
    double best = 0;
    int rc = 0;
    for (int r = 0; r < rounds && !rc; r++) {
        double t0 = now();
        err = ransfs_read_tensors(img, path, t, n, dst, threads);
        double s = now() - t0;
        if (err) {
            fprintf(stderr, "ransfs-bench lib: %s: %s\n", path, ransfs_strerror(err));
            rc = 1;
        } else if (r == 0)
            rc = tensors_verify(img, path, t, n, dst);
        if (!rc && (best == 0 || s < best))
            best = s;
    }
    if (!rc) {
        double mbs = bytes / best / 1e6;
        if (json)
            printf("{\"tensors\": %zu, \"bytes\": %llu, \"threads\": %d, \"seconds\": %.6f, "
                   "\"mb_s\": %.1f}\n", n, (unsigned long long)bytes, threads, best, mbs);
        else
            printf("lib %s: %zu tensors, %llu bytes, %d thread(s): best of %d %.4f s, %.0f MB/s\n",
                   path, n, (unsigned long long)bytes, threads, rounds, best, mbs);
    }
    for (size_t i = 0; i < n; i++)
        free(dst[i]);
    free(dst);
    ransfs_tensors_free(t, n);
    ransfs_close(img);
    return rc;
}
