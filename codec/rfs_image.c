/*
 * rfs_image.c - open and validate a ransfs image (docs/format.md Part 2),
 * and answer namespace and mapping queries from the validated metadata.
 *
 * Design note.  The image is mapped read-only (MAP_SHARED, PROT_READ); the
 * image file must not be modified or truncated while it is open (a
 * truncation under the mapping gives SIGBUS).  At open every metadata
 * section is checksummed and decoded field by field into native arrays
 * owned by rfs_image, and every cross reference is checked once, so that
 * the query functions afterwards need no checks beyond their arguments.
 * Unit payloads stay in the mapping and are checksummed on every decode
 * (rfs_image_read.c).
 *
 * Validation order: superblock (for a TRAILER image: the stub at offset 0,
 * the superblock at the end, then the stub against it), section table (back to back after the data
 * region, each length = count * record size, XXH3-64), records (reserved
 * bytes, kinds), names, directory tree, units, extents, tensors, totals.
 */
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rfs_backend.h"
#include "rfs_xxhash.h"

#include "rfs_image_format.h"
#include "rfs_image_internal.h"

/* ----------------------------------------------------------- helpers */

static rfs_err fail(char *why, size_t why_cap, rfs_err err, const char *fmt, ...)
{
    if (why && why_cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, why_cap, fmt, ap);
        va_end(ap);
    }
    return err;
}

#define FAIL(err, ...) fail(why, why_cap, err, __VA_ARGS__)

/* Make image bytes [off, off+len) valid (rfs_img_ensure) or say which
 * range could not be read. */
static rfs_err ensure(const rfs_image *img, uint64_t off, uint64_t len, char *why, size_t why_cap)
{
    rfs_err err = rfs_img_ensure(img, off, len);
    if (err)
        return FAIL(err, "cannot read image bytes [%llu, +%llu): %s", (unsigned long long)off,
                    (unsigned long long)len, rfs_strerror(err));
    return RFS_OK;
}

/* 1 when [off, off+len) lies inside [0, size). */
static int range_ok(uint64_t off, uint64_t len, uint64_t size)
{
    return off <= size && len <= size - off;
}

/* A NUL-terminated string of len bytes at pool offset off, no NUL inside. */
static int pool_str_ok(const rfs_image *img, uint64_t off, uint64_t len)
{
    if (!range_ok(off, len + 1, img->names_len))
        return 0;
    const char *s = img->names + off;
    return s[len] == '\0' && memchr(s, '\0', len) == NULL;
}

/* ------------------------------------------------------- superblock */

/* Version and feature flags: what a reader checks of a superblock, or of a
 * stub, before it trusts anything else in it. */
static rfs_err sb_head_check(const rfs_sb_rec *sb, const char *what, char *why, size_t why_cap)
{
    /* docs/format.md 2.1 "Compatibility": any minor version of our major. */
    if (sb->major != RFS_IMG_VERSION)
        return FAIL(RFS_E_VERSION, "%sunsupported image version %u.%u (this reader: %u.x)", what,
                    sb->major, sb->minor, RFS_IMG_VERSION);
    if (sb->features & ~RFS_IMG_FEATURES_KNOWN)
        return FAIL(RFS_E_VERSION, "%sunknown feature flags 0x%x", what,
                    sb->features & ~RFS_IMG_FEATURES_KNOWN);
    return RFS_OK;
}

/* A TRAILER image (docs/format.md 2.1.3): the superblock is the last
 * RFS_IMG_SB_SIZE bytes; *sbp is pointed at it and *sb loaded from it.
 * The stub at offset 0 is compared with it in sb_stub_check, once the
 * trailer's checksum has vouched for its fields. */
static rfs_err sb_trailer_find(rfs_image *img, const uint8_t **sbp, rfs_sb_rec *sb, char *why,
                               size_t why_cap)
{
    if (img->map_size < 2 * (uint64_t)RFS_IMG_SB_SIZE)
        return FAIL(RFS_E_TRUNCATED, "image is %llu bytes, too short for a superblock stub and "
                    "a trailer superblock (truncated stream?)",
                    (unsigned long long)img->map_size);
    const uint8_t *p = img->map + img->map_size - RFS_IMG_SB_SIZE;
    rfs_err err = ensure(img, img->map_size - RFS_IMG_SB_SIZE, RFS_IMG_SB_SIZE, why, why_cap);
    if (err)
        return err;
    if (!rfs_sb_magic_ok(p))
        return FAIL(RFS_E_TRUNCATED, "no trailer superblock at the end of the image (truncated "
                    "stream?)");
    rfs_sb_load(sb, p);
    err = sb_head_check(sb, "trailer superblock: ", why, why_cap);
    if (err)
        return err;
    if (!(sb->features & RFS_IMG_F_TRAILER))
        return FAIL(RFS_E_CORRUPT, "trailer superblock does not have the TRAILER flag of the "
                    "stub at offset 0");
    *sbp = p;
    return RFS_OK;
}

static rfs_err sb_stub_check(const rfs_image *img, const rfs_sb_rec *sb, char *why,
                             size_t why_cap)
{
    uint8_t stub[RFS_IMG_SB_SIZE];
    rfs_sb_stub_of(stub, sb);
    for (unsigned i = 0; i < RFS_IMG_SB_SIZE; i++)
        if (img->map[i] != stub[i])
            return FAIL(RFS_E_CORRUPT, "superblock stub at offset 0 does not match the trailer "
                        "superblock (byte %u)", i);
    return RFS_OK;
}

