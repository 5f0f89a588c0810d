/*
 * rfs_safetensors.c - safetensors header parser (see rfs_safetensors.h).
 */
#include "rfs_safetensors.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

static int fail(char *why, size_t why_cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_cap, fmt, ap);
    va_end(ap);
    return -1;
}

unsigned rfs_st_dtype_width(const char *dt)
{
    static const struct {
        const char *name;
        unsigned w;
    } tab[] = {{"BOOL", 1},    {"U8", 1},      {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1},
               {"I16", 2},     {"U16", 2},     {"F16", 2}, {"BF16", 2},    {"I32", 4},
               {"U32", 4},     {"F32", 4},     {"I64", 8}, {"U64", 8},     {"F64", 8}};
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (strcmp(dt, tab[i].name) == 0)
            return tab[i].w;
    return 0;
}

/* A JSON number that is a non-negative integer below 2^53 (exact in a double). */
static int json_u64(const cJSON *j, uint64_t *v)
{
    if (!cJSON_IsNumber(j))
        return 0;
    double d = j->valuedouble;
    if (!(d >= 0 && d < 9007199254740992.0) || d != (double)(uint64_t)d)
        return 0;
    *v = (uint64_t)d;
    return 1;
}

static int tensor_parse(rfs_st_tensor *t, const cJSON *e, uint64_t data_start,
                        uint64_t file_size, char *why, size_t why_cap)
{
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    uint64_t b, en;
    if (!cJSON_IsObject(e) || !cJSON_IsString(dt) || !cJSON_IsArray(shape) ||
        !cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
        !json_u64(cJSON_GetArrayItem(offs, 0), &b) || !json_u64(cJSON_GetArrayItem(offs, 1), &en))
        return fail(why, why_cap, "tensor '%s' lacks a valid dtype, shape or data_offsets",
                    e->string);
    if (en < b)
        return fail(why, why_cap, "tensor '%s': data_offsets [%llu, %llu] are unsorted (end < begin)",
                    e->string, (unsigned long long)b, (unsigned long long)en);
    if (en > file_size - data_start)
        return fail(why, why_cap, "tensor '%s': data_offsets [%llu, %llu] out of range (data is "
                    "%llu bytes)", e->string, (unsigned long long)b, (unsigned long long)en,
                    (unsigned long long)(file_size - data_start));
    t->name = strdup(e->string);
    t->dtype = strdup(dt->valuestring);
    t->ndim = (unsigned)cJSON_GetArraySize(shape);
    t->dims = calloc(t->ndim ? t->ndim : 1, sizeof *t->dims);
    if (!t->name || !t->dtype || !t->dims)
        return fail(why, why_cap, "out of memory");
    t->n_elems = 1;
    unsigned k = 0;
    for (const cJSON *d = shape->child; d; d = d->next, k++) {
        if (!json_u64(d, &t->dims[k]))
            return fail(why, why_cap, "tensor '%s': shape is not a list of integers", e->string);
        if (t->dims[k] && t->n_elems > UINT64_MAX / t->dims[k])
            return fail(why, why_cap, "tensor '%s': shape overflows", e->string);
        t->n_elems *= t->dims[k];
    }
    t->begin = data_start + b;
    t->end = data_start + en;
    unsigned w = rfs_st_dtype_width(t->dtype);
    if (w && (t->n_elems > UINT64_MAX / w || t->n_elems * w != en - b))
        return fail(why, why_cap, "tensor '%s': %llu bytes do not match shape x %s", e->string,
                    (unsigned long long)(en - b), t->dtype);
    return 0;
}

static uint64_t header_len(const uint8_t *head)
{
    uint64_t n = 0;
    for (int i = 0; i < 8; i++)
        n |= (uint64_t)head[i] << (8 * i);
    return n;
}

uint64_t rfs_st_head_size(const uint8_t *head, uint64_t file_size)
{
    if (file_size < 8)
        return file_size;
    uint64_t n = header_len(head);
    return n <= file_size - 8 ? 8 + n : 8;
}

int rfs_st_sniff(const uint8_t *head, size_t head_len, uint64_t file_size)
{
    if (head_len < 9 || file_size < 10)
        return 0;
    uint64_t n = header_len(head);
    return n >= 2 && n <= RFS_ST_SNIFF_MAX && n <= file_size - 8 && head[8] == '{';
}

static int tensor_cmp(const void *a, const void *b)
{
    const rfs_st_tensor *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

int rfs_st_parse(rfs_st_header *h, const uint8_t *head, uint64_t file_size, char *why,
                 size_t why_cap)
{
    memset(h, 0, sizeof *h);
    if (file_size < 8)
        return fail(why, why_cap, "too short for a safetensors header (%llu bytes)",
                    (unsigned long long)file_size);
    uint64_t n = header_len(head);
    if (n > file_size - 8)
        return fail(why, why_cap, "safetensors header length %llu runs past the end of the file "
                    "(%llu bytes)", (unsigned long long)n, (unsigned long long)file_size);
    h->data_start = 8 + n;
    cJSON *root = cJSON_ParseWithLength((const char *)head + 8, (size_t)n);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return fail(why, why_cap, "safetensors header is not a valid JSON object");
    }
    int rc = 0;
    size_t cap = (size_t)cJSON_GetArraySize(root);
    h->t = calloc(cap ? cap : 1, sizeof *h->t);
    if (!h->t) {
        rc = fail(why, why_cap, "out of memory");
        goto out;
    }
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0)
            continue;
        if ((rc = tensor_parse(&h->t[h->n++], e, h->data_start, file_size, why, why_cap)))
            goto out;
    }
    qsort(h->t, h->n, sizeof *h->t, tensor_cmp);
    for (size_t i = 1; i < h->n; i++)
        if (h->t[i].begin < h->t[i - 1].end) {
            rc = fail(why, why_cap, "tensors '%s' and '%s' overlap", h->t[i - 1].name,
                      h->t[i].name);
            goto out;
        }
out:
    cJSON_Delete(root);
    if (rc)
        rfs_st_free(h); /* on failure the caller has nothing to free */
    return rc;
}

void rfs_st_free(rfs_st_header *h)
{
    for (size_t i = 0; i < h->n; i++) {
        free(h->t[i].name);
        free(h->t[i].dtype);
        free(h->t[i].dims);
    }
    free(h->t);
    memset(h, 0, sizeof *h);
}
