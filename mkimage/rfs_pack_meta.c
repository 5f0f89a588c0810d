/*
 * rfs_pack_meta.c - the packer's last phase: build the metadata sections of
 * docs/format.md Part 2 from the plan and the written data, append them,
 * then write the superblock (with every section's XXH3-64) at offset 0.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rfs_pack_internal.h"

typedef struct pk_buf {
    uint8_t *b;
    size_t len, cap;
    uint64_t count; /* records */
} pk_buf;

/* Room for n more bytes at the end of b; NULL when out of memory. */
static uint8_t *buf_extend(pk_buf *b, size_t n)
{
    if (rfs_array_reserve(&b->b, &b->cap, b->len + n, 1))
        return NULL;
    uint8_t *p = b->b + b->len;
    b->len += n;
    return p;
}

typedef struct pk_meta {
    pk_buf s[RFS_SECT_COUNT];
    int oom;
} pk_meta;

static uint8_t *rec_add(pk_meta *m, int sect, size_t size)
{
    uint8_t *p = buf_extend(&m->s[sect], size);
    if (!p) {
        m->oom = 1;
        return NULL;
    }
    m->s[sect].count++;
    return p;
}

/* Append a NUL-terminated string to the name pool; its offset. */
static uint64_t name_add(pk_meta *m, const char *s)
{
    size_t len = strlen(s) + 1;
    uint64_t off = m->s[RFS_SECT_NAMES].len;
    uint8_t *p = buf_extend(&m->s[RFS_SECT_NAMES], len);
    if (!p)
        m->oom = 1;
    else
        memcpy(p, s, len);
    return off;
}

static void extent_add(pk_meta *m, uint64_t file_off, uint64_t len, uint8_t kind, uint64_t src,
                       uint32_t stride, uint64_t xxh3)
{
    uint8_t *p = rec_add(m, RFS_SECT_EXTENTS, RFS_EXTENT_SIZE);
    rfs_extent_rec r = {.file_off = file_off, .length = len, .src = src, .kind = kind,
                        .stride = stride, .xxh3 = xxh3};
    if (p)
        rfs_extent_store(p, &r);
}

/* The zstd blocks of a blob: runs of units become UNITS extents; a chunk
 * that zstd did not shrink becomes a RAW extent of its own (at most one
 * tile, so that its checksum can be verified on each read). */
static void blob_extents(pk_plan *p, pk_meta *m, const pk_region *g)
{
    uint64_t fo = g->off;
    uint64_t i = g->first_chunk, end = g->first_chunk + g->n_chunks;
    while (i < end) {
        const pk_chunk *c = &p->chunks[i];
        uint64_t j = i + 1, len = c->len;
        while (j < end && !c->raw && !p->chunks[j].raw) {
            len += p->chunks[j].len;
            j++;
        }
        if (c->raw)
            extent_add(m, fo, len, RFS_EXT_RAW, c->img_off, 0, c->raw_xxh3);
        else
            extent_add(m, fo, len, RFS_EXT_UNITS, c->unit,
                       j - i == 1 ? c->len : p->o->tile_size, 0);
        fo += len;
        i = j;
    }
}

static void file_extents(pk_plan *p, pk_meta *m, pk_file *f)
{
    f->first_extent = m->s[RFS_SECT_EXTENTS].count;
    for (size_t r = 0; r < f->n_reg; r++) {
        const pk_region *g = &f->reg[r];
        if (g->tensor < 0) {
            blob_extents(p, m, g);
            continue;
        }
        const pk_tensor *t = &p->tensors[g->tensor];
        const pk_tensor *own = t->alias_of >= 0 ? &p->tensors[t->alias_of] : t;
        extent_add(m, g->off, g->len, RFS_EXT_UNITS, own->first_unit,
                   own->n_tiles == 1 ? (uint32_t)g->len : p->o->tile_size, 0);
    }
    f->n_extents = m->s[RFS_SECT_EXTENTS].count - f->first_extent;
}

