/*
 * rfs_image_read.c - queries on an open image (namespace, offset mapping,
 * introspection) and unit decoding.  All metadata was validated by
 * rfs_image_open, so only the caller's arguments are checked here.
 *
 * Offset mapping: a file's extents are sorted by file offset, so the extent
 * holding an offset is found by binary search; inside a UNITS extent every
 * unit but the last decodes to `stride` bytes, so the unit is
 * (off - file_off) / stride: O(1).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rfs_xxhash.h"
#include <zstd.h>

#include "rfs_image_info.h"
#include "rfs_image_internal.h"

struct rfs_rctx {
    rfs_dec *dec;
    ZSTD_DCtx *zd;
    uint8_t *buf; /* unit_max bytes: a unit decoded for a partial read */
    size_t buf_size;
};

static const rfs_inode_rec *inode_get(const rfs_image *img, uint64_t ino)
{
    return ino >= 1 && ino <= img->n_inodes ? &img->inodes[ino - 1] : NULL;
}

/* ------------------------------------------------------------ namespace */

rfs_err rfs_image_stat(const rfs_image *img, uint64_t ino, rfs_stat *st)
{
    const rfs_inode_rec *r = inode_get(img, ino);
    if (!r)
        return RFS_E_NOENT;
    st->ino = ino;
    st->mode = r->mode;
    st->nlink = img->nlink[ino - 1];
    st->size = r->size;
    st->mtime_sec = r->mtime_sec;
    st->mtime_nsec = r->mtime_nsec;
    return RFS_OK;
}

/* The record of directory dir.  Errors: RFS_E_NOENT, RFS_E_NOTDIR. */
static rfs_err dir_get(const rfs_image *img, uint64_t dir, const rfs_inode_rec **out)
{
    const rfs_inode_rec *r = inode_get(img, dir);
    if (!r)
        return RFS_E_NOENT;
    if (!S_ISDIR(r->mode))
        return RFS_E_NOTDIR;
    *out = r;
    return RFS_OK;
}

rfs_err rfs_image_lookup(const rfs_image *img, uint64_t parent, const char *name, uint64_t *ino)
{
    const rfs_inode_rec *r;
    rfs_err err = dir_get(img, parent, &r);
    if (err)
        return err;
    uint64_t lo = r->first, hi = r->first + r->count;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, img->names + img->dirents[mid].name_off);
        if (c == 0) {
            *ino = img->dirents[mid].ino;
            return RFS_OK;
        }
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return RFS_E_NOENT;
}

rfs_err rfs_image_lookup_path(const rfs_image *img, const char *path, uint64_t *ino)
{
    uint64_t cur = RFS_ROOT_INO;
    char name[RFS_IMG_NAME_MAX + 1];
    while (*path) {
        while (*path == '/')
            path++;
        size_t len = strcspn(path, "/");
        if (len == 0)
            break;
        if (len > RFS_IMG_NAME_MAX)
            return RFS_E_NOENT;
        memcpy(name, path, len);
        name[len] = '\0';
        path += len;
        rfs_err err = rfs_image_lookup(img, cur, name, &cur);
        if (err)
            return err;
    }
    *ino = cur;
    return RFS_OK;
}

rfs_err rfs_image_dir_count(const rfs_image *img, uint64_t dir, uint64_t *count)
{
    const rfs_inode_rec *r;
    rfs_err err = dir_get(img, dir, &r);
    if (err == RFS_OK)
        *count = r->count;
    return err;
}

rfs_err rfs_image_dir_entry(const rfs_image *img, uint64_t dir, uint64_t idx, uint64_t *child,
                            const char **name)
{
    const rfs_inode_rec *r;
    rfs_err err = dir_get(img, dir, &r);
    if (err)
        return err;
    if (idx >= r->count)
        return RFS_E_NOENT;
    const rfs_dirent_rec *d = &img->dirents[r->first + idx];
    *child = d->ino;
    *name = img->names + d->name_off;
    return RFS_OK;
}

