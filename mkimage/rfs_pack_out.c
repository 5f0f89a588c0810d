/*
 * rfs_pack_out.c - where the image goes (see rfs_pack.h): the rules for an
 * existing IMAGE, the temporary file, its removal on error or signal, and
 * the last step (rename, or copy to standard output).
 *
 * Design note.  The superblock at offset 0 carries the offsets and checksums
 * of the metadata written after the data (docs/format.md), so an image
 * cannot be written front to back in one pass: the packer writes a
 * temporary file and seeks back.  For a named IMAGE that file lies beside
 * IMAGE and is renamed onto it; for "-" on a regular file it is an unnamed
 * file in $TMPDIR (unlinked as soon as it is made, so nothing can be left
 * behind) that is copied to standard output at the end.  A pipe, socket or
 * character device on standard output cannot seek, and a copy would cost a
 * temporary file as large as the image: there the packer writes a TRAILER
 * image (docs/format.md 2.1.3) straight to it, strictly front to back.  A
 * stream that fails half way has no trailer, so no reader accepts it.  IMAGE is checked before any source
 * byte is read, and again just before the rename, so that the rename never
 * replaces something that the check would have refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rfs_image_format.h"
#include "rfs_pack_internal.h"

static char g_tmp_path[4096];
static volatile sig_atomic_t g_tmp_live;
static volatile sig_atomic_t g_stdout_partial; /* a regular stdout holds part of a copy */

void rfs_pack_cleanup_signal(void)
{
    if (g_stdout_partial) {
        g_stdout_partial = 0;
        if (ftruncate(STDOUT_FILENO, 0) != 0)
            return; /* nothing more a signal handler can do */
    }
    /* Unlink first: a signal taken between the two finds the flag still
     * set and unlinks again (ENOENT), rather than finding it clear and
     * leaving the file. */
    if (g_tmp_live) {
        unlink(g_tmp_path);
        g_tmp_live = 0;
    }
}

/* 1 when the file open on fd starts with the image magic. */
static int fd_is_image(int fd)
{
    char m[RFS_IMG_MAGIC_SIZE];
    return pread(fd, m, sizeof m, 0) == (ssize_t)sizeof m &&
           memcmp(m, RFS_IMG_MAGIC, sizeof m) == 0;
}

static int path_is_image(const char *path)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return 0;
    int r = fd_is_image(fd);
    close(fd);
    return r;
}

/* May the existing regular file sb (an image when is_image) be replaced? */
static int replace_allowed(pk_plan *p, const char *name, const struct stat *sb, int is_image)
{
    unsigned force = p->o->force;
    if (force == 0)
        return pk_fail(p, "%s: exists (--force replaces a ransfs image or an empty file)", name);
    if (force >= 2 || sb->st_size == 0 || is_image)
        return 0;
    return pk_fail(p, "%s: exists and is not a ransfs image (--force twice replaces any regular "
                   "file)", name);
}

static int check_named(pk_plan *p, pk_out *o)
{
    const char *img = p->o->image;
    struct stat sb;
    if (lstat(img, &sb) != 0) {
        if (errno == ENOENT)
            return 0;
        return pk_fail(p, "%s: cannot check the image path: %s", img, strerror(errno));
    }
    if (S_ISLNK(sb.st_mode))
        return pk_fail(p, "%s: is a symbolic link: not replaced (name the file it points to, or "
                       "- for standard output)", img);
    if (S_ISDIR(sb.st_mode))
        return pk_fail(p, "%s: is a directory", img);
    if (!S_ISREG(sb.st_mode))
        return pk_fail(p, "%s: is a device, FIFO or socket: not replaced (- writes to standard "
                       "output)", img);
    o->target_exists = 1;
    o->target_dev = sb.st_dev;
    o->target_ino = sb.st_ino;
    return replace_allowed(p, img, &sb, path_is_image(img));
}

/* Standard output: a pipe, socket or character device takes the image as a
 * stream; a regular file follows the rules of a named IMAGE. */
static int check_stdout(pk_plan *p, pk_out *o)
{
    struct stat sb;
    if (fstat(STDOUT_FILENO, &sb) != 0)
        return pk_fail(p, "standard output: %s", strerror(errno));
    if (isatty(STDOUT_FILENO))
        return pk_fail(p, "standard output is a terminal: not writing an image to it");
    if (S_ISDIR(sb.st_mode))
        return pk_fail(p, "standard output: is a directory");
    if (!S_ISREG(sb.st_mode)) {
        o->stream = 1;
        return 0;
    }
    o->stdout_reg = 1;
    p->skip_dev = sb.st_dev; /* when it lies inside SOURCE */
    p->skip_ino = sb.st_ino;
    if (sb.st_size == 0)
        return 0;
    return replace_allowed(p, "standard output", &sb, fd_is_image(STDOUT_FILENO));
}

int pk_out_check(pk_plan *p, pk_out *o)
{
    o->to_stdout = strcmp(p->o->image, "-") == 0;
    return o->to_stdout ? check_stdout(p, o) : check_named(p, o);
}

/* mkstemp from g_tmp_path's template; for a named IMAGE the file is flagged
 * for removal, for "-" it is unlinked at once.  mkstemp creates the file
 * before the flag can say so: held signals arrive only after the flag is set
 * (or the name is gone).  The caller is still single-threaded, so the mask
 * covers every thread that could take the signal. */
