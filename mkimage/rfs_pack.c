/*
 * rfs_pack.c - plan a ransfs image and drive its writing (see rfs_pack.h and
 * docs/format.md Part 2).
 *
 * Design note.  The plan needs no file bytes but safetensors headers, so
 * each data byte is read once, by the stream (rfs_pack_stream.c):
 *   1. walk the tree, stat every file (rfs_pack_tree.c);
 *   2. identical files: only files whose size another file shares can be
 *      identical; those are hashed (parallel, streamed) and confirmed by a
 *      streamed compare; the earliest copy is kept;
 *   3. cut each distinct file into regions: safetensors tensors and raw
 *      tensor files become coded tensors, the rest blobs;
 *   4. cut regions into chunks in file order (tiles of tensors, zstd blocks
 *      of blobs);
 *   5. stream: read, analyse, encode and write every chunk in order;
 *   6. check that no source changed, then build and write the metadata and
 *      the superblock.
 * Where the image goes (a temporary file, renamed or copied at the end) is
 * rfs_pack_out.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zstd.h>

#include "rfs_image.h"
#include "rfs_image_format.h"
#include "rfs_pack_internal.h"
#include "rfs_safetensors.h"

/* ------------------------------------------------------ files and dedup */

/* Bytes of a file the first dedup pass hashes: files of one size that
 * differ almost always differ here, so only real copies are read whole.
 * On a directory of raw layer files (1,709 of 1,738 share a size with
 * another) that pass reads 7 MB instead of 26 MB. */
#define PK_DEDUP_HEAD 4096u

/* Stream the first len bytes of file f through XXH3-128 into f->hash (g
 * NULL), or compare them with file g's.  0 equal/hashed, 1 different, -1
 * error (err set). */
static int file_scan(pk_plan *p, pk_file *f, pk_file *g, uint64_t len, char *err, size_t cap)
{
    size_t blk = len < (1u << 20) ? (size_t)len + 1 : (1u << 20);
    int fd = -1, gd = -1, rc = -1;
    uint8_t *a = malloc(blk), *b = g ? malloc(blk) : NULL;
    XXH3_state_t *h = g ? NULL : XXH3_createState();
    if (!a || (g ? !b : !h)) {
        snprintf(err, cap, "out of memory");
        goto done;
    }
    if (pk_src_open(p, f, &fd, err, cap) || (g && pk_src_open(p, g, &gd, err, cap)))
        goto done;
    if (h)
        XXH3_128bits_reset(h);
    rc = 0;
    for (uint64_t off = 0; off < len && rc == 0; off += blk) {
        uint64_t n = len - off < blk ? len - off : blk;
        if (pk_src_read(p, f, fd, a, off, n, err, cap) ||
            (g && pk_src_read(p, g, gd, b, off, n, err, cap)))
            rc = -1;
        else if (g)
            rc = memcmp(a, b, n) != 0;
        else
            XXH3_128bits_update(h, a, n);
    }
    if (rc == 0 && h)
        f->hash = XXH3_128bits_digest(h);
done:
    if (fd >= 0)
        close(fd);
    if (gd >= 0)
        close(gd);
    XXH3_freeState(h);
    free(a);
    free(b);
    return rc;
}

typedef struct pk_hjob {
    pk_plan *p;
    size_t *idx;
    uint64_t head;   /* bytes to hash; UINT64_MAX: whole files */
    char (*err)[512];
} pk_hjob;

static void file_hash_job(void *ctx, unsigned worker, size_t i)
{
    (void)worker;
    pk_hjob *j = ctx;
    pk_file *f = &j->p->files[j->idx[i]];
    j->err[i][0] = '\0';
    file_scan(j->p, f, NULL, f->size < j->head ? f->size : j->head, j->err[i],
              sizeof j->err[i]);
}