rfs_err rfs_image_dir_parent(const rfs_image *img, uint64_t dir, uint64_t *parent)
{
    const rfs_inode_rec *r;
    rfs_err err = dir_get(img, dir, &r);
    if (err == RFS_OK)
        *parent = img->parent[dir - 1];
    return err;
}

rfs_err rfs_image_readlink(const rfs_image *img, uint64_t ino, const char **target)
{
    const rfs_inode_rec *r = inode_get(img, ino);
    if (!r)
        return RFS_E_NOENT;
    if (!S_ISLNK(r->mode))
        return RFS_E_INVAL;
    *target = img->names + r->first;
    return RFS_OK;
}

/* ------------------------------------------------------------ mapping */

static rfs_err regular_get(const rfs_image *img, uint64_t ino, const rfs_inode_rec **out)
{
    const rfs_inode_rec *r = inode_get(img, ino);
    if (!r)
        return RFS_E_NOENT;
    if (S_ISDIR(r->mode))
        return RFS_E_ISDIR;
    if (!S_ISREG(r->mode))
        return RFS_E_INVAL;
    *out = r;
    return RFS_OK;
}

static const rfs_extent_rec *extent_find(const rfs_image *img, const rfs_inode_rec *r,
                                         uint64_t off);

rfs_err rfs_image_map(const rfs_image *img, uint64_t ino, uint64_t off, rfs_span *span)
{
    const rfs_inode_rec *r;
    rfs_err err = regular_get(img, ino, &r);
    if (err)
        return err;
    if (off >= r->size)
        return RFS_E_INVAL;
    const rfs_extent_rec *x = extent_find(img, r, off);
    uint64_t rel = off - x->file_off;
    span->ext_off = x->file_off;
    span->ext_len = x->length;
    if (x->kind == RFS_EXT_RAW) {
        span->is_raw = 1;
        span->raw_off = x->src + rel;
        span->length = x->length - rel;
        span->unit = 0;
        span->unit_off = 0;
        span->unit_size = 0;
        return RFS_OK;
    }
    uint64_t k = rel / x->stride;
    const rfs_unit_rec *u = &img->units[x->src + k];
    span->is_raw = 0;
    span->raw_off = 0;
    span->unit = x->src + k;
    span->unit_off = (uint32_t)(rel - k * x->stride);
    span->unit_size = u->decoded_size;
    span->length = u->decoded_size - span->unit_off;
    return RFS_OK;
}

/* ------------------------------------------------------------ decoding */

/* The extent of regular file r holding offset off (< size). */
static const rfs_extent_rec *extent_find(const rfs_image *img, const rfs_inode_rec *r,
                                         uint64_t off)
{
    uint64_t lo = r->first, hi = r->first + r->count;
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (img->extents[mid].file_off <= off)
            lo = mid;
        else
            hi = mid;
    }
    return &img->extents[lo];
}

rfs_err rfs_image_raw_verify(const rfs_image *img, uint64_t ino, uint64_t off)
{
    const rfs_inode_rec *r;
    rfs_err err = regular_get(img, ino, &r);
    if (err)
        return err;
    if (off >= r->size)
        return RFS_E_INVAL;
    const rfs_extent_rec *x = extent_find(img, r, off);
    if (x->kind != RFS_EXT_RAW)
        return RFS_OK;
    /* Hash each extent once per open image, not on every read of it. */
    atomic_uchar *ok = &img->raw_ok[x - img->extents];
    if (atomic_load_explicit(ok, memory_order_relaxed))
        return RFS_OK;
    if ((err = rfs_img_ensure(img, x->src, x->length)))
        return err;
    if (XXH3_64bits(img->map + x->src, x->length) != x->xxh3)
        return RFS_E_CHECKSUM;
    atomic_store_explicit(ok, 1, memory_order_relaxed);
    return RFS_OK;
}

