/*
 * Round-trip of the tile codec for W = 1, 2, 4 over data kinds and lengths
 * that stress the lane logic (0, 1, 31, 32, 33, 4095, 65537 elements), with
 * every CPU backend this machine supports giving the original bytes, and
 * every encoder path giving the same encoded bytes.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rfs_backend.h"
#include "rfs_internal.h"
#include "testutil.h"

static const size_t lengths[] = {0, 1, 31, 32, 33, 4095, 65537};
#define N_LENGTHS (sizeof(lengths) / sizeof(lengths[0]))

typedef enum kind {
    K_RANDOM, K_ZERO, K_SINGLE, K_SKEW2, K_GAUSS, K_SPECIAL, K_COUNT
} kind;

static uint64_t g_seed;

/* Fill n elements of width w with data of the given kind. */
static void fill(uint8_t *buf, size_t n, unsigned w, kind k, tu_rng *r)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t v = 0;
        switch (k) {
        case K_RANDOM: v = (uint32_t)tu_next(r); break;
        case K_ZERO: v = 0; break;
        case K_SINGLE: v = 0x3f80a5c3u; break;
        case K_SKEW2: v = (tu_next(r) % 100000) == 0 ? 0xffffffffu : 0x01010101u; break;
        case K_GAUSS: {
            float f = (float)(tu_gauss(r) * 0.02);
            if (w == 4)
                memcpy(&v, &f, 4);
            else if (w == 2)
                v = (i & 1) ? tu_f32_to_bf16(f) : tu_f32_to_fp16(f);
            else
                v = (uint32_t)(int8_t)lrint(f * 2000);
            break;
        }
        case K_SPECIAL: {
            /* NaN payloads, +-Inf, -0, denormals, in every width. */
            static const uint32_t f32[] = {0x7fc00001u, 0xffbfffffu, 0x7f800000u, 0xff800000u,
                                           0x80000000u, 0x00000001u, 0x807fffffu, 0x7f7fffffu};
            static const uint32_t h16[] = {0x7e01u, 0xfd55u, 0x7c00u, 0xfc00u,
                                           0x8000u, 0x0001u, 0x83ffu, 0x7f81u};
            v = w == 4 ? f32[tu_next(r) & 7] : h16[tu_next(r) & 7];
            break;
        }
        default: break;
        }
        memcpy(buf + i * w, &v, w);
    }
}

static void test_kinds(void **state)
{
    (void)state;
    static const unsigned widths[] = {1, 2, 4};
    tu_rng r = {g_seed};
    for (unsigned wi = 0; wi < 3; wi++) {
        unsigned w = widths[wi];
        for (kind k = 0; k < K_COUNT; k++) {
            for (size_t li = 0; li < N_LENGTHS; li++) {
                size_t n = lengths[li];
                uint8_t *buf = malloc(n * w + 1);
                fill(buf, n, w, k, &r);
                for (unsigned xf = 0; xf < RFS_XF_COUNT; xf++)
                    if (xf == RFS_XF_NONE || w > 1)
                        tu_roundtrip(buf, n * w, w, (rfs_transform)xf, NULL);
                tu_roundtrip(buf, n * w, w, rfs_transform_choose(buf, n, w), NULL);
                free(buf);
            }
        }
    }
}

/* Expected sizes: constant data is CONST planes, random data stays RAW,
 * gaussian bf16 compresses its exponent plane. */
static void test_mode_choice(void **state)
{
    (void)state;
    tu_rng r = {g_seed ^ 1};
    size_t n = 65536;
    uint8_t *buf = malloc(n * 4);
    fill(buf, n, 4, K_ZERO, &r);
    assert_int_equal(tu_roundtrip(buf, n * 4, 4, RFS_XF_NONE, NULL), 8 + 4 * 8);
    fill(buf, n, 2, K_RANDOM, &r);
    assert_int_equal(tu_roundtrip(buf, n * 2, 2, RFS_XF_NONE, NULL), 8 + 2 * 8 + n * 2);
    for (size_t i = 0; i < n; i++) {
        uint16_t b = tu_f32_to_bf16((float)(tu_gauss(&r) * 0.02));
        memcpy(buf + 2 * i, &b, 2);
    }
    assert_int_equal(rfs_transform_choose(buf, n, 2), RFS_XF_ROT1);
    size_t sz = tu_roundtrip(buf, n * 2, 2, RFS_XF_ROT1, NULL);
    assert_true(sz < n * 2 * 0.72); /* exponent plane ~2.6 bits of 8 */
    free(buf);
}

/* A shared table built from a whole tensor codes its tiles (RANS_SHARED),
 * and a tile with a symbol the shared table lacks falls back correctly. */
