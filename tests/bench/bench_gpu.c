/*
 * bench_gpu.c - `ransfs-bench gpu IMAGE` and `ransfs-bench gpu --synthetic
 * bf16|fp16`: GPU tile decode throughput in decoded bytes per second, all in
 * one run:
 *   kernel      the two decode kernels only, one batch resident on the GPU
 *   host2host   H2D of compressed tiles + decode + D2H into host buffers
 *   to-device   compressed tiles H2D + decode into a device buffer
 *   cpu         rfs_tile_decode on every core (one thread per core)
 * Without CUDA in the build, or without a device, it says so and exits 0.
 *
 * It links rfs_gpu in every build: without CUDA that is cuda/rfs_gpu_none.c,
 * which has no device.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "rfs_gpu.h"
#include "rfs_image.h"

typedef struct bench_set {
    rfs_gpu_unit *u;
    size_t n;
    uint64_t bytes;   /* decoded */
    uint64_t enc;     /* encoded */
    size_t max_unit;
    /* synthetic data owns these */
    uint8_t *enc_buf;
    rfs_table tab[2];
    rfs_table_set set;
} bench_set;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Every tile unit of an image (zstd units are not GPU work). */
static int load_image(bench_set *b, rfs_image **img, const char *path)
{
    char why[256] = "";
    if (rfs_image_open(img, path, why, sizeof(why)) != RFS_OK) {
        fprintf(stderr, "ransfs-bench gpu: %s: %s\n", path, why);
        return -1;
    }
    rfs_image_summary sum;
    rfs_image_get_summary(*img, &sum);
    b->u = calloc(sum.n_units ? sum.n_units : 1, sizeof(*b->u));
    for (uint64_t k = 0; b->u && k < sum.n_units; k++) {
        rfs_unit_src s;
        if (rfs_image_unit_source(*img, k, &s) != RFS_OK || s.kind != RFS_UNIT_TILE)
            continue;
        rfs_gpu_unit x = {s.data, s.size, s.decoded_size, s.shared, NULL, RFS_OK, 0};
        b->u[b->n++] = x;
        b->bytes += s.decoded_size;
        b->enc += s.size;
        if (s.decoded_size > b->max_unit)
            b->max_unit = s.decoded_size;
    }
    return b->u ? 0 : -1;
}

/* mib MiB of fp16 or bf16 weights (normal, std 0.02, every 7th row of 4096
 * scaled by 8, 5% pruned to zero) in 64 KiB tiles with shared tables. */
static int load_synthetic(bench_set *b, const char *dtype, size_t mib)
{
    int bf16 = !strcmp(dtype, "bf16");
    if (!bf16 && strcmp(dtype, "fp16")) {
        fprintf(stderr, "ransfs-bench gpu: --synthetic takes bf16 or fp16, not '%s'\n", dtype);
        return -1;
    }
    size_t n = mib << 19, tile = 64u << 10;
    uint16_t *h = malloc(n * 2);
    if (!h)
        return -1;
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n; i += 2) {
        s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
        uint64_t r = s * 0x2545F4914F6CDD1DULL;
        double u1 = ((double)(r >> 11) + 1.0) / 9007199254740993.0;
        double u2 = (double)(r & 0xfffff) / 1048576.0, rad = sqrt(-2.0 * log(u1));
        for (int k = 0; k < 2 && i + k < n; k++) {
            double g = rad * (k ? sin(6.283185307179586 * u2) : cos(6.283185307179586 * u2));
            float f = (float)(g * 0.02 * ((i >> 12) % 7 == 3 ? 8.0 : 1.0));
            if ((r >> (20 + 5 * k)) % 20 == 0)
                f = 0.0f;
            uint32_t v;
            memcpy(&v, &f, 4);
            _Float16 hf = (_Float16)f;
            uint16_t x;
            memcpy(&x, &hf, 2);
            h[i + k] = bf16 ? (uint16_t)((v + 0x7fffu + ((v >> 16) & 1u)) >> 16) : x;
        }
    }
    rfs_transform xf = rfs_transform_choose(h, n, 2);
    for (unsigned p = 0; p < 2; p++) {
        uint64_t counts[256] = {0};
        rfs_plane_histogram(counts, h, n, 2, xf, p);
        if (rfs_table_from_counts(&b->tab[p], counts) == RFS_OK)
            b->set.plane[p] = &b->tab[p];
    }
    size_t n_tiles = (n * 2 + tile - 1) / tile, bound = rfs_tile_bound(tile, 2);
    b->enc_buf = malloc(n_tiles * bound);
    b->u = calloc(n_tiles, sizeof(*b->u));
    rfs_enc *enc = rfs_enc_create(tile);
    rfs_tile_params prm = {.width = 2, .transform = xf, .shared = &b->set};
    for (size_t t = 0; b->enc_buf && b->u && enc && t < n_tiles; t++) {
        size_t off = t * tile, len = n * 2 - off < tile ? n * 2 - off : tile, got = 0;
        uint8_t *dst = b->enc_buf + t * bound;
        if (rfs_tile_encode(enc, dst, bound, &got, (uint8_t *)h + off, len, &prm) != RFS_OK)
            break;
        rfs_gpu_unit x = {dst, got, len, &b->set, NULL, RFS_OK, 0};
        b->u[b->n++] = x;
        b->bytes += len;
        b->enc += got;
    }
    b->max_unit = tile;
    rfs_enc_destroy(enc);
    free(h);
    return b->n == n_tiles ? 0 : -1;
}