rfs_rctx *rfs_rctx_create(const rfs_image *img)
{
    rfs_rctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return NULL;
    ctx->buf_size = img->unit_max ? img->unit_max : 1;
    ctx->dec = rfs_dec_create(img->tile_size);
    ctx->zd = ZSTD_createDCtx();
    ctx->buf = malloc(ctx->buf_size);
    if (!ctx->dec || !ctx->zd || !ctx->buf) {
        rfs_rctx_destroy(ctx);
        return NULL;
    }
    return ctx;
}

void rfs_rctx_destroy(rfs_rctx *ctx)
{
    if (!ctx)
        return;
    rfs_dec_destroy(ctx->dec);
    ZSTD_freeDCtx(ctx->zd);
    free(ctx->buf);
    free(ctx);
}

rfs_dec *rfs_rctx_decoder(rfs_rctx *ctx) { return ctx->dec; }

rfs_err rfs_image_unit_source(const rfs_image *img, uint64_t unit, rfs_unit_src *src)
{
    if (unit >= img->n_units)
        return RFS_E_NOENT;
    const rfs_unit_rec *u = &img->units[unit];
    src->kind = (rfs_unit_kind)u->kind;
    src->data = img->map + u->off;
    src->size = u->size;
    src->decoded_size = u->decoded_size;
    src->xxh3 = u->xxh3;
    src->shared = NULL;
    if (u->kind == RFS_UNIT_TILE && img->tensors[u->tensor].shared_mask)
        src->shared = &img->tsets[u->tensor];
    return RFS_OK;
}

rfs_err rfs_image_unit_offset(const rfs_image *img, uint64_t unit, uint64_t *off)
{
    if (unit >= img->n_units)
        return RFS_E_NOENT;
    *off = img->units[unit].off;
    return RFS_OK;
}

int rfs_image_unit_verify(const rfs_unit_src *src)
{
    return XXH3_64bits(src->data, src->size) == src->xxh3;
}

/* The checks of rfs_image_unit_check before the XXH3: the unit exists, fits
 * dst_cap, and its bytes are there (the source's ensure). */
static rfs_err unit_locate(const rfs_image *img, uint64_t unit, size_t dst_cap,
                           rfs_unit_src *src)
{
    rfs_err err = rfs_image_unit_source(img, unit, src);
    if (err)
        return err;
    if (dst_cap < src->decoded_size)
        return RFS_E_DST_SMALL;
    return rfs_img_ensure(img, img->units[unit].off, src->size);
}

/* The checks of rfs_image_unit_check after the XXH3: a tile's header. */
static rfs_err unit_header_check(const rfs_image *img, const rfs_unit_src *src)
{
    if (src->kind != RFS_UNIT_TILE)
        return RFS_OK;
    unsigned w;
    uint32_t n;
    rfs_transform xf;
    rfs_err err = rfs_tile_info(src->data, src->size, &w, &n, &xf);
    if (err)
        return err;
    /* a RANS_CTX plane needs feature CTX (docs/format.md 2.1.1) */
    if (!(img->features & RFS_IMG_F_CTX) && rfs_tile_uses_ctx(src->data, src->size))
        return RFS_E_CORRUPT;
    return (uint64_t)n * w == src->decoded_size ? RFS_OK : RFS_E_CORRUPT;
}

rfs_err rfs_image_unit_check(const rfs_image *img, uint64_t unit, size_t dst_cap,
                             rfs_unit_src *src)
{
    rfs_err err = unit_locate(img, unit, dst_cap, src);
    if (err)
        return err;
    if (!rfs_image_unit_verify(src))
        return RFS_E_CHECKSUM;
    return unit_header_check(img, src);
}

/* The size check every decode path ends with: a unit decodes to the size
 * its index entry records. */
static rfs_err unit_got(const rfs_unit_src *src, size_t got, size_t *dst_size)
{
    if (got != src->decoded_size)
        return RFS_E_CORRUPT;
    *dst_size = got;
    return RFS_OK;
}