static void test_shared_table(void **state)
{
    (void)state;
    tu_rng r = {g_seed ^ 2};
    size_t n = 1 << 18;
    uint16_t *v = malloc(n * 2);
    for (size_t i = 0; i < n; i++)
        v[i] = tu_f32_to_bf16((float)(tu_gauss(&r) * 0.02));
    static rfs_table t1;
    uint64_t counts[256] = {0};
    rfs_plane_histogram(counts, v, n, 2, RFS_XF_ROT1, 1);
    assert_int_equal(rfs_table_from_counts(&t1, counts), RFS_OK);
    rfs_table_set set = {{NULL, &t1, NULL, NULL}};
    for (size_t off = 0; off < n; off += 32768)
        tu_roundtrip(v + off, 65536, 2, RFS_XF_ROT1, &set);
    v[5] = 0x7f80; /* +Inf: exponent byte 0xff, absent from the table */
    tu_roundtrip(v, 65536, 2, RFS_XF_ROT1, &set);
    free(v);
}

/* Reusing one context for many tiles of different widths and sizes. */
static void test_context_reuse(void **state)
{
    (void)state;
    tu_rng r = {g_seed ^ 3};
    size_t cap = 1 << 16;
    rfs_enc *e = rfs_enc_create(cap);
    rfs_dec *d = rfs_dec_create(cap);
    uint8_t *src = malloc(cap), *enc = malloc(rfs_tile_bound(cap, 1)), *out = malloc(cap);
    for (int it = 0; it < 200; it++) {
        unsigned w = 1u << (tu_next(&r) % 3);
        size_t n = (tu_next(&r) % (cap / w + 1));
        fill(src, n, w, (kind)(tu_next(&r) % K_COUNT), &r);
        rfs_tile_params p = {.width = w, .transform = w > 1 ? RFS_XF_ROT1 : RFS_XF_NONE};
        size_t es = 0, got = 0;
        assert_int_equal(rfs_tile_encode(e, enc, rfs_tile_bound(cap, 1), &es, src, n * w, &p),
                         RFS_OK);
        assert_int_equal(rfs_tile_decode(d, out, cap, &got, enc, es, NULL), RFS_OK);
        assert_int_equal(got, n * w);
        assert_memory_equal(out, src, n * w);
    }
    /* Too big for the context, bad widths, odd sizes. */
    size_t es = 0;
    rfs_tile_params p = {.width = 2, .transform = RFS_XF_NONE};
    assert_int_equal(rfs_tile_encode(e, enc, cap, &es, src, cap + 2, &p), RFS_E_TOO_BIG);
    assert_int_equal(rfs_tile_encode(e, enc, cap, &es, src, 3, &p), RFS_E_ARG);
    p.width = 3;
    assert_int_equal(rfs_tile_encode(e, enc, cap, &es, src, 3, &p), RFS_E_ARG);
    p.width = 1;
    p.transform = RFS_XF_ROT1;
    assert_int_equal(rfs_tile_encode(e, enc, cap, &es, src, 3, &p), RFS_E_ARG);
    free(src);
    free(enc);
    free(out);
    rfs_enc_destroy(e);
    rfs_dec_destroy(d);
}

/* Raw-only mode stores every plane as is. */
static void test_raw_only(void **state)
{
    (void)state;
    uint8_t src[64] = {0}, enc[256], out[64];
    size_t es = 0, got = 0;
    rfs_enc *e = rfs_enc_create(64);
    rfs_dec *d = rfs_dec_create(64);
    rfs_tile_params p = {.width = 4, .transform = RFS_XF_NONE, .raw_only = 1};
    assert_int_equal(rfs_tile_encode(e, enc, sizeof(enc), &es, src, 64, &p), RFS_OK);
    assert_int_equal(es, 8 + 32 + 64);
    assert_int_equal(rfs_tile_decode(d, out, 64, &got, enc, es, NULL), RFS_OK);
    assert_memory_equal(out, src, 64);
    assert_int_equal(rfs_tile_decode(d, out, 63, &got, enc, es, NULL), RFS_E_DST_SMALL);
    rfs_enc_destroy(e);
    rfs_dec_destroy(d);
}

/* Counts of plane p of src (n elements of width w, transform xf), as the
 * encoder's 32-bit counts. */
static void plane_counts_ref(uint32_t counts[256], const uint8_t *src, size_t n, unsigned w,
                             rfs_transform xf, unsigned p)
{
    uint64_t c[256] = {0};
    rfs_plane_histogram(c, src, n, w, xf, p);
    for (unsigned s = 0; s < 256; s++)
        counts[s] = (uint32_t)c[s];
}

