/*
 * bench_gpu.c - `ransfs-bench gpu IMAGE` and `ransfs-bench gpu --synthetic
 * bf16|fp16`: GPU tile decode throughput in decoded bytes per second, all in
 * one run:
 *   kernel      the two decode kernels only, one batch resident on the GPU
 *   host2host   H2D of compressed tiles + decode + D2H into host buffers
 *   to-device   compressed tiles H2D + decode into a device buffer
 *   cpu         rfs_tile_decode on every core (one thread per core)
 * and, for one file of the image (--file; --source names its original):
 *   load        rfs_gpu_read_to_device of the whole file, image in the page
 *               cache, checked byte for byte against the original
 *   baseline    the original read into pinned host memory + one cudaMemcpy
 * Without CUDA in the build, or without a device, it says so and exits 0.
 *
 * It links rfs_gpu in every build: without CUDA that is cuda/rfs_gpu_none.c,
 * which has no device.
 */
#include <errno.h>
#include <fcntl.h>
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

/* The run's settings, from the command line. */
enum { P_KERNEL = 1, P_HOST = 2, P_DEVICE = 4, P_CPU = 8, P_LOAD = 16, P_BASELINE = 32 };

typedef struct bench_opts {
    const char *image, *synth;
    const char *file;   /* path inside the image, for load */
    const char *source; /* the uncompressed original of file, for baseline */
    size_t batch_mib, mib;
    unsigned iters, threads, paths;
    int json;
} bench_opts;

static void report(const bench_opts *o, const char *what, uint64_t bytes, double sec)
{
    double gbs = sec > 0 ? (double)bytes / sec / 1e9 : 0;
    if (o->json)
        printf("{\"bench\":\"gpu\",\"path\":\"%s\",\"batch_mib\":%zu,\"decoded_bytes\":%llu,"
               "\"seconds\":%.6f,\"gbps\":%.3f}\n",
               what, o->batch_mib, (unsigned long long)bytes, sec, gbs);
    else
        printf("  %-10s %8.2f GB/s  (%.1f MiB in %.4f s)\n", what, gbs,
               (double)bytes / 1048576.0, sec);
}

