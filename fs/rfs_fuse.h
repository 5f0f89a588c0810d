/*
 * rfs_fuse.h - the FUSE low-level adapter of ransfs (internal to the daemon).
 *
 * Contract:
 *  - Inode mapping: FUSE inode numbers are the image's inode numbers
 *    (1 = root = FUSE_ROOT_ID), stable for an image; nothing is allocated
 *    per lookup, so forget is a no-op.
 *  - The ops reply exactly once on every path and convert rfs_err to errno
 *    only here.  Everything that would write answers EROFS.
 *  - Threads: the ops run on many FUSE threads at once; rfs_fs is read-only
 *    after rfs_fs_init except for the engine, which is thread-safe.
 *  - Memory: rfs_fs does not own img or eng.
 */
#ifndef RFS_FUSE_H
#define RFS_FUSE_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 314
#endif
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "rfs_engine.h"
#include "rfs_image.h"

#define RFS_STATS_XATTR "user.ransfs.stats"

typedef struct rfs_fs {
    const rfs_image *img;
    rfs_engine *eng;      /* set once the engine runs (after fork) */
    uid_t uid;
    gid_t gid;
    int direct_io;
    struct rfs_fuse_io *io; /* the session's I/O hook (rfs_fuse_io.h); NULL: none */
    uint64_t max_readahead; /* bytes offered to the kernel at init */
    double timeout;         /* entry and attribute timeout, seconds */
    /* libfuse's -o max_background=, congestion_threshold=, max_write=,
     * [no_]splice_write, ... (fuse_parse_conn_info_opts), applied at init
     * over our defaults; NULL: none.  Owned by the caller. */
    struct fuse_conn_info_opts *conn_opts;
    /* More stats members ("\"k\":v,..."), e.g. a remote source's; NULL: none. */
    size_t (*stats_extra)(void *ctx, char *buf, size_t cap);
    void *stats_ctx;
    pthread_mutex_t fh_mu;  /* guards open_files */
    struct rfs_fh *open_files; /* handles not yet released (freed at exit) */
} rfs_fs;

extern const struct fuse_lowlevel_ops rfs_fuse_ops;

/* Set up fs for img (".." comes from rfs_image_dir_parent).  Returns RFS_OK. */
rfs_err rfs_fs_init(rfs_fs *fs, const rfs_image *img);
/* Free the handles of files still open (the session
 * ended without their release, e.g. on SIGTERM). */
void rfs_fs_fini(rfs_fs *fs);

/* errno for an rfs_err (EIO for anything about bad image bytes). */
int rfs_errno(rfs_err err);

#endif
