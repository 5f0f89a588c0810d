/*
 * rfs_fuse_io.h - the session's /dev/fuse I/O (libfuse's
 * fuse_session_custom_io), for the one connection flag libfuse 3.14 cannot
 * ask for: FUSE_DIRECT_IO_ALLOW_MMAP (protocol 7.39, Linux 6.6).
 *
 * Why: a file opened with FOPEN_DIRECT_IO is read by the daemon straight
 * into the reader's buffer, one copy, no page cache (docs/benchmarks.md:
 * read() of a 5 GiB shard 2.2 -> 3.3 GB/s); but without that flag the
 * kernel refuses MAP_SHARED mmap of such a file (ENODEV), which numpy,
 * Python's mmap and safetensors use.  libfuse 3.14 (Debian 12) builds the
 * INIT reply from the flags it knows, so the hook adds this one where the
 * kernel offered it.  Every other byte passes through unchanged.
 *
 * Contract:
 *  - rfs_fuse_io_attach after fuse_session_mount, before the loop; the
 *    hook's state lives in *io, which must outlive the session.  Its
 *    fields are written while the INIT request and reply pass, before the
 *    kernel sends any other request.
 *  - Returns 0, or -1 (libfuse has logged why) and the session is unchanged.
 */
#ifndef RFS_FUSE_IO_H
#define RFS_FUSE_IO_H

#include <stdatomic.h>
#include <stdint.h>

#include "rfs_fuse.h"

typedef struct rfs_fuse_io {
    uint64_t init_unique;  /* the INIT request's id (written before init_due) */
    int offered;           /* the kernel offered FUSE_DIRECT_IO_ALLOW_MMAP */
    atomic_int init_due;   /* the INIT request came and its reply did not */
} rfs_fuse_io;

/* Route se's I/O through the hook; fs (the session's userdata) gets fs->io = io. */
int rfs_fuse_io_attach(struct fuse_session *se, rfs_fs *fs, rfs_fuse_io *io);

#endif
