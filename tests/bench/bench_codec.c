/*
 * bench_codec.c - `ransfs-bench codec FILE --dtype fp16|bf16|f32 ...`
 *
 * Compresses one file of raw little-endian elements in independent chunks of
 * --tile-size bytes with each codec, on one core, and prints the ratio
 * (compressed / original), encode and decode MB/s (of original bytes):
 *
 *   ransfs          rfs_tile_encode / rfs_tile_decode, best CPU backend
 *   ransfs-<path>   the same decode forced to each backend (rfs_dec_backend_names)
 *   ransfs-x2       the best backend, chunks decoded two at a time
 *                   (rfs_tile_decode2: the VBMI backend runs them in lockstep)
 *   ransfs-ctx[-<path>]  the same with RANS_CTX allowed (tile format 2:
 *                   the low byte coded conditioned on the exponent where
 *                   that pays), so both are compared in one run
 *   htscodecs       rANS 32x16 order 0, striped by element width, its own
 *                   CPU choice; htscodecs-avx2 with AVX-512 disabled
 *   zstd3-planes    zstd level 3 on the byte-grouped (plane-split) chunk
 *   memcpy          copy, for scale
 *   pair-hist[-ws]  (--only pair-hist) the packer's per-tile analysis,
 *                   rfs_pair_histogram, without and with its scratch table:
 *                   "enc MB/s" is the histogram's, ratio and decode are 0
 *
 * Each measurement repeats the whole file until --min-time seconds (0.3)
 * have passed and reports the fastest run (wall clock, or the thread's CPU
 * time with --cpu-clock; --only NAME runs one codec family).  Every decode
 * is checked against the original bytes once; a mismatch is an error.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zstd.h>

#include "bench.h"
#include "rfs_tile.h"

#ifdef RFS_HAVE_HTSCODECS
#include <htscodecs/rANS_static4x16.h>
#endif

typedef struct bench_opts {
    const char *path;
    const char *dtype;
    unsigned width;
    size_t tile_size;
    int json;
    int from_f32;
    double min_time;
    const char *only; /* run only the rows of this codec family, or NULL */
} bench_opts;

/* A buffer cut into chunks, and each chunk's compressed form. */
typedef struct chunked {
    const uint8_t *src;
    size_t size;
    size_t chunk;   /* bytes per chunk (last one may be shorter) */
    size_t count;
    uint8_t **comp; /* comp[k]: compressed chunk k */
    size_t *comp_size;
} chunked;

/* What one codec row needs: encode chunk k, decode chunk k into dst. */
typedef struct codec_ops {
    const char *name;
    int (*encode)(void *ctx, chunked *c, size_t k);
    int (*decode)(void *ctx, const chunked *c, size_t k, uint8_t *dst);
    void *ctx;
} codec_ops;

/* Wall clock, or with --cpu-clock this thread's CPU time (steadier on a
 * machine shared with other jobs: time spent descheduled is not counted). */
