/*
 * test_gpu_decode.c - the CUDA decoder on a real GPU, byte for byte against
 * the scalar CPU decoder: synthetic fp16/bf16/f32/int8 tensors (per-tile and
 * shared tables), the real model in ../shared/corpus (when present), the
 * golden tiles, corrupted tiles (the error must be the CPU's), and partial
 * windows decoded straight into device memory.
 *
 * Prints "skipped: no CUDA device" and passes when there is no usable
 * device (CI has none); fails on any mismatch when there is one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "rfs_gpu.h"
#include "testutil.h"

#define MAX_TILE (1u << 20)
#define PENDING_BYTES (96u << 20) /* encoded bytes gathered per decode call */

static rfs_gpu *g_gpu;
static rfs_dec *g_dec;
static rfs_enc *g_enc;

/* Tiles gathered for one rfs_gpu_decode_batch call, with what they need. */
typedef struct pending {
    rfs_gpu_unit *u;
    uint8_t **raw; /* expected bytes, NULL for corrupted tiles */
    size_t n, cap, bytes;
    rfs_table **tabs;
    rfs_table_set **sets;
    size_t n_sets, cap_sets;
    size_t gpu, cpu;
} pending;

static void run(pending *p)
{
    assert_int_equal(rfs_gpu_decode_batch(g_gpu, p->u, p->n), RFS_OK);
    uint8_t *ref = malloc(MAX_TILE);
    for (size_t i = 0; i < p->n; i++) {
        rfs_gpu_unit *u = &p->u[i];
        size_t got = 0;
        rfs_err cpu = rfs_tile_decode(g_dec, ref, u->decoded_size, &got, u->src, u->src_size,
                                      u->shared);
        if (cpu == RFS_OK && got != u->decoded_size)
            cpu = RFS_E_CORRUPT; /* decodes, but not to the size the image says */
        if (cpu != u->err)
            fail_msg("unit %zu: GPU path says %s, CPU %s", i, rfs_strerror(u->err),
                     rfs_strerror(cpu));
        if (p->raw[i] && (!u->on_gpu || cpu != RFS_OK))
            fail_msg("valid unit %zu not decoded on the GPU (%s)", i, rfs_strerror(u->err));
        if (cpu == RFS_OK && memcmp(u->dst, ref, u->decoded_size))
            fail_msg("unit %zu: GPU bytes differ from the CPU decoder's", i);
        if (p->raw[i])
            assert_memory_equal(u->dst, p->raw[i], u->decoded_size);
        p->gpu += u->on_gpu;
        p->cpu += !u->on_gpu;
        free((void *)u->src);
        free(u->dst);
        free(p->raw[i]);
    }
    free(ref);
    for (size_t i = 0; i < p->n_sets; i++) {
        free(p->tabs[i]);
        free(p->sets[i]);
    }
    p->n = p->bytes = p->n_sets = 0;
}

static void add(pending *p, uint8_t *enc, size_t enc_size, uint8_t *raw, size_t raw_size,
                const rfs_table_set *shared)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 1024;
        p->u = realloc(p->u, p->cap * sizeof(*p->u));
        p->raw = realloc(p->raw, p->cap * sizeof(*p->raw));
        assert_true(p->u && p->raw);
    }
    rfs_gpu_unit u = {enc, enc_size, raw_size, shared, malloc(raw_size ? raw_size : 1), 0, 0};
    p->u[p->n] = u;
    p->raw[p->n++] = raw;
    p->bytes += enc_size;
}

static const rfs_table_set *tables(pending *p, const void *src, size_t n, unsigned w,
                                   rfs_transform xf)
{
    if (p->n_sets == p->cap_sets) {
        p->cap_sets = p->cap_sets ? 2 * p->cap_sets : 256;
        p->tabs = realloc(p->tabs, p->cap_sets * sizeof(*p->tabs));
        p->sets = realloc(p->sets, p->cap_sets * sizeof(*p->sets));
        assert_true(p->tabs && p->sets);
    }
    rfs_table *tab = calloc(RFS_MAX_WIDTH, sizeof(*tab));
    rfs_table_set *set = calloc(1, sizeof(*set));
    assert_true(tab && set);
    tu_table_set(set, tab, src, n, w, xf);
    p->tabs[p->n_sets] = tab;
    p->sets[p->n_sets++] = set;
    return set;
}