/* Two encodings of one input are the same bytes. */
static void assert_same_tile(const uint8_t *a, size_t sa, const uint8_t *b, size_t sb)
{
    assert_int_equal(sa, sb);
    assert_memory_equal(a, b, sa);
}

/* Counts given by the caller code the same bytes as the encoder's own; counts
 * that do not sum to the plane's length are ignored (the encoder counts). */
static void test_given_counts(void **state)
{
    (void)state;
    tu_rng r = {g_seed ^ 5};
    size_t cap = 1 << 16;
    rfs_enc *e = rfs_enc_create(cap);
    size_t bound = rfs_tile_bound(cap, 1);
    uint8_t *src = malloc(cap), *a = malloc(bound), *b = malloc(bound);
    uint32_t counts[4][256];
    for (int it = 0; it < 100; it++) {
        unsigned w = 1u << (tu_next(&r) % 3);
        size_t n = tu_next(&r) % (cap / w + 1);
        fill(src, n, w, (kind)(tu_next(&r) % K_COUNT), &r);
        rfs_tile_params p = {.width = w, .transform = w > 1 ? RFS_XF_ROT1 : RFS_XF_NONE};
        size_t sa = 0, sb = 0;
        assert_int_equal(rfs_tile_encode(e, a, bound, &sa, src, n * w, &p), RFS_OK);
        for (unsigned pl = 0; pl < w; pl++)
            plane_counts_ref(counts[pl], src, n, w, p.transform, pl);
        if (n && it % 4 == 3)
            counts[0][0] += 1; /* a bad sum: ignored */
        p.counts = (const uint32_t (*)[256])counts;
        assert_int_equal(rfs_tile_encode(e, b, bound, &sb, src, n * w, &p), RFS_OK);
        assert_same_tile(a, sa, b, sb);
    }
    free(src);
    free(a);
    free(b);
    rfs_enc_destroy(e);
}

/* W = 2 and 4 encode in place (dst = src, the packer's use) to the same
 * bytes as into another buffer, for every kind, length and transform, with
 * and without a shared table. */
static void test_in_place(void **state)
{
    (void)state;
    tu_rng r = {g_seed ^ 7};
    size_t cap = 65537 * 4, bound = rfs_tile_bound(cap, RFS_MAX_WIDTH);
    rfs_enc *e = rfs_enc_create(cap);
    uint8_t *src = malloc(cap), *a = malloc(bound), *b = malloc(bound);
    static rfs_table tab[RFS_MAX_WIDTH];
    for (unsigned w = 2; w <= 4; w += 2)
        for (kind k = 0; k < K_COUNT; k++)
            for (size_t li = 0; li < N_LENGTHS; li++)
                for (unsigned xf = 0; xf < RFS_XF_COUNT; xf++) {
                    size_t n = lengths[li], sa = 0, sb = 0;
                    fill(src, n, w, k, &r);
                    rfs_table_set set;
                    tu_table_set(&set, tab, src, n, w, (rfs_transform)xf);
                    rfs_tile_params p = {.width = w, .transform = (rfs_transform)xf,
                                         .shared = li & 1 ? &set : NULL};
                    assert_int_equal(rfs_tile_encode(e, a, bound, &sa, src, n * w, &p), RFS_OK);
                    memcpy(b, src, n * w);
                    assert_int_equal(rfs_tile_encode(e, b, rfs_tile_bound(n * w, w), &sb, b,
                                                     n * w, &p),
                                     RFS_OK);
                    assert_same_tile(a, sa, b, sb);
                }
    free(src);
    free(a);
    free(b);
    rfs_enc_destroy(e);
}

/* Encode src with encoder e on path name; returns the encoded size. */
static size_t encode_on(rfs_enc *e, const char *name, uint8_t *dst, size_t cap, const void *src,
                        size_t size, const rfs_tile_params *p)
{
    size_t es = 0;
    assert_int_equal(rfs_enc_set_backend(e, name), RFS_OK);
    assert_string_equal(rfs_enc_backend(e), name);
    assert_int_equal(rfs_tile_encode(e, dst, cap, &es, src, size, p), RFS_OK);
    return es;
}

/* The scalar and the AVX2 encoder give the same bytes for every width,
 * kind, length and transform, with and without a shared table; and
 * RANSFS_CPU picks the encoder's default path as it does the decoder's
 * (CTest runs this file once more with RANSFS_CPU=scalar). */