static clockid_t g_clock = CLOCK_MONOTONIC;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(g_clock, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static size_t chunk_len(const chunked *c, size_t k)
{
    size_t off = k * c->chunk;
    return c->size - off < c->chunk ? c->size - off : c->chunk;
}

/* ------------------------------------------------------------ conversion */

static uint32_t f32_bits(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* f32 -> bf16, round to nearest even; NaN stays a (quiet) NaN. */
static uint16_t f32_to_bf16(uint32_t u)
{
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* f32 -> IEEE fp16, round to nearest even, with subnormals, Inf and NaN. */
static uint16_t f32_to_fp16(uint32_t u)
{
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) /* rounds to >= 65520: Inf */
        return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) { /* below 2^-14: fp16 subnormal or zero */
        if (a < 0x33000000u) /* below 2^-25: rounds to 0 */
            return (uint16_t)sign;
        uint32_t e = a >> 23;
        uint32_t m = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e; /* 14..24 */
        uint32_t q = m >> shift, r = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (r > half || (r == half && (q & 1u)))
            q++;
        return (uint16_t)(sign | q);
    }
    uint32_t v = a - 0x38000000u; /* rebias exponent 127 -> 15 */
    v = (v + 0xfffu + ((v >> 13) & 1u)) >> 13;
    return (uint16_t)(sign | v);
}

/* Convert n f32 values in place to width-2 elements (the buffer shrinks). */
static void convert_from_f32(uint8_t *buf, size_t n, const char *dtype)
{
    int bf = !strcmp(dtype, "bf16");
    for (size_t i = 0; i < n; i++) {
        uint32_t u = f32_bits(buf + 4 * i);
        uint16_t h = bf ? f32_to_bf16(u) : f32_to_fp16(u);
        buf[2 * i] = (uint8_t)h;
        buf[2 * i + 1] = (uint8_t)(h >> 8);
    }
}

/* --------------------------------------------------------------- ransfs */

typedef struct rfs_ctx {
    unsigned width;
    rfs_transform xf;
    int ctx; /* rfs_tile_params.ctx */
    rfs_enc *enc;
    rfs_dec *dec;
    int pairs; /* decode chunks two at a time (rfs_tile_decode2) */
} rfs_ctx;

static int rfs_encode_chunk(void *ctx, chunked *c, size_t k)
{
    rfs_ctx *r = ctx;
    rfs_tile_params p = {.width = r->width, .transform = r->xf, .ctx = r->ctx};
    size_t len = chunk_len(c, k);
    rfs_err err = rfs_tile_encode(r->enc, c->comp[k], rfs_tile_bound(c->chunk, r->width),
                                  &c->comp_size[k], c->src + k * c->chunk, len, &p);
    if (err != RFS_OK)
        fprintf(stderr, "ransfs-bench: rfs_tile_encode chunk %zu: %s\n", k, rfs_strerror(err));
    return err != RFS_OK;
}

/* Chunks k and k + 1 (dst and dst + chunk) together, called for even k;
 * odd k were done with the one before. */
static int rfs_decode_pair(rfs_ctx *r, const chunked *c, size_t k, uint8_t *dst)
{
    if (k & 1)
        return 0;
    rfs_tile_io io[2];
    for (size_t j = 0; j < 2; j++)
        io[j] = (rfs_tile_io){.dst = dst + j * c->chunk, .dst_cap = c->chunk,
                              .src = c->comp[k + j], .src_size = c->comp_size[k + j]};
    rfs_err err = rfs_tile_decode2(r->dec, io);
    for (size_t j = 0; j < 2 && err == RFS_OK; j++)
        if (io[j].dst_size != chunk_len(c, k + j))
            err = RFS_E_CORRUPT;
    if (err != RFS_OK)
        fprintf(stderr, "ransfs-bench: rfs_tile_decode2 (%s) chunks %zu, %zu: %s\n",
                rfs_dec_backend(r->dec), k, k + 1, rfs_strerror(err));
    return err != RFS_OK;
}

static int rfs_decode_chunk(void *ctx, const chunked *c, size_t k, uint8_t *dst)
{
    rfs_ctx *r = ctx;
    size_t got = 0;
    if (r->pairs && k + 1 < c->count)
        return rfs_decode_pair(r, c, k, dst);
    rfs_err err = rfs_tile_decode(r->dec, dst, c->chunk, &got, c->comp[k], c->comp_size[k], NULL);
    if (err != RFS_OK || got != chunk_len(c, k)) {
        fprintf(stderr, "ransfs-bench: rfs_tile_decode (%s) chunk %zu: %s\n",
                rfs_dec_backend(r->dec), k, rfs_strerror(err));
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ htscodecs */

#ifdef RFS_HAVE_HTSCODECS
typedef struct hts_ctx {
    unsigned width;
    int cpu; /* rans_set_cpu() mask for this row, set by the caller */
} hts_ctx;

static int hts_order(unsigned width)
{
    /* order 0, 32-way; for W > 1 stripe into W byte streams (N in bits 8-15) */
    return RANS_ORDER_X32 | (width > 1 ? RANS_ORDER_STRIPE | (int)(width << 8) : 0);
}

static int hts_encode_chunk(void *ctx, chunked *c, size_t k)
{
    hts_ctx *h = ctx;
    size_t len = chunk_len(c, k);
    unsigned out_size = rans_compress_bound_4x16((unsigned)c->chunk, hts_order(h->width));
    if (!rans_compress_to_4x16((unsigned char *)c->src + k * c->chunk, (unsigned)len, c->comp[k],
                               &out_size, hts_order(h->width))) {
        fprintf(stderr, "ransfs-bench: rans_compress_to_4x16 chunk %zu failed\n", k);
        return 1;
    }
    c->comp_size[k] = out_size;
    return 0;
}

static int hts_decode_chunk(void *ctx, const chunked *c, size_t k, uint8_t *dst)
{
    (void)ctx;
    unsigned out_size = (unsigned)chunk_len(c, k);
    if (!rans_uncompress_to_4x16(c->comp[k], (unsigned)c->comp_size[k], dst, &out_size) ||
        out_size != chunk_len(c, k)) {
        fprintf(stderr, "ransfs-bench: rans_uncompress_to_4x16 chunk %zu failed\n", k);
        return 1;
    }
    return 0;
}
#endif

/* ------------------------------------------------------- zstd on planes */

typedef struct zstd_ctx {
    unsigned width;
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    uint8_t *tmp; /* one chunk, byte-grouped */
} zstd_ctx;

static int zstd_encode_chunk(void *ctx, chunked *c, size_t k)
{
    zstd_ctx *z = ctx;
    size_t len = chunk_len(c, k), n = len / z->width;
    const uint8_t *src = c->src + k * c->chunk;
    for (unsigned b = 0; b < z->width; b++)
        for (size_t i = 0; i < n; i++)
            z->tmp[b * n + i] = src[i * z->width + b];
    size_t r = ZSTD_compressCCtx(z->cctx, c->comp[k], ZSTD_compressBound(c->chunk), z->tmp, len, 3);
    if (ZSTD_isError(r)) {
        fprintf(stderr, "ransfs-bench: zstd chunk %zu: %s\n", k, ZSTD_getErrorName(r));
        return 1;
    }
    c->comp_size[k] = r;
    return 0;
}

static int zstd_decode_chunk(void *ctx, const chunked *c, size_t k, uint8_t *dst)
{
    zstd_ctx *z = ctx;
    size_t len = chunk_len(c, k), n = len / z->width;
    size_t r = ZSTD_decompressDCtx(z->dctx, z->tmp, c->chunk, c->comp[k], c->comp_size[k]);
    if (ZSTD_isError(r) || r != len) {
        fprintf(stderr, "ransfs-bench: zstd decode chunk %zu failed\n", k);
        return 1;
    }
    /* un-group: part of decoding, so it is timed */
    if (z->width == 2) {
        for (size_t i = 0; i < n; i++) {
            dst[2 * i] = z->tmp[i];
            dst[2 * i + 1] = z->tmp[n + i];
        }
    } else if (z->width == 4) {
        for (size_t i = 0; i < n; i++) {
            dst[4 * i] = z->tmp[i];
            dst[4 * i + 1] = z->tmp[n + i];
            dst[4 * i + 2] = z->tmp[2 * n + i];
            dst[4 * i + 3] = z->tmp[3 * n + i];
        }
    } else {
        memcpy(dst, z->tmp, len);
    }
    return 0;
}

/* --------------------------------------------------------------- memcpy */

static int copy_encode_chunk(void *ctx, chunked *c, size_t k)
{
    (void)ctx;
    c->comp_size[k] = chunk_len(c, k);
    memcpy(c->comp[k], c->src + k * c->chunk, c->comp_size[k]);
    return 0;
}

static int copy_decode_chunk(void *ctx, const chunked *c, size_t k, uint8_t *dst)
{
    (void)ctx;
    memcpy(dst, c->comp[k], c->comp_size[k]);
    return 0;
}

/* ------------------------------------------------------- pair histogram */

typedef struct hist_ctx {
    unsigned width;
    uint32_t *ws; /* rfs_pair_histogram's scratch, or NULL */
    uint32_t h[RFS_MAX_WIDTH][512];
} hist_ctx;

static int hist_chunk(void *ctx, chunked *c, size_t k)
{
    hist_ctx *h = ctx;
    rfs_pair_histogram(h->h, c->src + k * c->chunk, chunk_len(c, k) / h->width, h->width, h->ws);
    return 0;
}

/* --------------------------------------------------------------- timing */

/* Fastest of repeated whole-file passes, until min_time has passed. */
static int time_encode(const codec_ops *op, chunked *c, double min_time, double *best)
{
    double start = now_s();
    *best = 1e30;
    do {
        double t0 = now_s();
        for (size_t k = 0; k < c->count; k++)
            if (op->encode(op->ctx, c, k))
                return 1;
        double t = now_s() - t0;
        if (t < *best)
            *best = t;
    } while (now_s() - start < min_time);
    return 0;
}

/* Decode chunk by chunk into out (the whole file), check once, then time. */
static int time_decode(const codec_ops *op, const chunked *c, uint8_t *out, double min_time,
                       double *best)
{
    memset(out, 0, c->size);
    for (size_t k = 0; k < c->count; k++)
        if (op->decode(op->ctx, c, k, out + k * c->chunk))
            return 1;
    if (memcmp(out, c->src, c->size)) {
        fprintf(stderr, "ransfs-bench: %s: decoded bytes differ from the input\n", op->name);
        return 1;
    }
    double start = now_s();
    *best = 1e30;
    do {
        double t0 = now_s();
        for (size_t k = 0; k < c->count; k++)
            if (op->decode(op->ctx, c, k, out + k * c->chunk))
                return 1;
        double t = now_s() - t0;
        if (t < *best)
            *best = t;
    } while (now_s() - start < min_time);
    return 0;
}

static void report(const bench_opts *o, const char *codec, size_t bytes, size_t comp,
                   double enc_s, double dec_s)
{
    double ratio = bytes ? (double)comp / (double)bytes : 0.0;
    double enc = enc_s > 0 ? bytes / enc_s / 1e6 : 0.0;
    double dec = dec_s > 0 ? bytes / dec_s / 1e6 : 0.0;
    if (o->json)
        printf("{\"codec\": \"%s\", \"dtype\": \"%s\", \"bytes\": %zu, \"tile_size\": %zu, "
               "\"ratio\": %.5f, \"encode_mbps\": %.1f, \"decode_mbps\": %.1f}\n",
               codec, o->dtype, bytes, o->tile_size, ratio, enc, dec);
    else
        printf("%-16s %8.4f %12.1f %12.1f\n", codec, ratio, enc, dec);
    fflush(stdout);
}

/* Encode with op (timed), then decode with each of dec_ops (timed, checked). */
static int run_codec(const bench_opts *o, const codec_ops *op, const codec_ops *dec_ops,
                     size_t ndec, chunked *c, uint8_t *out)
{
    double enc_s;
    if (time_encode(op, c, o->min_time, &enc_s))
        return 1;
    size_t comp = 0;
    for (size_t k = 0; k < c->count; k++)
        comp += c->comp_size[k];
    for (size_t d = 0; d < ndec; d++) {
        double dec_s;
        if (time_decode(&dec_ops[d], c, out, o->min_time, &dec_s))
            return 1;
        report(o, dec_ops[d].name, c->size, comp, enc_s, dec_s);
    }
    return 0;
}

/* The pair-histogram rows (only with --only pair-hist: not a codec). */
static int bench_hist(const bench_opts *o, chunked *c)
{
    hist_ctx plain = {.width = o->width}, ws = {.width = o->width};
    ws.ws = malloc(RFS_PAIR_WS * sizeof *ws.ws);
    if (!ws.ws) {
        fprintf(stderr, "ransfs-bench: out of memory\n");
        return 1;
    }
    codec_ops a = {"pair-hist", hist_chunk, NULL, &plain}, b = {"pair-hist-ws", hist_chunk, NULL, &ws};
    /* alternated, three rounds each, the best: the row run first was slower
     * by up to a fifth when each ran once (even for f32, which ignores ws) */
    double ta = 1e30, tb = 1e30, t;
    int rc = 0;
    for (int r = 0; r < 3 && !rc; r++) {
        rc = time_encode(&a, c, o->min_time / 3, &t);
        ta = t < ta ? t : ta;
        rc = rc || time_encode(&b, c, o->min_time / 3, &t);
        tb = t < tb ? t : tb;
    }
    if (!rc && memcmp(plain.h, ws.h, o->width * sizeof plain.h[0])) {
        fprintf(stderr, "ransfs-bench: pair-hist-ws differs from pair-hist\n");
        rc = 1;
    }
    if (!rc) {
        report(o, a.name, c->size, 0, ta, 0);
        report(o, b.name, c->size, 0, tb, 0);
    }
    free(ws.ws);
    return rc;
}

/* ------------------------------------------------------------- driver */

static int usage(void)
{
    fprintf(stderr, "usage: ransfs-bench codec FILE --dtype fp16|bf16|f32 [--tile-size N] "
                    "[--json] [--from-f32] [--min-time SECONDS]\n"
                    "       [--cpu-clock] [--only ransfs|htscodecs|zstd3-planes|memcpy|pair-hist]\n");
    return 2;
}

static int parse_opts(bench_opts *o, int argc, char **argv)
{
    *o = (bench_opts){.tile_size = 262144, .min_time = 0.3};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--dtype") && i + 1 < argc)
            o->dtype = argv[++i];
        else if (!strcmp(a, "--tile-size") && i + 1 < argc)
            o->tile_size = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(a, "--min-time") && i + 1 < argc)
            o->min_time = strtod(argv[++i], NULL);
        else if (!strcmp(a, "--json"))
            o->json = 1;
        else if (!strcmp(a, "--from-f32"))
            o->from_f32 = 1;
        else if (!strcmp(a, "--cpu-clock"))
            g_clock = CLOCK_THREAD_CPUTIME_ID;
        else if (!strcmp(a, "--only") && i + 1 < argc)
            o->only = argv[++i];
        else if (a[0] != '-' && !o->path)
            o->path = a;
        else
            return usage();
    }
    if (!o->path || !o->dtype)
        return usage();
    if (!strcmp(o->dtype, "fp16") || !strcmp(o->dtype, "bf16"))
        o->width = 2;
    else if (!strcmp(o->dtype, "f32"))
        o->width = 4;
    else {
        fprintf(stderr, "ransfs-bench: unknown dtype '%s' (fp16, bf16, f32)\n", o->dtype);
        return 2;
    }
    if (o->from_f32 && o->width == 4)
        o->from_f32 = 0; /* already f32 */
    o->tile_size -= o->tile_size % 4;
    if (o->tile_size == 0 || o->tile_size > (1u << 30)) {
        fprintf(stderr, "ransfs-bench: --tile-size must be 4 .. 2^30\n");
        return 2;
    }
    return 0;
}

static uint8_t *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    if (!f || fseek(f, 0, SEEK_END) || (long)(*size = (size_t)ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET))
        goto fail;
    buf = malloc(*size ? *size : 1);
    if (!buf || fread(buf, 1, *size, f) != *size)
        goto fail;
    fclose(f);
    return buf;
fail:
    fprintf(stderr, "ransfs-bench: %s: %s\n", path, strerror(errno ? errno : EIO));
    free(buf);
    if (f)
        fclose(f);
    return NULL;
}

