/*
 * test_warp_emu.c - the CUDA decoder's logic on the CPU.
 *
 * A warp emulator steps 32 lanes in lock-step through the same per-lane code
 * the kernels run (codec/rfs_rans_lane.h and cuda/rfs_gpu_warp.h): every
 * lane decodes, then the ballot is the mask of lanes needing a word, then
 * every lane computes its word index (rfs_lane_word_index) and reads its
 * word through the emulated shuffle of the register window.  Batches are
 * built by the real host planner (cuda/rfs_gpu_plan.c), the decode table is
 * built per block as the kernel does, and the interleave kernel is run per
 * emulated thread.  Every tile is compared with the scalar CPU decoder and
 * with the original bytes.
 *
 * Corpora: golden tiles in tests/data, synthetic fp16/bf16/f32/int8 tensors
 * (many distributions and sizes, per-tile and shared tables), the real model
 * in ../shared/corpus (skipped with a message when absent), random
 * corruptions (the emulator must flag exactly the tiles the CPU rejects),
 * and partial output windows at odd alignments (the direct-to-device path).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "rfs_gpu_plan.h"
#include "rfs_gpu_warp.h"
#include "rfs_rans_lane.h"
#include "testutil.h"
#include "warp_emu.h"

#define BATCH_IN (24u << 20)     /* encoded bytes per emulated batch */
#define MAX_TILE (1u << 20)

/* ------------------------------------------------------------ batches */

typedef struct item {
    uint8_t *enc;
    size_t enc_size;
    uint8_t *raw;                /* original bytes, NULL when unknown (corrupt) */
    size_t raw_size;
    const rfs_table_set *shared;
    uint32_t win_lo, win_hi;     /* window test: bytes wanted */
    uint64_t out;                /* window test: out offset; RFS_GPU_OUT_AUTO else */
} item;

typedef struct stats {
    size_t tiles, bytes, gpu, cpu_plan, cpu_dev, planes[RFS_PM_COUNT], jobs, tables;
} stats;

typedef struct batch {
    item *it;
    size_t n, cap, in_bytes;
    rfs_table_set *sets[4096]; /* shared table sets to free at flush */
    rfs_table *tabs[4096];
    size_t n_sets;
    int windows;               /* items carry windows (and out offsets) */
    int corrupt;               /* items may be invalid: compare error/no error */
    int open_set;              /* the last table set belongs to a tensor being added */
    stats st;
} batch;

static rfs_dec *g_dec;
static uint8_t *g_ref;

static void count_planes(stats *st, const uint8_t *enc, size_t size)
{
    if (size < 8)
        return;
    unsigned w = enc[0];
    for (unsigned p = 0; p < w && 8 + 8 * p < size && w <= 4; p++)
        if (enc[8 + 8 * p] < RFS_PM_COUNT)
            st->planes[enc[8 + 8 * p]]++;
}

/* Check one tile's emulated result against the scalar CPU decoder. */
static void check_tile(batch *b, const item *it, int on_gpu, const uint8_t *got, rfs_err gpu_err)
{
    size_t ref_size = 0;
    rfs_err cpu = rfs_tile_decode(g_dec, g_ref, it->raw_size, &ref_size, it->enc, it->enc_size,
                                  it->shared);
    if (cpu == RFS_OK && ref_size != it->raw_size && !b->corrupt)
        fail_msg("tile decoded to %zu bytes, expected %zu", ref_size, it->raw_size);
    if (!b->corrupt) {
        if (cpu != RFS_OK)
            fail_msg("CPU decoder rejects a valid tile: %s", rfs_strerror(cpu));
        if (!on_gpu)
            fail_msg("valid tile not decoded by the (emulated) GPU: %s", rfs_strerror(gpu_err));
        assert_memory_equal(g_ref, it->raw, it->raw_size);
    }
    if (on_gpu && cpu != RFS_OK)
        fail_msg("emulated GPU accepts a tile the CPU rejects (%s)", rfs_strerror(cpu));
    if (!on_gpu && cpu == RFS_OK && gpu_err != RFS_E_TOO_BIG && gpu_err != RFS_E_CORRUPT)
        fail_msg("emulated GPU rejects (%s) a tile the CPU decodes", rfs_strerror(gpu_err));
    if (on_gpu) {
        size_t lo = it->win_lo, hi = it->win_hi;
        if (it->out == RFS_GPU_OUT_AUTO) {
            lo = 0;
            hi = ref_size;
        }
        if (hi > lo && memcmp(got, g_ref + lo, hi - lo)) {
            size_t i = 0;
            while (got[i] == g_ref[lo + i])
                i++;
            fail_msg("emulated GPU output differs at byte %zu of window [%zu, %zu) (W=%u)",
                     lo + i, lo, hi, it->enc[0]);
        }
    }
}