static rfs_err sb_parse(rfs_image *img, char *why, size_t why_cap)
{
    const uint8_t *p = img->map;
    rfs_sb_rec sb;
    rfs_err err = ensure(img, 0, img->map_size < RFS_IMG_SB_SIZE ? img->map_size : RFS_IMG_SB_SIZE,
                         why, why_cap);
    if (err)
        return err;
    if (img->map_size < RFS_IMG_SB_SIZE)
        return FAIL(img->map_size >= RFS_IMG_MAGIC_SIZE && !rfs_sb_magic_ok(p) ? RFS_E_MAGIC
                                                                                : RFS_E_TRUNCATED,
                    "image is %llu bytes, shorter than the %u-byte superblock",
                    (unsigned long long)img->map_size, RFS_IMG_SB_SIZE);
    if (!rfs_sb_magic_ok(p))
        return FAIL(RFS_E_MAGIC, "bad magic: not a ransfs image");
    rfs_sb_load(&sb, p);
    if ((err = sb_head_check(&sb, "", why, why_cap)))
        return err;
    int trailer = (sb.features & RFS_IMG_F_TRAILER) != 0;
    if (trailer && (err = sb_trailer_find(img, &p, &sb, why, why_cap)))
        return err;
    if (!rfs_sb_csum_ok(p))
        return FAIL(RFS_E_CHECKSUM, "%ssuperblock checksum mismatch", trailer ? "trailer " : "");
    if (sb.sb_size != RFS_IMG_SB_SIZE)
        return FAIL(RFS_E_CORRUPT, "superblock size %u, expected %u", sb.sb_size,
                    RFS_IMG_SB_SIZE);
    unsigned bad = rfs_sb_reserved_bad(p);
    if (bad)
        return FAIL(RFS_E_CORRUPT, "superblock reserved byte %u is not zero", bad);
    if (trailer && (err = sb_stub_check(img, &sb, why, why_cap)))
        return err;
    img->features = sb.features;
    img->tile_size = sb.tile_size;
    img->unit_max = sb.unit_max;
    img->image_size = sb.image_size;
    img->content_bytes = sb.content_bytes;
    img->data_off = sb.data_off;
    img->data_len = sb.data_len;
    img->meta_end = img->map_size - (trailer ? RFS_IMG_SB_SIZE : 0);
    memcpy(img->sect, sb.sect, sizeof img->sect);
    uint32_t ts = img->tile_size;
    if (ts < RFS_IMG_TILE_MIN || ts > RFS_IMG_TILE_MAX || (ts & (ts - 1)))
        return FAIL(RFS_E_CORRUPT, "tile size %u is not a power of two in [64 KiB, 4 MiB]", ts);
    if (img->unit_max > ts)
        return FAIL(RFS_E_CORRUPT, "largest unit %u exceeds the tile size %u", img->unit_max, ts);
    if (img->image_size != img->map_size)
        return FAIL(img->image_size > img->map_size ? RFS_E_TRUNCATED : RFS_E_CORRUPT,
                    "image is %llu bytes but the superblock says %llu (%s)",
                    (unsigned long long)img->map_size, (unsigned long long)img->image_size,
                    img->image_size > img->map_size ? "truncated" : "trailing bytes");
    if (img->data_off != RFS_IMG_SB_SIZE || !range_ok(img->data_off, img->data_len, img->meta_end))
        return FAIL(RFS_E_CORRUPT, "data region [%llu, +%llu) is outside the image",
                    (unsigned long long)img->data_off, (unsigned long long)img->data_len);
    return RFS_OK;
}

static const char *const sect_names[RFS_SECT_COUNT] = {
    "inode table", "directory table", "extent table", "unit index",
    "tensor table", "dimension table", "frequency table blob", "name pool"};
static const uint32_t sect_rec[RFS_SECT_COUNT] = {RFS_INODE_SIZE,  RFS_DIRENT_SIZE,
                                                   RFS_EXTENT_SIZE, RFS_UNIT_SIZE,
                                                   RFS_TENSOR_SIZE, RFS_DIM_SIZE,
                                                   0,               0};

static rfs_err sect_parse(rfs_image *img, char *why, size_t why_cap)
{
    uint64_t expect = img->data_off + img->data_len;
    /* Every section must lie in [expect, meta_end) (checked below), and
     * sb_parse put expect inside it: one ensure covers them all. */
    rfs_err err = ensure(img, expect, img->meta_end - expect, why, why_cap);
    if (err)
        return err;
    for (int s = 0; s < RFS_SECT_COUNT; s++) {
        const rfs_sect *sc = &img->sect[s];
        if (sc->off != expect || !range_ok(sc->off, sc->len, img->meta_end))
            return FAIL(RFS_E_CORRUPT, "%s at [%llu, +%llu) is not where expected (%llu) or "
                        "runs past the end of the image", sect_names[s],
                        (unsigned long long)sc->off, (unsigned long long)sc->len,
                        (unsigned long long)expect);
        if (sect_rec[s] ? sc->count > sc->len / sect_rec[s] || sc->len != sc->count * sect_rec[s]
                        : sc->count != 0)
            return FAIL(RFS_E_CORRUPT, "%s length %llu does not match its count %llu",
                        sect_names[s], (unsigned long long)sc->len,
                        (unsigned long long)sc->count);
        if (XXH3_64bits(img->map + sc->off, sc->len) != sc->xxh3)
            return FAIL(RFS_E_CHECKSUM, "%s checksum mismatch", sect_names[s]);
        expect = sc->off + sc->len;
    }
    if (expect != img->meta_end)
        return FAIL(RFS_E_CORRUPT, "%llu bytes after the last section",
                    (unsigned long long)(img->meta_end - expect));
    return RFS_OK;
}