static int chunked_init(chunked *c, const uint8_t *src, size_t size, size_t chunk, size_t cap)
{
    *c = (chunked){.src = src, .size = size, .chunk = chunk};
    c->count = (size + chunk - 1) / chunk;
    c->comp = calloc(c->count ? c->count : 1, sizeof(*c->comp));
    c->comp_size = calloc(c->count ? c->count : 1, sizeof(*c->comp_size));
    if (!c->comp || !c->comp_size)
        return 1;
    for (size_t k = 0; k < c->count; k++)
        if (!(c->comp[k] = malloc(cap)))
            return 1;
    return 0;
}

static void chunked_free(chunked *c)
{
    for (size_t k = 0; c->comp && k < c->count; k++)
        free(c->comp[k]);
    free(c->comp);
    free(c->comp_size);
}

/* 1 when the rows of codec family name are to run (--only). */
static int want(const bench_opts *o, const char *name)
{
    return !o->only || !strcmp(o->only, name);
}

#define MAX_ROWS 10 /* "auto", every backend (rfs_dec_backend_names), x2 */

/* The decode rows: the best backend, each backend forced, and the best one
 * with chunks in pairs (x2); *npaths of them in paths[], row names in
 * names[] ("ransfs[-ctx][-<path>|-x2]"). */