static int tmp_make(int unnamed)
{
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    int fd = mkstemp(g_tmp_path);
    int e = errno;
    if (fd >= 0 && unnamed)
        unlink(g_tmp_path);
    else if (fd >= 0)
        g_tmp_live = 1;
    sigprocmask(SIG_SETMASK, &old, NULL);
    errno = e;
    return fd;
}

/* A duplicate of standard output, so that closing it at the end reports
 * the write error, if any, without closing descriptor 1 itself. */
static int stream_open(pk_plan *p, pk_out *o)
{
    o->fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    if (o->fd < 0)
        return pk_fail(p, "standard output: %s", strerror(errno));
    return 0;
}

int pk_out_open(pk_plan *p, pk_out *o)
{
    if (o->stream)
        return stream_open(p, o);
    int unnamed = o->to_stdout;
    const char *img = p->o->image, *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    int n = unnamed ? snprintf(g_tmp_path, sizeof g_tmp_path, "%s/ransfs-mkimage.XXXXXX", dir)
                    : snprintf(g_tmp_path, sizeof g_tmp_path, "%s.tmp.XXXXXX", img);
    if (n < 0 || (size_t)n >= sizeof g_tmp_path)
        return pk_fail(p, "%s: path too long", unnamed ? dir : img);
    o->fd = tmp_make(unnamed);
    if (o->fd < 0)
        return unnamed ? pk_fail(p, "%s: cannot create a temporary image for standard output: %s",
                                 dir, strerror(errno))
                       : pk_fail(p, "%s: cannot create the image: %s", img, strerror(errno));
    mode_t um = umask(0);
    umask(um);
    fchmod(o->fd, 0666 & ~um);
    struct stat sb;
    if (!unnamed && fstat(o->fd, &sb) == 0) {
        p->skip_dev = sb.st_dev;
        p->skip_ino = sb.st_ino;
    }
    return 0;
}

const char *pk_out_tmp_name(void)
{
    return g_tmp_path;
}

/* Rename the temporary file onto IMAGE, provided IMAGE is still what
 * pk_out_check saw: absent (RENAME_NOREPLACE, where the file system has
 * it), or the same regular file. */
static int finish_named(pk_plan *p, pk_out *o)
{
    const char *img = p->o->image;
    struct stat sb;
    if (!o->target_exists) {
        if (renameat2(AT_FDCWD, g_tmp_path, AT_FDCWD, img, RENAME_NOREPLACE) == 0)
            goto done;
        if (errno == EEXIST)
            return pk_fail(p, "%s: created by someone else during packing: not replaced", img);
        if (errno != EINVAL && errno != ENOSYS)
            goto fail;
        if (lstat(img, &sb) == 0)
            return pk_fail(p, "%s: created by someone else during packing: not replaced", img);
    } else if (lstat(img, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_dev != o->target_dev ||
               sb.st_ino != o->target_ino) {
        return pk_fail(p, "%s: replaced by something else during packing: not replaced", img);
    }
    if (rename(g_tmp_path, img) != 0)
        goto fail;
done:
    g_tmp_live = 0;
    return 0;
fail:
    return pk_fail(p, "%s: cannot rename the finished image into place: %s", img,
                   strerror(errno));
}

/* Copy the finished image (o->pos bytes) to standard output.  A regular
 * file there is emptied first (it held an image or nothing: pk_out_check),
 * and emptied again when the copy fails, so it never holds half an image. */
static int finish_stdout(pk_plan *p, pk_out *o)
{
    enum { BLK = 1 << 20 };
    uint8_t *buf = malloc(BLK);
    int rc = -1, e = 0;
    if (!buf)
        return pk_fail(p, "out of memory");
    if (o->stdout_reg && (ftruncate(STDOUT_FILENO, 0) != 0 ||
                          lseek(STDOUT_FILENO, 0, SEEK_SET) != 0)) {
        e = errno;
        goto out;
    }
    g_stdout_partial = o->stdout_reg;
    for (uint64_t off = 0; off < o->pos;) {
        size_t want = o->pos - off < BLK ? (size_t)(o->pos - off) : BLK;
        ssize_t got = pread(o->fd, buf, want, (off_t)off);
        if (got <= 0) {
            rc = pk_fail(p, "%s: cannot read the temporary image back: %s", g_tmp_path,
                         got < 0 ? strerror(errno) : "short read");
            goto out;
        }
        if (pk_write_fd(STDOUT_FILENO, buf, (size_t)got) != 0) {
            e = errno ? errno : EIO; /* a write that took nothing still fails */
            goto out;
        }
        off += (uint64_t)got;
    }
    rc = 0;
out:
    g_stdout_partial = 0;
    if (rc && e)
        rc = pk_fail(p, "standard output: write failed: %s", strerror(e));
    if (rc && o->stdout_reg && ftruncate(STDOUT_FILENO, 0) != 0)
        rc = pk_fail(p, "standard output: write failed, and cannot empty it again: %s",
                     strerror(errno));
    free(buf);
    return rc;
}

int pk_out_finish(pk_plan *p, pk_out *o)
{
    int to_stdout = o->to_stdout;
    if (to_stdout && !o->stream && finish_stdout(p, o))
        return -1;
    int fd = o->fd;
    o->fd = -1;
    if (close(fd) != 0 && !to_stdout)
        return pk_fail(p, "%s: write failed: %s", p->o->image, strerror(errno));
    return to_stdout ? 0 : finish_named(p, o);
}
