/*
 * rfs_image.h - read a ransfs image (format 1.x, docs/format.md).
 *
 * An image holds a directory tree.  File bytes are stored in extents: RAW
 * (bytes kept as they are, at an image offset) or UNITS (a run of
 * independently decodable units: tensor tiles coded by rfs_tile.h, or zstd
 * blocks).  Units are numbered 0..n_units-1 across the whole image, so a
 * cache can key decoded units by that number.
 *
 * Contract:
 *  - rfs_image_open validates every metadata section (bounds, checksums,
 *    cross references) before returning; a truncated or inconsistent image
 *    is refused with a precise reason.  Unit payloads are checked (XXH3) each
 *    time they are decoded.
 *  - The image file is mapped read-only and must not be modified or
 *    truncated while open (images are immutable once built).  Bytes may
 *    instead come from an rfs_source (rfs_image_open_source: a remote
 *    object with a local cache), whose ensure hook is called before the
 *    reader touches any of them.
 *  - Memory: the image owns its metadata; names and link targets returned
 *    point into it and live until rfs_image_close.
 *  - Threads: an open rfs_image is read-only and may be used by any number
 *    of threads at once.  An rfs_rctx (decode scratch) is used by one thread
 *    at a time: make one per thread.
 *  - Errors: rfs_err codes from rfs_tile.h; no printing, no FUSE, no CUDA.
 *  - Inode numbers are 1..n_inodes; 1 is the root directory.  They are a
 *    stable property of the image.  Hard links (image feature HARDLINKS):
 *    several entries may name one non-directory inode; its nlink counts
 *    them.
 */
#ifndef RFS_IMAGE_H
#define RFS_IMAGE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rfs_tile.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RFS_ROOT_INO 1u

typedef struct rfs_image rfs_image;
typedef struct rfs_rctx rfs_rctx;

typedef struct rfs_stat {
    uint64_t ino;
    uint32_t mode;       /* st_mode: type bits and permissions */
    uint32_t nlink;
    uint64_t size;       /* file size; link target length; dir entry count */
    int64_t mtime_sec;
    uint32_t mtime_nsec;
} rfs_stat;

typedef struct rfs_image_summary {
    uint64_t image_bytes;   /* size of the image file */
    uint64_t content_bytes; /* sum of all regular file sizes */
    uint64_t n_inodes;
    uint64_t n_units;
    uint32_t unit_max;      /* largest decoded unit, bytes */
    uint32_t tile_size;     /* tile size of the image, decoded bytes */
} rfs_image_summary;

/*
 * Open and validate an image.  On failure *img is NULL and, when why is
 * non-NULL, a one-line reason naming the failed check is written to it
 * (e.g. "tile index checksum mismatch").
 */
rfs_err rfs_image_open(rfs_image **img, const char *path, char *why, size_t why_cap);

/*
 * Where an image's bytes come from when it is not a local file (I/O is a
 * seam: codec/ never learns about sockets or threads).  base maps all size
 * bytes of the image, but a byte is valid only after ensure has returned
 * RFS_OK for a range holding it; before every access (metadata at open,
 * a unit's encoded bytes, a RAW extent) the reader calls ensure for exactly
 * the bytes it is about to touch.  ensure may block (a network fetch), is
 * called from any number of threads at once, and must be thread-safe;
 * bytes it made valid stay valid until the source is closed.  fd, when
 * >= 0, is a file holding the same bytes at the same offsets (rfs_image_fd
 * returns it, for pread/splice of RAW extents already ensured), or -1.
 * A local file is the case ensure == NULL: every byte of base is valid.
 */
typedef struct rfs_source {
    void *ctx;
    uint64_t size;
    const uint8_t *base;
    int fd;
    rfs_err (*ensure)(void *ctx, uint64_t off, uint64_t len);
} rfs_source;

/*
 * Open and validate an image read from src (copied; the source itself is
 * not owned: close the image before the source).  Validation, errors and
 * why are as for rfs_image_open; an ensure failure at open is returned as
 * ensure's error with why naming the range.
 */