static void ransfs_rows(int ctx, const char *paths[MAX_ROWS], char names[MAX_ROWS][40],
                        size_t *npaths)
{
    const char *const *all = rfs_dec_backend_names();
    const char *base = ctx ? "ransfs-ctx" : "ransfs";
    size_t k = 0;
    paths[k] = "auto";
    snprintf(names[k++], sizeof names[0], "%s", base);
    for (size_t i = 0; all[i] && k + 1 < MAX_ROWS; i++) {
        paths[k] = all[i];
        snprintf(names[k++], sizeof names[0], "%s-%s", base, all[i]);
    }
    paths[k] = "auto";
    snprintf(names[k++], sizeof names[0], "%s-x2", base);
    *npaths = k;
}

static int bench_ransfs(const bench_opts *o, chunked *c, uint8_t *out, int ctx)
{
    const char *paths[MAX_ROWS];
    static char names[2][MAX_ROWS][40];
    size_t npaths;
    ransfs_rows(ctx, paths, names[ctx != 0], &npaths);
    rfs_ctx ctxs[MAX_ROWS];
    codec_ops dec_ops[MAX_ROWS];
    size_t ndec = 0;
    int rc = 1;
    rfs_transform xf = rfs_transform_choose(c->src, c->size / o->width, o->width);
    rfs_enc *enc = rfs_enc_create(o->tile_size);
    if (!enc)
        goto done;
    for (size_t p = 0; p < npaths; p++) {
        if (!rfs_cpu_supports(paths[p]))
            continue;
        rfs_ctx *r = &ctxs[ndec];
        *r = (rfs_ctx){.width = o->width, .xf = xf, .ctx = ctx, .enc = enc,
                       .dec = rfs_dec_create(o->tile_size), .pairs = p == npaths - 1};
        if (!r->dec || rfs_dec_set_backend(r->dec, paths[p]) != RFS_OK) {
            rfs_dec_destroy(r->dec);
            continue;
        }
        dec_ops[ndec++] = (codec_ops){names[ctx != 0][p], rfs_encode_chunk, rfs_decode_chunk, r};
    }
    if (ndec)
        rc = run_codec(o, &dec_ops[0], dec_ops, ndec, c, out);
    for (size_t d = 0; d < ndec; d++)
        rfs_dec_destroy(ctxs[d].dec);
done:
    rfs_enc_destroy(enc);
    if (!ndec)
        fprintf(stderr, "ransfs-bench: cannot create the ransfs codec\n");
    return rc;
}

