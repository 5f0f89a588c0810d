/*
 * rfs_fuse.c - FUSE low-level operations (see rfs_fuse.h).
 *
 * Reads: the engine returns pieces pointing into cached decoded units and
 * RAW ranges of the image.  All-memory replies go out with fuse_reply_iov
 * (one writev, no copy in the daemon).  Replies with RAW ranges go out with
 * fuse_reply_data, RAW ranges as fd buffers on the image (libfuse splices
 * them when it can).  Cache references are dropped only after the reply
 * call returns, when the kernel has taken the bytes.
 */
#include "rfs_fuse.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include "rfs_hist.h"
#include "rfs_prefetch.h"

/* writev takes at most IOV_MAX pieces; beyond this we gather into one buffer. */
#define RFS_MAX_IOV 512

/* Background (readahead) requests the kernel may have in flight at once. */
#define RFS_MAX_BACKGROUND 64

typedef struct rfs_fh {
    struct rfs_fh *prev, *next; /* rfs_fs.open_files */
    uint64_t size;
    pthread_mutex_t mu;
    rfs_prefetch pf;
} rfs_fh;

static rfs_fs *req_fs(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

int rfs_errno(rfs_err err)
{
    switch (err) {
    case RFS_OK: return 0;
    case RFS_E_NOMEM: return ENOMEM;
    case RFS_E_NOENT: return ENOENT;
    case RFS_E_NOTDIR: return ENOTDIR;
    case RFS_E_ISDIR: return EISDIR;
    case RFS_E_INVAL: return EINVAL;
    case RFS_E_ARG: return EINVAL;
    default: return EIO;
    }
}

/* ------------------------------------------------------------ inodes */

rfs_err rfs_fs_init(rfs_fs *fs, const rfs_image *img)
{
    fs->img = img;
    pthread_mutex_init(&fs->fh_mu, NULL);
    fs->open_files = NULL;
    return RFS_OK;
}

static void fh_free(rfs_fh *fh)
{
    pthread_mutex_destroy(&fh->mu);
    free(fh);
}

void rfs_fs_fini(rfs_fs *fs)
{
    if (!fs->img)
        return;
    while (fs->open_files) {
        rfs_fh *fh = fs->open_files;
        fs->open_files = fh->next;
        fh_free(fh);
    }
    pthread_mutex_destroy(&fs->fh_mu);
    fs->img = NULL;
}

static void fh_link(rfs_fs *fs, rfs_fh *fh)
{
    pthread_mutex_lock(&fs->fh_mu);
    fh->prev = NULL;
    fh->next = fs->open_files;
    if (fh->next)
        fh->next->prev = fh;
    fs->open_files = fh;
    pthread_mutex_unlock(&fs->fh_mu);
}

static void fh_unlink(rfs_fs *fs, rfs_fh *fh)
{
    pthread_mutex_lock(&fs->fh_mu);
    if (fh->prev)
        fh->prev->next = fh->next;
    else
        fs->open_files = fh->next;
    if (fh->next)
        fh->next->prev = fh->prev;
    pthread_mutex_unlock(&fs->fh_mu);
}

static void fill_stat(const rfs_fs *fs, const rfs_stat *rs, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = rs->ino;
    st->st_mode = rs->mode;
    st->st_nlink = rs->nlink;
    st->st_size = (off_t)rs->size;
    st->st_uid = fs->uid;
    st->st_gid = fs->gid;
    st->st_blksize = 1 << 20; /* cp/cat then read in 1 MiB pieces */
    st->st_blocks = (blkcnt_t)((rs->size + 511) / 512);
    st->st_mtim.tv_sec = rs->mtime_sec;
    st->st_mtim.tv_nsec = rs->mtime_nsec;
    st->st_atim = st->st_mtim;
    st->st_ctim = st->st_mtim;
}

static rfs_err get_stat(const rfs_fs *fs, uint64_t ino, struct stat *st)
{
    rfs_stat rs;
    rfs_err err = rfs_image_stat(fs->img, ino, &rs);
    if (err == RFS_OK)
        fill_stat(fs, &rs, st);
    return err;
}

static rfs_err get_entry(const rfs_fs *fs, uint64_t ino, struct fuse_entry_param *e)
{
    memset(e, 0, sizeof(*e));
    e->ino = ino;
    e->generation = 1;
    e->attr_timeout = fs->timeout;
    e->entry_timeout = fs->timeout;
    return get_stat(fs, ino, &e->attr);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    rfs_fs *fs = req_fs(req);
    struct fuse_entry_param e;
    uint64_t ino;
    rfs_err err = rfs_image_lookup(fs->img, parent, name, &ino);
    if (err == RFS_E_NOENT) {
        /* Negative entry, cached for good: the image never changes. */
        memset(&e, 0, sizeof(e));
        e.entry_timeout = fs->timeout;
        fuse_reply_entry(req, &e);
        return;
    }
    if (err == RFS_OK)
        err = get_entry(fs, ino, &e);
    if (err != RFS_OK)
        fuse_reply_err(req, rfs_errno(err));
    else
        fuse_reply_entry(req, &e);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    rfs_fs *fs = req_fs(req);
    struct stat st;
    rfs_err err = get_stat(fs, ino, &st);
    if (err != RFS_OK)
        fuse_reply_err(req, rfs_errno(err));
    else
        fuse_reply_attr(req, &st, fs->timeout);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
    const char *target;
    rfs_err err = rfs_image_readlink(req_fs(req)->img, ino, &target);
    if (err != RFS_OK)
        fuse_reply_err(req, rfs_errno(err));
    else
        fuse_reply_readlink(req, target);
}

/* ------------------------------------------------------------ directories */

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct stat st;
    rfs_err err = get_stat(req_fs(req), ino, &st);
    if (err == RFS_OK && !S_ISDIR(st.st_mode))
        err = RFS_E_NOTDIR;
    if (err != RFS_OK) {
        fuse_reply_err(req, rfs_errno(err));
        return;
    }
    fi->cache_readdir = 1;
    fi->keep_cache = 1;
    fuse_reply_open(req, fi);
}

