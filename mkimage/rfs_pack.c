/*
 * rfs_pack.c - plan, encode and write a ransfs image (see rfs_pack.h and
 * docs/format.md Part 2).
 *
 * Design note.  Phases, each either sequential or a parallel loop whose
 * items are independent, so the image never depends on the thread count:
 *   1. walk the tree and load every file (rfs_pack_tree.c);
 *   2. hash every file (parallel), then find identical files (sequential:
 *      sort by hash, confirm with memcmp);
 *   3. cut each distinct file into regions: safetensors tensors and raw
 *      tensor files become coded tensors, the rest blobs;
 *   4. analyse every tensor (parallel): hash, transform, shared tables from
 *      the whole-tensor histogram; find identical tensors (sequential);
 *   5. cut into chunks in file order and encode them in batches (parallel),
 *      writing each batch in chunk order (sequential);
 *   6. build extents and metadata, write them, then the superblock.
 * The image is a temporary file beside IMAGE, renamed at the end; on error
 * or on a signal it is unlinked.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zstd.h>

#include "rfs_image.h"
#include "rfs_image_format.h"
#include "rfs_pack_internal.h"
#include "rfs_safetensors.h"

/* ------------------------------------------------ temporary file, signals */

static char g_tmp_path[4096];
static volatile sig_atomic_t g_tmp_live;

void rfs_pack_cleanup_signal(void)
{
    if (g_tmp_live) {
        g_tmp_live = 0;
        unlink(g_tmp_path);
    }
}

static int tmp_create(pk_plan *p, int *fd)
{
    const char *img = p->o->image;
    if (strlen(img) + 16 > sizeof g_tmp_path)
        return pk_fail(p, "%s: path too long", img);
    snprintf(g_tmp_path, sizeof g_tmp_path, "%s.tmp.XXXXXX", img);
    *fd = mkstemp(g_tmp_path);
    if (*fd < 0)
        return pk_fail(p, "%s: cannot create the image: %s", img, strerror(errno));
    g_tmp_live = 1;
    mode_t um = umask(0);
    umask(um);
    fchmod(*fd, 0666 & ~um);
    struct stat sb;
    if (fstat(*fd, &sb) == 0) {
        p->skip_dev = sb.st_dev;
        p->skip_ino = sb.st_ino;
    }
    return 0;
}

/* ---------------------------------------------------------- parallel for */

typedef void (*pk_job_fn)(void *ctx, unsigned worker, size_t item);

typedef struct pk_par {
    pk_job_fn fn;
    void *ctx;
    size_t n;
    atomic_size_t next;
    unsigned worker;
} pk_par;

typedef struct pk_par_arg {
    pk_par *par;
    unsigned worker;
} pk_par_arg;

static void *par_main(void *arg)
{
    pk_par_arg *a = arg;
    size_t i;
    while ((i = atomic_fetch_add(&a->par->next, 1)) < a->par->n)
        a->par->fn(a->par->ctx, a->worker, i);
    return NULL;
}

/* fn(ctx, worker, i) for i in [0, n), on up to n_threads threads. */
static void pk_parallel(unsigned n_threads, size_t n, pk_job_fn fn, void *ctx)
{
    pk_par par = {.fn = fn, .ctx = ctx, .n = n};
    atomic_init(&par.next, 0);
    pthread_t th[256];
    pk_par_arg args[256];
    unsigned started = 0;
    if (n_threads > 256)
        n_threads = 256;
    for (unsigned t = 1; t < n_threads && t < n; t++) {
        args[started] = (pk_par_arg){&par, t};
        if (pthread_create(&th[started], NULL, par_main, &args[started]) != 0)
            break;
        started++;
    }
    pk_par_arg self = {&par, 0};
    par_main(&self);
    for (unsigned t = 0; t < started; t++)
        pthread_join(th[t], NULL);
}

/* ------------------------------------------------------ files and dedup */