static void inode_add(pk_plan *p, pk_meta *m, const pk_node *n, uint64_t *next_dirent)
{
    rfs_inode_rec r = {.mode = n->mode, .mtime_sec = n->mtime_sec, .mtime_nsec = n->mtime_nsec,
                       .size = n->size};
    if (S_ISDIR(n->mode)) {
        r.first = *next_dirent;
        r.count = n->n_kids;
        *next_dirent += n->n_kids;
    } else if (S_ISLNK(n->mode)) {
        r.first = name_add(m, n->link);
    } else {
        const pk_file *f = &p->files[n->file];
        if (f->dup_of >= 0)
            f = &p->files[f->dup_of];
        r.first = f->first_extent;
        r.count = f->n_extents;
    }
    uint8_t *rec = rec_add(m, RFS_SECT_INODES, RFS_INODE_SIZE);
    if (rec)
        rfs_inode_store(rec, &r);
}

static void dirents_add(pk_plan *p, pk_meta *m, const pk_node *n)
{
    for (uint32_t k = 0; k < n->n_kids; k++) {
        const char *name = n->kid_name && n->kid_name[k] ? n->kid_name[k]
                                                          : p->nodes[n->kids[k]].name;
        rfs_dirent_rec d = {.ino = n->kids[k] + 1, .name_len = (uint16_t)strlen(name),
                            .name_off = name_add(m, name)};
        uint8_t *rec = rec_add(m, RFS_SECT_DIRENTS, RFS_DIRENT_SIZE);
        if (rec)
            rfs_dirent_store(rec, &d);
    }
}

static void shared_tables_add(pk_plan *p, pk_meta *m, const pk_tensor *t, rfs_tensor_rec *r)
{
    r->table_off = m->s[RFS_SECT_TABLES].len;
    for (unsigned pl = 0; pl < t->width; pl++) {
        if (!(t->used_mask >> pl & 1))
            continue;
        uint8_t tmp[RFS_TABLE_MAX_SIZE];
        size_t n = 0;
        uint8_t *dst;
        if (rfs_table_write(tmp, sizeof tmp, &n, t->tab[pl]) != RFS_OK ||
            !(dst = buf_extend(&m->s[RFS_SECT_TABLES], n))) {
            m->oom = 1;
            return;
        }
        memcpy(dst, tmp, n);
        r->shared_mask |= (uint8_t)(1u << pl);
    }
    r->table_len = (uint32_t)(m->s[RFS_SECT_TABLES].len - r->table_off);
}

static void tensor_rec_add(pk_plan *p, pk_meta *m, size_t i)
{
    const pk_tensor *t = &p->tensors[i];
    const pk_tensor *own = t->alias_of >= 0 ? &p->tensors[t->alias_of] : t;
    rfs_tensor_rec r = {
        .name_off = name_add(m, t->name), .dims_off = m->s[RFS_SECT_DIMS].count,
        .n_elems = t->n_elems, .first_unit = own->first_unit,
        .ino = p->files[t->file].node + 1, .n_units = own->n_tiles,
        .tile_size = p->o->tile_size, .name_len = (uint16_t)strlen(t->name),
        .ndim = (uint8_t)t->ndim, .dtype = t->dtype, .width = t->width,
        .transform = (uint8_t)t->xf, .flags = t->alias_of >= 0 ? RFS_TENSOR_F_ALIAS : 0};
    if (t->alias_of < 0)
        shared_tables_add(p, m, t, &r);
    for (unsigned k = 0; k < t->ndim; k++) {
        uint8_t *d = rec_add(m, RFS_SECT_DIMS, RFS_DIM_SIZE);
        if (d)
            rfs_st64(d, t->dims[k]);
    }
    uint8_t *rec = rec_add(m, RFS_SECT_TENSORS, RFS_TENSOR_SIZE);
    if (rec)
        rfs_tensor_store(rec, &r);
}