/* Encode a tensor in tiles and queue them (run first when the queue is full). */
static void add_tensor(pending *p, const void *src, size_t size, unsigned w, int use_shared,
                       size_t tile)
{
    if (p->bytes + size + size / 4 > PENDING_BYTES)
        run(p);
    size_t n = size / w;
    rfs_transform xf = rfs_transform_choose(src, n, w);
    const rfs_table_set *shared = use_shared && n ? tables(p, src, n, w, xf) : NULL;
    rfs_tile_params prm = {.width = w, .transform = xf, .shared = shared};
    tile -= tile % w;
    for (size_t off = 0; off < size || off == 0; off += tile) {
        size_t len = size - off < tile ? size - off : tile, cap = rfs_tile_bound(len, w), got;
        uint8_t *enc = malloc(cap), *raw = malloc(len ? len : 1);
        assert_int_equal(rfs_tile_encode(g_enc, enc, cap, &got, (const uint8_t *)src + off, len,
                                         &prm), RFS_OK);
        memcpy(raw, (const uint8_t *)src + off, len);
        add(p, enc, got, raw, len, shared);
        if (!size)
            break;
    }
}

static void gen(uint8_t *buf, size_t n, unsigned w, int kind, tu_rng *r)
{
    for (size_t i = 0; i < n; i++) {
        float f = (float)(tu_gauss(r) * 0.02 * (kind == 1 && (i >> 10) % 5 == 2 ? 30.0 : 1.0));
        uint32_t v;
        memcpy(&v, &f, 4);
        if (kind == 2)
            v = (uint32_t)tu_next(r);
        if (kind == 3)
            v = tu_next(r) % 50 ? 0x3c003c00u : 0xffffffffu;
        if (w == 4) {
            memcpy(buf + 4 * i, &v, 4);
        } else if (w == 2) {
            uint16_t h = kind >= 2 ? (uint16_t)v : (kind ? tu_f32_to_fp16(f) : tu_f32_to_bf16(f));
            memcpy(buf + 2 * i, &h, 2);
        } else {
            buf[i] = (uint8_t)(kind >= 2 ? v : (uint32_t)(int)(f * 2000.0f));
        }
    }
}

static void test_gpu_synthetic(void **state)
{
    (void)state;
    tu_rng r = {tu_seed("cuda_gpu_decode synthetic")};
    static const size_t sizes[] = {0, 1, 31, 33, 4095, 32768, 65537, 1000003};
    pending p = {0};
    uint8_t *buf = malloc(1000003 * 4);
    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++)
        for (unsigned w = 1; w <= 4; w *= 2)
            for (int kind = 0; kind < 4; kind++) {
                gen(buf, sizes[si], w, kind, &r);
                add_tensor(&p, buf, sizes[si] * w, w, kind % 2 == 0, si % 2 ? 65536 : 262144);
            }
    run(&p);
    printf("synthetic: %zu tiles on the GPU, %zu on the CPU\n", p.gpu, p.cpu);
    assert_int_equal(p.cpu, 0);
    free(buf);
    free(p.u);
    free(p.raw);
    free(p.tabs);
    free(p.sets);
}