static void test_encoder_paths(void **state)
{
    (void)state;
    static const unsigned widths[] = {1, 2, 4};
    const char *env = getenv("RANSFS_CPU");
    size_t cap = 65537 * 4, bound = rfs_tile_bound(cap, RFS_MAX_WIDTH);
    rfs_enc *e = rfs_enc_create(cap);
    if (env && (!strcmp(env, "scalar") || (!strcmp(env, "avx2") && rfs_cpu_supports("avx2"))))
        assert_string_equal(rfs_enc_backend(e), env);
    assert_int_equal(rfs_enc_set_backend(e, "sse9"), RFS_E_ARG);
    if (!rfs_cpu_supports("avx2")) {
        rfs_enc_destroy(e);
        print_message("no AVX2 on this CPU: the AVX2 encoder cannot be compared\n");
        skip();
    }
    tu_rng r = {g_seed ^ 6};
    uint8_t *src = malloc(cap), *a = malloc(bound), *b = malloc(bound);
    static rfs_table tab[RFS_MAX_WIDTH];
    for (unsigned wi = 0; wi < 3; wi++)
        for (kind k = 0; k < K_COUNT; k++)
            for (size_t li = 0; li < N_LENGTHS; li++)
                for (unsigned xf = 0; xf < RFS_XF_COUNT; xf++) {
                    unsigned w = widths[wi];
                    size_t n = lengths[li];
                    if (xf == RFS_XF_ROT1 && w == 1)
                        continue;
                    fill(src, n, w, k, &r);
                    rfs_table_set set;
                    tu_table_set(&set, tab, src, n, w, (rfs_transform)xf);
                    rfs_tile_params p = {.width = w, .transform = (rfs_transform)xf,
                                         .shared = li & 1 ? &set : NULL};
                    size_t sa = encode_on(e, "scalar", a, bound, src, n * w, &p);
                    size_t sb = encode_on(e, "avx2", b, bound, src, n * w, &p);
                    assert_same_tile(a, sa, b, sb);
                }
    free(src);
    free(a);
    free(b);
    rfs_enc_destroy(e);
}

/* Whether the top plane of tile enc is rANS with a table the VBMI
 * backend's permute lookups take (rfs_small_plan_build); *nwin its windows,
 * *nsym its symbols. */
static int top_plane_small(const uint8_t *enc, size_t size, unsigned *nwin, unsigned *nsym)
{
    static rfs_table t;
    static rfs_small_plan plan;
    rfs_tile_layout lay;
    size_t off = 0, len = 0;
    assert_int_equal(rfs_tile_parse(&lay, enc, size), RFS_OK);
    const rfs_plane_layout *top = &lay.plane[lay.width - 1];
    if (top->mode != RFS_PM_RANS_TILE)
        return 0;
    assert_int_equal(rfs_plane_parse_rans(enc, top, 0, t.freq, &off, &len), RFS_OK);
    rfs_table_build_lookup(&t);
    int ok = rfs_small_plan_build(&plan, t.dec);
    *nwin = plan.nwin;
    *nsym = plan.nsym;
    return ok;
}

/* bf16 and f32 weights (scaled normals, a tail of rare exponents): their
 * exponent plane takes the VBMI backend's permute lookups, with and without
 * windows, and every backend (that one included where the CPU has it) gives
 * the original bytes; lengths around a step and the tail. */
static void test_small_alphabet(void **state)
{
    (void)state;
    static const size_t ns[] = {32, 33, 4095, 65537, 131072};
    tu_rng r = {g_seed ^ 8};
    size_t cap = 131072 * 4;
    uint8_t *src = malloc(cap), *enc = malloc(rfs_tile_bound(cap, 4));
    rfs_enc *e = rfs_enc_create(cap);
    unsigned small = 0, windowed = 0, plain = 0;
    for (unsigned w = 2; w <= 4; w += 2)
        for (size_t li = 0; li < sizeof ns / sizeof ns[0]; li++)
            for (unsigned scale = 0; scale < 4; scale++) {
                size_t n = ns[li];
                double sd = scale == 0 ? 0.02 : scale == 1 ? 1.0 : 1e-3;
                for (size_t i = 0; i < n; i++) {
                    /* scale 3: a few common exponents only (no window) */
                    float f = scale == 3 ? (float)((int)(tu_next(&r) % 9) - 4) * 0.37f
                                         : (float)(tu_gauss(&r) * sd * (i % 97 ? 1.0 : 40.0));
                    if (w == 2) {
                        uint16_t b = tu_f32_to_bf16(f);
                        memcpy(src + 2 * i, &b, 2);
                    } else {
                        memcpy(src + 4 * i, &f, 4);
                    }
                }
                rfs_tile_params p = {.width = w, .transform = RFS_XF_ROT1};
                size_t size = 0;
                assert_int_equal(rfs_tile_encode(e, enc, rfs_tile_bound(cap, 4), &size, src,
                                                 n * w, &p),
                                 RFS_OK);
                unsigned nwin = 0, nsym = 0;
                if (top_plane_small(enc, size, &nwin, &nsym)) {
                    small++;
                    windowed += nwin > 0;
                    plain += nwin == 0;
                }
                tu_roundtrip(src, n * w, w, RFS_XF_ROT1, NULL);
            }
    /* all but the shortest tiles (whose planes may be RAW): the path runs */
    assert_true(small >= 20);
    assert_true(windowed >= 4);
    assert_true(plain >= 4);
    if (!rfs_cpu_supports("avx512vbmi"))
        print_message("no AVX-512 VBMI here: only the plans were checked, not that path\n");
    rfs_enc_destroy(e);
    free(src);
    free(enc);
}