/* ------------------------------------------------------ decode records */

static void *alloc_array(uint64_t n, size_t size)
{
    return calloc(n ? n : 1, size);
}

static int no_reserved(const uint8_t *p)
{
    (void)p; /* tensor flags are checked with the tensor; a dimension is a u64 */
    return 1;
}
static void dim_load(uint64_t *d, const uint8_t *p) { *d = rfs_ld64(p); }

/* Decoders of one record of each record section into element i of its
 * native array dst; 0 when the record's reserved bytes are not zero. */
#define REC_DECODER(fn, T, load, reserved_ok)                                                  \
    static int fn(void *dst, uint64_t i, const uint8_t *p)                                     \
    {                                                                                          \
        load((T *)dst + i, p);                                                                 \
        return reserved_ok(p);                                                                 \
    }
REC_DECODER(inode_dec, rfs_inode_rec, rfs_inode_load, rfs_inode_reserved_ok)
REC_DECODER(dirent_dec, rfs_dirent_rec, rfs_dirent_load, rfs_dirent_reserved_ok)
REC_DECODER(extent_dec, rfs_extent_rec, rfs_extent_load, rfs_extent_reserved_ok)
REC_DECODER(unit_dec, rfs_unit_rec, rfs_unit_load, rfs_unit_reserved_ok)
REC_DECODER(tensor_dec, rfs_tensor_rec, rfs_tensor_load, no_reserved)
REC_DECODER(dim_dec, uint64_t, dim_load, no_reserved)
#undef REC_DECODER

/* The record sections: where each lands in rfs_image, and how to decode it. */
typedef struct rec_sect {
    int sect;
    const char *what;        /* for "%s %llu: reserved field is not zero" */
    size_t elem;             /* size of the native record */
    size_t arr, count;       /* offsetof the array pointer and the count in rfs_image */
    int (*dec)(void *dst, uint64_t i, const uint8_t *p);
    uint64_t first;          /* number of the first record in messages (inodes are 1-based) */
} rec_sect;

#define REC(s, w, T, a, n, d, f) {s, w, sizeof(T), offsetof(rfs_image, a), offsetof(rfs_image, n), d, f}
static const rec_sect rec_sects[] = {
    REC(RFS_SECT_INODES, "inode", rfs_inode_rec, inodes, n_inodes, inode_dec, 1),
    REC(RFS_SECT_DIRENTS, "directory entry", rfs_dirent_rec, dirents, n_dirents, dirent_dec, 0),
    REC(RFS_SECT_EXTENTS, "extent", rfs_extent_rec, extents, n_extents, extent_dec, 0),
    REC(RFS_SECT_UNITS, "unit", rfs_unit_rec, units, n_units, unit_dec, 0),
    REC(RFS_SECT_TENSORS, "tensor", rfs_tensor_rec, tensors, n_tensors, tensor_dec, 0),
    REC(RFS_SECT_DIMS, "dimension", uint64_t, dims, n_dims, dim_dec, 0),
};
#undef REC

/* Allocate and decode one record section into its native array. */
static rfs_err rec_sect_load(rfs_image *img, const rec_sect *rs, char *why, size_t why_cap)
{
    const rfs_sect *sc = &img->sect[rs->sect];
    void *arr = alloc_array(sc->count, rs->elem);
    /* memcpy: the member is a typed pointer (rfs_inode_rec *, ...), not a void * */
    memcpy((char *)img + rs->arr, &arr, sizeof arr);
    *(uint64_t *)((char *)img + rs->count) = sc->count;
    if (!arr)
        return FAIL(RFS_E_NOMEM, "out of memory loading metadata");
    const uint8_t *p = img->map + sc->off;
    for (uint64_t i = 0; i < sc->count; i++, p += sect_rec[rs->sect])
        if (!rs->dec(arr, i, p))
            return FAIL(RFS_E_CORRUPT, "%s %llu: reserved field is not zero", rs->what,
                        (unsigned long long)(i + rs->first));
    return RFS_OK;
}

static rfs_err records_load(rfs_image *img, char *why, size_t why_cap)
{
    const rfs_sect *sc = img->sect;
    rfs_err err;
    if (sc[RFS_SECT_INODES].count < 1 || sc[RFS_SECT_INODES].count > UINT32_MAX)
        return FAIL(RFS_E_CORRUPT, "inode count %llu out of range",
                    (unsigned long long)sc[RFS_SECT_INODES].count);
    if (sc[RFS_SECT_TENSORS].count >= RFS_IMG_NO_TENSOR)
        return FAIL(RFS_E_CORRUPT, "too many tensors");
    for (size_t k = 0; k < sizeof rec_sects / sizeof rec_sects[0]; k++)
        if ((err = rec_sect_load(img, &rec_sects[k], why, why_cap)))
            return err;
    img->raw_ok = calloc(img->n_extents ? img->n_extents : 1, sizeof *img->raw_ok);
    img->names_len = sc[RFS_SECT_NAMES].len;
    img->names = malloc(img->names_len ? img->names_len : 1);
    img->nlink = alloc_array(img->n_inodes, sizeof *img->nlink);
    img->parent = alloc_array(img->n_inodes, sizeof *img->parent);
    if (!img->raw_ok || !img->names || !img->nlink || !img->parent)
        return FAIL(RFS_E_NOMEM, "out of memory loading metadata");
    memcpy(img->names, img->map + sc[RFS_SECT_NAMES].off, img->names_len);
    return RFS_OK;
}