/* Hash (the first head bytes of) files idx[0..n) in parallel. */
static int files_hash(pk_plan *p, size_t *idx, size_t n, uint64_t head)
{
    pk_hjob j = {.p = p, .idx = idx, .head = head, .err = malloc((n ? n : 1) * sizeof *j.err)};
    if (!j.err)
        return pk_fail(p, "out of memory");
    rfs_pool_for(p->pool, RFS_PRIO_HIGH, n, file_hash_job, &j);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (j.err[i][0])
            rc = pk_fail(p, "%s", j.err[i]);
    free(j.err);
    return rc;
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
static int g_sort_hash;      /* order by (size, hash, index) rather than (size, index) */

static int file_order(const void *a, const void *b)
{
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    const pk_file *x = &g_sort_plan->files[i], *y = &g_sort_plan->files[j];
    if (x->size != y->size)
        return x->size < y->size ? -1 : 1;
    int h = g_sort_hash ? hash_cmp(x->hash, y->hash) : 0;
    return h ? h : i < j ? -1 : 1;
}

static void files_sort(pk_plan *p, size_t *idx, size_t n, int by_hash)
{
    g_sort_plan = p;
    g_sort_hash = by_hash;
    qsort(idx, n, sizeof *idx, file_order);
}

/* Keep in idx[0..n) the files for which keep(f, g) holds with a neighbour
 * in idx's order: the new count. */
static size_t keep_pairs(pk_plan *p, size_t *idx, size_t n,
                         int (*keep)(const pk_file *f, const pk_file *g))
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const pk_file *f = &p->files[idx[i]];
        if ((i > 0 && keep(f, &p->files[idx[i - 1]])) ||
            (i + 1 < n && keep(f, &p->files[idx[i + 1]])))
            idx[m++] = idx[i];
    }
    return m;
}

static int same_size(const pk_file *f, const pk_file *g)
{
    return f->size && f->size == g->size;
}

/* Same size and the same hash of the first PK_DEDUP_HEAD bytes, and more
 * bytes than that (smaller files are hashed whole already). */
static int same_head(const pk_file *f, const pk_file *g)
{
    return f->size > PK_DEDUP_HEAD && hash_cmp(f->hash, g->hash) == 0;
}

/*
 * Files of a size no other file has are unique without reading them; the
 * others get a hash of their first PK_DEDUP_HEAD bytes, those that still
 * tie a hash of the whole file (all in parallel); files with equal hashes
 * are compared byte for byte, and the earliest copy kept.
 */
static int files_dedup(pk_plan *p)
{
    size_t *idx = malloc((p->n_files ? p->n_files : 1) * sizeof *idx);
    if (!idx)
        return pk_fail(p, "out of memory");
    for (size_t i = 0; i < p->n_files; i++)
        idx[i] = i;
    files_sort(p, idx, p->n_files, 0);
    size_t n = keep_pairs(p, idx, p->n_files, same_size);
    int rc = files_hash(p, idx, n, PK_DEDUP_HEAD);
    size_t *whole = rc == 0 ? malloc((n ? n : 1) * sizeof *whole) : NULL;
    if (rc == 0 && !whole)
        rc = pk_fail(p, "out of memory");
    if (rc == 0) {
        memcpy(whole, idx, n * sizeof *idx);
        files_sort(p, whole, n, 1);
        rc = files_hash(p, whole, keep_pairs(p, whole, n, same_head), UINT64_MAX);
    }
    /* Equal files have equal sizes and hashes (both whole, or both of
     * files no longer than the head), so in (size, hash, index) order they
     * are neighbours, the earliest first: it is the owner.  A head hash and
     * a whole-file hash can only tie by chance; the comparison decides. */
    if (rc == 0)
        files_sort(p, idx, n, 1);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        pk_file *b = &p->files[idx[i]];
        for (size_t k = i; k-- > 0 && p->files[idx[k]].size == b->size &&
                           hash_cmp(p->files[idx[k]].hash, b->hash) == 0;) {
            pk_file *a = &p->files[idx[k]];
            if (a->dup_of >= 0)
                continue;
            int d = file_scan(p, b, a, b->size, p->err, p->err_cap);
            if (d < 0)
                rc = -1;
            if (d == 0) {
                b->dup_of = (int64_t)idx[k];
                p->st->dup_files++;
            }
            if (d <= 0)
                break;
        }
    }
    free(whole);
    free(idx);
    return rc;
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
    if (rfs_array_reserve(&f->reg, cap, f->n_reg + 1, sizeof *f->reg))
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
    if (rfs_array_reserve(&p->tensors, &p->cap_tensors, p->n_tensors + 1, sizeof *p->tensors))
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

/* The bytes of file f that rfs_st_parse needs, when its name says
 * safetensors (named) or its first bytes pass rfs_st_sniff.  1 with *head
 * (malloc'ed, *len bytes), 0 when f is no candidate, -1 with p->err. */