/* Fill n weights of width w (bf16 or f32, scaled normals); sd 0: random bits. */
static void fill_weights(uint8_t *dst, size_t n, unsigned w, double sd, tu_rng *r)
{
    for (size_t i = 0; i < n; i++) {
        float f = (float)(tu_gauss(r) * sd * (i % 97 ? 1.0 : 40.0));
        uint32_t v = sd == 0 ? (uint32_t)tu_next(r) : 0;
        uint16_t b = sd == 0 ? (uint16_t)v : tu_f32_to_bf16(f);
        if (w == 2)
            memcpy(dst + 2 * i, &b, 2);
        else if (sd == 0)
            memcpy(dst + 4 * i, &v, 4);
        else
            memcpy(dst + 4 * i, &f, 4);
    }
}

/* rfs_tile_decode2 gives each tile what rfs_tile_decode gives it, bytes
 * and error, on every backend: pairs the VBMI backend runs in lockstep
 * (bf16, f32, different lengths), pairs it does not (random bits, widths
 * that differ), and pairs with a damaged stream or header in either tile. */
static void test_decode2(void **state)
{
    (void)state;
    enum { CAP = 65536 * 4 };
    static const struct { unsigned w[2]; size_t n[2]; double sd[2]; } cases[] = {
        {{2, 2}, {65536, 65536}, {0.02, 1.0}}, {{2, 2}, {65536, 40001}, {0.02, 0.02}},
        {{4, 4}, {65536, 65536}, {0.02, 1e-3}}, {{4, 4}, {33, 65536}, {0.02, 0.02}},
        {{2, 2}, {65536, 65536}, {0.02, 0}},    {{2, 4}, {65536, 65536}, {0.02, 0.02}},
        {{2, 2}, {31, 0}, {0.02, 0.02}},
    };
    tu_rng r = {g_seed ^ 9};
    uint8_t *src[2], *enc[2], *a[2], *b[2];
    size_t size[2];
    for (unsigned j = 0; j < 2; j++) {
        src[j] = malloc(CAP), enc[j] = malloc(rfs_tile_bound(CAP, 4));
        a[j] = malloc(CAP), b[j] = malloc(CAP);
    }
    rfs_enc *e = rfs_enc_create(CAP);
    rfs_dec *d = rfs_dec_create(CAP);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (unsigned dmg = 0; dmg < 5; dmg++) {
            for (unsigned j = 0; j < 2; j++) {
                unsigned w = cases[c].w[j];
                fill_weights(src[j], cases[c].n[j], w, cases[c].sd[j], &r);
                rfs_tile_params p = {.width = w, .transform = RFS_XF_ROT1};
                assert_int_equal(rfs_tile_encode(e, enc[j], rfs_tile_bound(CAP, 4), &size[j],
                                                 src[j], cases[c].n[j] * w, &p),
                                 RFS_OK);
            }
            /* dmg 1, 2: a stream byte of tile 0 or 1; 3, 4: its last byte */
            unsigned t = (dmg - 1) & 1;
            if (dmg && size[t] > 200)
                enc[t][dmg <= 2 ? size[t] - 100 : size[t] - 1] ^= 0x5a;
            for (const char *const *bk = tu_backends(); *bk; bk++) {
                assert_int_equal(rfs_dec_set_backend(d, *bk), RFS_OK);
                rfs_err want[2];
                size_t got[2] = {0, 0};
                for (unsigned j = 0; j < 2; j++) {
                    memset(a[j], 0xa5, CAP);
                    want[j] = rfs_tile_decode(d, a[j], CAP, &got[j], enc[j], size[j], NULL);
                }
                rfs_tile_io io[2];
                for (unsigned j = 0; j < 2; j++) {
                    memset(b[j], 0x5a, CAP);
                    io[j] = (rfs_tile_io){.dst = b[j], .dst_cap = CAP, .src = enc[j],
                                          .src_size = size[j]};
                }
                rfs_err all = rfs_tile_decode2(d, io);
                assert_int_equal(all, want[0] != RFS_OK ? want[0] : want[1]);
                for (unsigned j = 0; j < 2; j++) {
                    if (io[j].err != want[j])
                        fail_msg("%s case %zu dmg %u tile %u: %s, alone %s", *bk, c, dmg, j,
                                 rfs_strerror(io[j].err), rfs_strerror(want[j]));
                    if (want[j] != RFS_OK)
                        continue;
                    assert_int_equal(io[j].dst_size, got[j]);
                    assert_memory_equal(b[j], a[j], got[j]);
                    if (!dmg)
                        assert_memory_equal(b[j], src[j], got[j]);
                }
            }
        }
    assert_int_equal(rfs_tile_decode2(NULL, NULL), RFS_E_ARG);
    rfs_enc_destroy(e);
    rfs_dec_destroy(d);
    for (unsigned j = 0; j < 2; j++)
        free(src[j]), free(enc[j]), free(a[j]), free(b[j]);
}

