/*
 * Untrusted input: truncated and bit-flipped tiles never crash (ASan builds
 * check every access), every backend agrees on the outcome, and each kind
 * of damage the format names gives its error code.
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

typedef struct tile {
    uint8_t *enc;
    size_t size;
    uint8_t *src;
    size_t src_size;
} tile;

/* A bf16 gaussian tile whose exponent plane is RANS_TILE. */
static tile make_tile(size_t n, unsigned w)
{
    tile t;
    tu_rng r = {g_seed};
    t.src_size = n * w;
    t.src = malloc(t.src_size + 1);
    for (size_t i = 0; i < n; i++) {
        float f = (float)(tu_gauss(&r) * 0.02);
        uint16_t b = tu_f32_to_bf16(f);
        if (w == 2)
            memcpy(t.src + 2 * i, &b, 2);
        else if (w == 4)
            memcpy(t.src + 4 * i, &f, 4);
        else
            t.src[i] = (uint8_t)(b >> 8);
    }
    rfs_enc *e = rfs_enc_create(t.src_size);
    t.enc = malloc(rfs_tile_bound(t.src_size, w) + 16);
    rfs_tile_params p = {.width = w, .transform = w > 1 ? RFS_XF_ROT1 : RFS_XF_NONE};
    assert_int_equal(rfs_tile_encode(e, t.enc, rfs_tile_bound(t.src_size, w), &t.size, t.src,
                                     t.src_size, &p),
                     RFS_OK);
    rfs_enc_destroy(e);
    return t;
}

/* Decode buf (an exact-size heap copy, so ASan sees any overread) with
 * every backend; all must agree.  Returns the error code. */
static rfs_err decode_all(const uint8_t *buf, size_t size, const tile *t)
{
    uint8_t *copy = malloc(size ? size : 1);
    memcpy(copy, buf, size);
    uint8_t *out = malloc(t->src_size ? t->src_size : 1), *first = malloc(t->src_size + 1);
    rfs_dec *d = rfs_dec_create(t->src_size);
    rfs_err first_err = RFS_OK;
    size_t first_got = 0;
    int k = 0;
    for (const char *const *b = tu_backends(); *b; b++, k++) {
        size_t got = 0;
        rfs_dec_set_backend(d, *b);
        rfs_err err = rfs_tile_decode(d, out, t->src_size, &got, copy, size, NULL);
        if (k == 0) {
            first_err = err;
            first_got = got;
            memcpy(first, out, t->src_size);
        } else {
            if (err != first_err)
                fail_msg("backend %s: %s, scalar: %s", *b, rfs_strerror(err),
                         rfs_strerror(first_err));
            if (err == RFS_OK && (got != first_got || memcmp(out, first, got)))
                fail_msg("backend %s decodes differently from scalar", *b);
        }
    }
    rfs_dec_destroy(d);
    free(copy);
    free(out);
    free(first);
    return first_err;
}

static void test_truncations(void **state)
{
    (void)state;
    static const unsigned widths[] = {1, 2, 4};
    for (unsigned wi = 0; wi < 3; wi++) {
        tile t = make_tile(1000, widths[wi]);
        assert_int_equal(decode_all(t.enc, t.size, &t), RFS_OK);
        for (size_t cut = 0; cut < t.size; cut++)
            assert_int_not_equal(decode_all(t.enc, cut, &t), RFS_OK);
        free(t.enc);
        free(t.src);
    }
}

static void test_flips(void **state)
{
    (void)state;
    tu_rng r = {g_seed ^ 7};
    tile t = make_tile(4096 + 17, 2);
    uint8_t *buf = malloc(t.size);
    unsigned errors = 0, ok = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, t.enc, t.size);
        int flips = 1 + (int)(tu_next(&r) % 4);
        for (int f = 0; f < flips; f++)
            buf[tu_next(&r) % t.size] ^= (uint8_t)(1u << (tu_next(&r) % 8));
        if (decode_all(buf, t.size, &t) == RFS_OK)
            ok++;
        else
            errors++;
    }
    printf("codec_tile_corrupt: 3000 flipped tiles: %u rejected, %u decoded (raw-plane flips)\n",
           errors, ok);
    assert_true(errors > 0);
    free(buf);
    free(t.enc);
    free(t.src);
}

/* Offset of plane p's payload in an encoded tile. */
static size_t payload_off(const uint8_t *enc, unsigned w, unsigned p)
{
    size_t off = 8 + 8 * w;
    for (unsigned q = 0; q < p; q++)
        off += (size_t)enc[8 + 8 * q + 4] | (size_t)enc[8 + 8 * q + 5] << 8 |
               (size_t)enc[8 + 8 * q + 6] << 16;
    return off;
}

static void set_size(uint8_t *enc, unsigned p, uint32_t size)
{
    memcpy(enc + 8 + 8 * p + 4, &size, 4);
}

static uint32_t get_size(const uint8_t *enc, unsigned p)
{
    uint32_t s;
    memcpy(&s, enc + 8 + 8 * p + 4, 4);
    return s;
}