/* Entry idx of a listing: 0 ".", 1 "..", then the image's entries. */
static rfs_err dir_slot(const rfs_fs *fs, uint64_t dir, uint64_t idx, uint64_t *ino,
                        const char **name)
{
    if (idx == 0) {
        *ino = dir;
        *name = ".";
        return RFS_OK;
    }
    if (idx == 1) {
        *name = "..";
        return rfs_image_dir_parent(fs->img, dir, ino);
    }
    return rfs_image_dir_entry(fs->img, dir, idx - 2, ino, name);
}

static void do_readdir(fuse_req_t req, fuse_ino_t dir, size_t size, off_t off, int plus)
{
    rfs_fs *fs = req_fs(req);
    uint64_t count;
    size_t used = 0;
    char *buf;
    rfs_err err = rfs_image_dir_count(fs->img, dir, &count);
    if (err != RFS_OK) {
        fuse_reply_err(req, rfs_errno(err));
        return;
    }
    buf = malloc(size ? size : 1);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    for (uint64_t i = (uint64_t)off; i < count + 2 && err == RFS_OK; i++) {
        struct fuse_entry_param e;
        const char *name;
        uint64_t ino;
        size_t need;
        err = dir_slot(fs, dir, i, &ino, &name);
        if (err == RFS_OK)
            err = get_entry(fs, ino, &e);
        if (err != RFS_OK)
            break;
        if (plus)
            need = fuse_add_direntry_plus(req, buf + used, size - used, name, &e, (off_t)i + 1);
        else
            need = fuse_add_direntry(req, buf + used, size - used, name, &e.attr, (off_t)i + 1);
        if (need > size - used)
            break;
        used += need;
    }
    if (err != RFS_OK && used == 0)
        fuse_reply_err(req, rfs_errno(err));
    else
        fuse_reply_buf(req, buf, used);
    free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    do_readdir(req, ino, size, off, 0);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi)
{
    do_readdir(req, ino, size, off, 1);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    fuse_reply_err(req, 0);
}

