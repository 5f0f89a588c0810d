/*
 * ransfs_tensors.c - libransfs: the tensors of a safetensors file in an
 * image, and their parallel decode into host memory (see ransfs.h).
 *
 * Design: a call's byte ranges are cut into pieces at the image's span
 * boundaries (one coded unit, or one stored extent, each) and the pieces
 * grouped by unit, so each unit is decoded once however many tensors share
 * it (small tensors share zstd blocks): a unit that lies wholly in one
 * tensor decodes straight into the caller's buffer, any other once into the
 * worker's scratch and is copied out to each piece.  Workers (the caller
 * plus threads - 1 pool threads started for this call) take work items from
 * one atomic counter, each with its own decode context; the first error
 * stops them all.  A work item is one group or, where there are groups
 * enough to keep every worker busy (rfs_pool_pairs), two neighbours: two
 * whole units then decode in one rfs_image_unit_decode2 call (on the
 * AVX-512 VBMI backend two tiles in lockstep).
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rfs_pool.h"
#include "rfs_safetensors.h"
#include "ransfs_internal.h"

/* ------------------------------------------------------- tensors (list) */

/* The first need bytes of file ino into a new buffer (*out, caller frees). */
static ransfs_err file_head(ransfs *img, uint64_t ino, size_t need, uint8_t **out)
{
    uint8_t *buf = malloc(need ? need : 1);
    rfs_rctx *ctx = rfs_lib_ctx_get(img);
    size_t got = 0;
    rfs_err err = RFS_E_NOMEM;
    if (buf && ctx)
        err = rfs_image_read(img->img, ctx, ino, 0, need, buf, &got);
    rfs_lib_ctx_put(img, ctx);
    if (err == RFS_OK && got != need)
        err = RFS_E_CORRUPT; /* the image said the file is longer */
    if (err) {
        free(buf);
        return rfs_lib_err(err);
    }
    *out = buf;
    return RANSFS_OK;
}

/* Parse the safetensors header of file ino (size bytes) into h. */
static ransfs_err header_load(ransfs *img, uint64_t ino, uint64_t size, rfs_st_header *h)
{
    uint8_t first[8], *head = NULL;
    if (size < 8)
        return RANSFS_E_NOT_SAFETENSORS;
    ransfs_err err = file_head(img, ino, 8, &head);
    if (err)
        return err;
    memcpy(first, head, 8);
    free(head);
    uint64_t need = rfs_st_head_size(first, size);
    if (need - 8 > RFS_ST_SNIFF_MAX) /* the format's own header limit */
        return RANSFS_E_NOT_SAFETENSORS;
    if ((err = file_head(img, ino, (size_t)need, &head)))
        return err;
    char why[256];
    int rc = rfs_st_parse(h, head, size, why, sizeof why);
    free(head);
    return rc ? RANSFS_E_NOT_SAFETENSORS : RANSFS_OK;
}

/* One list block: the array, then every name. */
static ransfs_err list_build(const rfs_st_header *h, ransfs_tensor **list)
{
    size_t names = 0;
    for (size_t i = 0; i < h->n; i++) {
        if (h->t[i].ndim > 8 || strlen(h->t[i].dtype) >= sizeof(*list)->dtype)
            return RANSFS_E_UNSUPPORTED;
        names += strlen(h->t[i].name) + 1;
    }
    ransfs_tensor *l = calloc(1, h->n * sizeof *l + names);
    if (!l)
        return RANSFS_E_NOMEM;
    char *p = (char *)(l + h->n);
    for (size_t i = 0; i < h->n; i++) {
        const rfs_st_tensor *s = &h->t[i];
        size_t len = strlen(s->name) + 1;
        memcpy(p, s->name, len);
        l[i].name = p;
        p += len;
        strcpy(l[i].dtype, s->dtype);
        l[i].ndim = s->ndim;
        memcpy(l[i].shape, s->dims, s->ndim * sizeof s->dims[0]);
        l[i].offset = s->begin;
        l[i].size = s->end - s->begin;
    }
    *list = l;
    return RANSFS_OK;
}

ransfs_err ransfs_tensors(ransfs *img, const char *path, ransfs_tensor **list, size_t *n)
{
    if (!img || !path || !list || !n)
        return RANSFS_E_INVAL;
    uint64_t ino, size;
    rfs_st_header h;
    ransfs_err err = rfs_lib_resolve_file(img, path, &ino, &size);
    if (err || (err = header_load(img, ino, size, &h)))
        return err;
    ransfs_tensor *l = NULL;
    if (h.n && (err = list_build(&h, &l)) != RANSFS_OK) {
        rfs_st_free(&h);
        return err;
    }
    *list = l;
    *n = h.n;
    rfs_st_free(&h);
    return RANSFS_OK;
}

void ransfs_tensors_free(ransfs_tensor *list, size_t n)
{
    (void)n; /* one block: the array and its names */
    free(list);
}

