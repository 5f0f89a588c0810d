/*
 * test_host_emu.c - the host side of the GPU decoder (cuda/rfs_gpu.c, the
 * real file, unchanged) over a fake CUDA runtime whose kernels are the CPU
 * warp emulator (fake_cuda.c, warp_emu.c).  Checks the batch pipeline
 * (several batches per call, two slots), the staging layout, the scatter to
 * the caller, the CPU fallback for refused and flagged tiles (errors equal
 * the CPU decoder's), windows decoded "to device", and that a CUDA failure
 * at any call is logged once and never loses or corrupts a tile.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cuda_runtime_api.h"
#include "rfs_gpu.h"
#include "testutil.h"

#define MAX_TILE (256u << 10)

typedef struct corpus {
    rfs_gpu_unit *u;
    uint8_t **raw; /* NULL for corrupted tiles */
    size_t n, cap;
    rfs_table tab[16][RFS_MAX_WIDTH];
    rfs_table_set set[16];
    size_t n_sets;
} corpus;

static rfs_enc *g_enc;
static rfs_dec *g_dec;
static int g_logs;

static void log_cb(void *ctx, const char *msg)
{
    (void)ctx;
    g_logs++;
    printf("logged: %s\n", msg);
}

static void push(corpus *c, uint8_t *enc, size_t size, uint8_t *raw, size_t raw_size,
                 const rfs_table_set *shared)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 256;
        c->u = realloc(c->u, c->cap * sizeof(*c->u));
        c->raw = realloc(c->raw, c->cap * sizeof(*c->raw));
        assert_true(c->u && c->raw);
    }
    rfs_gpu_unit u = {enc, size, raw_size, shared, malloc(raw_size + 1), RFS_OK, 0};
    c->u[c->n] = u;
    c->raw[c->n++] = raw;
}

static void add_tensor(corpus *c, const uint8_t *src, size_t size, unsigned w, int shared,
                       size_t tile)
{
    size_t n = size / w;
    rfs_transform xf = rfs_transform_choose(src, n, w);
    const rfs_table_set *set = NULL;
    if (shared && n && c->n_sets < 16) {
        rfs_table_set *s = &c->set[c->n_sets];
        tu_table_set(s, c->tab[c->n_sets], src, n, w, xf);
        set = s;
        c->n_sets++;
    }
    rfs_tile_params prm = {.width = w, .transform = xf, .shared = set};
    tile -= tile % w;
    for (size_t off = 0; off < size || off == 0; off += tile) {
        size_t len = size - off < tile ? size - off : tile, cap = rfs_tile_bound(len, w), got;
        uint8_t *enc = malloc(cap), *raw = malloc(len + 1);
        assert_int_equal(rfs_tile_encode(g_enc, enc, cap, &got, src + off, len, &prm), RFS_OK);
        memcpy(raw, src + off, len);
        push(c, enc, got, raw, len, set);
        if (!size)
            break;
    }
}

/* Tensors of every width, gaussian and random, per-tile and shared tables. */
static void make_corpus(corpus *c, tu_rng *r)
{
    static const size_t sizes[] = {0, 1, 33, 5000, 70001, 300000};
    uint8_t *buf = malloc(300000 * 4);
    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++)
        for (unsigned w = 1; w <= 4; w *= 2)
            for (int kind = 0; kind < 2; kind++) {
                size_t n = sizes[si];
                for (size_t i = 0; i < n; i++) {
                    float f = (float)(tu_gauss(r) * 0.02);
                    uint32_t v;
                    memcpy(&v, &f, 4);
                    if (kind)
                        v = (uint32_t)tu_next(r) >> (tu_next(r) % 2 ? 0 : 28);
                    uint16_t h = tu_f32_to_bf16(f);
                    if (w == 4)
                        memcpy(buf + 4 * i, &v, 4);
                    else if (w == 2)
                        memcpy(buf + 2 * i, kind ? (void *)&v : (void *)&h, 2);
                    else
                        buf[i] = (uint8_t)(kind ? v : (uint32_t)(int)(f * 3000.0f));
                }
                add_tensor(c, buf, n * w, w, (int)(si + kind) % 2, si % 2 ? 65536 : 200000);
            }
    free(buf);
}

static void free_corpus(corpus *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free((void *)c->u[i].src);
        free(c->u[i].dst);
        free(c->raw[i]);
    }
    free(c->u);
    free(c->raw);
    c->u = NULL;
    c->raw = NULL;
    c->n = c->cap = 0;
}

/* Every unit's result equals the scalar CPU decoder's; returns GPU count. */
static size_t check(const corpus *c)
{
    uint8_t *ref = malloc(MAX_TILE + 1);
    size_t on_gpu = 0;
    for (size_t i = 0; i < c->n; i++) {
        const rfs_gpu_unit *u = &c->u[i];
        size_t got = 0;
        rfs_err cpu = rfs_tile_decode(g_dec, ref, u->decoded_size, &got, u->src, u->src_size,
                                      u->shared);
        if (cpu == RFS_OK && got != u->decoded_size)
            cpu = RFS_E_CORRUPT; /* decodes, but not to the size the image says */
        if (cpu != u->err)
            fail_msg("unit %zu: %s, CPU decoder: %s", i, rfs_strerror(u->err),
                     rfs_strerror(cpu));
        if (cpu == RFS_OK)
            assert_memory_equal(u->dst, ref, u->decoded_size);
        if (c->raw[i]) {
            assert_int_equal(u->err, RFS_OK);
            assert_memory_equal(u->dst, c->raw[i], u->decoded_size);
        }
        on_gpu += (size_t)u->on_gpu;
    }
    free(ref);
    return on_gpu;
}