/* ------------------------------------------------------------ files */

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    rfs_fs *fs = req_fs(req);
    struct stat st;
    rfs_fh *fh;
    rfs_err err;
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
        fuse_reply_err(req, EROFS);
        return;
    }
    err = get_stat(fs, ino, &st);
    if (err == RFS_OK && S_ISDIR(st.st_mode))
        err = RFS_E_ISDIR;
    else if (err == RFS_OK && !S_ISREG(st.st_mode))
        err = RFS_E_INVAL;
    if (err != RFS_OK || !(fh = calloc(1, sizeof(*fh)))) {
        fuse_reply_err(req, err != RFS_OK ? rfs_errno(err) : ENOMEM);
        return;
    }
    fh->size = (uint64_t)st.st_size;
    pthread_mutex_init(&fh->mu, NULL);
    rfs_prefetch_init(&fh->pf, rfs_engine_prefetch_min(fs->eng), rfs_engine_prefetch_max(fs->eng));
    fi->fh = (uint64_t)(uintptr_t)fh;
    /* keep_cache even for direct_io: the image never changes, and without
     * it the kernel would drop the file's pages (another handle's mmap) at
     * every open.  A direct_io file is read by the daemon straight into the
     * reader's buffer; its mmaps still go through the page cache, shared
     * ones only where the connection took FUSE_DIRECT_IO_ALLOW_MMAP
     * (rfs_fuse_io.h; without it the kernel refuses them with ENODEV). */
    fi->keep_cache = 1;
    fi->direct_io = fs->direct_io;
    fi->noflush = 1;
    fh_link(fs, fh);
    if (fuse_reply_open(req, fi) != 0) {
        /* Interrupted: no release will come for this handle. */
        fh_unlink(fs, fh);
        fh_free(fh);
    }
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    rfs_fh *fh = (rfs_fh *)(uintptr_t)fi->fh;
    if (fh) {
        fh_unlink(req_fs(req), fh);
        fh_free(fh);
    }
    fuse_reply_err(req, 0);
}

/* Copy every piece into one buffer (too many pieces for one writev). */
static int reply_gathered(fuse_req_t req, const rfs_fs *fs, const rfs_readv *rv)
{
    char *buf = malloc(rv->bytes ? rv->bytes : 1), *p = buf;
    int fd = rfs_image_fd(fs->img);
    if (!buf)
        return fuse_reply_err(req, ENOMEM);
    for (size_t i = 0; i < rv->n_pieces; i++) {
        const rfs_piece *pc = &rv->pieces[i];
        if (pc->mem) {
            memcpy(p, pc->mem, pc->len);
        } else if (pread(fd, p, pc->len, (off_t)pc->raw_off) != (ssize_t)pc->len) {
            free(buf);
            return fuse_reply_err(req, EIO);
        }
        p += pc->len;
    }
    int r = fuse_reply_buf(req, buf, rv->bytes);
    free(buf);
    return r;
}

static int reply_iov(fuse_req_t req, const rfs_readv *rv)
{
    struct iovec stack[RFS_READV_INLINE], *iov = stack;
    int r;
    if (rv->n_pieces > RFS_READV_INLINE && !(iov = malloc(rv->n_pieces * sizeof(*iov))))
        return fuse_reply_err(req, ENOMEM);
    for (size_t i = 0; i < rv->n_pieces; i++) {
        iov[i].iov_base = (void *)rv->pieces[i].mem;
        iov[i].iov_len = rv->pieces[i].len;
    }
    r = fuse_reply_iov(req, iov, (int)rv->n_pieces);
    if (iov != stack)
        free(iov);
    return r;
}