static void file_hash_job(void *ctx, unsigned worker, size_t i)
{
    pk_file *f = &((pk_plan *)ctx)->files[i];
    f->hash = XXH3_128bits(f->data, f->size);
}

static int hash_cmp(XXH128_hash_t a, XXH128_hash_t b)
{
    if (a.high64 != b.high64)
        return a.high64 < b.high64 ? -1 : 1;
    if (a.low64 != b.low64)
        return a.low64 < b.low64 ? -1 : 1;
    return 0;
}

static pk_plan *g_sort_plan; /* qsort has no context argument in C11 */

static int file_order(const void *a, const void *b)
{
    const pk_file *x = &g_sort_plan->files[*(const size_t *)a];
    const pk_file *y = &g_sort_plan->files[*(const size_t *)b];
    int c = hash_cmp(x->hash, y->hash);
    if (c)
        return c;
    if (x->size != y->size)
        return x->size < y->size ? -1 : 1;
    return *(const size_t *)a < *(const size_t *)b ? -1 : 1;
}

static int files_dedup(pk_plan *p)
{
    size_t *idx = malloc((p->n_files ? p->n_files : 1) * sizeof *idx);
    if (!idx)
        return pk_fail(p, "out of memory");
    for (size_t i = 0; i < p->n_files; i++)
        idx[i] = i;
    g_sort_plan = p;
    qsort(idx, p->n_files, sizeof *idx, file_order);
    for (size_t i = 1; i < p->n_files; i++) {
        pk_file *a = &p->files[idx[i - 1]], *b = &p->files[idx[i]];
        size_t owner = a->dup_of >= 0 ? (size_t)a->dup_of : idx[i - 1];
        pk_file *o = &p->files[owner];
        if (b->size && !hash_cmp(a->hash, b->hash) && a->size == b->size &&
            memcmp(o->data, b->data, b->size) == 0) {
            b->dup_of = (int64_t)owner;
            p->st->dup_files++;
        }
    }
    free(idx);
    return 0;
}

/* ------------------------------------------------------------- regions */

static int region_add(pk_plan *p, pk_file *f, size_t *cap, uint64_t off, uint64_t len,
                      int64_t tensor)
{
    if (len == 0)
        return 0;
    if (tensor < 0 && f->n_reg && f->reg[f->n_reg - 1].tensor < 0) {
        f->reg[f->n_reg - 1].len += len; /* merge neighbouring blobs */
        return 0;
    }
    if (pk_grow(&f->reg, cap, f->n_reg, sizeof *f->reg))
        return pk_fail(p, "out of memory");
    f->reg[f->n_reg++] = (pk_region){.off = off, .len = len, .tensor = tensor};
    return 0;
}

static int dtype_code(const char *dt)
{
    static const char *const names[RFS_DT_COUNT] = {"",        "F16",     "BF16", "F32",
                                                     "F8_E4M3", "F8_E5M2", "I8",   "U8"};
    for (int i = 1; i < RFS_DT_COUNT; i++)
        if (strcmp(dt, names[i]) == 0)
            return i;
    return 0;
}

static int64_t tensor_add(pk_plan *p, pk_file *f, const char *name, int dtype, uint64_t off,
                          uint64_t len, unsigned ndim, const uint64_t *dims)
{
    if (pk_grow(&p->tensors, &p->cap_tensors, p->n_tensors, sizeof *p->tensors))
        return pk_fail(p, "out of memory");
    pk_tensor *t = &p->tensors[p->n_tensors];
    memset(t, 0, sizeof *t);
    t->file = (uint32_t)(f - p->files);
    t->name = strdup(name);
    t->ndim = ndim;
    t->dims = malloc((ndim ? ndim : 1) * sizeof *t->dims);
    if (!t->name || !t->dims)
        return pk_fail(p, "out of memory");
    memcpy(t->dims, dims, ndim * sizeof *dims);
    t->dtype = (uint8_t)dtype;
    t->width = (uint8_t)rfs_dtype_width((unsigned)dtype);
    t->off = off;
    t->len = len;
    t->n_elems = len / t->width;
    t->alias_of = -1;
    return (int64_t)p->n_tensors++;
}