static rfs_gpu *make_gpu(size_t batch)
{
    rfs_gpu_opts o;
    rfs_gpu_opts_default(&o);
    o.batch_bytes = batch;
    o.max_unit = MAX_TILE;
    o.log = log_cb;
    rfs_gpu *g = NULL;
    char why[128];
    assert_int_equal(rfs_gpu_create(&g, &o, why, sizeof(why)), RFS_OK);
    return g;
}

static void test_no_device(void **state)
{
    (void)state;
    fake_cuda_set_devices(0);
    rfs_gpu *g = (rfs_gpu *)1;
    char why[128] = "";
    assert_int_equal(rfs_gpu_device_count(), 0);
    assert_int_equal(rfs_gpu_create(&g, NULL, why, sizeof(why)), RFS_E_GPU);
    assert_null(g);
    assert_string_equal(why, "no CUDA device");
    fake_cuda_set_devices(1);
}

static void test_batches(void **state)
{
    (void)state;
    tu_rng r = {tu_seed("cuda_host_emu batches")};
    corpus c = {0};
    make_corpus(&c, &r);
    rfs_gpu *g = make_gpu(1u << 20); /* many batches, both slots */
    long l0 = fake_cuda_launches();
    assert_int_equal(rfs_gpu_decode_batch(g, c.u, c.n), RFS_OK);
    size_t on_gpu = check(&c);
    printf("batches: %zu units, %zu on the GPU path, %ld launches\n", c.n, on_gpu,
           fake_cuda_launches() - l0);
    assert_int_equal(on_gpu, c.n);
    assert_true(fake_cuda_launches() - l0 > 4);
    assert_true(rfs_gpu_usable(g));
    rfs_gpu_destroy(g);
    free_corpus(&c);
}

static void test_corrupt(void **state)
{
    (void)state;
    tu_rng r = {tu_seed("cuda_host_emu corrupt")};
    corpus src = {0}, c = {0};
    make_corpus(&src, &r);
    for (int round = 0; round < 4; round++)
        for (size_t i = 0; i < src.n; i++) {
            size_t sz = src.u[i].src_size;
            uint8_t *enc = malloc(sz + 1);
            memcpy(enc, src.u[i].src, sz);
            enc[sz] = 0;
            uint64_t k = tu_next(&r);
            if (k % 5 == 0)
                sz = k % 10 ? (size_t)(tu_next(&r) % sz) : sz + 1;
            else
                enc[tu_next(&r) % sz] ^= (uint8_t)(1u << (k % 8));
            push(&c, enc, sz, NULL, src.u[i].decoded_size, src.u[i].shared);
        }
    rfs_gpu *g = make_gpu(2u << 20);
    assert_int_equal(rfs_gpu_decode_batch(g, c.u, c.n), RFS_OK);
    size_t on_gpu = check(&c);
    printf("corrupt: %zu units, %zu on the GPU path, %zu on the CPU\n", c.n, on_gpu,
           c.n - on_gpu);
    assert_true(on_gpu > 0 && on_gpu < c.n);
    rfs_gpu_destroy(g);
    free_corpus(&c);
    free_corpus(&src);
}

static void test_to_device(void **state)
{
    (void)state;
    tu_rng r = {tu_seed("cuda_host_emu to_device")};
    corpus c = {0};
    make_corpus(&c, &r);
    rfs_gpu *g = make_gpu(1u << 20);
    rfs_gpu_dev_unit *du = calloc(c.n, sizeof(*du));
    size_t total = 0;
    for (size_t i = 0; i < c.n; i++) {
        size_t sz = c.u[i].decoded_size;
        uint32_t a = (uint32_t)(tu_next(&r) % (sz + 1)), b = (uint32_t)(tu_next(&r) % (sz + 1));
        if (i % 3 == 0)
            a = 0, b = (uint32_t)sz;
        total += tu_next(&r) % 5;
        rfs_gpu_dev_unit x = {c.u[i].src, c.u[i].src_size, sz, c.u[i].shared, total,
                              a < b ? a : b, a < b ? b : a, RFS_OK};
        du[i] = x;
        total += x.hi - x.lo;
    }
    uint8_t *dev = rfs_gpu_dev_alloc(g, total + 1); /* host memory under the fake */
    assert_non_null(dev);
    memset(dev, 0xa5, total + 1);
    assert_int_equal(rfs_gpu_decode_to_device(g, dev, total + 1, du, c.n), RFS_OK);
    uint8_t *mark = calloc(1, total + 1);
    for (size_t i = 0; i < c.n; i++) {
        assert_int_equal(du[i].err, RFS_OK);
        assert_memory_equal(dev + du[i].dst_off, c.raw[i] + du[i].lo, du[i].hi - du[i].lo);
        memset(mark + du[i].dst_off, 1, du[i].hi - du[i].lo);
    }
    for (size_t k = 0; k <= total; k++)
        if (!mark[k] && dev[k] != 0xa5)
            fail_msg("byte %zu outside every window was written", k);
    /* a window past the end of the device buffer is refused */
    size_t big = 0;
    while (c.u[big].decoded_size < 2)
        big++;
    du[big].dst_off = total;
    du[big].lo = 0;
    du[big].hi = 2;
    assert_int_equal(rfs_gpu_decode_to_device(g, dev, total + 1, &du[big], 1), RFS_E_ARG);
    rfs_gpu_dev_free(g, dev);
    free(mark);
    free(du);
    rfs_gpu_destroy(g);
    free_corpus(&c);
}