/* Decode a unit that rfs_image_unit_check has passed (src) into dst. */
static rfs_err unit_decode_checked(rfs_rctx *ctx, const rfs_unit_src *src, void *dst,
                                   size_t *dst_size)
{
    size_t got = 0;
    if (src->kind == RFS_UNIT_TILE) {
        rfs_err err = rfs_tile_decode(ctx->dec, dst, src->decoded_size, &got, src->data,
                                      src->size, src->shared);
        if (err)
            return err;
    } else {
        got = ZSTD_decompressDCtx(ctx->zd, dst, src->decoded_size, src->data, src->size);
        if (ZSTD_isError(got))
            return RFS_E_ZSTD;
    }
    return unit_got(src, got, dst_size);
}

/*
 * The decode paths make rfs_image_unit_check's checks with the XXH3 moved
 * after the decode, and give the same error for every input: a checksum
 * mismatch wins over whatever the header check or the decoder said (the
 * decoder is safe on any bytes: it writes only within dst_cap and fails
 * cleanly).  Hashing first made the XXH3 the unit's first reader, waiting
 * on memory for every encoded byte (~9% of the daemon's CPU on a cached
 * 5 GiB shard); after the decode, whose arithmetic hides those misses, the
 * bytes are in the L2 cache.
 */
static rfs_err unit_verified(const rfs_unit_src *src, rfs_err err)
{
    return rfs_image_unit_verify(src) ? err : RFS_E_CHECKSUM;
}

rfs_err rfs_image_unit_decode(const rfs_image *img, rfs_rctx *ctx, uint64_t unit, void *dst,
                              size_t dst_cap, size_t *dst_size)
{
    rfs_unit_src src;
    rfs_err err = unit_locate(img, unit, dst_cap, &src);
    if (err)
        return err;
    if ((err = unit_header_check(img, &src)) == RFS_OK)
        err = unit_decode_checked(ctx, &src, dst, dst_size);
    if ((err = unit_verified(&src, err)) != RFS_OK)
        *dst_size = 0;
    return err;
}

/* Two checked tiles through rfs_tile_decode2, each with the dst_cap
 * rfs_image_unit_decode gives rfs_tile_decode (its decoded size). */
static void tiles_decode2(rfs_rctx *ctx, const rfs_unit_src src[2], rfs_unit_io io[2])
{
    rfs_tile_io t[2];
    for (unsigned j = 0; j < 2; j++)
        t[j] = (rfs_tile_io){.dst = io[j].dst, .dst_cap = src[j].decoded_size,
                             .src = src[j].data, .src_size = src[j].size,
                             .shared = src[j].shared};
    rfs_tile_decode2(ctx->dec, t);
    for (unsigned j = 0; j < 2; j++)
        io[j].err = t[j].err ? t[j].err : unit_got(&src[j], t[j].dst_size, &io[j].dst_size);
}

rfs_err rfs_image_unit_decode2(const rfs_image *img, rfs_rctx *ctx, rfs_unit_io io[2])
{
    rfs_unit_src src[2];
    int located[2];
    for (unsigned j = 0; j < 2; j++) {
        io[j].dst_size = 0;
        io[j].err = unit_locate(img, io[j].unit, io[j].dst_cap, &src[j]);
        located[j] = io[j].err == RFS_OK;
        if (located[j])
            io[j].err = unit_header_check(img, &src[j]);
    }
    if (io[0].err == RFS_OK && io[1].err == RFS_OK && src[0].kind == RFS_UNIT_TILE &&
        src[1].kind == RFS_UNIT_TILE)
        tiles_decode2(ctx, src, io);
    else
        for (unsigned j = 0; j < 2; j++)
            if (io[j].err == RFS_OK)
                io[j].err = unit_decode_checked(ctx, &src[j], io[j].dst, &io[j].dst_size);
    for (unsigned j = 0; j < 2; j++)
        if (located[j] && (io[j].err = unit_verified(&src[j], io[j].err)) != RFS_OK)
            io[j].dst_size = 0;
    return io[0].err ? io[0].err : io[1].err;
}