static int reply_bufvec(fuse_req_t req, const rfs_fs *fs, const rfs_readv *rv)
{
    struct fuse_bufvec *bv;
    int r;
    bv = calloc(1, sizeof(*bv) + rv->n_pieces * sizeof(struct fuse_buf));
    if (!bv)
        return fuse_reply_err(req, ENOMEM);
    bv->count = rv->n_pieces;
    for (size_t i = 0; i < rv->n_pieces; i++) {
        struct fuse_buf *b = &bv->buf[i];
        const rfs_piece *pc = &rv->pieces[i];
        b->size = pc->len;
        if (pc->mem) {
            b->mem = (void *)pc->mem;
        } else {
            b->flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
            b->fd = rfs_image_fd(fs->img);
            b->pos = (off_t)pc->raw_off;
        }
    }
    r = fuse_reply_data(req, bv, 0);
    free(bv);
    return r;
}

static void note_prefetch(rfs_fs *fs, rfs_fh *fh, fuse_ino_t ino, uint64_t off, uint64_t len)
{
    uint64_t start, end, resets, t_start = 0, t_end = 0, n_start = 0, n_end = 0;
    int go;
    /* weight-aware: the read's tensor and the one after it */
    if (rfs_engine_tensor_at(fs->eng, ino, off, &t_start, &t_end))
        rfs_engine_tensor_at(fs->eng, ino, t_end, &n_start, &n_end);
    pthread_mutex_lock(&fh->mu);
    resets = fh->pf.resets;
    go = rfs_prefetch_note_tensor(&fh->pf, off, len, fh->size, t_start, t_end, n_start, n_end,
                                  &start, &end);
    resets = fh->pf.resets - resets;
    pthread_mutex_unlock(&fh->mu);
    if (resets)
        rfs_engine_note_prefetch_reset(fs->eng);
    if (go)
        rfs_engine_prefetch(fs->eng, ino, start, end);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    rfs_fs *fs = req_fs(req);
    rfs_fh *fh = (rfs_fh *)(uintptr_t)fi->fh;
    rfs_readv rv;
    rfs_err err;
    size_t len;
    uint64_t t0, c0, tr = 0, t2;
    if (off < 0 || (uint64_t)off >= fh->size || size == 0) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    t0 = rfs_hist_now_ns();
    c0 = rfs_hist_thread_cpu_ns();
    len = fh->size - (uint64_t)off < size ? (size_t)(fh->size - (uint64_t)off) : size;
    rfs_readv_init(&rv);
    err = rfs_engine_read(fs->eng, ino, (uint64_t)off, len, &rv);
    if (err != RFS_OK) {
        fuse_reply_err(req, rfs_errno(err));
    } else {
        /* fh must not be touched after the reply: the reader may close the
         * file and its release free fh before this thread goes on. */
        note_prefetch(fs, fh, ino, (uint64_t)off, len);
        tr = rfs_hist_now_ns();
        if (rv.n_pieces > RFS_MAX_IOV)
            reply_gathered(req, fs, &rv);
        else if (rv.has_raw)
            reply_bufvec(req, fs, &rv);
        else
            reply_iov(req, &rv);
        tr = rfs_hist_now_ns() - tr;
        rfs_readv_release(fs->eng, &rv); /* the kernel has the bytes now */
        rfs_engine_note_served(fs->eng, len);
    }
    t2 = rfs_hist_now_ns();
    rfs_engine_note_request(fs->eng, t2 - t0, rfs_hist_thread_cpu_ns() - c0, tr);
}