/* Weights of width w (bf16 or f32) whose exponents follow one of the
 * shapes below: nbig common exponents, and tails of 8 rare ones (each
 * ~2/4096) below and above them, every other bit random. */
typedef struct exp_shape {
    unsigned nbig, tail_lo, tail_hi;
} exp_shape;

static void fill_shape(uint8_t *dst, size_t n, unsigned w, exp_shape sh, tu_rng *r)
{
    const unsigned lo = 60, rare = 2; /* exponents from lo; rare in 4096 */
    unsigned ntail = 8 * (sh.tail_lo + sh.tail_hi);
    for (size_t i = 0; i < n; i++) {
        unsigned u = (unsigned)(tu_next(r) % 4096), e;
        if (u < rare * ntail) { /* a rare exponent: below or above the common ones */
            unsigned k = u / rare;
            e = sh.tail_lo && k < 8 ? lo + k : lo + 8 + sh.nbig + k % 8;
        } else {
            e = lo + 8 + (unsigned)(tu_next(r) % sh.nbig);
        }
        uint64_t bits = tu_next(r);
        if (w == 2) {
            uint16_t b = (uint16_t)((bits & 0x807f) | (e << 7));
            memcpy(dst + 2 * i, &b, 2);
        } else {
            uint32_t v = (uint32_t)((bits & 0x807fffffu) | ((uint64_t)e << 23));
            memcpy(dst + 4 * i, &v, 4);
        }
    }
}

/* The VBMI backend's lockstep pair takes its table form (windows, and
 * whether entries past 32 are read) from the larger of the two plans: every
 * form, with tiles of equal and of different forms, decodes as each tile
 * alone does and gives the source, on every backend. */
static void test_decode2_forms(void **state)
{
    (void)state;
    enum { N = 65536, CAP = N * 4 };
    /* (windows, more than 32 symbols): (0,0) (0,1) (1,0) (2,0) (1,1) (2,1) */
    static const exp_shape shapes[] = {{16, 0, 0}, {48, 0, 0}, {16, 0, 1},
                                       {16, 1, 1}, {40, 0, 1}, {40, 1, 1}};
    enum { NS = sizeof shapes / sizeof shapes[0] };
    tu_rng r = {g_seed ^ 10};
    rfs_enc *e = rfs_enc_create(CAP);
    rfs_dec *d = rfs_dec_create(CAP);
    uint8_t *src[NS], *enc[NS], *a = malloc(CAP), *b[2] = {malloc(CAP), malloc(CAP)};
    size_t size[NS];
    for (unsigned w = 2; w <= 4; w += 2) {
        unsigned forms = 0; /* bit 2 * nwin + big of every pair's form */
        unsigned nwin[NS], big[NS];
        for (unsigned s = 0; s < NS; s++) {
            src[s] = malloc(CAP), enc[s] = malloc(rfs_tile_bound(CAP, 4));
            fill_shape(src[s], N, w, shapes[s], &r);
            rfs_tile_params p = {.width = w, .transform = RFS_XF_ROT1};
            assert_int_equal(rfs_tile_encode(e, enc[s], rfs_tile_bound(CAP, 4), &size[s], src[s],
                                             (size_t)N * w, &p),
                             RFS_OK);
            unsigned nsym = 0;
            assert_true(top_plane_small(enc[s], size[s], &nwin[s], &nsym));
            big[s] = nsym > 32;
        }
        for (unsigned i = 0; i < NS; i++)
            for (unsigned j = 0; j < NS; j++) {
                unsigned nw = nwin[i] > nwin[j] ? nwin[i] : nwin[j];
                forms |= 1u << (2 * nw + (big[i] | big[j]));
                for (const char *const *bk = tu_backends(); *bk; bk++) {
                    assert_int_equal(rfs_dec_set_backend(d, *bk), RFS_OK);
                    rfs_tile_io io[2];
                    const unsigned t[2] = {i, j};
                    for (unsigned k = 0; k < 2; k++) {
                        memset(b[k], 0x5a, CAP);
                        io[k] = (rfs_tile_io){.dst = b[k], .dst_cap = CAP, .src = enc[t[k]],
                                              .src_size = size[t[k]]};
                    }
                    assert_int_equal(rfs_tile_decode2(d, io), RFS_OK);
                    for (unsigned k = 0; k < 2; k++) {
                        size_t got = 0;
                        assert_int_equal(rfs_tile_decode(d, a, CAP, &got, enc[t[k]],
                                                         size[t[k]], NULL),
                                         RFS_OK);
                        assert_int_equal(io[k].dst_size, got);
                        assert_memory_equal(b[k], a, got);
                        assert_memory_equal(b[k], src[t[k]], (size_t)N * w);
                    }
                }
            }
        /* all six forms were decoded (as pairs of equal shapes or mixed) */
        if (forms != 0x3f)
            fail_msg("width %u: pair forms 0x%x, not all six", w, forms);
        for (unsigned s = 0; s < NS; s++)
            free(src[s]), free(enc[s]);
    }
    if (!rfs_cpu_supports("avx512vbmi"))
        print_message("no AVX-512 VBMI here: the pairs were decoded, not by that path\n");
    rfs_enc_destroy(e);
    rfs_dec_destroy(d);
    free(a), free(b[0]), free(b[1]);
}