#define CANARY 0xa5

/* Plan, emulate and check every item of the batch, then empty it. */
static void flush(batch *b)
{
    if (!b->n)
        goto out;
    uint8_t *in = calloc(1, BATCH_IN + 64 * 1024 + RFS_GPU_SLACK);
    size_t out_cap = 0, scratch_cap = 0;
    for (size_t i = 0; i < b->n; i++) {
        out_cap += b->it[i].raw_size + 2 * RFS_GPU_ALIGN + 64;
        scratch_cap += 4 * (b->it[i].raw_size + RFS_GPU_ALIGN);
    }
    rfs_gpu_plan p;
    rfs_gpu_plan_init(&p, in, BATCH_IN + 64 * 1024, scratch_cap, b->windows ? 0 : out_cap, 0);
    uint32_t *idx = calloc(b->n, sizeof(*idx));
    uint64_t *off = calloc(b->n, sizeof(*off));
    rfs_err *why = calloc(b->n, sizeof(*why));
    int *planned = calloc(b->n, sizeof(*planned));
    for (size_t i = 0; i < b->n; i++) {
        item *it = &b->it[i];
        rfs_gpu_plan_res r = rfs_gpu_plan_add(&p, it->enc, it->enc_size, it->raw_size, it->shared,
                                              it->out, it->win_lo, it->win_hi, &idx[i], &off[i],
                                              &why[i]);
        assert_int_not_equal(r, RFS_GPU_FULL);
        planned[i] = r == RFS_GPU_PLANNED;
    }
    assert_int_equal(rfs_gpu_plan_finish(&p), RFS_OK);
    uint8_t *scratch = calloc(1, p.scratch_used + RFS_GPU_SLACK);
    size_t out_size = b->windows ? out_cap : p.out_used;
    uint8_t *outb = malloc(out_size + 1);
    memset(outb, CANARY, out_size + 1);
    uint32_t *err = calloc(p.n_tiles + 1, sizeof(uint32_t));
    rfs_gpu_view v = {in, p.tiles, p.tasks, p.jobs, p.chunks, p.tables, scratch, outb, err,
                      (uint32_t)p.n_jobs, (uint32_t)p.n_chunks, p.ctx_jobs,
                      (uint32_t)p.n_ctx_jobs};
    emu_decode_kernel(&v);
    emu_ctx_kernel(&v);
    emu_interleave_kernel(&v);
    b->st.jobs += p.n_jobs;
    b->st.tables += p.n_tables;
    for (size_t i = 0; i < b->n; i++) {
        item *it = &b->it[i];
        int on_gpu = planned[i] && !err[idx[i]];
        rfs_err gerr = planned[i] ? (rfs_err)err[idx[i]] : why[i];
        b->st.tiles++;
        b->st.bytes += it->raw_size;
        b->st.gpu += on_gpu;
        b->st.cpu_plan += !planned[i];
        b->st.cpu_dev += planned[i] && !on_gpu;
        count_planes(&b->st, it->enc, it->enc_size);
        check_tile(b, it, on_gpu, on_gpu ? outb + off[i] : NULL, gerr);
    }
    if (b->windows) { /* bytes outside every window stay untouched */
        uint8_t *mark = calloc(1, out_size + 1);
        for (size_t i = 0; i < b->n; i++)
            if (planned[i] && !err[idx[i]])
                memset(mark + b->it[i].out, 1, b->it[i].win_hi - b->it[i].win_lo);
        for (size_t k = 0; k <= out_size; k++)
            if (!mark[k] && outb[k] != CANARY)
                fail_msg("byte %zu outside every window was written", k);
        free(mark);
    }
    rfs_gpu_plan_free(&p);
    free(in);
    free(scratch);
    free(outb);
    free(err);
    free(idx);
    free(off);
    free(why);
    free(planned);
    for (size_t i = 0; i < b->n; i++) {
        free(b->it[i].enc);
        free(b->it[i].raw);
    }
out:;
    /* the tables of a tensor still being added stay (it is the last set) */
    size_t keep = b->open_set && b->n_sets ? 1 : 0;
    for (size_t i = 0; i + keep < b->n_sets; i++) {
        free(b->sets[i]);
        free(b->tabs[i]);
    }
    if (keep) {
        b->sets[0] = b->sets[b->n_sets - 1];
        b->tabs[0] = b->tabs[b->n_sets - 1];
    }
    b->n_sets = keep;
    b->n = 0;
    b->in_bytes = 0;
}