/* ------------------------------------------------------ directory tree */

static int name_ok(const char *s, size_t len)
{
    if (len == 0 || len > RFS_IMG_NAME_MAX || memchr(s, '/', len))
        return 0;
    return !(len == 1 && s[0] == '.') && !(len == 2 && s[0] == '.' && s[1] == '.');
}

static rfs_err inode_check(rfs_image *img, uint64_t i, char *why, size_t why_cap)
{
    const rfs_inode_rec *r = &img->inodes[i];
    unsigned long long ino = i + 1;
    if (r->mode & ~(uint32_t)(S_IFMT | 07777))
        return FAIL(RFS_E_CORRUPT, "inode %llu: unknown mode bits 0x%x", ino, r->mode);
    if (r->mtime_nsec >= 1000000000u)
        return FAIL(RFS_E_CORRUPT, "inode %llu: mtime nanoseconds %u out of range", ino,
                    r->mtime_nsec);
    switch (r->mode & S_IFMT) {
    case S_IFDIR:
        if (r->size != r->count || !range_ok(r->first, r->count, img->n_dirents))
            return FAIL(RFS_E_CORRUPT, "inode %llu: directory entries [%llu, +%llu) out of range",
                        ino, (unsigned long long)r->first, (unsigned long long)r->count);
        return RFS_OK;
    case S_IFREG:
        if (!range_ok(r->first, r->count, img->n_extents))
            return FAIL(RFS_E_CORRUPT, "inode %llu: extents [%llu, +%llu) out of range", ino,
                        (unsigned long long)r->first, (unsigned long long)r->count);
        return RFS_OK;
    case S_IFLNK:
        if (r->count != 0 || r->size == 0 || r->size > RFS_IMG_LINK_MAX ||
            !pool_str_ok(img, r->first, r->size))
            return FAIL(RFS_E_CORRUPT, "inode %llu: bad symlink target", ino);
        return RFS_OK;
    default:
        return FAIL(RFS_E_CORRUPT, "inode %llu: unsupported file type 0%o", ino,
                    r->mode & S_IFMT);
    }
}

/*
 * One more entry (entry k, of directory i) names its child: the first one
 * sets the child's parent; a second is a hard link, allowed only for a
 * non-directory and only in an image with feature HARDLINKS.  Link counts:
 * a directory has 2 plus its subdirectories, anything else its names.
 */
static rfs_err entry_link(rfs_image *img, uint64_t i, uint64_t k, uint8_t *entry_seen,
                          char *why, size_t why_cap)
{
    uint32_t child = img->dirents[k].ino, c = child - 1;
    int is_dir = S_ISDIR(img->inodes[c].mode);
    if (entry_seen[k]++)
        return FAIL(RFS_E_CORRUPT, "directory entry %llu belongs to more than one directory",
                    (unsigned long long)k);
    if (img->parent[c]) {
        if (is_dir || !(img->features & RFS_IMG_F_HARDLINKS))
            return FAIL(RFS_E_CORRUPT, "inode %u is linked from more than one entry%s", child,
                        is_dir ? " (a directory)" : " (feature HARDLINKS is not set)");
        if (img->nlink[c] == UINT32_MAX)
            return FAIL(RFS_E_CORRUPT, "inode %u has too many names", child);
        img->n_links++;
    } else {
        img->parent[c] = (uint32_t)(i + 1);
    }
    img->nlink[c] += !is_dir;
    img->nlink[i] += is_dir;
    return RFS_OK;
}

/* Entries of one directory: valid children, valid names, strictly sorted. */
static rfs_err dir_check(rfs_image *img, uint64_t i, uint8_t *entry_seen, char *why,
                         size_t why_cap)
{
    const rfs_inode_rec *r = &img->inodes[i];
    const char *prev = NULL;
    rfs_err err;
    for (uint64_t k = r->first; k < r->first + r->count; k++) {
        const rfs_dirent_rec *d = &img->dirents[k];
        if (d->ino < 2 || d->ino > img->n_inodes)
            return FAIL(RFS_E_CORRUPT, "directory entry %llu: inode %u out of range",
                        (unsigned long long)k, d->ino);
        if (!pool_str_ok(img, d->name_off, d->name_len) ||
            !name_ok(img->names + d->name_off, d->name_len))
            return FAIL(RFS_E_CORRUPT, "directory entry %llu: bad name", (unsigned long long)k);
        const char *name = img->names + d->name_off;
        if (prev && strcmp(prev, name) >= 0)
            return FAIL(RFS_E_CORRUPT, "directory %llu: entries not sorted or duplicated at "
                        "\"%s\"", (unsigned long long)i + 1, name);
        prev = name;
        if ((err = entry_link(img, i, k, entry_seen, why, why_cap)))
            return err;
    }
    return RFS_OK;
}