static int add_model(pending *p, const char *path)
{
    size_t size = 0;
    uint8_t *file = tu_read_file(path, &size);
    if (!file || size < 8) {
        free(file);
        return 0;
    }
    uint64_t hlen;
    memcpy(&hlen, file, 8);
    assert_true(hlen <= size - 8);
    cJSON *root = cJSON_ParseWithLength((const char *)file + 8, (size_t)hlen);
    assert_non_null(root);
    const uint8_t *data = file + 8 + hlen;
    for (cJSON *t = root->child; t; t = t->next) {
        cJSON *dt = cJSON_GetObjectItem(t, "dtype"), *off = cJSON_GetObjectItem(t, "data_offsets");
        if (!cJSON_IsString(dt) || strcmp(dt->valuestring, "F32") || cJSON_GetArraySize(off) != 2)
            continue;
        size_t a = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble;
        size_t e = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
        assert_true(a <= e && e <= size - 8 - hlen);
        size_t n = (e - a) / 4;
        float *f = malloc(n * 4 + 4);
        uint16_t *h = malloc(n * 2 + 2), *b = malloc(n * 2 + 2);
        memcpy(f, data + a, n * 4);
        for (size_t i = 0; i < n; i++) {
            h[i] = tu_f32_to_fp16(f[i]);
            b[i] = tu_f32_to_bf16(f[i]);
        }
        add_tensor(p, f, n * 4, 4, 1, 65536);
        add_tensor(p, h, n * 2, 2, 1, 65536);
        add_tensor(p, b, n * 2, 2, 1, 65536);
        free(f);
        free(h);
        free(b);
    }
    cJSON_Delete(root);
    free(file);
    return 1;
}

static void test_gpu_corpus(void **state)
{
    (void)state;
    pending p = {0};
    const char *path = RFS_SHARED_CORPUS "/human32-st/model.safetensors";
    int found = add_model(&p, RFS_TEST_DATA "/human32-mini/model.safetensors");
    int full = add_model(&p, path);
    run(&p);
    printf("real weights: %zu tiles on the GPU, %zu on the CPU%s\n", p.gpu, p.cpu,
           full ? "" : " (full corpus absent)");
    assert_int_equal(p.cpu, 0);
    free(p.u);
    free(p.raw);
    free(p.tabs);
    free(p.sets);
    if (!found && !full)
        skip();
}

/* Corrupted tiles: every unit's error is the CPU decoder's. */
static void test_gpu_corrupt(void **state)
{
    (void)state;
    tu_rng r = {tu_seed("cuda_gpu_decode corrupt")};
    pending src = {0}, p = {0};
    uint8_t *buf = malloc(50000 * 4);
    for (unsigned w = 1; w <= 4; w *= 2) {
        gen(buf, 50000, w, 0, &r);
        add_tensor(&src, buf, 50000 * w, w, w == 2, 16384);
    }
    for (int round = 0; round < 30; round++)
        for (size_t i = 0; i < src.n; i++) {
            size_t sz = src.u[i].src_size;
            uint8_t *enc = malloc(sz + 1);
            memcpy(enc, src.u[i].src, sz);
            enc[sz] = (uint8_t)round;
            uint64_t k = tu_next(&r);
            if (k % 5 == 0)
                sz = k % 10 == 0 ? sz + 1 : (size_t)(tu_next(&r) % sz);
            else
                enc[tu_next(&r) % sz] ^= (uint8_t)(1u << (k % 8));
            add(&p, enc, sz, NULL, src.u[i].decoded_size, src.u[i].shared);
        }
    run(&p);
    printf("corrupt: %zu tiles on the GPU, %zu on the CPU\n", p.gpu, p.cpu);
    assert_true(p.cpu > 0);
    run(&src);
    free(buf);
    free(src.u);
    free(src.raw);
    free(src.tabs);
    free(src.sets);
    free(p.u);
    free(p.raw);
}