/* Tiles coded with a tensor's shared table decode the same, on every
 * backend, alone and in pairs, whether the table carries its prebuilt
 * permute-lookup plan (rfs_table.plan, as an image's shared tables do) or
 * leaves the VBMI backend to build it per tile. */
static void test_shared_plan(void **state)
{
    (void)state;
    enum { TILES = 4, N = 65536, CAP = N * 4 };
    tu_rng r = {g_seed ^ 12};
    uint8_t *src = malloc((size_t)TILES * CAP), *enc[TILES], *out[2];
    for (unsigned j = 0; j < TILES; j++)
        enc[j] = malloc(rfs_tile_bound(CAP, 4));
    out[0] = malloc(CAP), out[1] = malloc(CAP);
    rfs_enc *e = rfs_enc_create(CAP);
    rfs_dec *d = rfs_dec_create(CAP);
    static rfs_table tab;
    static rfs_small_plan plan;
    for (unsigned w = 2; w <= 4; w += 2) {
        fill_weights(src, (size_t)TILES * N, w, 0.02, &r);
        uint64_t counts[256] = {0};
        rfs_plane_histogram(counts, src, (size_t)TILES * N, w, RFS_XF_ROT1, w - 1);
        assert_int_equal(rfs_table_from_counts(&tab, counts), RFS_OK);
        assert_null(tab.plan);
        assert_true(rfs_small_plan_build(&plan, tab.dec));
        rfs_table_set set = {{NULL, NULL, NULL, NULL}};
        set.plane[w - 1] = &tab;
        size_t size[TILES];
        unsigned shared = 0;
        for (unsigned j = 0; j < TILES; j++) {
            rfs_tile_params p = {.width = w, .transform = RFS_XF_ROT1, .shared = &set};
            assert_int_equal(rfs_tile_encode(e, enc[j], rfs_tile_bound(CAP, 4), &size[j],
                                             src + (size_t)j * N * w, (size_t)N * w, &p),
                             RFS_OK);
            rfs_tile_layout lay;
            assert_int_equal(rfs_tile_parse(&lay, enc[j], size[j]), RFS_OK);
            shared += lay.plane[w - 1].mode == RFS_PM_RANS_SHARED;
        }
        assert_int_equal(shared, TILES);
        for (unsigned pre = 0; pre < 2; pre++) {
            tab.plan = pre ? &plan : NULL;
            for (const char *const *bk = tu_backends(); *bk; bk++) {
                assert_int_equal(rfs_dec_set_backend(d, *bk), RFS_OK);
                for (unsigned j = 0; j < TILES; j++) {
                    size_t got = 0;
                    memset(out[0], 0xa5, CAP);
                    assert_int_equal(
                        rfs_tile_decode(d, out[0], CAP, &got, enc[j], size[j], &set), RFS_OK);
                    assert_int_equal(got, (size_t)N * w);
                    assert_memory_equal(out[0], src + (size_t)j * N * w, got);
                }
                for (unsigned j = 0; j < TILES; j += 2) {
                    rfs_tile_io io[2];
                    for (unsigned k = 0; k < 2; k++) {
                        memset(out[k], 0x5a, CAP);
                        io[k] = (rfs_tile_io){.dst = out[k], .dst_cap = CAP, .src = enc[j + k],
                                              .src_size = size[j + k], .shared = &set};
                    }
                    assert_int_equal(rfs_tile_decode2(d, io), RFS_OK);
                    for (unsigned k = 0; k < 2; k++) {
                        if (io[k].dst_size != (size_t)N * w ||
                            memcmp(out[k], src + (size_t)(j + k) * N * w, io[k].dst_size))
                            fail_msg("%s w %u plan %s: pair %u tile %u differs", *bk, w,
                                     pre ? "prebuilt" : "per tile", j, k);
                    }
                }
            }
        }
        tab.plan = NULL;
    }
    rfs_enc_destroy(e);
    rfs_dec_destroy(d);
    for (unsigned j = 0; j < TILES; j++)
        free(enc[j]);
    free(src), free(out[0]), free(out[1]);
}

