/*
 * RANS_CTX (tile format 2, docs/format.md 1.4.1): plane W-2 coded with two
 * tables chosen per element by its byte in plane W-1.  Round trips on every
 * backend for every size class, widths 2 and 4, both transforms and every
 * mode of the context plane; the encoder picks RANS_CTX where it pays and
 * never without .ctx; the parser rejects what the format forbids; damaged
 * RANS_CTX tiles never crash and every backend agrees on the outcome.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

static uint64_t g_seed;

/* The tile byte offset of plane p's descriptor. */
#define DESC(p) (RFS_TILE_HDR_SIZE + RFS_PLANE_DESC_SIZE * (p))

/* The kinds of context plane (W-1) the generator makes; CP_ONE_SYMBOL is
 * CP_TWO_CLASSES with one plane W-2 byte in the upper range, so that part's
 * table gives its symbol all 2^12 (a case the AVX2 encoder once got wrong). */
enum { CP_TWO_CLASSES, CP_CONST, CP_RANDOM, CP_ONE_SYMBOL };

/*
 * n elements of width w whose transformed form (under xf) has, in plane
 * W-1, one of two value ranges (or a constant, or uniform noise), and in
 * plane W-2 a byte whose distribution depends on the range: 16 values near
 * 0 for the upper range, 16 near 128 for the lower.  Order 0 then needs 32
 * symbols, RANS_CTX 16 per context: it pays once the tile is large enough
 * for two tables.  Other planes are noise.
 */
static uint8_t *ctx_data(size_t n, unsigned w, rfs_transform xf, int cp, uint64_t seed)
{
    tu_rng r = {seed};
    uint8_t *buf = malloc(n * w + 1);
    for (size_t i = 0; i < n; i++) {
        uint64_t u = tu_next(&r);
        unsigned up = u & 1, hi;
        if (cp == CP_CONST)
            hi = 0x7c;
        else if (cp == CP_RANDOM)
            hi = (unsigned)(u >> 8) & 0xff;
        else /* CP_TWO_CLASSES, CP_ONE_SYMBOL */
            hi = up ? 0x7c + (unsigned)(u >> 8 & 3) : 0x70 + (unsigned)(u >> 8 & 3);
        unsigned lo = (up ? 0 : 128) + (unsigned)(u >> 16 & 15);
        if (cp == CP_ONE_SYMBOL)
            lo = up ? 0 : lo;
        uint32_t t = (uint32_t)hi << (8 * (w - 1)) | (uint32_t)lo << (8 * (w - 2));
        if (w == 4)
            t |= (uint32_t)(u >> 24) & 0xffff;
        if (xf == RFS_XF_ROT1) /* undo: rotate right by 1 within 8w bits */
            t = w == 2 ? ((t >> 1) | (t << 15)) & 0xffff : (t >> 1) | (t << 31);
        for (unsigned b = 0; b < w; b++)
            buf[i * w + b] = (uint8_t)(t >> (8 * b));
    }
    return buf;
}

/* Encode with p; *size receives the tile size.  The caller frees. */
static uint8_t *encode(const uint8_t *src, size_t bytes, const rfs_tile_params *p, size_t *size)
{
    size_t cap = rfs_tile_bound(bytes, p->width);
    uint8_t *enc = malloc(cap);
    rfs_enc *e = rfs_enc_create(bytes);
    assert_int_equal(rfs_tile_encode(e, enc, cap, size, src, bytes, p), RFS_OK);
    rfs_enc_destroy(e);
    return enc;
}

/* Decode with every backend: must give src exactly. */
static void decode_check(const uint8_t *enc, size_t size, const uint8_t *src, size_t bytes,
                         const rfs_table_set *shared)
{
    uint8_t *out = malloc(bytes + 1);
    rfs_dec *d = rfs_dec_create(bytes);
    for (const char *const *b = tu_backends(); *b; b++) {
        size_t got = 0;
        assert_int_equal(rfs_dec_set_backend(d, *b), RFS_OK);
        memset(out, 0xa5, bytes);
        rfs_err err = rfs_tile_decode(d, out, bytes, &got, enc, size, shared);
        if (err != RFS_OK)
            fail_msg("backend %s: %s (%zu bytes)", *b, rfs_strerror(err), bytes);
        assert_int_equal(got, bytes);
        if (bytes && memcmp(out, src, bytes))
            fail_msg("backend %s: bytes differ (%zu bytes)", *b, bytes);
    }
    rfs_dec_destroy(d);
    free(out);
}

/* Every size class, W = 2 and 4, both transforms: RANS_CTX wherever the
 * tile is large enough, and exact bytes from every backend. */