/* Every inode reachable from the root.  A directory has one entry, so the
 * walk meets each directory once and there is no cycle through the root;
 * a hard-linked file is met once per name and counted once. */
static rfs_err tree_check(rfs_image *img, char *why, size_t why_cap)
{
    uint32_t *queue = malloc(img->n_inodes * sizeof *queue);
    uint8_t *seen = calloc(img->n_inodes, 1);
    rfs_err err = RFS_OK;
    if (!queue || !seen) {
        err = FAIL(RFS_E_NOMEM, "out of memory checking the directory tree");
        goto out;
    }
    uint64_t head = 0, tail = 0, reached = 1;
    queue[tail++] = RFS_ROOT_INO;
    seen[0] = 1;
    while (head < tail) {
        const rfs_inode_rec *r = &img->inodes[queue[head++] - 1];
        for (uint64_t k = r->first; k < r->first + r->count; k++) {
            uint32_t c = img->dirents[k].ino - 1;
            if (seen[c])
                continue;
            seen[c] = 1;
            reached++;
            if (S_ISDIR(img->inodes[c].mode) && tail < img->n_inodes)
                queue[tail++] = c + 1;
        }
    }
    if (reached != img->n_inodes)
        err = FAIL(RFS_E_CORRUPT, "directory tree: %llu of %llu inodes reachable from the root",
                   (unsigned long long)reached, (unsigned long long)img->n_inodes);
out:
    free(queue);
    free(seen);
    return err;
}

/* The entry count and the feature flag agree with the links found. */
static rfs_err links_check(const rfs_image *img, char *why, size_t why_cap)
{
    if (img->n_dirents != img->n_inodes - 1 + img->n_links)
        return FAIL(RFS_E_CORRUPT, "%llu directory entries for %llu inodes and %llu extra names",
                    (unsigned long long)img->n_dirents, (unsigned long long)img->n_inodes,
                    (unsigned long long)img->n_links);
    if ((img->features & RFS_IMG_F_HARDLINKS) && img->n_links == 0)
        return FAIL(RFS_E_CORRUPT, "feature HARDLINKS is set but no inode has two names");
    return RFS_OK;
}

static rfs_err namespace_check(rfs_image *img, char *why, size_t why_cap)
{
    rfs_err err = RFS_OK;
    uint8_t *entry_seen = calloc(img->n_dirents ? img->n_dirents : 1, 1);
    if (!entry_seen)
        return FAIL(RFS_E_NOMEM, "out of memory checking the directory tree");
    if (!S_ISDIR(img->inodes[0].mode)) {
        err = FAIL(RFS_E_CORRUPT, "root inode is not a directory");
        goto out;
    }
    img->parent[0] = RFS_ROOT_INO;
    for (uint64_t i = 0; i < img->n_inodes; i++) {
        img->nlink[i] = S_ISDIR(img->inodes[i].mode) ? 2 : 0;
        if ((err = inode_check(img, i, why, why_cap)))
            goto out;
    }
    for (uint64_t i = 0; i < img->n_inodes; i++)
        if (S_ISDIR(img->inodes[i].mode) && (err = dir_check(img, i, entry_seen, why, why_cap)))
            goto out;
    if (!(err = links_check(img, why, why_cap)))
        err = tree_check(img, why, why_cap);
out:
    free(entry_seen);
    return err;
}

/* ------------------------------------------------------ units, extents */

static rfs_err units_check(rfs_image *img, char *why, size_t why_cap)
{
    uint32_t max = 0;
    for (uint64_t u = 0; u < img->n_units; u++) {
        const rfs_unit_rec *r = &img->units[u];
        unsigned long long uu = u;
        if (r->size == 0 || !range_ok(r->off - img->data_off, r->size, img->data_len) ||
            r->off < img->data_off)
            return FAIL(RFS_E_CORRUPT, "unit %llu: bytes [%llu, +%u) outside the data region", uu,
                        (unsigned long long)r->off, r->size);
        if (r->decoded_size == 0 || r->decoded_size > img->unit_max)
            return FAIL(RFS_E_CORRUPT, "unit %llu: decoded size %u out of range", uu,
                        r->decoded_size);
        if (r->kind == RFS_UNIT_ZSTD) {
            if (r->tensor != RFS_IMG_NO_TENSOR)
                return FAIL(RFS_E_CORRUPT, "unit %llu: zstd block names a tensor", uu);
        } else if (r->kind == RFS_UNIT_TILE) {
            if (r->tensor >= img->n_tensors)
                return FAIL(RFS_E_CORRUPT, "unit %llu: tensor %u out of range", uu, r->tensor);
        } else {
            return FAIL(RFS_E_CORRUPT, "unit %llu: unknown kind %u", uu, r->kind);
        }
        if (r->decoded_size > max)
            max = r->decoded_size;
    }
    if (max != img->unit_max)
        return FAIL(RFS_E_CORRUPT, "largest unit is %u bytes, superblock says %u", max,
                    img->unit_max);
    return RFS_OK;
}