/* Windows of tiles decoded straight into device memory. */
static void test_gpu_to_device(void **state)
{
    (void)state;
    tu_rng r = {tu_seed("cuda_gpu_decode to_device")};
    pending src = {0};
    uint8_t *buf = malloc(300007 * 4);
    for (unsigned w = 1; w <= 4; w *= 2) {
        gen(buf, 300007, w, 1, &r);
        add_tensor(&src, buf, 300007 * w, w, w != 1, 65536);
    }
    size_t n = src.n, total = 0;
    rfs_gpu_dev_unit *du = calloc(n, sizeof(*du));
    for (size_t i = 0; i < n; i++) {
        size_t sz = src.u[i].decoded_size;
        uint32_t a = (uint32_t)(tu_next(&r) % (sz + 1)), b = (uint32_t)(tu_next(&r) % (sz + 1));
        if (i % 3 == 0) {
            a = 0;
            b = (uint32_t)sz;
        }
        total += tu_next(&r) % 7;
        rfs_gpu_dev_unit x = {src.u[i].src, src.u[i].src_size, sz, src.u[i].shared, total,
                              a < b ? a : b, a < b ? b : a, RFS_OK};
        du[i] = x;
        total += x.hi - x.lo;
    }
    uint8_t *dev = rfs_gpu_dev_alloc(g_gpu, total + 1);
    assert_non_null(dev);
    assert_int_equal(rfs_gpu_dev_fill(g_gpu, dev, 0xa5, total + 1), RFS_OK);
    assert_int_equal(rfs_gpu_decode_to_device(g_gpu, dev, total + 1, du, n), RFS_OK);
    uint8_t *host = malloc(total + 1), *mark = calloc(1, total + 1);
    assert_int_equal(rfs_gpu_dev_download(g_gpu, host, dev, total + 1), RFS_OK);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(du[i].err, RFS_OK);
        assert_memory_equal(host + du[i].dst_off, src.raw[i] + du[i].lo, du[i].hi - du[i].lo);
        memset(mark + du[i].dst_off, 1, du[i].hi - du[i].lo);
    }
    for (size_t k = 0; k <= total; k++)
        if (!mark[k] && host[k] != 0xa5)
            fail_msg("device byte %zu outside every window was written", k);
    printf("to_device: %zu windows, %zu bytes\n", n, total);
    rfs_gpu_dev_free(g_gpu, dev);
    run(&src);
    free(host);
    free(mark);
    free(du);
    free(buf);
    free(src.u);
    free(src.raw);
    free(src.tabs);
    free(src.sets);
}

static void log_cb(void *ctx, const char *msg)
{
    (void)ctx;
    fprintf(stderr, "%s\n", msg);
}

int main(void)
{
    if (rfs_gpu_device_count() <= 0) {
        printf("skipped: no CUDA device (GPU decode: %s)\n", rfs_gpu_build());
        return 77; /* CTest SKIP_RETURN_CODE: the summary says the GPU did not run */
    }
    rfs_gpu_opts o;
    rfs_gpu_opts_default(&o);
    o.batch_bytes = 16u << 20; /* several batches per call: the pipeline */
    o.max_unit = MAX_TILE;
    o.log = log_cb;
    char why[256] = "";
    if (rfs_gpu_create(&g_gpu, &o, why, sizeof(why)) != RFS_OK) {
        fprintf(stderr, "test_gpu_decode: cannot use the GPU: %s\n", why);
        return 1;
    }
    printf("device: %s\n", rfs_gpu_name(g_gpu));
    g_dec = rfs_dec_create(MAX_TILE);
    g_enc = rfs_enc_create(MAX_TILE);
    if (!g_dec || !g_enc || rfs_dec_set_backend(g_dec, "scalar") != RFS_OK)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpu_synthetic),
        cmocka_unit_test(test_gpu_corpus),
        cmocka_unit_test(test_gpu_corrupt),
        cmocka_unit_test(test_gpu_to_device),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    rfs_gpu_stats st;
    rfs_gpu_get_stats(g_gpu, &st);
    printf("gpu stats: %llu batches, %llu units on the GPU, %llu on the CPU, %llu CUDA errors\n",
           (unsigned long long)st.batches, (unsigned long long)st.units_gpu,
           (unsigned long long)st.units_cpu, (unsigned long long)st.cuda_errors);
    if (st.cuda_errors)
        rc = 1;
    rfs_gpu_destroy(g_gpu);
    rfs_dec_destroy(g_dec);
    rfs_enc_destroy(g_enc);
    return rc;
}
