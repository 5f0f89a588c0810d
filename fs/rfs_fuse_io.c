/*
 * rfs_fuse_io.c - the session's /dev/fuse I/O: read, writev and splice as
 * libfuse does them, and the INIT reply amended (rfs_fuse_io.h says why).
 */
#include "rfs_fuse_io.h"

#include <fcntl.h>
#include <linux/fuse.h>
#include <stddef.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* linux/fuse.h of Debian 12 is protocol 7.38; the flag is 7.39's. */
#ifndef FUSE_DIRECT_IO_ALLOW_MMAP
#define FUSE_DIRECT_IO_ALLOW_MMAP (1ULL << 36)
#endif
#define ALLOW_MMAP_FLAGS2 ((uint32_t)(FUSE_DIRECT_IO_ALLOW_MMAP >> 32))

/* Note the INIT request: its id, and whether the kernel offers the flag. */
static void see_request(rfs_fuse_io *io, const void *buf, size_t len)
{
    struct fuse_in_header h;
    struct fuse_init_in in;
    if (len < sizeof(h) + offsetof(struct fuse_init_in, flags2) + sizeof(in.flags2))
        return;
    memcpy(&h, buf, sizeof(h));
    if (h.opcode != FUSE_INIT)
        return;
    memset(&in, 0, sizeof(in));
    memcpy(&in, (const char *)buf + sizeof(h),
           len - sizeof(h) < sizeof(in) ? len - sizeof(h) : sizeof(in));
    io->offered = (in.flags & FUSE_INIT_EXT) && (in.flags2 & ALLOW_MMAP_FLAGS2);
    io->init_unique = h.unique;
    atomic_store_explicit(&io->init_due, 1, memory_order_release);
}

static ssize_t io_read(int fd, void *buf, size_t buf_len, void *userdata)
{
    rfs_fs *fs = userdata;
    ssize_t r = read(fd, buf, buf_len);
    if (r > 0)
        see_request(fs->io, buf, (size_t)r);
    return r;
}

/* The INIT reply with the flag added where offered (the reply's own
 * fuse_init_out is copied to out, so libfuse's memory is not written). */
static void amend_init(rfs_fuse_io *io, struct iovec *iov, int count, struct fuse_init_out *out)
{
    struct fuse_out_header h;
    if (count < 2 || iov[0].iov_len < sizeof(h))
        return;
    memcpy(&h, iov[0].iov_base, sizeof(h));
    if (h.unique != io->init_unique)
        return;
    atomic_store_explicit(&io->init_due, 0, memory_order_relaxed);
    if (h.error != 0 || !io->offered || iov[1].iov_len < sizeof(*out))
        return; /* an older reply layout has no flags2: leave it */
    memcpy(out, iov[1].iov_base, sizeof(*out));
    if (!(out->flags & FUSE_INIT_EXT))
        return;
    out->flags2 |= ALLOW_MMAP_FLAGS2;
    iov[1].iov_base = out;
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
    rfs_fs *fs = userdata;
    struct fuse_init_out out;
    if (atomic_load_explicit(&fs->io->init_due, memory_order_acquire))
        amend_init(fs->io, iov, count, &out);
    return writev(fd, iov, count);
}

static ssize_t io_splice_send(int fdin, off_t *offin, int fdout, off_t *offout, size_t len,
                              unsigned int flags, void *userdata)
{
    (void)userdata;
    return splice(fdin, offin, fdout, offout, len, flags);
}

int rfs_fuse_io_attach(struct fuse_session *se, rfs_fs *fs, rfs_fuse_io *io)
{
    /* splice_receive stays NULL: requests are read (SPLICE_READ is off);
     * splice_send keeps FUSE_CAP_SPLICE_WRITE for replies from the image. */
    static const struct fuse_custom_io ops = {
        .writev = io_writev,
        .read = io_read,
        .splice_send = io_splice_send,
    };
    io->init_unique = 0;
    io->offered = 0;
    atomic_init(&io->init_due, 0);
    fs->io = io;
    return fuse_session_custom_io(se, &ops, fuse_session_fd(se)) == 0 ? 0 : -1;
}