static int st_head_read(pk_plan *p, const pk_file *f, int named, uint8_t **head, size_t *len)
{
    uint8_t first[9];
    size_t n = f->size < sizeof first ? (size_t)f->size : sizeof first;
    int fd, rc = -1;
    *head = NULL;
    if (pk_src_open(p, f, &fd, p->err, p->err_cap))
        return -1;
    if (pk_src_read(p, f, fd, first, 0, n, p->err, p->err_cap))
        goto out;
    rc = 0;
    if (!named && !rfs_st_sniff(first, n, f->size))
        goto out;
    *len = (size_t)rfs_st_head_size(first, f->size);
    rc = -1;
    if (!(*head = malloc(*len ? *len : 1)))
        pk_fail(p, "out of memory");
    else if (pk_src_read(p, f, fd, *head, 0, *len, p->err, p->err_cap) == 0)
        rc = 1;
out:
    if (rc < 0) {
        free(*head);
        *head = NULL;
    }
    close(fd);
    return rc;
}

/* A tensor file that cannot be coded as its name says, p->err saying why
 * (pk_fail): with strict the pack fails; otherwise one warning, and the
 * file is stored as other bytes (a bad guess from a name must not stop a
 * pack). */
static int malformed(pk_plan *p, pk_file *f)
{
    if (p->o->strict)
        return -1;
    pk_warn(p, "%s: stored as an opaque file", p->err);
    p->err[0] = '\0';
    p->st->opaque++;
    size_t cap = 0;
    return region_add(p, f, &cap, 0, f->size, -1);
}