rfs_err rfs_image_read(const rfs_image *img, rfs_rctx *ctx, uint64_t ino, uint64_t off,
                       size_t len, void *buf, size_t *got)
{
    const rfs_inode_rec *r;
    rfs_err err = regular_get(img, ino, &r);
    *got = 0;
    if (err)
        return err;
    uint8_t *out = buf;
    while (len > 0 && off < r->size) {
        rfs_span sp;
        if ((err = rfs_image_map(img, ino, off, &sp)))
            return err;
        size_t n = sp.length < len ? (size_t)sp.length : len;
        if (sp.is_raw) {
            if ((err = rfs_image_raw_verify(img, ino, off)))
                return err;
            memcpy(out, img->map + sp.raw_off, n);
        } else if (sp.unit_off == 0 && n == sp.unit_size) {
            size_t dn;
            if ((err = rfs_image_unit_decode(img, ctx, sp.unit, out, n, &dn)))
                return err;
        } else {
            size_t dn;
            if ((err = rfs_image_unit_decode(img, ctx, sp.unit, ctx->buf, ctx->buf_size, &dn)))
                return err;
            memcpy(out, ctx->buf + sp.unit_off, n);
        }
        out += n;
        off += n;
        len -= n;
        *got += n;
    }
    return RFS_OK;
}

/* ------------------------------------------------------- introspection */

uint64_t rfs_image_tensor_count(const rfs_image *img) { return img->n_tensors; }

rfs_err rfs_image_tensor_info(const rfs_image *img, uint64_t idx, rfs_tensor_info *ti)
{
    if (idx >= img->n_tensors)
        return RFS_E_NOENT;
    const rfs_tensor_rec *r = &img->tensors[idx];
    ti->name = img->names + r->name_off;
    ti->ino = r->ino;
    ti->dtype = rfs_dtype_name(r->dtype);
    ti->width = r->width;
    ti->transform = (rfs_transform)r->transform;
    ti->ndim = r->ndim;
    ti->dims = img->dims + r->dims_off;
    ti->n_elems = r->n_elems;
    ti->first_unit = r->first_unit;
    ti->n_units = r->n_units;
    ti->tile_size = r->tile_size;
    ti->shared_mask = r->shared_mask;
    ti->table_bytes = r->table_len;
    ti->alias_of = (r->flags & RFS_TENSOR_F_ALIAS) ? (int64_t)img->units[r->first_unit].tensor : -1;
    return RFS_OK;
}

rfs_err rfs_image_extent_count(const rfs_image *img, uint64_t ino, uint64_t *count)
{
    const rfs_inode_rec *r;
    rfs_err err = regular_get(img, ino, &r);
    if (err)
        return err;
    *count = r->count;
    return RFS_OK;
}

rfs_err rfs_image_extent_info(const rfs_image *img, uint64_t ino, uint64_t idx,
                              rfs_extent_info *ei)
{
    const rfs_inode_rec *r;
    rfs_err err = regular_get(img, ino, &r);
    if (err)
        return err;
    if (idx >= r->count)
        return RFS_E_NOENT;
    const rfs_extent_rec *x = &img->extents[r->first + idx];
    ei->file_off = x->file_off;
    ei->length = x->length;
    ei->is_raw = x->kind == RFS_EXT_RAW;
    ei->src = x->src;
    ei->stride = x->stride;
    ei->xxh3 = x->xxh3;
    return RFS_OK;
}

int64_t rfs_image_unit_tensor(const rfs_image *img, uint64_t unit)
{
    if (unit >= img->n_units || img->units[unit].kind != RFS_UNIT_TILE)
        return -1;
    return img->units[unit].tensor;
}

void rfs_image_get_layout(const rfs_image *img, rfs_image_layout *lay)
{
    lay->data_off = img->data_off;
    lay->data_len = img->data_len;
    lay->meta_off = img->data_off + img->data_len;
    lay->meta_len = img->image_size - lay->meta_off;
    lay->n_extents = img->n_extents;
    lay->n_tensors = img->n_tensors;
}