static void test_error_codes(void **state)
{
    (void)state;
    tile t = make_tile(5000, 2);
    assert_int_equal(t.enc[8 + 8], RFS_PM_RANS_TILE); /* plane 1: exponent */
    size_t p1 = payload_off(t.enc, 2, 1), sz = t.size;
    uint8_t *b = malloc(sz + 8);
    size_t used = 0;
    rfs_table tab;
    assert_int_equal(rfs_table_parse(&tab, t.enc + p1, sz - p1, &used), RFS_OK);
    size_t st = p1 + used; /* initial states */

#define FRESH() memcpy(b, t.enc, sz)
    FRESH(); b[0] = 3;
    assert_int_equal(decode_all(b, sz, &t), RFS_E_HEADER);
    FRESH(); b[2] = 11;
    assert_int_equal(decode_all(b, sz, &t), RFS_E_HEADER);
    FRESH(); b[3] = 1;
    assert_int_equal(decode_all(b, sz, &t), RFS_E_HEADER);
    FRESH(); b[8 + 8] = 9;
    assert_int_equal(decode_all(b, sz, &t), RFS_E_HEADER);
    FRESH(); b[8 + 8] = RFS_PM_RANS_SHARED;
    assert_int_equal(decode_all(b, sz, &t), RFS_E_NO_SHARED);
    /* trailing byte after the last payload */
    FRESH(); b[sz] = 0;
    assert_int_equal(decode_all(b, sz + 1, &t), RFS_E_TRAILING);
    /* an extra word inside the stream */
    FRESH(); set_size(b, 1, get_size(b, 1) + 2); b[sz] = b[sz + 1] = 0;
    assert_int_equal(decode_all(b, sz + 2, &t), RFS_E_TRAILING);
    /* an odd stream length */
    FRESH(); set_size(b, 1, get_size(b, 1) + 1); b[sz] = 0;
    assert_int_equal(decode_all(b, sz + 1, &t), RFS_E_TRAILING);
    /* initial state below L, and at 2^31 */
    FRESH(); memset(b + st, 0, 4);
    assert_int_equal(decode_all(b, sz, &t), RFS_E_STATE);
    FRESH(); b[st + 3] = 0x80;
    assert_int_equal(decode_all(b, sz, &t), RFS_E_STATE);
    /* a table that does not sum: bump the first frequency */
    FRESH(); b[p1 + 32] = (uint8_t)(b[p1 + 32] < 127 ? b[p1 + 32] + 1 : b[p1 + 32] - 1);
    assert_int_equal(decode_all(b, sz, &t), RFS_E_TABLE);
    /* a stream missing its last words */
    FRESH(); set_size(b, 1, get_size(b, 1) - 64);
    rfs_err e = decode_all(b, sz - 64, &t);
    assert_true(e == RFS_E_OVERRUN || e == RFS_E_FINAL_STATE);
    /* a damaged word: the final states no longer match */
    FRESH(); b[sz - 200] ^= 0x40;
    e = decode_all(b, sz, &t);
    assert_true(e == RFS_E_FINAL_STATE || e == RFS_E_OVERRUN || e == RFS_E_TRAILING);
    /* RAW payload of the wrong size */
    FRESH(); set_size(b, 0, get_size(b, 0) - 1);
    assert_int_equal(decode_all(b, sz - 1, &t), RFS_E_HEADER);
#undef FRESH
    free(b);
    free(t.enc);
    free(t.src);
}

/* Tiles whose every plane is rANS-coded (quantised mantissas, some zeros),
 * so the multi-plane and fused SIMD paths run: damaged copies must give
 * the same error or bytes on every backend, clean ones the input. */
static void test_all_planes_rans(void **state)
{
    (void)state;
    static const size_t ns[] = {1, 31, 32, 33, 100, 1000, 4097, 16384};
    tu_rng r = {g_seed ^ 11};
    unsigned cases = 0;
    for (unsigned w = 1; w <= 4; w *= 2) {
        for (size_t ni = 0; ni < sizeof(ns) / sizeof(ns[0]); ni++) {
            size_t n = ns[ni];
            tile t;
            t.src_size = n * w;
            t.src = malloc(t.src_size);
            for (size_t i = 0; i < n; i++) {
                float f = (tu_next(&r) % 20) ? (float)(tu_gauss(&r) * 0.02) : 0.0f;
                uint32_t u;
                memcpy(&u, &f, 4);
                u &= 0xfff0f000u | (uint32_t)(tu_next(&r) % 3);
                uint16_t h = (uint16_t)(u >> 16);
                if (w == 4)
                    memcpy(t.src + 4 * i, &u, 4);
                else if (w == 2)
                    memcpy(t.src + 2 * i, &h, 2);
                else
                    t.src[i] = (uint8_t)(u >> 24);
            }
            for (unsigned xf = 0; xf < (w > 1 ? 2u : 1u); xf++) {
                rfs_enc *e = rfs_enc_create(t.src_size);
                size_t cap = rfs_tile_bound(t.src_size, w);
                t.enc = malloc(cap);
                rfs_tile_params p = {.width = w, .transform = (rfs_transform)xf};
                assert_int_equal(rfs_tile_encode(e, t.enc, cap, &t.size, t.src, t.src_size, &p),
                                 RFS_OK);
                rfs_enc_destroy(e);
                assert_int_equal(decode_all(t.enc, t.size, &t), RFS_OK);
                uint8_t *b = malloc(t.size);
                size_t hdr = 8 + 8 * w;
                for (int it = 0; it < 150; it++, cases++) {
                    memcpy(b, t.enc, t.size);
                    size_t size = t.size;
                    switch (tu_next(&r) % 3) {
                    case 0: b[tu_next(&r) % size] ^= (uint8_t)(1u << (tu_next(&r) % 8)); break;
                    case 1: size = tu_next(&r) % (size + 1); break;
                    default:
                        for (int z = 0; z < 3 && size > hdr; z++)
                            b[hdr + tu_next(&r) % (size - hdr)] = (uint8_t)tu_next(&r);
                    }
                    decode_all(b, size, &t);
                }
                free(b);
                free(t.enc);
            }
            free(t.src);
        }
    }
    printf("codec_tile_corrupt: %u damaged all-rANS tiles agree on every backend\n", cases);
}

int main(void)
{
    g_seed = tu_seed("codec_tile_corrupt");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_flips),
        cmocka_unit_test(test_error_codes),
        cmocka_unit_test(test_all_planes_rans),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
