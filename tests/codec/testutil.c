/*
 * testutil.c - see testutil.h.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "testutil.h"

uint64_t tu_next(tu_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545F4914F6CDD1DULL;
}

double tu_gauss(tu_rng *r)
{
    double u1 = ((double)(tu_next(r) >> 11) + 1.0) / 9007199254740993.0;
    double u2 = (double)(tu_next(r) >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}


static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

uint16_t tu_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40); /* quiet NaN, keep sign */
    u += 0x7fffu + ((u >> 16) & 1u);         /* round to nearest even */
    return (uint16_t)(u >> 16);
}

uint16_t tu_f32_to_fp16(float f)
{
    _Float16 h = (_Float16)f; /* round to nearest even */
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}

const char *const *tu_backends(void)
{
    const char *const *all = rfs_dec_backend_names();
    static const char *have[8];
    unsigned k = 0;
    for (unsigned i = 0; all[i] && k + 1 < sizeof have / sizeof have[0]; i++)
        if (rfs_cpu_supports(all[i]))
            have[k++] = all[i];
    have[k] = NULL;
    return have;
}

size_t tu_roundtrip(const void *src, size_t size, unsigned w, rfs_transform xf,
                    const rfs_table_set *shared)
{
    size_t cap = rfs_tile_bound(size, w), enc_size = 0;
    uint8_t *enc = malloc(cap);
    uint8_t *out = malloc(size ? size : 1);
    assert_non_null(enc);
    assert_non_null(out);
    rfs_enc *e = rfs_enc_create(size);
    rfs_dec *d = rfs_dec_create(size);
    assert_non_null(e);
    assert_non_null(d);
    rfs_tile_params p = {.width = w, .transform = xf, .shared = shared};
    assert_int_equal(rfs_tile_encode(e, enc, cap, &enc_size, src, size, &p), RFS_OK);
    assert_true(enc_size <= cap);
    for (const char *const *b = tu_backends(); *b; b++) {
        size_t got = 0;
        assert_int_equal(rfs_dec_set_backend(d, *b), RFS_OK);
        memset(out, 0xa5, size);
        rfs_err err = rfs_tile_decode(d, out, size, &got, enc, enc_size, shared);
        if (err != RFS_OK)
            fail_msg("backend %s: %s (size %zu w %u)", *b, rfs_strerror(err), size, w);
        assert_int_equal(got, size);
        if (size && memcmp(out, src, size) != 0)
            fail_msg("backend %s: bytes differ (size %zu w %u)", *b, size, w);
    }
    rfs_enc_destroy(e);
    rfs_dec_destroy(d);
    free(enc);
    free(out);
    return enc_size;
}

uint8_t *tu_read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(len > 0 ? (size_t)len : 1);
    if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *size = (size_t)len;
    return buf;
}

uint8_t *tu_must_read_file(const char *path, size_t *size)
{
    uint8_t *b = tu_read_file(path, size);
    assert_non_null(b);
    return b;
}

void tu_must_write_file(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, size, f), size);
    assert_int_equal(fclose(f), 0);
}

float *tu_load_safetensors_f32(const char *path, size_t *n)
{
    size_t size = 0;
    uint8_t *file = tu_read_file(path, &size);
    if (!file || size < 8) {
        free(file);
        return NULL;
    }
    uint64_t hlen = 0;
    memcpy(&hlen, file, 8);
    float *out = NULL;
    cJSON *root = hlen <= size - 8 ? cJSON_ParseWithLength((const char *)file + 8, hlen) : NULL;
    size_t total = 0;
    const uint8_t *data = file + 8 + hlen;
    size_t data_size = root ? size - 8 - hlen : 0;
    out = malloc(size);
    for (cJSON *t = root ? root->child : NULL; t && out; t = t->next) {
        cJSON *dt = cJSON_GetObjectItem(t, "dtype");
        cJSON *off = cJSON_GetObjectItem(t, "data_offsets");
        if (!cJSON_IsString(dt) || strcmp(dt->valuestring, "F32") || cJSON_GetArraySize(off) != 2)
            continue;
        size_t a = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble;
        size_t b = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
        if (a > b || b > data_size)
            continue;
        memcpy(out + total, data + a, b - a);
        total += (b - a) / 4;
    }
    cJSON_Delete(root);
    free(file);
    if (!total) {
        free(out);
        return NULL;
    }
    *n = total;
    return out;
}

void tu_table_set(rfs_table_set *set, rfs_table tab[RFS_MAX_WIDTH], const void *src, size_t n,
                  unsigned w, rfs_transform xf)
{
    memset(set, 0, sizeof(*set));
    for (unsigned p = 0; p < w; p++) {
        uint64_t counts[256] = {0};
        rfs_plane_histogram(counts, src, n, w, xf, p);
        if (rfs_table_from_counts(&tab[p], counts) == RFS_OK)
            set->plane[p] = &tab[p];
    }
}