static void push(batch *b, item it)
{
    if (b->in_bytes + it.enc_size + 64 > BATCH_IN || b->n == 100000)
        flush(b);
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 1024;
        b->it = realloc(b->it, b->cap * sizeof(*b->it));
        assert_non_null(b->it);
    }
    b->it[b->n++] = it;
    b->in_bytes += it.enc_size + 32;
}

/* Shared tables of a tensor (one per plane), owned by the batch. */
static const rfs_table_set *tensor_tables(batch *b, const void *src, size_t n, unsigned w,
                                          rfs_transform xf)
{
    if (b->n_sets == 4096)
        flush(b);
    rfs_table *tab = calloc(RFS_MAX_WIDTH, sizeof(*tab));
    rfs_table_set *set = calloc(1, sizeof(*set));
    assert_true(tab && set);
    tu_table_set(set, tab, src, n, w, xf);
    b->sets[b->n_sets] = set;
    b->tabs[b->n_sets++] = tab;
    return set;
}

static rfs_enc *g_enc;

/* Encode a tensor in tiles of tile bytes and queue every tile. */
static void add_tensor(batch *b, const void *src, size_t size, unsigned w, int xf_mode,
                       int use_shared, size_t tile)
{
    size_t n = size / w;
    rfs_transform xf = xf_mode < 0 ? rfs_transform_choose(src, n, w) : (rfs_transform)xf_mode;
    const rfs_table_set *shared = use_shared && n ? tensor_tables(b, src, n, w, xf) : NULL;
    b->open_set = shared != NULL;
    /* RANS_CTX where it pays, as the packer codes */
    rfs_tile_params prm = {.width = w, .transform = xf, .shared = shared, .ctx = 1};
    tile -= tile % w;
    for (size_t off = 0; off < size || off == 0; off += tile) {
        size_t len = size - off < tile ? size - off : tile;
        size_t cap = rfs_tile_bound(len, w), got = 0;
        item it = {malloc(cap), 0, malloc(len ? len : 1), len, shared, 0, 0, RFS_GPU_OUT_AUTO};
        assert_int_equal(rfs_tile_encode(g_enc, it.enc, cap, &got, (const uint8_t *)src + off,
                                         len, &prm), RFS_OK);
        it.enc_size = got;
        memcpy(it.raw, (const uint8_t *)src + off, len);
        push(b, it);
        if (!size)
            break;
    }
    b->open_set = 0;
}