/* The pair histogram with its scratch (width 2: one count per element in a
 * 16-bit histogram, only the rows the data reaches summed) equals the one
 * without, for every data kind and length above plus weights of narrow and
 * wide exponent ranges, rows at both ends (zeros, NaNs) and a tail that is
 * not a multiple of four; the scratch starts as garbage.  The 16-bit path
 * must have run where the data's rows are few (the scratch changed), and
 * widths 1 and 4 must not touch it. */
static void test_pair_histogram_ws(void **state)
{
    (void)state;
    tu_rng r = {g_seed ^ 0x9a1};
    uint32_t *ws = malloc(RFS_PAIR_WS * sizeof *ws);
    static uint32_t want[RFS_MAX_WIDTH][512], got[RFS_MAX_WIDTH][512];
    const size_t n_max = 65537 + 3;
    uint8_t *buf = malloc(n_max * 4);
    static const unsigned widths[] = {1, 2, 4};
    static const size_t more[] = {4096, 8191, 40000, 65537 + 3};
    for (unsigned wi = 0; wi < 3; wi++) {
        unsigned w = widths[wi];
        for (int k = 0; k < K_COUNT + 2; k++) {
            for (size_t li = 0; li < N_LENGTHS + 4; li++) {
                size_t n = li < N_LENGTHS ? lengths[li] : more[li - N_LENGTHS];
                if (k < K_COUNT) {
                    fill(buf, n, w, (kind)k, &r);
                } else {
                    /* weights of scale 1e-3 (narrow) or 1e-30..1e30 (wide) */
                    for (size_t i = 0; i < n; i++) {
                        double g = tu_gauss(&r);
                        float f = (float)(k == K_COUNT ? g * 1e-3 : g * pow(10.0, (double)(tu_next(&r) % 61) - 30));
                        uint32_t v;
                        memcpy(&v, &f, 4);
                        if (w == 2)
                            v = tu_f32_to_bf16(f);
                        memcpy(buf + i * w, &v, w);
                    }
                }
                memset(ws, 0xab, RFS_PAIR_WS * sizeof *ws);
                memset(want, 0x5a, sizeof want);
                memset(got, 0xa5, sizeof got);
                rfs_pair_histogram(want, buf, n, w, NULL);
                rfs_pair_histogram(got, buf, n, w, ws);
                for (unsigned p = 0; p < w; p++)
                    if (memcmp(want[p], got[p], sizeof want[p]))
                        fail_msg("width %u kind %d n %zu: plane %u differs", w, k, n, p);
                int touched = 0;
                for (size_t x = 0; x < RFS_PAIR_WS && !touched; x++)
                    touched = ws[x] != 0xababababu;
                if (w != 2 && touched)
                    fail_msg("width %u: the scratch was used", w);
                /* narrow weights: 1e-3 spans a few exponents */
                if (w == 2 && k == K_COUNT && n >= 4096 && !touched)
                    fail_msg("kind %d n %zu: the 16-bit path did not run", k, n);
            }
        }
    }
    free(buf);
    free(ws);
}

int main(void)
{
    g_seed = tu_seed("codec_tile_roundtrip");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds),         cmocka_unit_test(test_mode_choice),
        cmocka_unit_test(test_shared_table),  cmocka_unit_test(test_context_reuse),
        cmocka_unit_test(test_raw_only),      cmocka_unit_test(test_given_counts),
        cmocka_unit_test(test_encoder_paths), cmocka_unit_test(test_in_place),
        cmocka_unit_test(test_small_alphabet), cmocka_unit_test(test_decode2),
        cmocka_unit_test(test_decode2_forms), cmocka_unit_test(test_shared_plan),
        cmocka_unit_test(test_pair_histogram_ws),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
