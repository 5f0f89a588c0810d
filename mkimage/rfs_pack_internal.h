/*
 * rfs_pack_internal.h - the packer's plan, shared by rfs_pack_tree.c (walk
 * the source, read source bytes), rfs_pack.c (plan), rfs_pack_stream.c
 * (read, analyse, encode and write the data) and rfs_pack_meta.c.
 *
 * Nodes are the image's inodes in order: node i is inode i+1, node 0 the
 * root.  Files are the regular-file nodes; each is cut into regions (a
 * coded tensor, or a blob of other bytes), regions into chunks (a tile of a
 * tensor, or a zstd block of a blob), and chunks become units or RAW bytes.
 */
#ifndef RFS_PACK_INTERNAL_H
#define RFS_PACK_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "rfs_xxhash.h"

#include "rfs_array.h"
#include "rfs_pack.h"
#include "rfs_image_format.h"
#include "rfs_pool.h"
#include "rfs_tile.h"

typedef struct pk_node {
    char *name;   /* entry name; "" for the root */
    char *path;   /* source path */
    uint32_t mode;
    int64_t mtime_sec;
    uint32_t mtime_nsec;
    uint64_t size;
    char *link;   /* symlink target */
    uint32_t *kids; /* child node indices, sorted by name */
    uint32_t n_kids, cap_kids;
    char **kid_name; /* NULL, or per kid: its entry name when it is a further
                        name of a hard-linked file (else NULL: the kid's name) */
    int64_t file; /* index into files, or -1 */
} pk_node;

typedef struct pk_region {
    uint64_t off, len;
    int64_t tensor;        /* coded tensor, or -1 for a blob */
    uint64_t first_chunk;  /* blob: its zstd blocks */
    uint64_t n_chunks;
} pk_region;

typedef struct pk_file {
    uint32_t node;
    uint64_t size;         /* as stat'ed by the walk; checked again on every read */
    dev_t dev;             /* identity as stat'ed by the walk */
    ino_t ino;
    struct timespec ctime; /* any write, truncate or utime since moves it */
    XXH128_hash_t hash;    /* only for files whose size another file shares */
    int64_t dup_of;        /* earlier identical file, or -1 */
    pk_region *reg;
    size_t n_reg;
    uint64_t first_extent, n_extents;
} pk_file;

typedef struct pk_tensor {
    uint32_t file;
    char *name;
    unsigned ndim;
    uint64_t *dims;
    uint8_t dtype, width;
    uint64_t off, len, n_elems;
    XXH128_hash_t hash;
    rfs_transform xf;
    rfs_table *tab[RFS_MAX_WIDTH];
    rfs_table_set set;
    int64_t alias_of;      /* earlier identical tensor, or -1 */
    uint64_t first_chunk;
    uint32_t n_tiles;
    uint64_t first_unit;
    uint8_t used_mask;     /* planes whose shared table some tile uses */
} pk_tensor;

typedef struct pk_chunk {
    uint32_t file;
    uint32_t len;
    uint64_t file_off;     /* source bytes: [file_off, file_off + len) of file */
    int64_t tensor;        /* tile of this tensor, or -1: zstd block */
    uint64_t img_off;      /* results, filled by the writer */
    uint32_t out_len;
    int raw;
    int skip;              /* a tile of an aliased tensor: not stored */
    uint64_t unit;
    uint64_t raw_xxh3;     /* raw chunks: XXH3-64 of the source bytes */
} pk_chunk;

typedef struct pk_plan {
    const rfs_pack_opts *o;
    pk_node *nodes;
    size_t n_nodes, cap_nodes;
    pk_file *files;
    size_t n_files, cap_files;
    pk_tensor *tensors;
    size_t n_tensors, cap_tensors;
    pk_chunk *chunks;
    size_t n_chunks, cap_chunks;
    dev_t skip_dev;        /* the temporary image: never packed */
    ino_t skip_ino;
    struct pk_seen *seen;  /* files with several names, by first name's node */
    size_t n_seen, cap_seen;
    uint64_t n_links;      /* entries that are further names of a node */
    uint64_t n_ctx_tiles;  /* tiles with a RANS_CTX plane: feature CTX */
    char *xattr_first;     /* the first entry whose extended attributes are dropped */
    rfs_pack_stats *st;
    rfs_pool *pool;        /* o->n_threads - 1 workers (NULL for one thread), for the
                            * dedup pass and the stream: rfs_pool_for's worker
                            * index is < o->n_threads */
    char *err;
    size_t err_cap;
} pk_plan;

