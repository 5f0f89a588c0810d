/*
 * rfs_image_format.h - the bytes of a ransfs image, format 1.x: constants,
 * record sizes and field offsets of docs/format.md Part 2, and the
 * little-endian load/store helpers both the reader (codec/rfs_image.c) and
 * the writer (mkimage/) use.  Not part of the reader's public API.
 *
 * Every record is parsed field by field with the load helpers, never by
 * casting a struct over the bytes; the structs below are the decoded form.
 */
#ifndef RFS_IMAGE_FORMAT_H
#define RFS_IMAGE_FORMAT_H

#include <stdint.h>
#include <string.h>

#include "rfs_xxhash.h"

#include "rfs_internal.h"

#define RFS_IMG_MAGIC "RANSFSIM"
#define RFS_IMG_MAGIC_SIZE 8u
#define RFS_IMG_VERSION 1u            /* major version: what this reader reads */
#define RFS_IMG_MINOR 0u              /* minor version this writer writes */
#define RFS_IMG_F_HARDLINKS 0x1u      /* a non-directory may have several entries */
#define RFS_IMG_F_TRAILER 0x2u        /* superblock at the end, a stub at offset 0 */
#define RFS_IMG_F_CTX 0x4u           /* some tile has a RANS_CTX plane (tile format 2) */
#define RFS_IMG_FEATURES_KNOWN (RFS_IMG_F_HARDLINKS | RFS_IMG_F_TRAILER | RFS_IMG_F_CTX)
/* Flags a TRAILER stub leaves out: known only once every tile is coded. */
#define RFS_IMG_F_STUB_UNKNOWN RFS_IMG_F_CTX
#define RFS_IMG_SB_SIZE 512u          /* superblock, at offset 0 (TRAILER: at the end) */
#define RFS_IMG_SB_CSUM_OFF 504u      /* XXH3-64 of superblock bytes [0, 504) */
#define RFS_IMG_SECT_TABLE_OFF 64u
#define RFS_IMG_SECT_ENTRY_SIZE 32u
#define RFS_IMG_TILE_MIN (64u << 10)
#define RFS_IMG_TILE_MAX (4u << 20)
#define RFS_IMG_NAME_MAX 255u
#define RFS_IMG_LINK_MAX 4095u
#define RFS_IMG_NO_TENSOR 0xffffffffu

/* Metadata sections, in the order they follow the data region. */
enum {
    RFS_SECT_INODES = 0,
    RFS_SECT_DIRENTS = 1,
    RFS_SECT_EXTENTS = 2,
    RFS_SECT_UNITS = 3,
    RFS_SECT_TENSORS = 4,
    RFS_SECT_DIMS = 5,
    RFS_SECT_TABLES = 6,
    RFS_SECT_NAMES = 7,
    RFS_SECT_COUNT = 8,
};

/* Record sizes (0: a byte blob whose count field is zero). */
#define RFS_INODE_SIZE 48u
#define RFS_DIRENT_SIZE 16u
#define RFS_EXTENT_SIZE 40u
#define RFS_UNIT_SIZE 32u
#define RFS_TENSOR_SIZE 64u
#define RFS_DIM_SIZE 8u

_Static_assert(RFS_IMG_SECT_TABLE_OFF + RFS_SECT_COUNT * RFS_IMG_SECT_ENTRY_SIZE <=
                   RFS_IMG_SB_CSUM_OFF,
               "section table must fit the superblock");

enum { RFS_EXT_RAW = 0, RFS_EXT_UNITS = 1 };

/* Tensor element types (tensor record field dtype). */
enum {
    RFS_DT_F16 = 1,
    RFS_DT_BF16 = 2,
    RFS_DT_F32 = 3,
    RFS_DT_F8_E4M3 = 4,
    RFS_DT_F8_E5M2 = 5,
    RFS_DT_I8 = 6,
    RFS_DT_U8 = 7,
    RFS_DT_COUNT = 8,
};

#define RFS_TENSOR_F_ALIAS 0x01u /* tensor record reuses an earlier tensor's units */

/* ------------------------------------------------------- decoded records */

typedef struct rfs_sect {
    uint64_t off, len, count, xxh3;
} rfs_sect;