static void print_stats(const char *what, const stats *st)
{
    printf("%s: %zu tiles, %.1f MiB decoded; GPU path %zu, CPU fallback %zu (plan) + %zu "
           "(device flag); planes RAW %zu CONST %zu RANS_TILE %zu RANS_SHARED %zu RANS_CTX %zu; "
           "%zu blocks, %zu tables\n",
           what, st->tiles, (double)st->bytes / 1048576.0, st->gpu, st->cpu_plan, st->cpu_dev,
           st->planes[0], st->planes[1], st->planes[2], st->planes[3], st->planes[4], st->jobs,
           st->tables);
}

static int setup(void **state)
{
    (void)state;
    g_dec = rfs_dec_create(MAX_TILE);
    g_enc = rfs_enc_create(MAX_TILE);
    g_ref = malloc(MAX_TILE);
    if (!g_dec || !g_enc || !g_ref)
        return -1;
    return rfs_dec_set_backend(g_dec, "scalar") == RFS_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    rfs_dec_destroy(g_dec);
    rfs_enc_destroy(g_enc);
    free(g_ref);
    return 0;
}

/* ------------------------------------------------------------ tests */

/* format.md 1.5 worked example: lanes 3, 4, 17 refill at pos 10. */
static void test_lane_order(void **state)
{
    (void)state;
    uint32_t mask = (1u << 3) | (1u << 4) | (1u << 17);
    assert_int_equal(10 + rfs_lane_word_index(mask, 3), 10);
    assert_int_equal(10 + rfs_lane_word_index(mask, 4), 11);
    assert_int_equal(10 + rfs_lane_word_index(mask, 17), 12);
    assert_int_equal(rfs_lane_popc(mask), 3);
    /* the window: word r of w0|w1 is half r&1 of lane (r>>1)&31's pair */
    for (uint32_t r = 0; r < 128; r++) {
        uint32_t v0 = 0x10000u * (2 * ((r >> 1) & 31) + 1) + 2 * ((r >> 1) & 31);
        uint32_t v1 = v0 + 0x00400040u;
        assert_int_equal(rfs_gw_pick(v0, v1, r), r);
    }
}

static void test_emu_golden(void **state)
{
    (void)state;
    static const char *names[] = {"bf16_gauss", "bf16_shared", "const_f32", "example_3",
                                  "f32_gauss", "fp16_gauss", "i8_gauss", "raw_random",
                                  "special_bf16", "bf16_ctx", "fp16_ctx", "f32_ctx"};
    batch b = {0};
    rfs_table shared;
    rfs_table_set set = {{NULL, NULL, NULL, NULL}};
    size_t found = 0;
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        char path[512];
        size_t ts = 0, rs = 0, tbs = 0, used = 0;
        snprintf(path, sizeof(path), RFS_TEST_DATA "/golden/%s.tile", names[k]);
        uint8_t *tile = tu_read_file(path, &ts);
        snprintf(path, sizeof(path), RFS_TEST_DATA "/golden/%s.raw", names[k]);
        uint8_t *raw = tu_read_file(path, &rs);
        snprintf(path, sizeof(path), RFS_TEST_DATA "/golden/%s.table", names[k]);
        uint8_t *tb = tu_read_file(path, &tbs);
        if (!tile || !raw) {
            free(tile);
            free(raw);
            free(tb);
            continue;
        }
        const rfs_table_set *sh = NULL;
        if (tb) {
            assert_int_equal(rfs_table_parse(&shared, tb, tbs, &used), RFS_OK);
            set.plane[1] = &shared;
            sh = &set;
            free(tb);
        }
        item it = {tile, ts, raw, rs, sh, 0, 0, RFS_GPU_OUT_AUTO};
        push(&b, it);
        flush(&b); /* the shared table is reused for the next name */
        found++;
    }
    print_stats("golden", &b.st);
    free(b.it);
    if (!found) {
        printf("skipped: no golden tiles in " RFS_TEST_DATA "/golden\n");
        skip();
    }
}