static void test_roundtrip(void **state)
{
    (void)state;
    static const size_t sizes[] = {0, 1, 31, 32, 33, 63, 64, 65, 1000, 4096 + 7, 65536, 131072};
    static const unsigned widths[] = {2, 4};
    for (unsigned wi = 0; wi < 2; wi++)
        for (unsigned xf = 0; xf < RFS_XF_COUNT; xf++)
            for (unsigned si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
                unsigned w = widths[wi];
                size_t n = sizes[si], size = 0;
                uint8_t *src = ctx_data(n, w, (rfs_transform)xf, CP_TWO_CLASSES, g_seed + si);
                rfs_tile_params p = {.width = w, .transform = (rfs_transform)xf, .ctx = 1};
                uint8_t *enc = encode(src, n * w, &p, &size);
                if (n >= 4096 && !rfs_tile_uses_ctx(enc, size))
                    fail_msg("w %u xf %u n %zu: no RANS_CTX plane", w, xf, n);
                decode_check(enc, size, src, n * w, NULL);
                free(enc);
                free(src);
            }
}

/* Encode src with encoder path name ("scalar", "avx2"); *size receives the
 * tile size.  The caller frees. */
static uint8_t *encode_on(const char *name, const uint8_t *src, size_t bytes,
                          const rfs_tile_params *p, size_t *size)
{
    size_t cap = rfs_tile_bound(bytes, p->width);
    uint8_t *enc = malloc(cap);
    rfs_enc *e = rfs_enc_create(bytes);
    assert_int_equal(rfs_enc_set_backend(e, name), RFS_OK);
    assert_int_equal(rfs_tile_encode(e, enc, cap, size, src, bytes, p), RFS_OK);
    rfs_enc_destroy(e);
    return enc;
}

/* The scalar and the AVX2 encoder code RANS_CTX planes to the same bytes
 * (every size class around a step, both widths and transforms, a part whose
 * table has one symbol), and those bytes decode. */
static void test_encoder_paths(void **state)
{
    (void)state;
    static const size_t sizes[] = {33, 64, 4096 + 7, 65536, 131072};
    static const int kinds[] = {CP_TWO_CLASSES, CP_ONE_SYMBOL};
    if (!rfs_cpu_supports("avx2")) {
        print_message("no AVX2 on this CPU: the AVX2 encoder cannot be compared\n");
        skip();
    }
    for (unsigned w = 2; w <= 4; w += 2)
        for (unsigned xf = 0; xf < RFS_XF_COUNT; xf++)
            for (unsigned k = 0; k < 2; k++)
                for (unsigned si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
                    size_t n = sizes[si], sa = 0, sb = 0;
                    uint8_t *src = ctx_data(n, w, (rfs_transform)xf, kinds[k], g_seed ^ si);
                    rfs_tile_params p = {.width = w, .transform = (rfs_transform)xf, .ctx = 1};
                    uint8_t *a = encode_on("scalar", src, n * w, &p, &sa);
                    uint8_t *b = encode_on("avx2", src, n * w, &p, &sb);
                    if (n >= 4096 && !rfs_tile_uses_ctx(a, sa))
                        fail_msg("w %u xf %u kind %d n %zu: no RANS_CTX plane", w, xf, kinds[k], n);
                    if (sa != sb || memcmp(a, b, sa))
                        fail_msg("w %u xf %u kind %d n %zu: scalar and AVX2 tiles differ", w, xf,
                                 kinds[k], n);
                    decode_check(b, sb, src, n * w, NULL);
                    free(a);
                    free(b);
                    free(src);
                }
}

/* The context plane in each of its modes: rANS (tile or shared table),
 * RAW (noise), CONST (RANS_CTX cannot pay: never chosen). */