/* The superblock (docs/format.md 2.1), without magic and checksum. */
typedef struct rfs_sb_rec {
    uint16_t major, minor; /* image format version */
    uint32_t features;
    uint32_t sb_size;
    uint32_t tile_size, unit_max;
    uint64_t image_size, content_bytes, data_off, data_len;
    rfs_sect sect[RFS_SECT_COUNT];
} rfs_sb_rec;

typedef struct rfs_inode_rec {
    uint32_t mode;
    int64_t mtime_sec;
    uint32_t mtime_nsec;
    uint64_t size;
    uint64_t first; /* dir: first dirent; file: first extent; link: target offset in names */
    uint64_t count; /* dir: entries; file: extents; link: 0 */
} rfs_inode_rec;

typedef struct rfs_dirent_rec {
    uint32_t ino;
    uint16_t name_len;
    uint64_t name_off;
} rfs_dirent_rec;

typedef struct rfs_extent_rec {
    uint64_t file_off, length, src; /* src: image offset (RAW) or first unit (UNITS) */
    uint8_t kind;
    uint32_t stride; /* UNITS: decoded size of every unit but the last */
    uint64_t xxh3;   /* RAW: XXH3-64 of its bytes; UNITS: 0 */
} rfs_extent_rec;

typedef struct rfs_unit_rec {
    uint64_t off;
    uint32_t size, decoded_size;
    uint64_t xxh3;
    uint8_t kind;
    uint32_t tensor;
} rfs_unit_rec;

typedef struct rfs_tensor_rec {
    uint64_t name_off, dims_off, n_elems, first_unit, table_off;
    uint32_t ino, n_units, tile_size, table_len;
    uint16_t name_len;
    uint8_t ndim, dtype, width, transform, shared_mask, flags;
} rfs_tensor_rec;

/* Little-endian load/store: rfs_ld16/32/64 and rfs_st16/32/64 (rfs_internal.h). */

/* Element width of a dtype, 0 when unknown. */
static inline unsigned rfs_dtype_width(unsigned dt)
{
    static const uint8_t w[RFS_DT_COUNT] = {0, 2, 2, 4, 1, 1, 1, 1};
    return dt < RFS_DT_COUNT ? w[dt] : 0;
}

static inline const char *rfs_dtype_name(unsigned dt)
{
    static const char *const n[RFS_DT_COUNT] = {"?",       "F16",     "BF16", "F32",
                                                 "F8_E4M3", "F8_E5M2", "I8",   "U8"};
    return dt < RFS_DT_COUNT ? n[dt] : "?";
}

/* ------------------------------------------ record encode / decode */

static inline void rfs_sect_load(rfs_sect *r, const uint8_t *p)
{
    r->off = rfs_ld64(p);
    r->len = rfs_ld64(p + 8);
    r->count = rfs_ld64(p + 16);
    r->xxh3 = rfs_ld64(p + 24);
}
static inline void rfs_sect_store(uint8_t *p, const rfs_sect *r)
{
    rfs_st64(p, r->off);
    rfs_st64(p + 8, r->len);
    rfs_st64(p + 16, r->count);
    rfs_st64(p + 24, r->xxh3);
}

/* Fields of the RFS_IMG_SB_SIZE bytes at p; magic and checksum are not
 * looked at (rfs_sb_magic_ok, rfs_sb_csum_ok). */
static inline void rfs_sb_load(rfs_sb_rec *r, const uint8_t *p)
{
    r->major = rfs_ld16(p + 8);
    r->minor = rfs_ld16(p + 10);
    r->features = rfs_ld32(p + 12);
    r->sb_size = rfs_ld32(p + 16);
    r->tile_size = rfs_ld32(p + 20);
    r->unit_max = rfs_ld32(p + 24);
    r->image_size = rfs_ld64(p + 32);
    r->content_bytes = rfs_ld64(p + 40);
    r->data_off = rfs_ld64(p + 48);
    r->data_len = rfs_ld64(p + 56);
    for (int s = 0; s < RFS_SECT_COUNT; s++)
        rfs_sect_load(&r->sect[s], p + RFS_IMG_SECT_TABLE_OFF + s * RFS_IMG_SECT_ENTRY_SIZE);
}
static inline int rfs_sb_magic_ok(const uint8_t *p)
{
    return memcmp(p, RFS_IMG_MAGIC, RFS_IMG_MAGIC_SIZE) == 0;
}
static inline int rfs_sb_csum_ok(const uint8_t *p)
{
    return XXH3_64bits(p, RFS_IMG_SB_CSUM_OFF) == rfs_ld64(p + RFS_IMG_SB_CSUM_OFF);
}
/* Offset of the first non-zero reserved superblock byte ([28, 32) and the
 * bytes after the section table), or 0 when all are zero. */