rfs_err rfs_image_open_source(rfs_image **img, const rfs_source *src, char *why, size_t why_cap);
/* 1 when the image is read through an rfs_source with an ensure hook (bytes
 * fetched on demand, so e.g. the image file's stat says nothing of it). */
int rfs_image_is_sourced(const rfs_image *img);
void rfs_image_close(rfs_image *img);
void rfs_image_get_summary(const rfs_image *img, rfs_image_summary *sum);
/* The open file descriptor of the image (for splicing RAW extents that
 * rfs_image_raw_verify has passed); for an rfs_source, its fd (maybe -1). */
int rfs_image_fd(const rfs_image *img);
/* The image's bytes in memory: the local file's mapping, or an rfs_source's
 * base (for madvise on the pages of units' encoded bytes). */
void rfs_image_mapping(const rfs_image *img, const uint8_t **base, uint64_t *size);

/* ------------------------------------------------------------ namespace */

rfs_err rfs_image_stat(const rfs_image *img, uint64_t ino, rfs_stat *st);
/* Child of directory parent named name.  Errors: RFS_E_NOENT, RFS_E_NOTDIR. */
rfs_err rfs_image_lookup(const rfs_image *img, uint64_t parent, const char *name, uint64_t *ino);
/* Resolve a '/'-separated path from the root ("" or "/" is the root). */
rfs_err rfs_image_lookup_path(const rfs_image *img, const char *path, uint64_t *ino);
/* Number of entries of a directory (without "." and ".."). */
rfs_err rfs_image_dir_count(const rfs_image *img, uint64_t dir, uint64_t *count);
/* Entry idx (0-based, sorted by name) of a directory. */
rfs_err rfs_image_dir_entry(const rfs_image *img, uint64_t dir, uint64_t idx, uint64_t *child,
                            const char **name);
/*
 * Parent directory of directory dir, for "..": O(1); the root's parent is
 * the root.  Only a directory has one parent (one entry names it); a
 * regular file or symlink may have several names in several directories
 * (hard links: rfs_stat.nlink counts them), found by walking the tree.
 * Errors: RFS_E_NOENT, RFS_E_NOTDIR.
 */
rfs_err rfs_image_dir_parent(const rfs_image *img, uint64_t dir, uint64_t *parent);
/* Target of a symlink (NUL-terminated).  Errors: RFS_E_INVAL if not a link. */
rfs_err rfs_image_readlink(const rfs_image *img, uint64_t ino, const char **target);

/* ------------------------------------------------------------ file data */

/* Where the bytes at one file offset come from. */
typedef struct rfs_span {
    uint64_t length;    /* bytes from off that this span covers (> 0) */
    int is_raw;         /* 1: stored as is, at image offset raw_off */
    uint64_t raw_off;
    uint64_t unit;      /* otherwise: the unit holding them ... */
    uint32_t unit_off;  /* ... at this offset of its decoded bytes */
    uint32_t unit_size; /* decoded size of that unit */
    uint64_t ext_off;   /* the extent holding off: its file offset ... */
    uint64_t ext_len;   /* ... and length (a coded tensor's whole range) */
} rfs_span;

/*
 * Map file offset off (< file size) of regular file ino to a span; O(log
 * extents).  Errors: RFS_E_NOENT, RFS_E_ISDIR, RFS_E_INVAL (off >= size).
 */
rfs_err rfs_image_map(const rfs_image *img, uint64_t ino, uint64_t off, rfs_span *span);

/* Per-thread decode scratch (tile decoder, zstd context, buffers). */
rfs_rctx *rfs_rctx_create(const rfs_image *img);
void rfs_rctx_destroy(rfs_rctx *ctx);
/* The tile decoder inside ctx, e.g. to force a CPU backend. */
rfs_dec *rfs_rctx_decoder(rfs_rctx *ctx);