static rfs_err extent_check(const rfs_image *img, uint64_t e, char *why, size_t why_cap)
{
    const rfs_extent_rec *x = &img->extents[e];
    unsigned long long ee = e;
    if (x->length == 0)
        return FAIL(RFS_E_CORRUPT, "extent %llu: empty", ee);
    if (x->kind == RFS_EXT_RAW) {
        if (x->stride != 0 || x->src < img->data_off ||
            !range_ok(x->src - img->data_off, x->length, img->data_len))
            return FAIL(RFS_E_CORRUPT, "extent %llu: raw bytes outside the data region", ee);
        if (x->length > img->tile_size)
            return FAIL(RFS_E_CORRUPT, "extent %llu: raw extent of %llu bytes exceeds the tile "
                        "size", ee, (unsigned long long)x->length);
        return RFS_OK;
    }
    if (x->kind != RFS_EXT_UNITS || x->xxh3 != 0)
        return FAIL(RFS_E_CORRUPT, "extent %llu: unknown kind %u or non-zero checksum", ee,
                    x->kind);
    if (x->stride == 0 || x->stride > img->unit_max)
        return FAIL(RFS_E_CORRUPT, "extent %llu: unit stride %u out of range", ee, x->stride);
    uint64_t n = (x->length - 1) / x->stride + 1;
    if (!range_ok(x->src, n, img->n_units))
        return FAIL(RFS_E_CORRUPT, "extent %llu: units [%llu, +%llu) out of range", ee,
                    (unsigned long long)x->src, (unsigned long long)n);
    uint8_t kind = img->units[x->src].kind;
    for (uint64_t k = 0; k < n; k++) {
        const rfs_unit_rec *u = &img->units[x->src + k];
        uint64_t want = k + 1 < n ? x->stride : x->length - (n - 1) * x->stride;
        if (u->decoded_size != want || u->kind != kind)
            return FAIL(RFS_E_CORRUPT, "extent %llu: unit %llu decodes to %u bytes, expected "
                        "%llu", ee, (unsigned long long)(x->src + k), u->decoded_size,
                        (unsigned long long)want);
    }
    return RFS_OK;
}

/* The extents of each regular file tile it exactly: 0, e0.len, ... size. */
static rfs_err files_check(rfs_image *img, char *why, size_t why_cap)
{
    rfs_err err;
    for (uint64_t e = 0; e < img->n_extents; e++)
        if ((err = extent_check(img, e, why, why_cap)))
            return err;
    uint64_t total = 0;
    for (uint64_t i = 0; i < img->n_inodes; i++) {
        const rfs_inode_rec *r = &img->inodes[i];
        if (!S_ISREG(r->mode))
            continue;
        uint64_t pos = 0;
        for (uint64_t e = r->first; e < r->first + r->count; e++) {
            const rfs_extent_rec *x = &img->extents[e];
            if (x->file_off != pos || x->length > UINT64_MAX - pos)
                return FAIL(RFS_E_CORRUPT, "inode %llu: extent %llu starts at %llu, expected %llu",
                            (unsigned long long)i + 1, (unsigned long long)e,
                            (unsigned long long)x->file_off, (unsigned long long)pos);
            pos += x->length;
        }
        if (pos != r->size)
            return FAIL(RFS_E_CORRUPT, "inode %llu: extents cover %llu bytes, size is %llu",
                        (unsigned long long)i + 1, (unsigned long long)pos,
                        (unsigned long long)r->size);
        total += r->size;
    }
    if (total != img->content_bytes)
        return FAIL(RFS_E_CORRUPT, "files hold %llu bytes, superblock says %llu",
                    (unsigned long long)total, (unsigned long long)img->content_bytes);
    return RFS_OK;
}

/* ------------------------------------------------------------ tensors */

static rfs_err tensor_fields_check(const rfs_image *img, uint64_t t, char *why, size_t why_cap)
{
    const rfs_tensor_rec *r = &img->tensors[t];
    unsigned long long tt = t;
    unsigned w = rfs_dtype_width(r->dtype);
    if (w == 0 || r->width != w)
        return FAIL(RFS_E_CORRUPT, "tensor %llu: bad dtype %u / width %u", tt, r->dtype, r->width);
    if (r->transform >= RFS_XF_COUNT || (r->transform == RFS_XF_ROT1 && w == 1))
        return FAIL(RFS_E_CORRUPT, "tensor %llu: bad transform %u", tt, r->transform);
    if ((r->shared_mask >> w) || (r->flags & ~RFS_TENSOR_F_ALIAS))
        return FAIL(RFS_E_CORRUPT, "tensor %llu: bad plane mask or flags", tt);
    if (!pool_str_ok(img, r->name_off, r->name_len) || r->name_len == 0)
        return FAIL(RFS_E_CORRUPT, "tensor %llu: bad name", tt);
    if (r->ino < 1 || r->ino > img->n_inodes || !S_ISREG(img->inodes[r->ino - 1].mode))
        return FAIL(RFS_E_CORRUPT, "tensor %llu: inode %u is not a regular file", tt, r->ino);
    if (!range_ok(r->dims_off, r->ndim, img->n_dims))
        return FAIL(RFS_E_CORRUPT, "tensor %llu: dimensions out of range", tt);
    uint64_t prod = 1;
    for (unsigned k = 0; k < r->ndim; k++) {
        uint64_t d = img->dims[r->dims_off + k];
        if (d && prod > UINT64_MAX / d)
            return FAIL(RFS_E_CORRUPT, "tensor %llu: shape overflows", tt);
        prod *= d;
    }
    if (prod != r->n_elems || r->n_elems == 0 || r->n_elems > UINT64_MAX / w)
        return FAIL(RFS_E_CORRUPT, "tensor %llu: shape gives %llu elements, record says %llu", tt,
                    (unsigned long long)prod, (unsigned long long)r->n_elems);
    if (r->tile_size != img->tile_size)
        return FAIL(RFS_E_CORRUPT, "tensor %llu: tile size %u differs from the image's %u", tt,
                    r->tile_size, img->tile_size);
    uint64_t bytes = r->n_elems * w;
    if (r->n_units != (bytes - 1) / r->tile_size + 1 || !range_ok(r->first_unit, r->n_units,
                                                                  img->n_units))
        return FAIL(RFS_E_CORRUPT, "tensor %llu: tiles [%llu, +%u) wrong count or out of range",
                    tt, (unsigned long long)r->first_unit, r->n_units);
    return RFS_OK;
}