/* Synthetic tensors: every width, many distributions, awkward sizes. */
static void fill(uint8_t *buf, size_t n, unsigned w, int kind, tu_rng *r)
{
    for (size_t i = 0; i < n; i++) {
        double g = tu_gauss(r) * 0.02;
        if (kind == 1 && (i / 256) % 7 == 3)
            g *= 40.0; /* some rows scaled */
        if (kind == 1 && tu_next(r) % 10 == 0)
            g = 0.0; /* pruned */
        uint32_t v;
        float f = (float)g;
        if (kind == 2) { /* specials: NaN, Inf, -0, denormals */
            static const uint32_t sp[] = {0x7fc00000u, 0xff800000u, 0x7f800000u, 0x80000000u,
                                          0x00000001u, 0x807fffffu, 0x7fbfffffu, 0};
            uint32_t u = sp[tu_next(r) % 8];
            memcpy(&f, &u, 4);
        }
        memcpy(&v, &f, 4);
        if (kind == 3)
            v = (uint32_t)tu_next(r); /* random bytes */
        if (kind == 4)
            v = 0x3f800000u; /* constant */
        if (kind == 5)
            v = tu_next(r) % 64 ? 0 : 0xffffffffu; /* two symbols, extreme skew */
        uint8_t *d = buf + i * w;
        if (w == 4) {
            memcpy(d, &v, 4);
        } else if (w == 2) {
            uint16_t h = kind >= 3 ? (uint16_t)v : (i & 1) ? tu_f32_to_fp16(f) : tu_f32_to_bf16(f);
            memcpy(d, &h, 2);
        } else {
            d[0] = kind >= 3 ? (uint8_t)v : (uint8_t)(int8_t)lrint(g * 3000.0);
        }
    }
}

/* n elements of width w (2 or 4) whose low byte (plane W-2) depends on
 * which of two ranges the top byte is in, so RANS_CTX pays (it is chosen
 * for tiles of a few thousand elements and more). */
static void fill_ctx(uint8_t *buf, size_t n, unsigned w, tu_rng *r)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t u = tu_next(r);
        unsigned up = u & 1;
        uint32_t t = (uint32_t)((up ? 0x7c : 0x70) + (u >> 8 & 3)) << (8 * (w - 1)) |
                     (uint32_t)((up ? 0 : 128) + (u >> 16 & 15)) << (8 * (w - 2));
        if (w == 4)
            t |= (uint32_t)(u >> 24) & 0xffff;
        for (unsigned k = 0; k < w; k++)
            buf[i * w + k] = (uint8_t)(t >> (8 * k));
    }
}

static void test_emu_synthetic(void **state)
{
    (void)state;
    tu_rng r = {tu_seed("cuda_warp_emu synthetic")};
    static const size_t sizes[] = {0, 1, 31, 32, 33, 4095, 32767, 32768, 32769, 65537, 300001};
    static const unsigned widths[] = {1, 2, 4};
    batch b = {0};
    uint8_t *buf = malloc(300001 * 4);
    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++)
        for (unsigned wi = 0; wi < 3; wi++)
            for (int kind = 0; kind < 6; kind++) {
                unsigned w = widths[wi];
                size_t n = sizes[si];
                fill(buf, n, w, kind, &r);
                int xf = w == 1 ? 0 : (int)(si + kind) % 3 - 1; /* auto, NONE, ROT1 */
                size_t tile = si % 2 ? 64u * 1024 : 65536u + 2 * w + 4 * (size_t)kind;
                add_tensor(&b, buf, n * w, w, xf, kind % 2, tile);
                add_tensor(&b, buf, n * w, w, xf, 0, 256u * 1024);
            }
    /* RANS_CTX tiles (kernel 1b): every size class, W = 2 and 4 */
    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++)
        for (unsigned w = 2; w <= 4; w += 2) {
            fill_ctx(buf, sizes[si], w, &r);
            add_tensor(&b, buf, sizes[si] * w, w, (int)si % 2, (int)si % 3 == 0, 65536u + 2 * w);
        }
    /* large realistic tensors: bf16 and fp16 with shared tables, 64 KiB tiles */
    for (int k = 0; k < 2; k++) {
        size_t n = 4u << 20;
        uint16_t *h = malloc(n * 2);
        for (size_t i = 0; i < n; i++) {
            float f = (float)(tu_gauss(&r) * 0.02 * ((i >> 12) % 5 == 1 ? 8.0 : 1.0));
            h[i] = k ? tu_f32_to_fp16(f) : tu_f32_to_bf16(f);
        }
        add_tensor(&b, h, n * 2, 2, -1, 1, 64u * 1024);
        free(h);
    }
    flush(&b);
    print_stats("synthetic", &b.st);
    assert_int_equal(b.st.cpu_plan + b.st.cpu_dev, 0);
    assert_true(b.st.planes[RFS_PM_RANS_SHARED] > 0 && b.st.planes[RFS_PM_RANS_TILE] > 0);
    assert_true(b.st.planes[RFS_PM_RANS_CTX] > 0);
    free(buf);
    free(b.it);
}