/* ------------------------------------------------------------ misc */

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    rfs_fs *fs = req_fs(req);
    rfs_image_summary sum;
    struct statvfs sv;
    rfs_image_get_summary(fs->img, &sum);
    memset(&sv, 0, sizeof(sv));
    sv.f_bsize = 4096;
    sv.f_frsize = 4096;
    sv.f_blocks = (sum.content_bytes + 4095) / 4096;
    sv.f_files = sum.n_inodes;
    sv.f_namemax = 255;
    sv.f_flag = ST_RDONLY;
    fuse_reply_statfs(req, &sv);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    rfs_fs *fs = req_fs(req);
    char buf[4096];
    size_t n;
    if (ino != FUSE_ROOT_ID || strcmp(name, RFS_STATS_XATTR) != 0) {
        fuse_reply_err(req, ENODATA);
        return;
    }
    n = rfs_engine_stats_json(fs->eng, buf, sizeof(buf));
    if (fs->stats_extra && n > 0 && n < sizeof(buf) && buf[n - 1] == '}') {
        /* {...,"gpu_usable":x} -> {...,"gpu_usable":x,<extra>} */
        buf[n - 1] = ',';
        size_t k = fs->stats_extra(fs->stats_ctx, buf + n, sizeof(buf) - n);
        n = k && n + k + 1 < sizeof(buf) ? n + k : sizeof(buf);
        if (n < sizeof(buf))
            buf[n++] = '}';
    }
    if (n >= sizeof(buf))
        fuse_reply_err(req, E2BIG);
    else if (size == 0)
        fuse_reply_xattr(req, n + 256); /* counters may grow before the real call */
    else if (size < n)
        fuse_reply_err(req, ERANGE);
    else
        fuse_reply_buf(req, buf, n);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    static const char names[] = RFS_STATS_XATTR; /* with its NUL */
    size_t n = ino == FUSE_ROOT_ID ? sizeof(names) : 0;
    if (size == 0)
        fuse_reply_xattr(req, n);
    else if (size < n)
        fuse_reply_err(req, ERANGE);
    else
        fuse_reply_buf(req, names, n);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
    rfs_fs *fs = userdata;
    const unsigned want = FUSE_CAP_ASYNC_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_READDIRPLUS |
                          FUSE_CAP_READDIRPLUS_AUTO | FUSE_CAP_CACHE_SYMLINKS |
                          FUSE_CAP_PARALLEL_DIROPS;
    /* max_pages follows max_write: 1 MiB requests, the most libfuse 3.14
     * allows (FUSE_MAX_MAX_PAGES 256; the kernel's max_pages_limit is 256). */
    conn->max_write = 1u << 20;
    conn->max_readahead = fs->max_readahead > (1u << 20) ? (unsigned)fs->max_readahead : 1u << 20;
    conn->max_background = RFS_MAX_BACKGROUND;
    conn->congestion_threshold = RFS_MAX_BACKGROUND * 3 / 4;
    conn->want |= conn->capable & want;
    conn->want &= ~(unsigned)(FUSE_CAP_SPLICE_MOVE | FUSE_CAP_SPLICE_READ);
    if (fs->conn_opts)
        fuse_apply_conn_info_opts(fs->conn_opts, conn);
    /* Whatever was asked: the image never changes and nothing is written. */
    conn->want &= ~(unsigned)(FUSE_CAP_AUTO_INVAL_DATA | FUSE_CAP_WRITEBACK_CACHE);
}

/* ------------------------------------------------------------ read-only */

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
    fuse_reply_err(req, EROFS);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                     dev_t rdev)
{
    fuse_reply_err(req, EROFS);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    fuse_reply_err(req, EROFS);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    fuse_reply_err(req, EROFS);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    fuse_reply_err(req, EROFS);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
    fuse_reply_err(req, EROFS);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    fuse_reply_err(req, EROFS);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    fuse_reply_err(req, EROFS);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
    fuse_reply_err(req, EROFS);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags)
{
    fuse_reply_err(req, EROFS);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    fuse_reply_err(req, EROFS);
}

const struct fuse_lowlevel_ops rfs_fuse_ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .readlink = op_readlink,
    .open = op_open,
    .read = op_read,
    .release = op_release,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .releasedir = op_releasedir,
    .statfs = op_statfs,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .setattr = op_setattr,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_unlink,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .write = op_write,
    .create = op_create,
    .setxattr = op_setxattr,
    .removexattr = op_removexattr,
};