static void test_context_plane_modes(void **state)
{
    (void)state;
    const size_t n = 40000;
    for (unsigned w = 2; w <= 4; w += 2) {
        uint8_t *src = ctx_data(n, w, RFS_XF_NONE, CP_TWO_CLASSES, g_seed ^ 3);
        rfs_table tab[RFS_MAX_WIDTH];
        rfs_table_set set;
        tu_table_set(&set, tab, src, n, w, RFS_XF_NONE);
        const rfs_table_set *sets[2] = {NULL, &set};
        for (unsigned s = 0; s < 2; s++) {
            size_t size = 0;
            rfs_tile_params p = {.width = w, .transform = RFS_XF_NONE, .shared = sets[s], .ctx = 1};
            uint8_t *enc = encode(src, n * w, &p, &size);
            assert_true(rfs_tile_uses_ctx(enc, size));
            unsigned cm = enc[DESC(w - 1)];
            assert_int_equal(cm, s ? RFS_PM_RANS_SHARED : RFS_PM_RANS_TILE);
            decode_check(enc, size, src, n * w, sets[s]);
            free(enc);
        }
        free(src);
        src = ctx_data(n, w, RFS_XF_NONE, CP_RANDOM, g_seed ^ 5);
        size_t size = 0;
        rfs_tile_params p = {.width = w, .transform = RFS_XF_NONE, .ctx = 1};
        uint8_t *enc = encode(src, n * w, &p, &size);
        decode_check(enc, size, src, n * w, NULL);
        assert_int_equal(enc[DESC(w - 1)], RFS_PM_RAW);
        free(enc);
        free(src);
        src = ctx_data(n, w, RFS_XF_NONE, CP_CONST, g_seed ^ 9);
        enc = encode(src, n * w, &p, &size);
        assert_int_equal(enc[DESC(w - 1)], RFS_PM_CONST);
        assert_false(rfs_tile_uses_ctx(enc, size));
        decode_check(enc, size, src, n * w, NULL);
        free(enc);
        free(src);
    }
}

/* Without .ctx the encoder writes tile format 1 only, and RANS_CTX makes
 * the tile smaller where it is chosen. */
static void test_ctx_off(void **state)
{
    (void)state;
    const size_t n = 65536;
    for (unsigned w = 2; w <= 4; w += 2) {
        uint8_t *src = ctx_data(n, w, RFS_XF_ROT1, CP_TWO_CLASSES, g_seed ^ 13);
        size_t s0 = 0, s1 = 0;
        rfs_tile_params p = {.width = w, .transform = RFS_XF_ROT1};
        uint8_t *e0 = encode(src, n * w, &p, &s0);
        p.ctx = 1;
        uint8_t *e1 = encode(src, n * w, &p, &s1);
        assert_false(rfs_tile_uses_ctx(e0, s0));
        assert_true(rfs_tile_uses_ctx(e1, s1));
        assert_true(s1 < s0);
        free(e0);
        free(e1);
        free(src);
    }
}

/* Decode buf (an exact-size heap copy, so ASan sees any overread) with
 * every backend; all must agree, and a success must give src.  Returns
 * the error code. */
static rfs_err decode_all(const uint8_t *buf, size_t size, const uint8_t *src, size_t bytes)
{
    uint8_t *copy = malloc(size ? size : 1);
    memcpy(copy, buf, size);
    uint8_t *out = malloc(bytes + 1);
    rfs_dec *d = rfs_dec_create(bytes);
    rfs_err first = RFS_OK;
    int k = 0;
    for (const char *const *b = tu_backends(); *b; b++, k++) {
        size_t got = 0;
        rfs_dec_set_backend(d, *b);
        rfs_err err = rfs_tile_decode(d, out, bytes, &got, copy, size, NULL);
        if (k == 0)
            first = err;
        else if (err != first)
            fail_msg("backend %s: %s, scalar: %s", *b, rfs_strerror(err), rfs_strerror(first));
        /* a flip may leave a valid tile (e.g. in a table's spare slack): it
         * must then decode to the same bytes on every backend; that they are
         * src is not required of corrupt input, only that all agree */
        if (err == RFS_OK && k == 0)
            assert_int_equal(got, bytes);
    }
    rfs_dec_destroy(d);
    free(copy);
    free(out);
    (void)src;
    return first;
}

/* Every truncation fails; single-byte damage in the RANS_CTX payload never
 * crashes and every backend agrees. */
static void test_damage(void **state)
{
    (void)state;
    const size_t n = 3000;
    for (unsigned w = 2; w <= 4; w += 2) {
        uint8_t *src = ctx_data(n, w, RFS_XF_ROT1, CP_TWO_CLASSES, g_seed ^ 17);
        size_t size = 0;
        rfs_tile_params p = {.width = w, .transform = RFS_XF_ROT1, .ctx = 1};
        uint8_t *enc = encode(src, n * w, &p, &size);
        assert_true(rfs_tile_uses_ctx(enc, size));
        assert_int_equal(decode_all(enc, size, src, n * w), RFS_OK);
        for (size_t cut = 0; cut < size; cut += 1 + cut / 64)
            assert_int_not_equal(decode_all(enc, cut, src, n * w), RFS_OK);
        tu_rng r = {g_seed ^ 19};
        uint8_t *bad = malloc(size);
        for (unsigned k = 0; k < 400; k++) {
            memcpy(bad, enc, size);
            size_t at = 8 + 8 * w + tu_next(&r) % (size - 8 - 8 * w);
            bad[at] ^= (uint8_t)(1u << (tu_next(&r) & 7));
            decode_all(bad, size, src, n * w);
        }
        free(bad);
        free(enc);
        free(src);
    }
}