static inline unsigned rfs_sb_reserved_bad(const uint8_t *p)
{
    for (unsigned i = 28; i < 32; i++)
        if (p[i])
            return i;
    for (unsigned i = RFS_IMG_SECT_TABLE_OFF + RFS_SECT_COUNT * RFS_IMG_SECT_ENTRY_SIZE;
         i < RFS_IMG_SB_CSUM_OFF; i++)
        if (p[i])
            return i;
    return 0;
}
/* (Re)compute the superblock checksum of the superblock at p. */
static inline void rfs_sb_seal(uint8_t *p)
{
    rfs_st64(p + RFS_IMG_SB_CSUM_OFF, XXH3_64bits(p, RFS_IMG_SB_CSUM_OFF));
}
/* The superblock stub of a TRAILER image (docs/format.md 2.1.3): the
 * fields of r a stream writer knows before the data, all else zero.  The
 * writer stores it at offset 0; the reader rebuilds it from the trailer and
 * requires the bytes at offset 0 to be exactly these. */
static inline void rfs_sb_stub_store(uint8_t *p, const rfs_sb_rec *r)
{
    memset(p, 0, RFS_IMG_SB_SIZE);
    memcpy(p, RFS_IMG_MAGIC, RFS_IMG_MAGIC_SIZE);
    rfs_st16(p + 8, r->major);
    rfs_st16(p + 10, r->minor);
    rfs_st32(p + 12, r->features);
    rfs_st32(p + 16, r->sb_size);
    rfs_st64(p + 48, r->data_off);
}

/* A TRAILER stub (docs/format.md 2.1.3): the superblock's head, without the
 * flags a streaming writer cannot know at offset 0. */
static inline void rfs_sb_stub_of(uint8_t *p, const rfs_sb_rec *r)
{
    rfs_sb_rec h = *r;
    h.features &= ~RFS_IMG_F_STUB_UNKNOWN;
    rfs_sb_stub_store(p, &h);
}

/* The whole superblock: magic, fields, zero reserved bytes, checksum. */
static inline void rfs_sb_store(uint8_t *p, const rfs_sb_rec *r)
{
    rfs_sb_stub_store(p, r); /* magic, version, flags, sizes; zero elsewhere */
    rfs_st32(p + 20, r->tile_size);
    rfs_st32(p + 24, r->unit_max);
    rfs_st64(p + 32, r->image_size);
    rfs_st64(p + 40, r->content_bytes);
    rfs_st64(p + 56, r->data_len);
    for (int s = 0; s < RFS_SECT_COUNT; s++)
        rfs_sect_store(p + RFS_IMG_SECT_TABLE_OFF + s * RFS_IMG_SECT_ENTRY_SIZE, &r->sect[s]);
    rfs_sb_seal(p);
}

static inline void rfs_inode_load(rfs_inode_rec *r, const uint8_t *p)
{
    r->mode = rfs_ld32(p);
    r->mtime_sec = (int64_t)rfs_ld64(p + 8);
    r->mtime_nsec = rfs_ld32(p + 16);
    r->size = rfs_ld64(p + 24);
    r->first = rfs_ld64(p + 32);
    r->count = rfs_ld64(p + 40);
}
/* Reserved bytes of an inode record: [4,8) and [20,24). */
static inline int rfs_inode_reserved_ok(const uint8_t *p)
{
    return rfs_ld32(p + 4) == 0 && rfs_ld32(p + 20) == 0;
}
static inline void rfs_inode_store(uint8_t *p, const rfs_inode_rec *r)
{
    memset(p, 0, RFS_INODE_SIZE);
    rfs_st32(p, r->mode);
    rfs_st64(p + 8, (uint64_t)r->mtime_sec);
    rfs_st32(p + 16, r->mtime_nsec);
    rfs_st64(p + 24, r->size);
    rfs_st64(p + 32, r->first);
    rfs_st64(p + 40, r->count);
}