typedef enum rfs_unit_kind { RFS_UNIT_TILE = 0, RFS_UNIT_ZSTD = 1 } rfs_unit_kind;

/* Everything needed to decode a unit elsewhere (e.g. on a GPU). */
typedef struct rfs_unit_src {
    rfs_unit_kind kind;
    const uint8_t *data;          /* encoded bytes, inside the image mapping */
    uint32_t size;                /* encoded size */
    uint32_t decoded_size;
    uint64_t xxh3;                /* expected XXH3-64 of the encoded bytes */
    const rfs_table_set *shared;  /* tile's tensor tables (NULL if none) */
} rfs_unit_src;

rfs_err rfs_image_unit_source(const rfs_image *img, uint64_t unit, rfs_unit_src *src);
/* 1 when the XXH3 of the unit's encoded bytes matches the index. */
int rfs_image_unit_verify(const rfs_unit_src *src);

/*
 * The checks every decode path makes on a unit before decoding it, in this
 * order: the unit exists (RFS_E_NOENT); its decoded size fits dst_cap
 * (RFS_E_DST_SMALL; SIZE_MAX where the caller writes only a window); the
 * XXH3 of its encoded bytes matches the index (RFS_E_CHECKSUM); a tile's
 * header is valid (rfs_tile_info's errors) and gives the decoded size the
 * index records (RFS_E_CORRUPT).  *src receives the unit once it is found.
 * rfs_image_unit_decode starts with exactly these; the GPU paths make them
 * before a tile goes to the device.  Reads every encoded byte from the
 * image mapping, after the source's ensure (rfs_source; its error, e.g.
 * RFS_E_IO, is returned).  Thread-safe.
 */
rfs_err rfs_image_unit_check(const rfs_image *img, uint64_t unit, size_t dst_cap,
                             rfs_unit_src *src);

/*
 * Check (rfs_image_unit_check) and decode unit into dst (dst_cap >= its
 * decoded size).  Errors: those of rfs_image_unit_check, any tile decode
 * error, RFS_E_ZSTD.
 */
rfs_err rfs_image_unit_decode(const rfs_image *img, rfs_rctx *ctx, uint64_t unit, void *dst,
                              size_t dst_cap, size_t *dst_size);

/* One unit of rfs_image_unit_decode2: the arguments of rfs_image_unit_decode
 * (unit, dst, dst_cap) and its results (dst_size, err). */
typedef struct rfs_unit_io {
    uint64_t unit;
    void *dst;
    size_t dst_cap;
    size_t dst_size; /* out: decoded bytes; 0 when err is set */
    rfs_err err;     /* out: what rfs_image_unit_decode would return for it */
} rfs_unit_io;

/*
 * Decode two units with one ctx: each is checked (rfs_image_unit_check)
 * and gets exactly the bytes and error rfs_image_unit_decode would give
 * it, whatever happens to the other.  When both pass their checks and are
 * tiles they go through rfs_tile_decode2 (the AVX-512 VBMI backend decodes
 * a bf16 or f32 pair in lockstep, faster than one after the other); any
 * other pair is decoded one unit after the other.  The two dst must not
 * overlap.  Returns RFS_OK when both are OK, else the first unit's error,
 * else the second's.  ctx's tile decoder grows by one tile's scratch the
 * first time it gets a pair of tiles (rfs_tile_decode2: one malloc, which
 * reads no image byte).  Thread-safety as rfs_image_unit_decode: one
 * thread at a time per ctx.
 */
rfs_err rfs_image_unit_decode2(const rfs_image *img, rfs_rctx *ctx, rfs_unit_io io[2]);

/*
 * Read len bytes of file ino at off into buf, decoding only the units it
 * touches (no cache).  *got is less than len only at end of file.
 */
rfs_err rfs_image_read(const rfs_image *img, rfs_rctx *ctx, uint64_t ino, uint64_t off,
                       size_t len, void *buf, size_t *got);

#ifdef __cplusplus
}
#endif
#endif