/* The tiles of tensor t: units owned by t (or by the tensor t aliases). */
static rfs_err tensor_units_check(const rfs_image *img, uint64_t t, char *why, size_t why_cap)
{
    const rfs_tensor_rec *r = &img->tensors[t];
    uint64_t bytes = r->n_elems * r->width;
    uint32_t owner = img->units[r->first_unit].tensor;
    const rfs_tensor_rec *o = owner < img->n_tensors ? &img->tensors[owner] : NULL;
    int alias = (r->flags & RFS_TENSOR_F_ALIAS) != 0;
    if (!o || (alias ? owner >= t || (o->flags & RFS_TENSOR_F_ALIAS) || o->dtype != r->dtype ||
                           o->first_unit != r->first_unit || o->n_elems != r->n_elems ||
                           r->shared_mask || r->table_len
                     : owner != t))
        return FAIL(RFS_E_CORRUPT, "tensor %llu: tiles owned by tensor %u", (unsigned long long)t,
                    owner);
    for (uint32_t k = 0; k < r->n_units; k++) {
        const rfs_unit_rec *u = &img->units[r->first_unit + k];
        uint64_t want = k + 1 < r->n_units ? r->tile_size : bytes - (uint64_t)k * r->tile_size;
        if (u->kind != RFS_UNIT_TILE || u->tensor != owner || u->decoded_size != want)
            return FAIL(RFS_E_CORRUPT, "tensor %llu: unit %llu is not its tile %u",
                        (unsigned long long)t, (unsigned long long)(r->first_unit + k), k);
    }
    return RFS_OK;
}

static rfs_err tensor_tables_build(rfs_image *img, uint64_t t, rfs_table **next, char *why,
                                   size_t why_cap)
{
    const rfs_tensor_rec *r = &img->tensors[t];
    const uint8_t *blob = img->map + img->sect[RFS_SECT_TABLES].off;
    uint64_t blob_len = img->sect[RFS_SECT_TABLES].len;
    if (!range_ok(r->table_off, r->table_len, blob_len) || (!r->shared_mask != !r->table_len))
        return FAIL(RFS_E_CORRUPT, "tensor %llu: shared tables out of range",
                    (unsigned long long)t);
    uint64_t pos = r->table_off, end = r->table_off + r->table_len;
    for (unsigned p = 0; p < r->width; p++) {
        if (!(r->shared_mask >> p & 1))
            continue;
        size_t used = 0;
        rfs_table *tab = (*next)++;
        rfs_err err = rfs_table_parse(tab, blob + pos, end - pos, &used);
        if (err)
            return FAIL(RFS_E_CORRUPT, "tensor %llu: shared table of plane %u: %s",
                        (unsigned long long)t, p, rfs_strerror(err));
        img->tsets[t].plane[p] = tab;
        pos += used;
    }
    if (pos != end)
        return FAIL(RFS_E_CORRUPT, "tensor %llu: %llu bytes after its shared tables",
                    (unsigned long long)t, (unsigned long long)(end - pos));
    return RFS_OK;
}

static rfs_err tensors_check(rfs_image *img, char *why, size_t why_cap)
{
    rfs_err err;
    uint64_t n_tables = 0;
    for (uint64_t t = 0; t < img->n_tensors; t++) {
        if ((err = tensor_fields_check(img, t, why, why_cap)))
            return err;
        n_tables += (unsigned)__builtin_popcount(img->tensors[t].shared_mask);
    }
    uint64_t owned = 0, tiles = 0;
    for (uint64_t t = 0; t < img->n_tensors; t++) {
        if ((err = tensor_units_check(img, t, why, why_cap)))
            return err;
        if (!(img->tensors[t].flags & RFS_TENSOR_F_ALIAS))
            owned += img->tensors[t].n_units;
    }
    /* Owners' ranges are disjoint (each unit names one owner), so this
     * says every tile unit lies in its owner's range. */
    for (uint64_t u = 0; u < img->n_units; u++)
        tiles += img->units[u].kind == RFS_UNIT_TILE;
    if (owned != tiles)
        return FAIL(RFS_E_CORRUPT, "%llu tile units but tensors own %llu",
                    (unsigned long long)tiles, (unsigned long long)owned);
    img->tables = alloc_array(n_tables, sizeof *img->tables);
    img->tsets = alloc_array(img->n_tensors, sizeof *img->tsets);
    if (!img->tables || !img->tsets)
        return FAIL(RFS_E_NOMEM, "out of memory for shared tables");
    rfs_table *next = img->tables;
    for (uint64_t t = 0; t < img->n_tensors; t++)
        if ((err = tensor_tables_build(img, t, &next, why, why_cap)))
            return err;
    img->plans = rfs_tables_plan(img->tables, (size_t)n_tables);
    return RFS_OK;
}