/* Every F32 tensor of a safetensors file as f32, fp16 and bf16. */
static int add_safetensors(batch *b, const char *path, size_t tile)
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
    size_t data_size = size - 8 - (size_t)hlen, tensors = 0;
    for (cJSON *t = root->child; t; t = t->next) {
        cJSON *dt = cJSON_GetObjectItem(t, "dtype");
        cJSON *off = cJSON_GetObjectItem(t, "data_offsets");
        if (!cJSON_IsString(dt) || strcmp(dt->valuestring, "F32") || cJSON_GetArraySize(off) != 2)
            continue;
        size_t a = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble;
        size_t e = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
        assert_true(a <= e && e <= data_size && (e - a) % 4 == 0);
        size_t n = (e - a) / 4;
        float *f = malloc(n * 4 + 4);
        uint16_t *h = malloc(n * 2 + 2), *bf = malloc(n * 2 + 2);
        memcpy(f, data + a, n * 4);
        for (size_t i = 0; i < n; i++) {
            h[i] = tu_f32_to_fp16(f[i]);
            bf[i] = tu_f32_to_bf16(f[i]);
        }
        add_tensor(b, f, n * 4, 4, -1, 1, tile);
        add_tensor(b, h, n * 2, 2, -1, 1, tile);
        add_tensor(b, bf, n * 2, 2, -1, tensors % 2, tile);
        free(f);
        free(h);
        free(bf);
        tensors++;
    }
    cJSON_Delete(root);
    free(file);
    return 1;
}

static void test_emu_corpus(void **state)
{
    (void)state;
    batch b = {0};
    int mini = add_safetensors(&b, RFS_TEST_DATA "/human32-mini/model.safetensors", 64u * 1024);
    flush(&b);
    if (mini)
        print_stats("tests/data/human32-mini", &b.st);
    const char *path = RFS_SHARED_CORPUS "/human32-st/model.safetensors";
    batch c = {0};
    if (!add_safetensors(&c, path, 64u * 1024)) {
        printf("skipped: real corpus %s absent\n", path);
        free(b.it);
        if (!mini)
            skip();
        return;
    }
    flush(&c);
    print_stats(path, &c.st);
    assert_int_equal(b.st.cpu_plan + b.st.cpu_dev + c.st.cpu_plan + c.st.cpu_dev, 0);
    free(b.it);
    free(c.it);
}