/* A CUDA failure at call k: logged once, every tile still right (CPU). */
static void test_cuda_failure(void **state)
{
    (void)state;
    tu_rng r = {tu_seed("cuda_host_emu failure")};
    corpus c = {0};
    make_corpus(&c, &r);
    for (long k = 1; k <= 40; k += 3) {
        rfs_gpu *g = make_gpu(1u << 20);
        g_logs = 0;
        fake_cuda_fail_at(k);
        assert_int_equal(rfs_gpu_decode_batch(g, c.u, c.n), RFS_OK);
        fake_cuda_fail_at(0);
        check(&c);
        assert_int_equal(g_logs, 1);
        assert_false(rfs_gpu_usable(g));
        assert_int_equal(rfs_gpu_decode_batch(g, c.u, 3), RFS_OK); /* CPU from now on */
        check(&c);
        rfs_gpu_dev_unit du = {c.u[5].src, c.u[5].src_size, c.u[5].decoded_size, NULL, 0, 0, 0,
                               RFS_OK};
        uint8_t dev[8];
        assert_int_equal(rfs_gpu_decode_to_device(g, dev, sizeof(dev), &du, 1), RFS_E_GPU);
        assert_int_equal(g_logs, 1);
        rfs_gpu_destroy(g);
    }
    free_corpus(&c);
}

static void test_bench_hook(void **state)
{
    (void)state;
    tu_rng r = {tu_seed("cuda_host_emu bench")};
    corpus c = {0};
    make_corpus(&c, &r);
    rfs_gpu *g = make_gpu(4u << 20);
    double sec = 0;
    uint64_t bytes = 0;
    size_t used = 0;
    assert_int_equal(rfs_gpu_bench_kernels(g, c.u, c.n, 2, &sec, &bytes, &used), RFS_OK);
    assert_true(used > 0 && bytes > 0 && sec > 0);
    rfs_gpu_destroy(g);
    free_corpus(&c);
}

/* The loader helpers: pinned memory, upload, download; a failed upload is
 * logged once and gives RFS_E_GPU. */
static void test_upload_helpers(void **state)
{
    (void)state;
    rfs_gpu *g = make_gpu(1u << 20);
    size_t n = 100003;
    uint8_t *pin = rfs_gpu_host_alloc(g, n), *back = malloc(n);
    void *dev = rfs_gpu_dev_alloc(g, n);
    assert_non_null(pin);
    assert_non_null(dev);
    for (size_t k = 0; k < n; k++)
        pin[k] = (uint8_t)(k * 131 + (k >> 9));
    assert_int_equal(rfs_gpu_dev_upload(g, dev, pin, n), RFS_OK);
    assert_int_equal(rfs_gpu_dev_download(g, back, dev, n), RFS_OK);
    assert_memory_equal(back, pin, n);
    assert_int_equal(rfs_gpu_dev_upload(g, dev, pin, 0), RFS_OK);
    g_logs = 0;
    fake_cuda_fail_at(1);
    assert_int_equal(rfs_gpu_dev_upload(g, dev, pin, n), RFS_E_GPU);
    fake_cuda_fail_at(0);
    assert_int_equal(g_logs, 1);
    assert_null(rfs_gpu_host_alloc(g, n)); /* unusable after the failure */
    rfs_gpu_host_free(g, NULL);
    rfs_gpu_host_free(g, pin);
    rfs_gpu_dev_free(g, dev);
    free(back);
    rfs_gpu_destroy(g);
}

static int setup(void **state)
{
    (void)state;
    g_enc = rfs_enc_create(MAX_TILE);
    g_dec = rfs_dec_create(MAX_TILE);
    return g_enc && g_dec && rfs_dec_set_backend(g_dec, "scalar") == RFS_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    rfs_enc_destroy(g_enc);
    rfs_dec_destroy(g_dec);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_device),  cmocka_unit_test(test_batches),
        cmocka_unit_test(test_corrupt),    cmocka_unit_test(test_to_device),
        cmocka_unit_test(test_cuda_failure), cmocka_unit_test(test_bench_hook),
        cmocka_unit_test(test_upload_helpers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