/* -------------------------------------------------------- open, close */

static const char *file_type_name(mode_t m)
{
    return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO" : S_ISCHR(m) ? "a character device"
         : S_ISBLK(m) ? "a block device" : S_ISSOCK(m) ? "a socket" : "an unknown file type";
}

/* Open the image and make sure it is a regular file before anything reads
 * it. O_NONBLOCK keeps open() itself from waiting on a FIFO with no writer
 * (or a device that blocks on open); the type is then checked on the open
 * descriptor, so there is no window between the check and the use. */
static rfs_err image_fd_open(rfs_image *img, const char *path, struct stat *st, char *why,
                             size_t why_cap)
{
    img->fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (img->fd < 0 || fstat(img->fd, st) != 0)
        return FAIL(RFS_E_IO, "cannot open: %s", strerror(errno));
    if (!S_ISREG(st->st_mode))
        return FAIL(RFS_E_IO, "not a regular file (%s)", file_type_name(st->st_mode));
    /* Harmless on a regular file, but the fd is handed to FUSE for splice:
     * give it the ordinary blocking flags. */
    int fl = fcntl(img->fd, F_GETFL);
    if (fl < 0 || fcntl(img->fd, F_SETFL, fl & ~O_NONBLOCK) != 0)
        return FAIL(RFS_E_IO, "cannot clear O_NONBLOCK: %s", strerror(errno));
    return RFS_OK;
}

/* Validate an image whose map, map_size (and src) are set; frees it on failure. */
static rfs_err image_validate(rfs_image **out, rfs_image *img, char *why, size_t why_cap)
{
    rfs_err err;
    if ((err = sb_parse(img, why, why_cap)) || (err = sect_parse(img, why, why_cap)) ||
        (err = records_load(img, why, why_cap)) || (err = namespace_check(img, why, why_cap)) ||
        (err = units_check(img, why, why_cap)) || (err = files_check(img, why, why_cap)) ||
        (err = tensors_check(img, why, why_cap))) {
        rfs_image_close(img);
        return err;
    }
    *out = img;
    return RFS_OK;
}

static rfs_image *image_alloc(rfs_image **out, char *why, size_t why_cap)
{
    *out = NULL;
    if (why && why_cap)
        why[0] = '\0';
    rfs_image *img = calloc(1, sizeof *img);
    if (img)
        img->fd = -1;
    return img;
}

rfs_err rfs_image_open(rfs_image **out, const char *path, char *why, size_t why_cap)
{
    rfs_err err;
    struct stat st;
    rfs_image *img = image_alloc(out, why, why_cap);
    if (!img)
        return FAIL(RFS_E_NOMEM, "out of memory");
    img->own_map = 1;
    if ((err = image_fd_open(img, path, &st, why, why_cap)))
        goto fail;
    img->map_size = (uint64_t)st.st_size;
    if (img->map_size > 0) {
        void *m = mmap(NULL, img->map_size, PROT_READ, MAP_SHARED, img->fd, 0);
        if (m == MAP_FAILED) {
            err = FAIL(RFS_E_IO, "cannot map: %s", strerror(errno));
            goto fail;
        }
        img->map = m;
    }
    return image_validate(out, img, why, why_cap);
fail:
    rfs_image_close(img);
    return err;
}

rfs_err rfs_image_open_source(rfs_image **out, const rfs_source *src, char *why, size_t why_cap)
{
    rfs_image *img = image_alloc(out, why, why_cap);
    if (!img)
        return FAIL(RFS_E_NOMEM, "out of memory");
    if (!src || (src->size && !src->base)) {
        rfs_image_close(img);
        return FAIL(RFS_E_ARG, "no image source");
    }
    img->src = *src;
    img->fd = src->fd;
    img->map = src->base;
    img->map_size = src->size;
    return image_validate(out, img, why, why_cap);
}

int rfs_image_is_sourced(const rfs_image *img) { return img->src.ensure != NULL; }

void rfs_image_close(rfs_image *img)
{
    if (!img)
        return;
    if (img->own_map && img->map)
        munmap((void *)img->map, img->map_size);
    if (img->own_map && img->fd >= 0)
        close(img->fd);
    free(img->inodes);
    free(img->dirents);
    free(img->extents);
    free((void *)img->raw_ok);
    free(img->units);
    free(img->tensors);
    free(img->dims);
    free(img->names);
    free(img->nlink);
    free(img->parent);
    free(img->tables);
    free(img->plans);
    free(img->tsets);
    free(img);
}

void rfs_image_get_summary(const rfs_image *img, rfs_image_summary *sum)
{
    sum->image_bytes = img->image_size;
    sum->content_bytes = img->content_bytes;
    sum->n_inodes = img->n_inodes;
    sum->n_units = img->n_units;
    sum->unit_max = img->unit_max;
    sum->tile_size = img->tile_size;
}

int rfs_image_fd(const rfs_image *img) { return img->fd; }

void rfs_image_mapping(const rfs_image *img, const uint8_t **base, uint64_t *size)
{
    *base = img->map;
    *size = img->map_size;
}