/* A tile made by hand: W = 2, n elements, plane 1 CONST c1, plane 0 with
 * the given mode and payload. */
static size_t hand_tile(uint8_t *t, unsigned mode0, const uint8_t *pay, size_t pay_size)
{
    memset(t, 0, 24);
    t[0] = 2;
    t[2] = RFS_PROB_BITS;
    t[4] = 40; /* n */
    t[DESC(0)] = (uint8_t)mode0;
    t[DESC(0) + 4] = (uint8_t)pay_size;
    t[DESC(0) + 5] = (uint8_t)(pay_size >> 8);
    t[DESC(1)] = RFS_PM_CONST;
    t[DESC(1) + 1] = 0x7c;
    memcpy(t + 24, pay, pay_size);
    return 24 + pay_size;
}

/* What the format forbids of a RANS_CTX plane gives its error. */
static void test_rejects(void **state)
{
    (void)state;
    uint8_t t[1024], pay[512], buf[160];
    size_t got = 0, k = 0;
    rfs_dec *d = rfs_dec_create(4096);
    /* a valid payload by hand: threshold, two one-symbol tables, states */
    pay[k++] = 0x7c;
    for (unsigned c = 0; c < 2; c++) {
        memset(pay + k, 0, 32);
        pay[k] = 1; /* symbol 0 present */
        k += 32;
        pay[k++] = 0x90; /* 4096, two-byte form */
        pay[k++] = 0x00;
    }
    for (unsigned j = 0; j < RFS_LANES; j++) {
        memset(pay + k, 0, 4);
        pay[k + 1] = 0x80; /* L = 2^15 */
        k += 4;
    }
    size_t size = hand_tile(t, RFS_PM_RANS_CTX, pay, k);
    assert_true(rfs_tile_uses_ctx(t, size));
    assert_int_equal(rfs_tile_decode(d, buf, sizeof buf, &got, t, size, NULL), RFS_OK);
    assert_int_equal(got, 80);
    for (unsigned i = 0; i < 40; i++)
        assert_true(buf[2 * i] == 0 && buf[2 * i + 1] == 0x7c);
    /* threshold 0 */
    pay[0] = 0;
    size = hand_tile(t, RFS_PM_RANS_CTX, pay, k);
    assert_int_equal(rfs_tile_decode(d, buf, sizeof buf, &got, t, size, NULL), RFS_E_HEADER);
    pay[0] = 0x7c;
    /* a table that does not sum to 4096 */
    pay[34] = 0x01;
    size = hand_tile(t, RFS_PM_RANS_CTX, pay, k);
    assert_int_equal(rfs_tile_decode(d, buf, sizeof buf, &got, t, size, NULL), RFS_E_TABLE);
    pay[34] = 0x00;
    /* truncated inside the tables; an odd stream */
    size = hand_tile(t, RFS_PM_RANS_CTX, pay, 40);
    assert_int_equal(rfs_tile_decode(d, buf, sizeof buf, &got, t, size, NULL), RFS_E_TRUNCATED);
    size = hand_tile(t, RFS_PM_RANS_CTX, pay, k + 1);
    assert_int_equal(rfs_tile_decode(d, buf, sizeof buf, &got, t, size, NULL), RFS_E_TRAILING);
    /* RANS_CTX on plane W-1 (the context itself), and on a W = 1 tile */
    size = hand_tile(t, RFS_PM_RANS_CTX, pay, k);
    t[DESC(0)] = RFS_PM_CONST;
    t[DESC(0) + 4] = t[DESC(0) + 5] = 0;
    t[DESC(1)] = RFS_PM_RANS_CTX;
    t[DESC(1) + 1] = 0;
    assert_int_equal(rfs_tile_decode(d, buf, sizeof buf, &got, t, 24, NULL), RFS_E_HEADER);
    uint8_t w1[16 + 512] = {1, 0, RFS_PROB_BITS, 0, 40, 0, 0, 0, RFS_PM_RANS_CTX};
    w1[12] = (uint8_t)k;
    w1[13] = (uint8_t)(k >> 8);
    memcpy(w1 + 16, pay, k);
    assert_int_equal(rfs_tile_decode(d, buf, sizeof buf, &got, w1, 16 + k, NULL), RFS_E_HEADER);
    rfs_dec_destroy(d);
}

int main(void)
{
    g_seed = tu_seed("codec_tile_ctx");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip), cmocka_unit_test(test_context_plane_modes),
        cmocka_unit_test(test_ctx_off),   cmocka_unit_test(test_damage),
        cmocka_unit_test(test_rejects),   cmocka_unit_test(test_encoder_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