/* The image being written: data so far, and the unit index. */
typedef struct pk_out {
    int fd;
    uint64_t pos;       /* image offset of the next byte */
    rfs_unit_rec *units;
    size_t n_units, cap_units;
    uint32_t unit_max;
    int to_stdout;      /* IMAGE "-" */
    int stdout_reg;     /* ... and standard output is a regular file */
    int stream;         /* ... or is not: written front to back, TRAILER */
    int target_exists;  /* IMAGE existed when checked: this file */
    dev_t target_dev;
    ino_t target_ino;
} pk_out;

/* Where the image goes (rfs_pack_out.c).  pk_out_check: refuse an IMAGE
 * the options do not allow to replace (before any source byte is read);
 * pk_out_open: make the temporary image, o->fd; pk_out_finish: close it and
 * rename it onto IMAGE, or copy it to standard output.  0, or -1 with
 * p->err; on failure the caller's rfs_pack_cleanup_signal removes the
 * temporary file.  pk_out_tmp_name: the temporary file's path. */
int pk_out_check(pk_plan *p, pk_out *o);
int pk_out_open(pk_plan *p, pk_out *o);
int pk_out_finish(pk_plan *p, pk_out *o);
const char *pk_out_tmp_name(void);

/* printf into p->err; returns -1. */
int pk_fail(pk_plan *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pk_warn(pk_plan *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Walk o->source into nodes and files (stat only; no file bytes read). */
int pk_tree_walk(pk_plan *p);
void pk_tree_free(pk_plan *p);

/*
 * Source files are read with pread, never mapped: a file truncated while it
 * is packed gives an error, not SIGBUS.  pk_src_open opens file f and checks
 * that it still has the size and mtime the walk saw; pk_src_read reads
 * exactly len bytes at off.  Both are thread-safe (they touch only err);
 * errors are one line naming the file, written to err (err_cap bytes).
 */
int pk_src_open(const pk_plan *p, const pk_file *f, int *fd, char *err, size_t err_cap);
int pk_src_read(const pk_plan *p, const pk_file *f, int fd, void *buf, uint64_t off,
                uint64_t len, char *err, size_t err_cap);
/*
 * A hint to the kernel while the plan is made: on a thread of its own,
 * start reading the first PK_READAHEAD bytes of the files
 * (POSIX_FADV_WILLNEED), the first PK_RA_HEAD bytes of every file first and
 * then the rest of the files of at most PK_RA_BULK_MAX bytes in the order
 * the stream reads them, so that with a cold page cache the reading
 * overlaps the dedup pass and the safetensors headers, not the stream.
 * pk_readahead_start after the walk (nothing happens when the thread cannot
 * start); pk_readahead_join before the nodes or files are freed.  Nothing
 * it does can fail the pack.
 */
#define PK_READAHEAD ((uint64_t)128 << 20)
#define PK_RA_HEAD ((uint64_t)256 << 10) /* the head of a file, read first */
#define PK_RA_BULK_MAX ((uint64_t)16 << 20) /* bigger files: only their head */
/* Whether the readahead thread asks for file f whole (its head, then its
 * bulk), as far as PK_READAHEAD lasts. */
static inline int pk_readahead_whole(const pk_file *f)
{
    return f->size <= PK_RA_BULK_MAX;
}
typedef struct pk_readahead {
    const pk_plan *p;
    pthread_t thread;
    int live;
} pk_readahead;
void pk_readahead_start(pk_readahead *ra, const pk_plan *p);
void pk_readahead_join(pk_readahead *ra);

/* stat every file again after packing: any change or vanished file fails. */
int pk_src_verify_all(pk_plan *p);

/* Read, analyse, encode and write every chunk (rfs_pack_stream.c). */
int pk_stream_all(pk_plan *p, pk_out *o);

/* write(2) all of buf to fd, retrying on EINTR; 0, or -1 with errno (0
 * when write(2) wrote nothing without saying why). */
int pk_write_fd(int fd, const void *buf, size_t len);

/* pk_write_fd, with p->err naming the image on failure. */
int pk_write_all(pk_plan *p, int fd, const void *buf, size_t len);

/* Before the data: the first RFS_IMG_SB_SIZE bytes, zeros that
 * pk_meta_write overwrites, or for a stream the superblock stub (docs/
 * format.md 2.1.3); sets o->pos past them. */
int pk_sb_head_write(pk_plan *p, pk_out *o);

/* After the data: write extents, inodes, tensors and every other section,
 * then the superblock at offset 0, or for a stream at the end. */
int pk_meta_write(pk_plan *p, pk_out *o);

#endif