static void report(const char *what, uint64_t bytes, double sec, int json)
{
    double gbs = sec > 0 ? (double)bytes / sec / 1e9 : 0;
    if (json)
        printf("{\"bench\":\"gpu\",\"path\":\"%s\",\"decoded_bytes\":%llu,\"seconds\":%.6f,"
               "\"gbps\":%.3f}\n",
               what, (unsigned long long)bytes, sec, gbs);
    else
        printf("  %-10s %8.2f GB/s  (%.1f MiB in %.4f s)\n", what, gbs,
               (double)bytes / 1048576.0, sec);
}

/* CPU decode of every unit on all cores. */
typedef struct cpu_job {
    const bench_set *b;
    size_t first, step;
    uint8_t *dst;
    int fail;
} cpu_job;

static void *cpu_worker(void *arg)
{
    cpu_job *j = arg;
    rfs_dec *d = rfs_dec_create(j->b->max_unit);
    for (size_t i = j->first; d && i < j->b->n; i += j->step) {
        size_t got;
        const rfs_gpu_unit *u = &j->b->u[i];
        if (rfs_tile_decode(d, j->dst, j->b->max_unit, &got, u->src, u->src_size, u->shared))
            j->fail = 1;
    }
    j->fail |= !d;
    rfs_dec_destroy(d);
    return NULL;
}

static double bench_cpu(const bench_set *b, unsigned threads)
{
    pthread_t tid[256];
    cpu_job jobs[256];
    double t0 = now_s();
    for (unsigned k = 0; k < threads; k++) {
        cpu_job j = {b, k, threads, malloc(b->max_unit ? b->max_unit : 1), 0};
        jobs[k] = j;
        pthread_create(&tid[k], NULL, cpu_worker, &jobs[k]);
    }
    int fail = 0;
    for (unsigned k = 0; k < threads; k++) {
        pthread_join(tid[k], NULL);
        fail |= jobs[k].fail;
        free(jobs[k].dst);
    }
    return fail ? -1 : now_s() - t0;
}

static double bench_host(rfs_gpu *g, bench_set *b, uint8_t *host)
{
    uint64_t off = 0;
    for (size_t i = 0; i < b->n; i++) {
        b->u[i].dst = host + off;
        off += b->u[i].decoded_size;
    }
    double t0 = now_s();
    rfs_gpu_decode_batch(g, b->u, b->n);
    double t = now_s() - t0;
    for (size_t i = 0; i < b->n; i++)
        if (b->u[i].err != RFS_OK || !b->u[i].on_gpu)
            return -1;
    return t;
}

static double bench_device(rfs_gpu *g, const bench_set *b, void *dev)
{
    rfs_gpu_dev_unit *du = calloc(b->n ? b->n : 1, sizeof(*du));
    uint64_t off = 0;
    for (size_t i = 0; du && i < b->n; i++) {
        const rfs_gpu_unit *u = &b->u[i];
        rfs_gpu_dev_unit x = {u->src, u->src_size, u->decoded_size, u->shared, off, 0,
                              (uint32_t)u->decoded_size, RFS_OK};
        du[i] = x;
        off += u->decoded_size;
    }
    double t0 = now_s();
    rfs_err err = du ? rfs_gpu_decode_to_device(g, dev, b->bytes, du, b->n) : RFS_E_NOMEM;
    double t = now_s() - t0;
    free(du);
    return err == RFS_OK ? t : -1;
}