/* Corrupted tiles: the emulator accepts exactly what the CPU accepts. */
static void test_emu_corrupt(void **state)
{
    (void)state;
    tu_rng r = {tu_seed("cuda_warp_emu corrupt")};
    batch src = {0}, b = {0};
    b.corrupt = 1;
    size_t n = 40000;
    uint8_t *buf = malloc(n * 4);
    for (int kind = 0; kind < 3; kind++)
        for (unsigned w = 1; w <= 4; w *= 2) {
            fill(buf, n, w, kind, &r);
            add_tensor(&src, buf, n * w, w, -1, kind == 1, 8192u * w + (kind ? 2u * w : 0));
        }
    for (unsigned w = 2; w <= 4; w += 2) { /* RANS_CTX tiles */
        fill_ctx(buf, n, w, &r);
        add_tensor(&src, buf, n * w, w, -1, w == 4, 8192u * w);
    }
    for (int round = 0; round < 40; round++)
        for (size_t i = 0; i < src.n; i++) {
            item *s = &src.it[i];
            item it = *s;
            it.raw = NULL;
            it.raw_size = s->raw_size;
            it.enc = malloc(s->enc_size + 1);
            memcpy(it.enc, s->enc, s->enc_size);
            uint64_t k = tu_next(&r);
            if (k % 4 == 0 && it.enc_size) { /* truncate, or append a byte */
                it.enc_size = k % 8 == 0 ? it.enc_size + 1 : (size_t)(tu_next(&r) % it.enc_size);
                it.enc[s->enc_size] = (uint8_t)k;
            } else {
                for (unsigned f = 0; f <= k % 3; f++) { /* flip 1-3 bytes */
                    size_t at = (size_t)(tu_next(&r) % it.enc_size);
                    it.enc[at] ^= (uint8_t)(1u << (tu_next(&r) % 8));
                }
            }
            push(&b, it);
        }
    flush(&b);
    print_stats("corrupt", &b.st);
    assert_true(b.st.cpu_dev > 0 && b.st.cpu_plan > 0 && b.st.gpu > 0);
    for (size_t i = 0; i < src.n; i++) {
        free(src.it[i].enc);
        free(src.it[i].raw);
    }
    for (size_t i = 0; i < src.n_sets; i++) {
        free(src.sets[i]);
        free(src.tabs[i]);
    }
    free(src.it);
    free(b.it);
    free(buf);
}

/* Partial windows at odd destination offsets (the direct-to-device path). */
static void test_emu_windows(void **state)
{
    (void)state;
    tu_rng r = {tu_seed("cuda_warp_emu windows")};
    batch src = {0}, b = {0};
    b.windows = 1;
    size_t n = 20011;
    uint8_t *buf = malloc(n * 4);
    for (unsigned w = 1; w <= 4; w *= 2) {
        fill(buf, n, w, 1, &r);
        add_tensor(&src, buf, n * w, w, -1, 1, 4096u * w);
    }
    uint64_t out = 0;
    for (int round = 0; round < 20; round++)
        for (size_t i = 0; i < src.n; i++) {
            item it = src.it[i];
            it.enc = malloc(it.enc_size);
            memcpy(it.enc, src.it[i].enc, it.enc_size);
            it.raw = malloc(it.raw_size ? it.raw_size : 1);
            memcpy(it.raw, src.it[i].raw, it.raw_size);
            uint32_t a = (uint32_t)(tu_next(&r) % (it.raw_size + 1));
            uint32_t e = (uint32_t)(tu_next(&r) % (it.raw_size + 1));
            if (round % 4 == 0) { /* whole tile, aligned or not */
                a = 0;
                e = (uint32_t)it.raw_size;
            }
            it.win_lo = a < e ? a : e;
            it.win_hi = a < e ? e : a;
            out += tu_next(&r) % 17 + (round % 2 ? 0 : 16 - out % 16);
            it.out = out;
            out += it.win_hi - it.win_lo;
            push(&b, it);
        }
    flush(&b);
    print_stats("windows", &b.st);
    assert_int_equal(b.st.cpu_plan + b.st.cpu_dev, 0);
    for (size_t i = 0; i < src.n; i++) {
        free(src.it[i].enc);
        free(src.it[i].raw);
    }
    for (size_t i = 0; i < src.n_sets; i++) {
        free(src.sets[i]);
        free(src.tabs[i]);
    }
    free(src.it);
    free(b.it);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lane_order),     cmocka_unit_test(test_emu_golden),
        cmocka_unit_test(test_emu_synthetic),  cmocka_unit_test(test_emu_corpus),
        cmocka_unit_test(test_emu_corrupt),    cmocka_unit_test(test_emu_windows),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
