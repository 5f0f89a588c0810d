/*
 * rfs_pack.h - build a ransfs image from a directory tree (the writer
 * behind ransfs-mkimage).  docs/format.md Part 2 describes the bytes.
 *
 * Contract:
 *  - rfs_pack walks SOURCE, plans every file (safetensors tensors and raw
 *    tensor files become tiled tensors; other bytes become zstd blocks, or
 *    raw where zstd does not shrink them), then streams the data: one
 *    thread reads (pread, never mmap), n_threads encode, one writes, with
 *    memory bounded by a few groups of about 8 MiB (or one whole tensor,
 *    when a tensor is bigger).  The image goes to a temporary file beside
 *    IMAGE, renamed onto IMAGE only on success; IMAGE "-" is standard
 *    output (the image is made in an unnamed file in $TMPDIR, then copied).
 *    An existing IMAGE is refused before any source byte is read unless
 *    force allows it (rfs_pack_out.c has the rules).  The output is a
 *    function of the input tree and the options only (not of n_threads,
 *    not of the time).
 *  - Input types: a file whose content is a valid safetensors header is
 *    coded tensor by tensor, whatever its name; *.fp16, *.bf16, *.f32,
 *    *.fp32 (any case) are raw tensor files.  A file named *.safetensors
 *    with a bad header, or a raw tensor file of a size that is not a whole
 *    number of elements, fails the pack with strict, and otherwise is
 *    warned about and stored as other bytes (counted in stats.opaque).
 *  - A source that changes while it is packed is an error, not a wrong
 *    image: every file is checked (identity, size, mtime) when it is opened
 *    for reading and once more after all data is written; a read that ends
 *    early ("truncated during packing") fails at once.
 *  - Errors: returns 0, or -1 with one line in err naming the file and what
 *    is wrong (the image, for a write error such as a full disk); no
 *    temporary file is left behind.  Warnings (skipped special files and
 *    hard links, symlinks that leave SOURCE or dangle, dropped extended
 *    attributes, malformed tensor files) go to the warn callback.  progress is called from a packer
 *    thread (always the same one).  No other printing.
 *  - Not thread-safe itself (it owns its threads); the signal cleanup hook
 *    covers one rfs_pack call at a time.
 */
#ifndef RFS_PACK_H
#define RFS_PACK_H

#include <stddef.h>
#include <stdint.h>

#define RFS_PACK_DEFAULT_TILE (256u << 10)
#define RFS_PACK_MIN_TENSOR 4096u /* smaller tensors go with the zstd blocks */

typedef struct rfs_pack_opts {
    const char *source;
    const char *image;
    uint32_t tile_size;
    unsigned n_threads;
    int raw_codec;   /* --codec=raw: tile planes stored raw */
    int no_ctx;      /* --no-ctx: no RANS_CTX plane, so no feature CTX (for readers
                      * from before it) */
    int zstd_level;
    unsigned force;    /* an existing IMAGE: 0 refused, 1 replaced when a ransfs image
                        * or empty, 2 replaced when any regular file */
    int strict;        /* a malformed tensor file fails the pack */
    int dereference;   /* symlinks that leave SOURCE: pack what they point to */
    const char *const *exclude; /* fnmatch patterns: entries left out (docs/mkimage.md) */
    size_t n_exclude;
    int clamp_mtime;   /* mtimes later than mtime_max are stored as mtime_max */
    int64_t mtime_max;
    void (*warn)(void *user, const char *msg);
    void (*progress)(void *user, uint64_t done, uint64_t total);
    void *user;
} rfs_pack_opts;

/* Per-dtype byte counts; index 0 is "other" (zstd blocks and raw bytes). */
#define RFS_PACK_NCLASS 8
typedef struct rfs_pack_stats {
    uint64_t input_bytes, image_bytes;
    uint64_t files, dirs, symlinks, skipped;
    uint64_t dup_files, tensors, dup_tensors, units;
    uint64_t in_by_class[RFS_PACK_NCLASS];  /* unique bytes by dtype (rfs_image_format.h) */
    uint64_t out_by_class[RFS_PACK_NCLASS]; /* their stored bytes */
    uint64_t opaque;    /* malformed tensor files stored as other bytes */
    uint64_t excluded;  /* entries left out by an exclude pattern (a directory counts once) */
    uint64_t xattr_files; /* entries whose extended attributes were not stored */
    uint64_t meta_bytes;
    double seconds;
} rfs_pack_stats;

int rfs_pack(const rfs_pack_opts *o, rfs_pack_stats *st, char *err, size_t err_cap);

/* Remove the temporary image now (async-signal-safe; for signal handlers). */
void rfs_pack_cleanup_signal(void);

#endif