/* ------------------------------------------------------- ranges (check) */

ransfs_err rfs_lib_ranges_check(const ransfs *img, const char *path, const ransfs_tensor *t,
                               size_t n, void *const *dst, uint64_t *ino)
{
    if (!img || !path || (n && (!t || !dst)))
        return RANSFS_E_INVAL;
    uint64_t size;
    ransfs_err err = rfs_lib_resolve_file(img, path, ino, &size);
    if (err)
        return err;
    for (size_t i = 0; i < n; i++) {
        if (t[i].size && !dst[i])
            return RANSFS_E_INVAL;
        if (t[i].offset > size || t[i].size > size - t[i].offset)
            return RANSFS_E_RANGE;
    }
    return RANSFS_OK;
}

/* --------------------------------------------------------- read (host) */

/* A byte range of one tensor that lies in one span of the file. */
typedef struct piece {
    size_t tensor;
    uint64_t off; /* file offset */
    uint64_t len;
    int is_raw;
    uint64_t unit; /* coded span: its unit, where in it, its size */
    uint32_t unit_off, unit_size;
} piece;

typedef struct job {
    ransfs *img;
    uint64_t ino;
    const ransfs_tensor *t;
    void *const *dst;
    piece *p;
    size_t n_pieces;
    size_t *group;  /* work items: pieces group[g] .. group[g + 1] - 1 share one unit */
    size_t n_groups;
    size_t pairs;   /* work items: n_groups - pairs (rfs_pool_pair_item) */
    size_t scratch; /* bytes of a worker's scratch: the largest unit */
    atomic_size_t next;
    atomic_int err; /* the first ransfs_err, RANSFS_OK while none */
} job;

/* Append the pieces of range [off, off + len) of tensor ti. */
static ransfs_err pieces_add(job *j, size_t *cap, size_t ti, uint64_t off, uint64_t len)
{
    while (len > 0) {
        rfs_span sp;
        rfs_err e = rfs_image_map(j->img->img, j->ino, off, &sp);
        if (e)
            return rfs_lib_err(e);
        uint64_t n = sp.length < len ? sp.length : len;
        if (j->n_pieces == *cap) {
            size_t c = *cap ? 2 * *cap : 64;
            piece *p = realloc(j->p, c * sizeof *p);
            if (!p)
                return RANSFS_E_NOMEM;
            j->p = p;
            *cap = c;
        }
        j->p[j->n_pieces++] = (piece){ti, off, n, sp.is_raw, sp.unit, sp.unit_off, sp.unit_size};
        off += n;
        len -= n;
    }
    return RANSFS_OK;
}

/* Coded pieces by unit, so the pieces of one unit (several small tensors in
 * one zstd block, or overlapping ranges) are neighbours and it is decoded
 * once; stored pieces after them, in their order. */