/* Report the best of a path's runs; every run failed when best is infinite. */
static int report_best(const bench_opts *o, const char *what, uint64_t bytes, double best)
{
    if (isinf(best)) {
        fprintf(stderr, "ransfs-bench gpu: %s: every run failed\n", what);
        return -1;
    }
    report(o, what, bytes, best);
    return 0;
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

/* Baseline: the whole uncompressed file read into pinned host memory, then
 * one cudaMemcpy to the device (what a loader without ransfs does). */
static double bench_baseline(rfs_gpu *g, int fd, uint64_t size, uint8_t *pinned, void *dev)
{
    double t0 = now_s();
    for (uint64_t off = 0; off < size;) {
        ssize_t r = pread(fd, pinned + off, size - off, (off_t)off);
        if (r <= 0)
            return -1;
        off += (uint64_t)r;
    }
    if (rfs_gpu_dev_upload(g, dev, pinned, size) != RFS_OK)
        return -1;
    return now_s() - t0;
}

/* Direct-to-device: the whole file through rfs_gpu_read_to_device (tile
 * checksums, compressed upload, GPU decode), into poisoned device memory. */
static double bench_load(rfs_gpu *g, const rfs_image *img, uint64_t ino, uint64_t size,
                         void *dev)
{
    size_t got = 0;
    if (rfs_gpu_dev_fill(g, dev, 0xa5, size) != RFS_OK)
        return -1;
    double t0 = now_s();
    rfs_err err = rfs_gpu_read_to_device(g, img, ino, 0, size, dev, &got);
    double t = now_s() - t0;
    if (err != RFS_OK || got != size) {
        fprintf(stderr, "ransfs-bench gpu: load: %s\n", rfs_strerror(err));
        return -1;
    }
    return t;
}

/* The device bytes of the last load equal the original file's (in pinned). */
static int load_verify(rfs_gpu *g, const void *dev, const uint8_t *want, uint64_t size)
{
    uint8_t *h = malloc(size ? size : 1);
    int ok = h && rfs_gpu_dev_download(g, h, dev, size) == RFS_OK && !memcmp(h, want, size);
    free(h);
    return ok;
}

/* Best of three runs of one timed path (a negative time is a failed run). */
#define BEST3(best, expr)                                                                    \
    do {                                                                                     \
        double t_;                                                                           \
        best = INFINITY;                                                                     \
        for (unsigned k_ = 0; k_ < 3; k_++)                                                  \
            if ((t_ = (expr)) >= 0 && t_ < best)                                             \
                best = t_;                                                                   \
    } while (0)

/* The load and baseline paths on o->file of the image and o->source. */
static int run_file_paths(const bench_opts *o, rfs_gpu *g, const rfs_image *img)
{
    uint64_t ino;
    rfs_stat st;
    int fd = -1, rc = 1;
    uint8_t *pinned = NULL;
    void *dev = NULL;
    if (rfs_image_lookup_path(img, o->file, &ino) != RFS_OK ||
        rfs_image_stat(img, ino, &st) != RFS_OK) {
        fprintf(stderr, "ransfs-bench gpu: %s: no file '%s' in the image\n", o->image, o->file);
        return 1;
    }
    if (o->source && (fd = open(o->source, O_RDONLY)) < 0) {
        fprintf(stderr, "ransfs-bench gpu: %s: %s\n", o->source, strerror(errno));
        return 1;
    }
    dev = rfs_gpu_dev_alloc(g, st.size);
    pinned = o->source ? rfs_gpu_host_alloc(g, st.size) : NULL;
    if (!dev || (o->source && !pinned)) {
        fprintf(stderr, "ransfs-bench gpu: cannot allocate 2 x %.1f MiB for %s\n",
                (double)st.size / 1048576.0, o->file);
        goto out;
    }
    double best;
    if (o->source) {
        BEST3(best, bench_baseline(g, fd, st.size, pinned, dev));
        if (report_best(o, "baseline", st.size, best))
            goto out;
    }
    if (o->paths & P_LOAD) {
        BEST3(best, bench_load(g, img, ino, st.size, dev));
        if (report_best(o, "load", st.size, best))
            goto out;
        if (o->source && !load_verify(g, dev, pinned, st.size)) {
            fprintf(stderr, "ransfs-bench gpu: load: device bytes differ from %s\n", o->source);
            goto out;
        }
        if (o->source && o->json)
            printf("{\"bench\":\"gpu\",\"path\":\"load_verify\",\"equal\":true}\n");
    }
    rc = 0;
out:
    rfs_gpu_dev_free(g, dev);
    rfs_gpu_host_free(g, pinned);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* The four paths over every tile unit of the set. */
static int run_unit_paths(const bench_opts *o, rfs_gpu *g, bench_set *b)
{
    uint8_t *host = NULL;
    void *dev = NULL;
    int rc = 1;
    double sec, best;
    if (o->paths & P_KERNEL) {
        uint64_t kbytes;
        size_t used;
        rfs_err err = rfs_gpu_bench_kernels(g, b->u, b->n, o->iters, &sec, &kbytes, &used);
        if (err != RFS_OK) {
            fprintf(stderr, "ransfs-bench gpu: kernel run failed: %s\n", rfs_strerror(err));
            return 1;
        }
        report(o, "kernel", kbytes, sec);
    }
    if ((o->paths & P_HOST) && !(host = malloc(b->bytes ? b->bytes : 1)))
        goto nomem;
    if ((o->paths & P_DEVICE) && !(dev = rfs_gpu_dev_alloc(g, b->bytes)))
        goto nomem;
    if (host) {
        BEST3(best, bench_host(g, b, host));
        if (report_best(o, "host2host", b->bytes, best))
            goto out;
    }
    if (dev) {
        BEST3(best, bench_device(g, b, dev));
        if (report_best(o, "to-device", b->bytes, best))
            goto out;
    }
    if (o->paths & P_CPU) {
        char name[32];
        snprintf(name, sizeof(name), "cpu x%u", o->threads);
        BEST3(best, bench_cpu(b, o->threads));
        if (report_best(o, name, b->bytes, best))
            goto out;
    }
    rc = 0;
    goto out;
nomem:
    fprintf(stderr, "ransfs-bench gpu: cannot allocate %.1f MiB for the output\n",
            (double)b->bytes / 1048576.0);
out:
    rfs_gpu_dev_free(g, dev);
    free(host);
    return rc;
}

/* The decoder's counters: CPU fallbacks and CUDA errors over the whole run. */
static void report_stats(const bench_opts *o, const rfs_gpu *g)
{
    rfs_gpu_stats st;
    rfs_gpu_get_stats(g, &st);
    if (o->json) {
        printf("{\"bench\":\"gpu\",\"path\":\"stats\",\"device\":\"");
        for (const char *c = rfs_gpu_name(g); *c; c++)
            printf(*c == '"' || *c == '\\' ? "\\%c" : "%c", *c);
        printf("\",\"batches\":%llu,\"units_gpu\":%llu,\"units_cpu\":%llu,\"bytes_gpu\":%llu,"
               "\"cuda_errors\":%llu,\"usable\":%s}\n",
               (unsigned long long)st.batches, (unsigned long long)st.units_gpu,
               (unsigned long long)st.units_cpu, (unsigned long long)st.bytes_gpu,
               (unsigned long long)st.cuda_errors, rfs_gpu_usable(g) ? "true" : "false");
    } else {
        printf("  stats      %llu launches, %llu units on the GPU, %llu on the CPU (fallback), "
               "%llu CUDA errors\n",
               (unsigned long long)st.batches, (unsigned long long)st.units_gpu,
               (unsigned long long)st.units_cpu, (unsigned long long)st.cuda_errors);
    }
}

static void usage(void)
{
    fprintf(stderr,
            "usage: ransfs-bench gpu IMAGE [--batch-mib N] [--iters N] [--threads N] [--json]\n"
            "                        [--paths LIST] [--file PATH --source FILE]\n"
            "       ransfs-bench gpu --synthetic bf16|fp16 [--mib N] [options]\n"
            "  LIST: comma-separated kernel,host2host,to-device,cpu,load (default: all;\n"
            "  load needs --file, a file of the image; --source, its original, adds the\n"
            "  baseline (pinned read + cudaMemcpy) and checks the loaded bytes)\n");
}

/* "kernel,cpu" -> P_KERNEL | P_CPU; 0 for an unknown name. */
static unsigned parse_paths(const char *list)
{
    static const char *const names[] = {"kernel", "host2host", "to-device", "cpu", "load"};
    unsigned mask = 0;
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", list);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        unsigned k = 0;
        while (k < 5 && strcmp(t, names[k]))
            k++;
        if (k == 5)
            return 0;
        mask |= 1u << k;
    }
    return mask;
}

/* Parse argv into o; 0 on success. */
static int parse_args(bench_opts *o, int argc, char **argv)
{
    memset(o, 0, sizeof(*o));
    o->batch_mib = 64, o->mib = 512, o->iters = 20;
    o->threads = (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
    o->paths = P_KERNEL | P_HOST | P_DEVICE | P_CPU | P_LOAD;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json"))
            o->json = 1;
        else if (v && !strcmp(a, "--synthetic"))
            o->synth = v, i++;
        else if (v && !strcmp(a, "--mib"))
            o->mib = strtoul(v, NULL, 0), i++;
        else if (v && !strcmp(a, "--batch-mib"))
            o->batch_mib = strtoul(v, NULL, 0), i++;
        else if (v && !strcmp(a, "--iters"))
            o->iters = (unsigned)strtoul(v, NULL, 0), i++;
        else if (v && !strcmp(a, "--threads"))
            o->threads = (unsigned)strtoul(v, NULL, 0), i++;
        else if (v && !strcmp(a, "--paths"))
            o->paths = parse_paths(v), i++;
        else if (v && !strcmp(a, "--file"))
            o->file = v, i++;
        else if (v && !strcmp(a, "--source"))
            o->source = v, i++;
        else if (a[0] != '-' && !o->image)
            o->image = a;
        else
            return -1;
    }
    if (!o->file)
        o->paths &= ~(unsigned)P_LOAD;
    if (o->source)
        o->paths |= P_BASELINE;
    o->threads = o->threads < 1 ? 1 : o->threads > 256 ? 256 : o->threads;
    int bad = (!o->image) == (!o->synth) || !o->iters || !o->batch_mib || !o->mib || !o->paths;
    return bad || (o->source && !o->file) || (o->file && !o->image) ? -1 : 0;
}

int rfs_bench_gpu(int argc, char **argv)
{
    bench_opts o;
    if (parse_args(&o, argc, argv)) {
        usage();
        return 2;
    }
    if (rfs_gpu_device_count() <= 0) {
        printf("ransfs-bench gpu: no CUDA device (GPU decode: %s); nothing to measure\n",
               rfs_gpu_build());
        return 0;
    }
    bench_set b;
    memset(&b, 0, sizeof(b));
    rfs_image *img = NULL;
    rfs_gpu *g = NULL;
    int rc = 1;
    if (o.image ? load_image(&b, &img, o.image) : load_synthetic(&b, o.synth, o.mib))
        goto out;
    if (!b.n) {
        fprintf(stderr, "ransfs-bench gpu: %s: no tensor tiles\n", o.image ? o.image : o.synth);
        goto out;
    }
    rfs_gpu_opts go;
    rfs_gpu_opts_default(&go);
    go.batch_bytes = o.batch_mib << 20;
    go.max_unit = b.max_unit;
    if (img) { /* load reads zstd units too: the CPU buffer takes the largest */
        rfs_image_summary sum;
        rfs_image_get_summary(img, &sum);
        go.max_unit = sum.unit_max > go.max_unit ? sum.unit_max : go.max_unit;
    }
    char why[256] = "";
    if (rfs_gpu_create(&g, &go, why, sizeof(why)) != RFS_OK) {
        fprintf(stderr, "ransfs-bench gpu: %s\n", why);
        goto out;
    }
    if (!o.json)
        printf("ransfs-bench gpu: %s: %zu tiles, %.1f MiB decoded, ratio %.4f; %s; batches of "
               "%zu MiB\n",
               o.image ? o.image : o.synth, b.n, (double)b.bytes / 1048576.0,
               (double)b.enc / (double)b.bytes, rfs_gpu_name(g), o.batch_mib);
    /* Every path runs even when one fails, each reporting its own error. */
    rc = (o.paths & (P_LOAD | P_BASELINE)) ? run_file_paths(&o, g, img) : 0;
    rc |= run_unit_paths(&o, g, &b);
    report_stats(&o, g);
out:
    rfs_gpu_destroy(g);
    free(b.u);
    free(b.enc_buf);
    if (img)
        rfs_image_close(img);
    return rc;
}