static void meta_build(pk_plan *p, pk_out *o, pk_meta *m)
{
    for (size_t i = 0; i < p->n_files; i++)
        if (p->files[i].dup_of < 0)
            file_extents(p, m, &p->files[i]);
    uint64_t next_dirent = 0;
    for (size_t i = 0; i < p->n_nodes; i++)
        inode_add(p, m, &p->nodes[i], &next_dirent);
    for (size_t i = 0; i < p->n_nodes; i++)
        dirents_add(p, m, &p->nodes[i]);
    for (size_t i = 0; i < p->n_tensors; i++)
        tensor_rec_add(p, m, i);
    for (size_t u = 0; u < o->n_units; u++) {
        uint8_t *rec = rec_add(m, RFS_SECT_UNITS, RFS_UNIT_SIZE);
        if (rec)
            rfs_unit_store(rec, &o->units[u]);
    }
}

/* The superblock fields known before any data is written. */
static rfs_sb_rec superblock_head(const pk_plan *p, const pk_out *o)
{
    return (rfs_sb_rec){.major = RFS_IMG_VERSION, .minor = RFS_IMG_MINOR,
                        .sb_size = RFS_IMG_SB_SIZE, .data_off = RFS_IMG_SB_SIZE,
                        .features = (p->n_links ? RFS_IMG_F_HARDLINKS : 0) |
                                    (o->stream ? RFS_IMG_F_TRAILER : 0) |
                                    (p->n_ctx_tiles ? RFS_IMG_F_CTX : 0)};
}

/* A stream's superblock is its last RFS_IMG_SB_SIZE bytes: o->pos is where
 * it goes, and the image ends after it. */
static void superblock_fill(pk_plan *p, pk_out *o, const rfs_sect *sect, uint8_t *sb)
{
    rfs_sb_rec r = superblock_head(p, o);
    r.tile_size = p->o->tile_size;
    r.unit_max = o->unit_max;
    r.image_size = o->pos + (o->stream ? RFS_IMG_SB_SIZE : 0);
    r.data_len = sect[0].off - RFS_IMG_SB_SIZE;
    for (size_t i = 0; i < p->n_files; i++)
        r.content_bytes += p->files[i].size;
    memcpy(r.sect, sect, sizeof r.sect);
    rfs_sb_store(sb, &r);
}

int pk_sb_head_write(pk_plan *p, pk_out *o)
{
    uint8_t sb[RFS_IMG_SB_SIZE] = {0};
    if (o->stream) {
        rfs_sb_rec r = superblock_head(p, o);
        rfs_sb_stub_of(sb, &r);
    }
    int rc = pk_write_all(p, o->fd, sb, sizeof sb);
    o->pos = RFS_IMG_SB_SIZE;
    return rc;
}

int pk_meta_write(pk_plan *p, pk_out *o)
{
    pk_meta m;
    memset(&m, 0, sizeof m);
    rfs_sect sect[RFS_SECT_COUNT];
    int rc = 0;
    meta_build(p, o, &m);
    if (m.oom)
        rc = pk_fail(p, "out of memory building the metadata");
    uint64_t meta_start = o->pos;
    for (int s = 0; rc == 0 && s < RFS_SECT_COUNT; s++) {
        pk_buf *b = &m.s[s];
        int blob = s == RFS_SECT_TABLES || s == RFS_SECT_NAMES;
        sect[s] = (rfs_sect){.off = o->pos, .len = b->len, .count = blob ? 0 : b->count,
                             .xxh3 = XXH3_64bits(b->b, b->len)};
        rc = pk_write_all(p, o->fd, b->b, b->len);
        o->pos += b->len;
    }
    p->st->meta_bytes = o->pos - meta_start + RFS_IMG_SB_SIZE * (o->stream ? 2u : 1u);
    if (rc == 0) {
        uint8_t sb[RFS_IMG_SB_SIZE];
        superblock_fill(p, o, sect, sb);
        if (o->stream) { /* a pipe cannot seek back: the trailer ends the image */
            rc = pk_write_all(p, o->fd, sb, sizeof sb);
            o->pos += RFS_IMG_SB_SIZE;
        } else if (pwrite(o->fd, sb, sizeof sb, 0) != (ssize_t)sizeof sb) {
            rc = pk_fail(p, "%s: cannot write the superblock", p->o->image);
        }
    }
    for (int s = 0; s < RFS_SECT_COUNT; s++)
        free(m.s[s].b);
    return rc;
}