static int piece_cmp(const void *a, const void *b)
{
    const piece *x = a, *y = b;
    if (x->is_raw != y->is_raw)
        return x->is_raw - y->is_raw;
    uint64_t kx = x->is_raw ? x->off : x->unit, ky = y->is_raw ? y->off : y->unit;
    if (kx != ky)
        return kx < ky ? -1 : 1;
    if (x->tensor != y->tensor)
        return x->tensor < y->tensor ? -1 : 1;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Sort the pieces and cut them into groups (one unit, or one stored span). */
static ransfs_err groups_make(job *j)
{
    if (j->n_pieces)
        qsort(j->p, j->n_pieces, sizeof *j->p, piece_cmp);
    j->group = malloc((j->n_pieces + 1) * sizeof *j->group);
    if (!j->group)
        return RANSFS_E_NOMEM;
    for (size_t i = 0; i < j->n_pieces; i++)
        if (i == 0 || j->p[i].is_raw || j->p[i - 1].is_raw || j->p[i].unit != j->p[i - 1].unit)
            j->group[j->n_groups++] = i;
    j->group[j->n_groups] = j->n_pieces;
    return RANSFS_OK;
}

static void job_fail(job *j, ransfs_err err)
{
    int none = RANSFS_OK;
    atomic_compare_exchange_strong(&j->err, &none, (int)err);
}

static uint8_t *piece_dst(const job *j, const piece *p)
{
    return (uint8_t *)j->dst[p->tensor] + (p->off - j->t[p->tensor].offset);
}

/* The one piece of group g when it is a whole coded unit that lies in one
 * tensor (decoded straight into the caller's memory), else NULL. */
static const piece *group_direct(const job *j, size_t g)
{
    const piece *p = &j->p[j->group[g]];
    if (j->group[g + 1] - j->group[g] != 1 || p->is_raw || p->unit_off != 0 ||
        p->len != p->unit_size)
        return NULL;
    return p;
}

/* Decode group g: a whole unit straight into its one tensor's memory, else
 * once into scratch and copied out to every piece of it. */
static rfs_err group_run(const job *j, rfs_rctx *ctx, uint8_t *scratch, size_t g)
{
    const piece *p = &j->p[j->group[g]], *end = &j->p[j->group[g + 1]];
    size_t got = 0;
    if (p->is_raw) {
        rfs_err e = rfs_image_read(j->img->img, ctx, j->ino, p->off, (size_t)p->len,
                                   piece_dst(j, p), &got);
        return e ? e : got != p->len ? RFS_E_CORRUPT : RFS_OK;
    }
    if (group_direct(j, g))
        return rfs_image_unit_decode(j->img->img, ctx, p->unit, piece_dst(j, p), (size_t)p->len,
                                     &got);
    rfs_err e = rfs_image_unit_decode(j->img->img, ctx, p->unit, scratch, j->scratch, &got);
    if (e == RFS_OK && got != p->unit_size)
        e = RFS_E_CORRUPT;
    for (; e == RFS_OK && p < end; p++)
        memcpy(piece_dst(j, p), scratch + p->unit_off, (size_t)p->len);
    return e;
}

/* Work item i: one group, or two; two whole units into tensor memory in one
 * rfs_image_unit_decode2 call.  Each group's error counts, the first's
 * first. */
static void item_run(job *j, rfs_rctx *ctx, uint8_t *scratch, size_t i)
{
    size_t count, g = rfs_pool_pair_item(j->pairs, i, &count);
    const piece *d[2] = {group_direct(j, g), count == 2 ? group_direct(j, g + 1) : NULL};
    rfs_err e[2] = {RFS_OK, RFS_OK};
    if (d[0] && d[1]) {
        rfs_unit_io io[2];
        for (unsigned k = 0; k < 2; k++)
            io[k] = (rfs_unit_io){.unit = d[k]->unit, .dst = piece_dst(j, d[k]),
                                  .dst_cap = (size_t)d[k]->len};
        rfs_image_unit_decode2(j->img->img, ctx, io);
        e[0] = io[0].err;
        e[1] = io[1].err;
    } else {
        for (size_t k = 0; k < count; k++)
            e[k] = group_run(j, ctx, scratch, g + k);
    }
    for (size_t k = 0; k < count; k++)
        if (e[k])
            job_fail(j, rfs_lib_err(e[k]));
}

/* One worker: work items from the shared counter until none is left or
 * one failed.  Item and worker index are unused: every item is a worker. */
static void job_run(void *arg, unsigned worker, size_t item)
{
    job *j = arg;
    (void)worker;
    (void)item;
    rfs_rctx *ctx = rfs_lib_ctx_get(j->img);
    uint8_t *scratch = malloc(j->scratch);
    if (!ctx || !scratch)
        job_fail(j, RANSFS_E_NOMEM);
    while (ctx && scratch) {
        size_t i = atomic_fetch_add(&j->next, 1);
        if (i >= j->n_groups - j->pairs || atomic_load(&j->err) != RANSFS_OK)
            break;
        item_run(j, ctx, scratch, i);
    }
    free(scratch);
    rfs_lib_ctx_put(j->img, ctx);
}

static unsigned threads_pick(int threads, size_t n_items)
{
    long n = threads > 0 ? threads : sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    if ((size_t)n > n_items)
        n = n_items ? (long)n_items : 1;
    return (unsigned)n;
}

ransfs_err ransfs_read_tensors(ransfs *img, const char *path, const ransfs_tensor *t, size_t n,
                               void *const *dst, int threads)
{
    job j = {.img = img, .t = t, .dst = dst};
    size_t cap = 0;
    ransfs_err err = rfs_lib_ranges_check(img, path, t, n, dst, &j.ino);
    for (size_t i = 0; err == RANSFS_OK && i < n; i++)
        err = pieces_add(&j, &cap, i, t[i].offset, t[i].size);
    if (err == RANSFS_OK)
        err = groups_make(&j);
    if (err == RANSFS_OK && j.n_groups) {
        rfs_image_summary sum;
        rfs_image_get_summary(img->img, &sum);
        j.scratch = sum.unit_max ? sum.unit_max : 1;
        atomic_init(&j.next, 0);
        atomic_init(&j.err, RANSFS_OK);
        unsigned nt = threads_pick(threads, j.n_groups);
        j.pairs = rfs_pool_pairs(j.n_groups, nt);
        /* A NULL pool (one thread, or none could start) runs it all here. */
        rfs_pool *pool = nt > 1 ? rfs_pool_create(nt - 1) : NULL;
        rfs_pool_for(pool, RFS_PRIO_HIGH, nt, job_run, &j);
        rfs_pool_destroy(pool);
        err = (ransfs_err)atomic_load(&j.err);
    }
    free(j.group);
    free(j.p);
    return err;
}