/* Regions of a file whose safetensors header h parsed. */
static int regions_tensors(pk_plan *p, pk_file *f, const rfs_st_header *h)
{
    size_t cap = 0;
    int rc = 0;
    uint64_t pos = 0;
    for (size_t i = 0; i < h->n && rc == 0; i++) {
        const rfs_st_tensor *t = &h->t[i];
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
    return rc ? rc : region_add(p, f, &cap, pos, f->size - pos, -1);
}

/* Plan file f as a safetensors file when its name says so (named) or its
 * content is one.  1 planned, 0 not one, -1 error. */
static int regions_safetensors(pk_plan *p, pk_file *f, int named)
{
    rfs_st_header h;
    char why[512];
    size_t head_len;
    uint8_t *head;
    int rc = st_head_read(p, f, named, &head, &head_len);
    if (rc <= 0)
        return rc;
    rc = rfs_st_parse(&h, head, f->size, why, sizeof why);
    free(head);
    if (rc && !named)
        return 0; /* it only looked like one */
    if (rc) {
        pk_fail(p, "%s: %s", p->nodes[f->node].path, why);
        return malformed(p, f) ? -1 : 1;
    }
    rc = regions_tensors(p, f, &h);
    rfs_st_free(&h);
    return rc ? -1 : 1;
}

/* Whether name ends with suffix, in any case (MODEL.SAFETENSORS, x.FP16). */
static int name_ends(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcasecmp(s + a - b, suffix) == 0;
}

/* The dtype a raw tensor file name announces, or 0. */
static int raw_tensor_dtype(const char *name)
{
    if (name_ends(name, ".fp16"))
        return RFS_DT_F16;
    if (name_ends(name, ".bf16"))
        return RFS_DT_BF16;
    if (name_ends(name, ".f32") || name_ends(name, ".fp32"))
        return RFS_DT_F32;
    return 0;
}

static int regions_plan(pk_plan *p, pk_file *f)
{
    const pk_node *n = &p->nodes[f->node];
    size_t cap = 0;
    if (f->dup_of >= 0 || f->size == 0)
        return 0;
    int st = regions_safetensors(p, f, name_ends(n->name, ".safetensors"));
    if (st)
        return st < 0 ? -1 : 0;
    int dt = raw_tensor_dtype(n->name);
    if (!dt)
        return region_add(p, f, &cap, 0, f->size, -1);
    unsigned w = rfs_dtype_width((unsigned)dt);
    if (f->size % w) {
        pk_fail(p, "%s: size %llu is not a multiple of the %u-byte element of a %s file", n->path,
                (unsigned long long)f->size, w, rfs_dtype_name((unsigned)dt));
        return malformed(p, f);
    }
    if (f->size < RFS_PACK_MIN_TENSOR)
        return region_add(p, f, &cap, 0, f->size, -1);
    uint64_t dim = f->size / w;
    int64_t k = tensor_add(p, f, n->name, dt, 0, f->size, 1, &dim);
    return k < 0 ? -1 : region_add(p, f, &cap, 0, f->size, k);
}

/* -------------------------------------------------------------- chunks */

static int chunk_add(pk_plan *p, uint32_t file, uint64_t off, uint32_t len, int64_t tensor)
{
    if (rfs_array_reserve(&p->chunks, &p->cap_chunks, p->n_chunks + 1, sizeof *p->chunks))
        return pk_fail(p, "out of memory");
    p->chunks[p->n_chunks++] =
        (pk_chunk){.file = file, .file_off = off, .len = len, .tensor = tensor};
    return 0;
}

/* Cut every distinct file's regions into chunks, in file order.  Tensors
 * found identical to an earlier one while streaming keep their chunks, marked
 * skip (nothing is stored for them). */
static int chunks_plan(pk_plan *p)
{
    uint32_t ts = p->o->tile_size;
    for (size_t fi = 0; fi < p->n_files; fi++) {
        pk_file *f = &p->files[fi];
        for (size_t r = 0; r < f->n_reg; r++) {
            pk_region *g = &f->reg[r];
            pk_tensor *t = g->tensor >= 0 ? &p->tensors[g->tensor] : NULL;
            if (t) {
                t->first_chunk = p->n_chunks;
                t->n_tiles = (uint32_t)((t->len - 1) / ts + 1);
            }
            else
                g->first_chunk = p->n_chunks;
            for (uint64_t o = 0; o < g->len; o += ts) {
                uint32_t len = (uint32_t)(g->len - o < ts ? g->len - o : ts);
                if (chunk_add(p, (uint32_t)fi, g->off + o, len, g->tensor))
                    return -1;
            }
            if (!t)
                g->n_chunks = p->n_chunks - g->first_chunk;
        }
    }
    return 0;
}

int pk_write_fd(int fd, const void *buf, size_t len)
{
    const uint8_t *b = buf;
    while (len) {
        ssize_t n = write(fd, b, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = 0;
            return -1;
        }
        b += n;
        len -= (size_t)n;
    }
    return 0;
}

int pk_write_all(pk_plan *p, int fd, const void *buf, size_t len)
{
    if (pk_write_fd(fd, buf, len) == 0)
        return 0;
    return pk_fail(p, "%s: write failed: %s", p->o->image, errno ? strerror(errno) : "?");
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

/* --mtime / SOURCE_DATE_EPOCH: mtimes later than the limit become it.  Run
 * after the last source check, which compares the mtimes the walk saw. */
static void mtimes_clamp(pk_plan *p)
{
    int64_t max = p->o->mtime_max;
    if (!p->o->clamp_mtime)
        return;
    for (size_t i = 0; i < p->n_nodes; i++) {
        pk_node *n = &p->nodes[i];
        if (n->mtime_sec > max || (n->mtime_sec == max && n->mtime_nsec)) {
            n->mtime_sec = max;
            n->mtime_nsec = 0;
        }
    }
}

static int plan_all(pk_plan *p, pk_readahead *ra)
{
    if (pk_tree_walk(p))
        return -1;
    pk_readahead_start(ra, p);
    if (files_dedup(p))
        return -1;
    for (size_t i = 0; i < p->n_files; i++)
        if (regions_plan(p, &p->files[i]))
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

int rfs_pack(const rfs_pack_opts *o, rfs_pack_stats *st, char *err, size_t err_cap)
{
    double t0 = now_seconds();
    memset(st, 0, sizeof *st);
    rfs_pack_opts oo = *o; /* for "-", errors name the temporary image */
    pk_plan p = {.o = &oo, .st = st, .err = err, .err_cap = err_cap};
    pk_out out = {.fd = -1};
    pk_readahead ra = {0};
    int rc = opts_check(&p);
    if (rc == 0)
        rc = pk_out_check(&p, &out);
    if (rc == 0) /* before the pool's threads exist: see pk_out_open */
        rc = pk_out_open(&p, &out);
    if (rc == 0 && out.to_stdout)
        oo.image = out.stream ? "standard output" : pk_out_tmp_name();
    /* The caller is worker 0 of every parallel for: n_threads - 1 more. */
    if (rc == 0 && o->n_threads > 1 && !(p.pool = rfs_pool_create(o->n_threads - 1)))
        rc = pk_fail(&p, "out of memory");
    if (rc == 0)
        rc = plan_all(&p, &ra);
    if (rc == 0)
        rc = pk_sb_head_write(&p, &out);
    if (rc == 0)
        rc = pk_stream_all(&p, &out);
    pk_readahead_join(&ra);
    if (rc == 0)
        rc = pk_src_verify_all(&p);
    if (rc == 0) {
        mtimes_clamp(&p);
        units_own(&p, &out);
        rc = pk_meta_write(&p, &out);
    }
    if (rc == 0)
        rc = pk_out_finish(&p, &out);
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
    rfs_pool_destroy(p.pool);
    return rc;
}