int rfs_bench_codec(int argc, char **argv)
{
    bench_opts o;
    int rc = parse_opts(&o, argc, argv);
    if (rc)
        return rc;
    size_t size = 0;
    uint8_t *buf = read_file(o.path, &size);
    if (!buf)
        return 1;
    if (o.from_f32) {
        convert_from_f32(buf, size / 4, o.dtype);
        size = size / 4 * 2;
    }
    size -= size % o.width;
    o.tile_size -= o.tile_size % o.width;

    size_t cap = rfs_tile_bound(o.tile_size, o.width);
    size_t zcap = ZSTD_compressBound(o.tile_size);
    if (zcap > cap)
        cap = zcap;
#ifdef RFS_HAVE_HTSCODECS
    size_t hcap = rans_compress_bound_4x16((unsigned)o.tile_size, hts_order(o.width));
    if (hcap > cap)
        cap = hcap;
#endif
    chunked c;
    uint8_t *out = malloc(size ? size : 1);
    zstd_ctx z = {.width = o.width, .cctx = ZSTD_createCCtx(), .dctx = ZSTD_createDCtx(),
                  .tmp = malloc(o.tile_size)};
    rc = 1;
    if (chunked_init(&c, buf, size, o.tile_size, cap) || !out || !z.cctx || !z.dctx || !z.tmp) {
        fprintf(stderr, "ransfs-bench: out of memory\n");
        goto done;
    }
    if (!o.json)
        printf("# %s: %zu bytes %s, chunks of %zu bytes, one core\n"
               "%-16s %8s %12s %12s\n",
               o.path, size, o.dtype, o.tile_size, "codec", "ratio", "enc MB/s", "dec MB/s");

    if (want(&o, "ransfs") && (bench_ransfs(&o, &c, out, 0) || bench_ransfs(&o, &c, out, 1)))
        goto done;
#ifdef RFS_HAVE_HTSCODECS
    if (!want(&o, "htscodecs"))
        goto no_hts;
    hts_ctx hauto = {o.width, 0xffff};
    hts_ctx havx2 = {o.width, RANS_CPU_ENC_SSE4 | RANS_CPU_ENC_AVX2 | RANS_CPU_DEC_SSE4 |
                                  RANS_CPU_DEC_AVX2};
    codec_ops ha = {"htscodecs", hts_encode_chunk, hts_decode_chunk, &hauto};
    codec_ops h2 = {"htscodecs-avx2", hts_encode_chunk, hts_decode_chunk, &havx2};
    /* rans_set_cpu() is process-wide: set it around each row */
    rans_set_cpu(hauto.cpu);
    if (run_codec(&o, &ha, &ha, 1, &c, out))
        goto done;
    rans_set_cpu(havx2.cpu);
    rc = run_codec(&o, &h2, &h2, 1, &c, out);
    rans_set_cpu(0xffff);
    if (rc)
        goto done;
    rc = 1;
no_hts:
#endif
    codec_ops zo = {"zstd3-planes", zstd_encode_chunk, zstd_decode_chunk, &z};
    if (want(&o, "zstd3-planes") && run_codec(&o, &zo, &zo, 1, &c, out))
        goto done;
    codec_ops mo = {"memcpy", copy_encode_chunk, copy_decode_chunk, NULL};
    if (want(&o, "memcpy") && run_codec(&o, &mo, &mo, 1, &c, out))
        goto done;
    if (o.only && !strcmp(o.only, "pair-hist") && bench_hist(&o, &c))
        goto done;
    rc = 0;
done:
    chunked_free(&c);
    ZSTD_freeCCtx(z.cctx);
    ZSTD_freeDCtx(z.dctx);
    free(z.tmp);
    free(out);
    free(buf);
    return rc;
}