static inline void rfs_dirent_load(rfs_dirent_rec *r, const uint8_t *p)
{
    r->ino = rfs_ld32(p);
    r->name_len = rfs_ld16(p + 4);
    r->name_off = rfs_ld64(p + 8);
}
static inline int rfs_dirent_reserved_ok(const uint8_t *p) { return rfs_ld16(p + 6) == 0; }
static inline void rfs_dirent_store(uint8_t *p, const rfs_dirent_rec *r)
{
    memset(p, 0, RFS_DIRENT_SIZE);
    rfs_st32(p, r->ino);
    rfs_st16(p + 4, r->name_len);
    rfs_st64(p + 8, r->name_off);
}

static inline void rfs_extent_load(rfs_extent_rec *r, const uint8_t *p)
{
    r->file_off = rfs_ld64(p);
    r->length = rfs_ld64(p + 8);
    r->src = rfs_ld64(p + 16);
    r->kind = p[24];
    r->stride = rfs_ld32(p + 28);
    r->xxh3 = rfs_ld64(p + 32);
}
static inline int rfs_extent_reserved_ok(const uint8_t *p)
{
    return p[25] == 0 && p[26] == 0 && p[27] == 0;
}
static inline void rfs_extent_store(uint8_t *p, const rfs_extent_rec *r)
{
    memset(p, 0, RFS_EXTENT_SIZE);
    rfs_st64(p, r->file_off);
    rfs_st64(p + 8, r->length);
    rfs_st64(p + 16, r->src);
    p[24] = r->kind;
    rfs_st32(p + 28, r->stride);
    rfs_st64(p + 32, r->xxh3);
}

static inline void rfs_unit_load(rfs_unit_rec *r, const uint8_t *p)
{
    r->off = rfs_ld64(p);
    r->size = rfs_ld32(p + 8);
    r->decoded_size = rfs_ld32(p + 12);
    r->xxh3 = rfs_ld64(p + 16);
    r->kind = p[24];
    r->tensor = rfs_ld32(p + 28);
}
static inline int rfs_unit_reserved_ok(const uint8_t *p)
{
    return p[25] == 0 && p[26] == 0 && p[27] == 0;
}
static inline void rfs_unit_store(uint8_t *p, const rfs_unit_rec *r)
{
    memset(p, 0, RFS_UNIT_SIZE);
    rfs_st64(p, r->off);
    rfs_st32(p + 8, r->size);
    rfs_st32(p + 12, r->decoded_size);
    rfs_st64(p + 16, r->xxh3);
    p[24] = r->kind;
    rfs_st32(p + 28, r->tensor);
}

static inline void rfs_tensor_load(rfs_tensor_rec *r, const uint8_t *p)
{
    r->name_off = rfs_ld64(p);
    r->dims_off = rfs_ld64(p + 8);
    r->n_elems = rfs_ld64(p + 16);
    r->first_unit = rfs_ld64(p + 24);
    r->table_off = rfs_ld64(p + 32);
    r->ino = rfs_ld32(p + 40);
    r->n_units = rfs_ld32(p + 44);
    r->tile_size = rfs_ld32(p + 48);
    r->table_len = rfs_ld32(p + 52);
    r->name_len = rfs_ld16(p + 56);
    r->ndim = p[58];
    r->dtype = p[59];
    r->width = p[60];
    r->transform = p[61];
    r->shared_mask = p[62];
    r->flags = p[63];
}
static inline void rfs_tensor_store(uint8_t *p, const rfs_tensor_rec *r)
{
    rfs_st64(p, r->name_off);
    rfs_st64(p + 8, r->dims_off);
    rfs_st64(p + 16, r->n_elems);
    rfs_st64(p + 24, r->first_unit);
    rfs_st64(p + 32, r->table_off);
    rfs_st32(p + 40, r->ino);
    rfs_st32(p + 44, r->n_units);
    rfs_st32(p + 48, r->tile_size);
    rfs_st32(p + 52, r->table_len);
    rfs_st16(p + 56, r->name_len);
    p[58] = r->ndim;
    p[59] = r->dtype;
    p[60] = r->width;
    p[61] = r->transform;
    p[62] = r->shared_mask;
    p[63] = r->flags;
}

#endif