/* A tensor worth coding: a known dtype, not tiny, a name that fits. */
static int tensor_codable(const rfs_st_tensor *t, int dtype)
{
    return dtype && t->end - t->begin >= RFS_PACK_MIN_TENSOR && strlen(t->name) <= 0xffff &&
           t->ndim <= 255;
}

static int regions_safetensors(pk_plan *p, pk_file *f, const char *path)
{
    rfs_st_header h;
    char why[512];
    size_t cap = 0;
    int rc = 0;
    if (rfs_st_parse(&h, f->data, f->size, why, sizeof why)) {
        rfs_st_free(&h);
        return pk_fail(p, "%s: %s", path, why);
    }
    uint64_t pos = 0;
    for (size_t i = 0; i < h.n && rc == 0; i++) {
        const rfs_st_tensor *t = &h.t[i];
        int dt = dtype_code(t->dtype);
        if (!tensor_codable(t, dt))
            continue;
        rc = region_add(p, f, &cap, pos, t->begin - pos, -1);
        int64_t k = rc ? -1 : tensor_add(p, f, t->name, dt, t->begin, t->end - t->begin, t->ndim,
                                         t->dims);
        if (k < 0 || region_add(p, f, &cap, t->begin, t->end - t->begin, k))
            rc = -1;
        pos = t->end;
    }
    if (rc == 0)
        rc = region_add(p, f, &cap, pos, f->size - pos, -1);
    rfs_st_free(&h);
    return rc;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The dtype a raw tensor file name announces, or 0. */
static int raw_tensor_dtype(const char *name)
{
    if (ends_with(name, ".fp16"))
        return RFS_DT_F16;
    if (ends_with(name, ".bf16"))
        return RFS_DT_BF16;
    if (ends_with(name, ".f32") || ends_with(name, ".fp32"))
        return RFS_DT_F32;
    return 0;
}

static int regions_plan(pk_plan *p, pk_file *f)
{
    const pk_node *n = &p->nodes[f->node];
    size_t cap = 0;
    if (f->dup_of >= 0 || f->size == 0)
        return 0;
    if (ends_with(n->name, ".safetensors"))
        return regions_safetensors(p, f, n->path);
    int dt = raw_tensor_dtype(n->name);
    if (!dt)
        return region_add(p, f, &cap, 0, f->size, -1);
    unsigned w = rfs_dtype_width((unsigned)dt);
    if (f->size % w)
        return pk_fail(p, "%s: size %llu is not a multiple of the %u-byte element of a %s file",
                       n->path, (unsigned long long)f->size, w, rfs_dtype_name((unsigned)dt));
    if (f->size < RFS_PACK_MIN_TENSOR)
        return region_add(p, f, &cap, 0, f->size, -1);
    uint64_t dim = f->size / w;
    int64_t k = tensor_add(p, f, n->name, dt, 0, f->size, 1, &dim);
    return k < 0 ? -1 : region_add(p, f, &cap, 0, f->size, k);
}

/* ------------------------------------------------------------- tensors */

typedef struct pk_tjob {
    pk_plan *p;
    atomic_int failed;
} pk_tjob;

/*
 * Histograms of all W byte planes of n transformed elements in one pass
 * (rfs_plane_histogram takes one pass per plane).  Plane p is byte p of
 * T(v), T as in docs/format.md 1.1.
 */
static void planes_histogram(uint64_t counts[RFS_MAX_WIDTH][256], const uint8_t *src, size_t n,
                             unsigned w, rfs_transform xf)
{
    uint32_t c[RFS_MAX_WIDTH][256];
    memset(c, 0, sizeof c);
    for (size_t i = 0; i < n;) {
        size_t end = n - i > (1u << 30) ? i + (1u << 30) : n; /* no uint32 overflow */
        if (w == 1) {
            for (; i < end; i++)
                c[0][src[i]]++;
        } else if (w == 2) {
            for (; i < end; i++) {
                uint32_t v = (uint32_t)src[2 * i] | (uint32_t)src[2 * i + 1] << 8;
                if (xf == RFS_XF_ROT1)
                    v = ((v << 1) | (v >> 15)) & 0xffffu;
                c[0][v & 0xff]++;
                c[1][v >> 8]++;
            }
        } else {
            for (; i < end; i++) {
                const uint8_t *e = src + 4 * i;
                uint32_t v = (uint32_t)e[0] | (uint32_t)e[1] << 8 | (uint32_t)e[2] << 16 |
                             (uint32_t)e[3] << 24;
                if (xf == RFS_XF_ROT1)
                    v = (v << 1) | (v >> 31);
                c[0][v & 0xff]++;
                c[1][(v >> 8) & 0xff]++;
                c[2][(v >> 16) & 0xff]++;
                c[3][v >> 24]++;
            }
        }
        for (unsigned p = 0; p < w; p++)
            for (int s = 0; s < 256; s++) {
                counts[p][s] += c[p][s];
                c[p][s] = 0;
            }
    }
}

static void tensor_analyse_job(void *ctx, unsigned worker, size_t i)
{
    pk_tjob *j = ctx;
    pk_plan *p = j->p;
    pk_tensor *t = &p->tensors[i];
    const uint8_t *src = p->files[t->file].data + t->off;
    t->hash = XXH3_128bits(src, t->len);
    t->xf = rfs_transform_choose(src, t->n_elems, t->width);
    t->n_tiles = (uint32_t)((t->len - 1) / p->o->tile_size + 1);
    if (t->n_tiles < 2 || p->o->raw_codec)
        return;
    uint64_t counts[RFS_MAX_WIDTH][256];
    memset(counts, 0, sizeof counts);
    planes_histogram(counts, src, t->n_elems, t->width, t->xf);
    for (unsigned pl = 0; pl < t->width && pl < RFS_MAX_WIDTH; pl++) {
        rfs_table *tab = malloc(sizeof *tab);
        if (!tab) {
            atomic_store(&j->failed, 1);
            return;
        }
        if (rfs_table_from_counts(tab, counts[pl]) != RFS_OK) {
            free(tab);
            continue;
        }
        t->tab[pl] = tab;
        t->set.plane[pl] = tab;
    }
}

static int tensor_order(const void *a, const void *b)
{
    const pk_tensor *x = &g_sort_plan->tensors[*(const size_t *)a];
    const pk_tensor *y = &g_sort_plan->tensors[*(const size_t *)b];
    int c = hash_cmp(x->hash, y->hash);
    if (c)
        return c;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    if (x->dtype != y->dtype)
        return x->dtype < y->dtype ? -1 : 1;
    return *(const size_t *)a < *(const size_t *)b ? -1 : 1;
}

static const uint8_t *tensor_bytes(const pk_plan *p, const pk_tensor *t)
{
    return p->files[t->file].data + t->off;
}

static int tensors_dedup(pk_plan *p)
{
    size_t *idx = malloc((p->n_tensors ? p->n_tensors : 1) * sizeof *idx);
    if (!idx)
        return pk_fail(p, "out of memory");
    for (size_t i = 0; i < p->n_tensors; i++)
        idx[i] = i;
    g_sort_plan = p;
    qsort(idx, p->n_tensors, sizeof *idx, tensor_order);
    for (size_t i = 1; i < p->n_tensors; i++) {
        pk_tensor *a = &p->tensors[idx[i - 1]], *b = &p->tensors[idx[i]];
        size_t owner = a->alias_of >= 0 ? (size_t)a->alias_of : idx[i - 1];
        pk_tensor *o = &p->tensors[owner];
        if (!hash_cmp(a->hash, b->hash) && a->len == b->len && a->dtype == b->dtype &&
            memcmp(tensor_bytes(p, o), tensor_bytes(p, b), b->len) == 0) {
            b->alias_of = (int64_t)owner;
            p->st->dup_tensors++;
        }
    }
    free(idx);
    return 0;
}

static int tensors_analyse(pk_plan *p)
{
    pk_tjob j = {.p = p};
    atomic_init(&j.failed, 0);
    pk_parallel(p->o->n_threads, p->n_tensors, tensor_analyse_job, &j);
    if (atomic_load(&j.failed))
        return pk_fail(p, "out of memory building frequency tables");
    return tensors_dedup(p);
}

/* -------------------------------------------------------------- chunks */

static int chunk_add(pk_plan *p, const uint8_t *src, uint32_t len, int64_t tensor)
{
    if (pk_grow(&p->chunks, &p->cap_chunks, p->n_chunks, sizeof *p->chunks))
        return pk_fail(p, "out of memory");
    p->chunks[p->n_chunks++] = (pk_chunk){.src = src, .len = len, .tensor = tensor};
    return 0;
}

/* Cut every distinct file's regions into chunks, in file order. */
static int chunks_plan(pk_plan *p)
{
    uint32_t ts = p->o->tile_size;
    for (size_t fi = 0; fi < p->n_files; fi++) {
        pk_file *f = &p->files[fi];
        for (size_t r = 0; r < f->n_reg; r++) {
            pk_region *g = &f->reg[r];
            pk_tensor *t = g->tensor >= 0 ? &p->tensors[g->tensor] : NULL;
            if (t && t->alias_of >= 0)
                continue;
            if (t)
                t->first_chunk = p->n_chunks;
            else
                g->first_chunk = p->n_chunks;
            for (uint64_t o = 0; o < g->len; o += ts) {
                uint32_t len = (uint32_t)(g->len - o < ts ? g->len - o : ts);
                if (chunk_add(p, f->data + g->off + o, len, g->tensor))
                    return -1;
            }
            if (!t)
                g->n_chunks = p->n_chunks - g->first_chunk;
        }
    }
    return 0;
}

/* ------------------------------------------------------------- encoding */

typedef struct pk_worker {
    rfs_enc *enc;
    ZSTD_CCtx *zc;
} pk_worker;

typedef struct pk_batch {
    pk_plan *p;
    pk_worker *w;
    uint8_t **out;     /* per slot: encoded bytes */
    size_t out_cap;
    uint64_t first;    /* chunk of slot 0 */
    atomic_int failed;
} pk_batch;

static void chunk_encode_job(void *ctx, unsigned worker, size_t slot)
{
    pk_batch *b = ctx;
    pk_plan *p = b->p;
    pk_chunk *c = &p->chunks[b->first + slot];
    pk_worker *w = &b->w[worker];
    uint8_t *out = b->out[slot];
    if (c->tensor >= 0) {
        const pk_tensor *t = &p->tensors[c->tensor];
        rfs_tile_params tp = {.width = t->width, .transform = t->xf,
                              .shared = t->n_tiles >= 2 ? &t->set : NULL,
                              .raw_only = p->o->raw_codec};
        size_t n = 0;
        if (rfs_tile_encode(w->enc, out, b->out_cap, &n, c->src, c->len, &tp) != RFS_OK)
            atomic_store(&b->failed, 1);
        c->out_len = (uint32_t)n;
        c->raw = 0;
        return;
    }
    size_t n = ZSTD_compressCCtx(w->zc, out, b->out_cap, c->src, c->len, p->o->zstd_level);
    c->raw = ZSTD_isError(n) || n >= c->len;
    c->out_len = c->raw ? c->len : (uint32_t)n;
}

int pk_write_all(pk_plan *p, int fd, const void *buf, size_t len)
{
    const uint8_t *b = buf;
    while (len) {
        ssize_t n = write(fd, b, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return pk_fail(p, "%s: write failed: %s", p->o->image, n < 0 ? strerror(errno) : "?");
        b += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Which planes of an encoded tile use the tensor's shared table. */
static uint8_t tile_shared_planes(const uint8_t *tile, unsigned w)
{
    uint8_t m = 0;
    for (unsigned pl = 0; pl < w; pl++)
        if (tile[RFS_TILE_HDR_SIZE + pl * RFS_PLANE_DESC_SIZE] == RFS_PM_RANS_SHARED)
            m |= (uint8_t)(1u << pl);
    return m;
}

static int chunk_write(pk_plan *p, pk_out *o, pk_chunk *c, const uint8_t *enc)
{
    c->img_off = o->pos;
    int rc = pk_write_all(p, o->fd, c->raw ? c->src : enc, c->out_len);
    if (rc)
        return rc;
    o->pos += c->out_len;
    int cls = c->tensor >= 0 ? p->tensors[c->tensor].dtype : 0;
    p->st->in_by_class[cls] += c->len;
    p->st->out_by_class[cls] += c->out_len;
    if (c->raw)
        return 0;
    if (pk_grow(&o->units, &o->cap_units, o->n_units, sizeof *o->units))
        return pk_fail(p, "out of memory");
    c->unit = o->n_units;
    o->units[o->n_units++] = (rfs_unit_rec){
        .off = c->img_off, .size = c->out_len, .decoded_size = c->len,
        .xxh3 = XXH3_64bits(enc, c->out_len),
        .kind = c->tensor >= 0 ? RFS_UNIT_TILE : RFS_UNIT_ZSTD,
        .tensor = RFS_IMG_NO_TENSOR};
    if (c->len > o->unit_max)
        o->unit_max = c->len;
    if (c->tensor >= 0) {
        pk_tensor *t = &p->tensors[c->tensor];
        if (c == &p->chunks[t->first_chunk])
            t->first_unit = c->unit;
        t->used_mask |= tile_shared_planes(enc, t->width);
    }
    return 0;
}

static int encode_all(pk_plan *p, pk_out *o)
{
    unsigned nt = p->o->n_threads;
    size_t slots = (size_t)nt * 8;
    pk_batch b = {.p = p};
    atomic_init(&b.failed, 0);
    b.out_cap = ZSTD_compressBound(p->o->tile_size);
    for (unsigned w = 1; w <= RFS_MAX_WIDTH; w *= 2)
        if (rfs_tile_bound(p->o->tile_size, w) > b.out_cap)
            b.out_cap = rfs_tile_bound(p->o->tile_size, w);
    b.w = calloc(nt, sizeof *b.w);
    b.out = calloc(slots, sizeof *b.out);
    int rc = (!b.w || !b.out) ? pk_fail(p, "out of memory") : 0;
    for (unsigned w = 0; rc == 0 && w < nt; w++) {
        b.w[w].enc = rfs_enc_create(p->o->tile_size);
        b.w[w].zc = ZSTD_createCCtx();
        if (!b.w[w].enc || !b.w[w].zc)
            rc = pk_fail(p, "out of memory");
    }
    for (size_t s = 0; rc == 0 && s < slots; s++)
        if (!(b.out[s] = malloc(b.out_cap)))
            rc = pk_fail(p, "out of memory");
    uint64_t total = 0, done = 0;
    for (size_t i = 0; i < p->n_chunks; i++)
        total += p->chunks[i].len;
    for (b.first = 0; rc == 0 && b.first < p->n_chunks; b.first += slots) {
        size_t n = p->n_chunks - b.first < slots ? p->n_chunks - b.first : slots;
        pk_parallel(nt, n, chunk_encode_job, &b);
        if (atomic_load(&b.failed)) {
            rc = pk_fail(p, "internal error: tile encoder failed");
            break;
        }
        for (size_t s = 0; rc == 0 && s < n; s++) {
            rc = chunk_write(p, o, &p->chunks[b.first + s], b.out[s]);
            done += p->chunks[b.first + s].len;
        }
        if (p->o->progress)
            p->o->progress(p->o->user, done, total);
    }
    for (unsigned w = 0; b.w && w < nt; w++) {
        rfs_enc_destroy(b.w[w].enc);
        ZSTD_freeCCtx(b.w[w].zc);
    }
    for (size_t s = 0; b.out && s < slots; s++)
        free(b.out[s]);
    free(b.w);
    free(b.out);
    return rc;
}

/* Units of tiles name their owning tensor record (the tensor's index). */
static void units_own(pk_plan *p, pk_out *o)
{
    for (size_t i = 0; i < p->n_tensors; i++) {
        pk_tensor *t = &p->tensors[i];
        if (t->alias_of >= 0) {
            t->first_unit = p->tensors[t->alias_of].first_unit;
            continue;
        }
        for (uint32_t k = 0; k < t->n_tiles; k++)
            o->units[t->first_unit + k].tensor = (uint32_t)i;
    }
}


/* --------------------------------------------------------------- driver */

static int opts_check(pk_plan *p)
{
    uint32_t ts = p->o->tile_size;
    if (ts < RFS_IMG_TILE_MIN || ts > RFS_IMG_TILE_MAX || (ts & (ts - 1)))
        return pk_fail(p, "tile size %u is not a power of two between 64 KiB and 4 MiB", ts);
    if (p->o->n_threads < 1)
        return pk_fail(p, "thread count must be at least 1");
    return 0;
}

static int plan_all(pk_plan *p)
{
    if (pk_tree_walk(p))
        return -1;
    pk_parallel(p->o->n_threads, p->n_files, file_hash_job, p);
    if (files_dedup(p))
        return -1;
    for (size_t i = 0; i < p->n_files; i++)
        if (regions_plan(p, &p->files[i]))
            return -1;
    if (tensors_analyse(p))
        return -1;
    return chunks_plan(p);
}

static void plan_free(pk_plan *p)
{
    for (size_t i = 0; i < p->n_tensors; i++) {
        pk_tensor *t = &p->tensors[i];
        free(t->name);
        free(t->dims);
        for (unsigned k = 0; k < RFS_MAX_WIDTH; k++)
            free(t->tab[k]);
    }
    free(p->tensors);
    free(p->chunks);
    pk_tree_free(p);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int image_finish(pk_plan *p, pk_out *o)
{
    int fd = o->fd;
    o->fd = -1;
    if (close(fd) != 0)
        return pk_fail(p, "%s: write failed: %s", p->o->image, strerror(errno));
    if (rename(g_tmp_path, p->o->image) != 0)
        return pk_fail(p, "%s: cannot rename the finished image into place: %s", p->o->image,
                       strerror(errno));
    g_tmp_live = 0;
    return 0;
}

int rfs_pack(const rfs_pack_opts *o, rfs_pack_stats *st, char *err, size_t err_cap)
{
    double t0 = now_seconds();
    memset(st, 0, sizeof *st);
    pk_plan p = {.o = o, .st = st, .err = err, .err_cap = err_cap};
    pk_out out = {.fd = -1};
    static const uint8_t zero_sb[RFS_IMG_SB_SIZE];
    int rc = opts_check(&p);
    if (rc == 0)
        rc = tmp_create(&p, &out.fd);
    if (rc == 0)
        rc = plan_all(&p);
    if (rc == 0)
        rc = pk_write_all(&p, out.fd, zero_sb, sizeof zero_sb);
    out.pos = RFS_IMG_SB_SIZE;
    if (rc == 0)
        rc = encode_all(&p, &out);
    if (rc == 0) {
        units_own(&p, &out);
        rc = pk_meta_write(&p, &out);
    }
    if (rc == 0)
        rc = image_finish(&p, &out);
    if (out.fd >= 0)
        close(out.fd);
    rfs_pack_cleanup_signal(); /* no-op after a successful rename */
    for (size_t i = 0; i < p.n_files; i++)
        st->input_bytes += p.files[i].size;
    st->image_bytes = out.pos;
    st->tensors = p.n_tensors;
    st->units = out.n_units;
    st->seconds = now_seconds() - t0;
    free(out.units);
    plan_free(&p);
    return rc;
}