static void usage(void)
{
    fprintf(stderr, "usage: ransfs-bench gpu IMAGE [--batch-mib N] [--iters N] [--threads N] "
                    "[--json]\n"
                    "       ransfs-bench gpu --synthetic bf16|fp16 [--mib N] [options]\n");
}

int rfs_bench_gpu(int argc, char **argv)
{
    const char *image = NULL, *synth = NULL;
    size_t batch_mib = 64, mib = 512;
    unsigned iters = 20, threads = (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (i + 1 < argc && !strcmp(argv[i], "--synthetic"))
            synth = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--mib"))
            mib = strtoul(argv[++i], NULL, 0);
        else if (i + 1 < argc && !strcmp(argv[i], "--batch-mib"))
            batch_mib = strtoul(argv[++i], NULL, 0);
        else if (i + 1 < argc && !strcmp(argv[i], "--iters"))
            iters = (unsigned)strtoul(argv[++i], NULL, 0);
        else if (i + 1 < argc && !strcmp(argv[i], "--threads"))
            threads = (unsigned)strtoul(argv[++i], NULL, 0);
        else if (argv[i][0] != '-' && !image)
            image = argv[i];
        else {
            usage();
            return 2;
        }
    }
    if ((!image) == (!synth) || !iters || !batch_mib || !mib) {
        usage();
        return 2;
    }
    threads = threads < 1 ? 1 : threads > 256 ? 256 : threads;
    if (rfs_gpu_device_count() <= 0) {
        printf("ransfs-bench gpu: no CUDA device (GPU decode: %s); nothing to measure\n",
               rfs_gpu_build());
        return 0;
    }
    bench_set b;
    memset(&b, 0, sizeof(b));
    rfs_image *img = NULL;
    rfs_gpu *g = NULL;
    uint8_t *host = NULL;
    void *dev = NULL;
    int rc = 1;
    if (image ? load_image(&b, &img, image) : load_synthetic(&b, synth, mib))
        goto out;
    if (!b.n) {
        fprintf(stderr, "ransfs-bench gpu: %s: no tensor tiles\n", image ? image : synth);
        goto out;
    }
    rfs_gpu_opts o;
    rfs_gpu_opts_default(&o);
    o.batch_bytes = batch_mib << 20;
    o.max_unit = b.max_unit;
    char why[256] = "";
    rfs_err err = rfs_gpu_create(&g, &o, why, sizeof(why));
    if (err != RFS_OK) {
        fprintf(stderr, "ransfs-bench gpu: %s\n", why);
        goto out;
    }
    host = malloc(b.bytes);
    dev = rfs_gpu_dev_alloc(g, b.bytes);
    if (!host || !dev) {
        fprintf(stderr, "ransfs-bench gpu: cannot allocate %.1f MiB for the output\n",
                (double)b.bytes / 1048576.0);
        goto out;
    }
    if (!json)
        printf("ransfs-bench gpu: %s: %zu tiles, %.1f MiB decoded, ratio %.4f; %s; batches of "
               "%zu MiB\n",
               image ? image : synth, b.n, (double)b.bytes / 1048576.0,
               (double)b.enc / (double)b.bytes, rfs_gpu_name(g), batch_mib);
    double sec;
    uint64_t kbytes;
    size_t used;
    err = rfs_gpu_bench_kernels(g, b.u, b.n, iters, &sec, &kbytes, &used);
    if (err != RFS_OK) {
        fprintf(stderr, "ransfs-bench gpu: kernel run failed: %s\n", rfs_strerror(err));
        goto out;
    }
    report("kernel", kbytes, sec, json);
    double best = INFINITY, t;
    for (unsigned k = 0; k < 3; k++)
        if ((t = bench_host(g, &b, host)) >= 0 && t < best)
            best = t;
    report("host2host", b.bytes, best, json);
    best = INFINITY;
    for (unsigned k = 0; k < 3; k++)
        if ((t = bench_device(g, &b, dev)) >= 0 && t < best)
            best = t;
    report("to-device", b.bytes, best, json);
    best = INFINITY;
    for (unsigned k = 0; k < 3; k++)
        if ((t = bench_cpu(&b, threads)) >= 0 && t < best)
            best = t;
    char name[32];
    snprintf(name, sizeof(name), "cpu x%u", threads);
    report(name, b.bytes, best, json);
    rc = 0;
out:
    if (dev)
        rfs_gpu_dev_free(g, dev);
    rfs_gpu_destroy(g);
    free(host);
    free(b.u);
    free(b.enc_buf);
    if (img)
        rfs_image_close(img);
    return rc;
}
