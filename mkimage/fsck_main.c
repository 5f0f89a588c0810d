/*
 * fsck_main.c - ransfs-fsck: check an image completely, extract it, or
 * compare it with a source tree.
 *   ransfs-fsck [-q] [-j N] IMAGE
 *   ransfs-fsck [-q] [-j N] [-f] --extract DIR IMAGE [PATH...]
 *   ransfs-fsck [-q] --compare DIR IMAGE [PATH...]
 * Opens the image (which validates all metadata), verifies and decodes
 * every unit (on N threads, default: all cores; each with its own decode
 * context) and every RAW extent, and reports each problem on one line
 * naming the unit and the file and offset that use it, in unit order
 * whatever N is.  --extract DIR then writes the tree (or only the named
 * PATHs: a directory with its subtree, and the directories leading to
 * them) into DIR (contents, modes, mtimes, symlinks, hard links).  DIR
 * must not exist or be empty, checked before anything is written; a new
 * DIR appears only complete.  -f writes into an existing DIR, replacing
 * what is in the way except directories.
 * --compare DIR reads every file of the image (or of the PATHs) and
 * compares it with DIR byte for byte, and types, modes, symlink targets
 * and hard links; it prints one line per difference on stdout: the first
 * differing offset of each file, and entries only on one side.
 * Exit status: 0 all good (no differences); 1 the image is damaged,
 * extraction failed, or --compare found a difference; 2 usage error.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rfs_array.h"
#include "rfs_build.h"
#include "rfs_image.h"
#include "rfs_tool_open.h"
#include "rfs_image_info.h"
#include "rfs_pool.h"
#include "rfs_tool_guard.h"
#include "rfs_tool_tree.h"

typedef struct fsck_opts {
    const char *image;
    const char *dest;    /* --extract DIR */
    const char *compare; /* --compare DIR */
    char **paths;        /* the PATHs, normalised (rfs_tree_path_norm) */
    int n_paths;
    int quiet, force;
    unsigned n_threads;
} fsck_opts;

/* --compare: a regular file with several names, on either side. */
typedef struct link_seen {
    dev_t dev;
    ino_t ino;        /* the file in DIR ... */
    uint64_t img_ino; /* ... and in the image */
    char *path;       /* the first of its names the walk met */
} link_seen;

typedef struct fsck {
    const fsck_opts *o;
    const char *image;
    rfs_image *img;
    void *remote; /* the source of a URL image (rfs_tool_open.h) */
    rfs_rctx *ctx;
    rfs_image_summary sum;
    uint64_t *unit_ino; /* first file using each unit (0: none) ... */
    uint64_t *unit_off; /* ... and the file offset of the unit's first byte */
    char **ino_path;    /* path of each inode (its first name), for messages */
    char **written;     /* --extract: path in DIR of each hard-linked file's first copy */
    uint8_t *buf, *buf2;
    uint64_t problems;
    uint64_t differences, compared;
    struct link_seen *links; /* --compare: files with several names seen */
    size_t n_links, links_cap;
    rfs_err *unit_err;  /* result of decoding each unit */
    int cur;            /* --extract/--compare: fd of the directory being walked */
    int root;           /* --extract: fd of DIR itself (hard links name paths from it) */
    const char *dest;   /* the DIR of --extract or --compare */
} fsck;

static int problem(fsck *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int problem(fsck *f, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "ransfs-fsck: %s: ", f->image);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    f->problems++;
    return 0;
}

/* A failure on the DIR side: "ransfs-fsck: DIR/path: what: errno text". */
static int dest_fail(fsck *f, const char *path, const char *what)
{
    size_t n = strlen(f->dest);
    const char *sep = path[0] && n && f->dest[n - 1] != '/' ? "/" : "";
    fprintf(stderr, "ransfs-fsck: %s%s%s: %s%s%s\n", f->dest, sep, path, what,
            what[0] ? ": " : "", strerror(errno));
    f->problems++;
    return -1;
}

/* ------------------------------------------------------------ check */

/* Record which file and offset use each unit; check each RAW extent. */
static int index_file(void *user, uint64_t ino, const char *path, const rfs_stat *st, int post)
{
    fsck *f = user;
    if (post || f->ino_path[ino - 1]) /* a further name of a hard-linked file */
        return 0;
    if (!(f->ino_path[ino - 1] = strdup(path[0] ? path : "/")))
        return -1;
    if (!S_ISREG(st->mode))
        return 0;
    uint64_t n = 0;
    rfs_image_extent_count(f->img, ino, &n);
    for (uint64_t e = 0; e < n; e++) {
        rfs_extent_info ei;
        rfs_image_extent_info(f->img, ino, e, &ei);
        if (ei.is_raw) {
            if (rfs_image_raw_verify(f->img, ino, ei.file_off) != RFS_OK)
                problem(f, "%s: raw extent at file offset %llu (%llu bytes): checksum mismatch",
                        path, (unsigned long long)ei.file_off, (unsigned long long)ei.length);
            continue;
        }
        for (uint64_t k = 0; k * ei.stride < ei.length; k++)
            if (!f->unit_ino[ei.src + k]) {
                f->unit_ino[ei.src + k] = ino;
                f->unit_off[ei.src + k] = ei.file_off + k * ei.stride;
            }
    }
    return 0;
}

/* One worker's decode context and output buffers (two units). */
typedef struct unit_worker {
    rfs_rctx *ctx;
    uint8_t *buf;
} unit_worker;

typedef struct units_job {
    fsck *f;
    unit_worker *w; /* one per worker index */
    size_t pairs;   /* rfs_pool_pairs */
} units_job;

/* rfs_pool_for item i: one unit, or two (rfs_pool_pair_item) in one
 * rfs_image_unit_decode2 call (on the AVX-512 VBMI backend two tiles in
 * lockstep), on this worker's context. */
static void unit_decode_some(void *arg, unsigned worker, size_t i)
{
    units_job *j = arg;
    const size_t cap = j->f->sum.unit_max;
    size_t count, u = rfs_pool_pair_item(j->pairs, i, &count), got;
    if (count == 1) {
        j->f->unit_err[u] =
            rfs_image_unit_decode(j->f->img, j->w[worker].ctx, u, j->w[worker].buf, cap, &got);
        return;
    }
    rfs_unit_io io[2];
    for (unsigned k = 0; k < 2; k++)
        io[k] = (rfs_unit_io){.unit = u + k, .dst = j->w[worker].buf + k * cap, .dst_cap = cap};
    rfs_image_unit_decode2(j->f->img, j->w[worker].ctx, io);
    j->f->unit_err[u] = io[0].err;
    j->f->unit_err[u + 1] = io[1].err;
}

/* Decode every unit on n_threads threads (this one included): util/'s
 * pool, with one context per worker index.  -1: out of memory. */
static int units_decode(fsck *f)
{
    unsigned n = f->o->n_threads;
    uint64_t units = f->sum.n_units;
    rfs_pool *pool = n > 1 && units > 1 ? rfs_pool_create(n - 1) : NULL;
    unsigned workers = rfs_pool_threads(pool) + 1;
    units_job j = {f, calloc(workers, sizeof *j.w), rfs_pool_pairs(units, workers)};
    int rc = j.w ? 0 : -1;
    for (unsigned k = 0; rc == 0 && k < workers; k++) {
        j.w[k].ctx = rfs_rctx_create(f->img);
        j.w[k].buf = malloc(f->sum.unit_max ? 2 * (size_t)f->sum.unit_max : 1);
        if (!j.w[k].ctx || !j.w[k].buf)
            rc = -1;
    }
    if (rc == 0)
        rfs_pool_for(pool, RFS_PRIO_HIGH, units - j.pairs, unit_decode_some, &j);
    rfs_pool_destroy(pool);
    for (unsigned k = 0; j.w && k < workers; k++) {
        rfs_rctx_destroy(j.w[k].ctx);
        free(j.w[k].buf);
    }
    free(j.w);
    return rc;
}

/* Report the results in unit order. */
static void units_check(fsck *f)
{
    for (uint64_t u = 0; u < f->sum.n_units; u++) {
        rfs_err err = f->unit_err[u];
        int64_t t = rfs_image_unit_tensor(f->img, u);
        rfs_tensor_info ti;
        char what[512];
        if (t >= 0 && rfs_image_tensor_info(f->img, (uint64_t)t, &ti) == RFS_OK)
            snprintf(what, sizeof what, "tile %llu of tensor '%s'",
                     (unsigned long long)(u - ti.first_unit), ti.name);
        else
            snprintf(what, sizeof what, "zstd block");
        if (!f->unit_ino[u])
            problem(f, "unit %llu (%s) is not used by any file", (unsigned long long)u, what);
        else if (err)
            problem(f, "unit %llu (%s) in %s at offset %llu: %s", (unsigned long long)u, what,
                    f->ino_path[f->unit_ino[u] - 1], (unsigned long long)f->unit_off[u],
                    rfs_strerror(err));
    }
}

/* The whole check: index, decode every unit, report.  0: no problem. */
static int check_run(fsck *f)
{
    if (rfs_tree_walk(f->img, index_file, f) != 0 || units_decode(f) != 0) {
        fprintf(stderr, "ransfs-fsck: out of memory\n");
        return -1;
    }
    units_check(f);
    if (f->problems)
        fprintf(stderr, "ransfs-fsck: %s: %llu problem(s) found\n", f->image,
                (unsigned long long)f->problems);
    return f->problems ? -1 : 0;
}

/* ------------------------------------------------------------ PATH selection */

enum { SEL_OUT, SEL_ANCESTOR, SEL_IN };

/* 1 when path is sel or lies below it ("" is the root, above all). */
static int path_under(const char *path, const char *sel)
{
    size_t n = strlen(sel);
    return n == 0 || (strncmp(path, sel, n) == 0 && (path[n] == '\0' || path[n] == '/'));
}

/* Whether the walk entry at path is selected (a PATH or below one), leads
 * to one (a directory to create, but not to fill), or neither. */
static int sel_class(const fsck *f, const char *path)
{
    int ancestor = 0;
    if (f->o->n_paths == 0)
        return SEL_IN;
    for (int i = 0; i < f->o->n_paths; i++) {
        if (path_under(path, f->o->paths[i]))
            return SEL_IN;
        ancestor |= path_under(f->o->paths[i], path);
    }
    return ancestor ? SEL_ANCESTOR : SEL_OUT;
}

/* What a walk callback returns to pass over an entry: a directory's
 * entries are skipped too. */
static int walk_pass(const rfs_stat *st)
{
    return S_ISDIR(st->mode) ? RFS_TREE_SKIP : 0;
}

/* Every PATH names an entry of the image?  0, or 1 after naming the first
 * that does not. */
static int sel_check(fsck *f)
{
    for (int i = 0; i < f->o->n_paths; i++) {
        uint64_t ino;
        if (rfs_image_lookup_path(f->img, f->o->paths[i], &ino) != RFS_OK) {
            fprintf(stderr, "ransfs-fsck: %s: %s: not in the image\n", f->image,
                    f->o->paths[i]);
            return 1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ the DIR side */

/*
 * Both --extract and --compare walk DIR alongside the image with one open
 * directory fd (f->cur), not with paths: paths of a deep tree pass
 * PATH_MAX, and one fd per level would run out of descriptors.  Entering a
 * directory opens it relative to its parent; leaving it opens "..".
 */
/* Make the directory `to` (relative to f->cur) the current one; a failure
 * is reported with what, or silently when what is NULL. */
static int dir_move(fsck *f, const char *path, const char *to, const char *what)
{
    int fd = openat(f->cur, to, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return what ? dest_fail(f, path, what) : -1;
    close(f->cur);
    f->cur = fd;
    return 0;
}

static int dir_enter(fsck *f, const char *path)
{
    return dir_move(f, path, rfs_tree_basename(path), "");
}

static int dir_leave(fsck *f, const char *path)
{
    return dir_move(f, path, "..", "cannot return to the parent");
}

/* ------------------------------------------------------------ extract */

/* -f: take away a non-directory that stands where name is to be made. */
static int extract_clear(fsck *f, const char *path)
{
    struct stat st;
    const char *name = rfs_tree_basename(path);
    if (!f->o->force || fstatat(f->cur, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
        return 0;
    if (S_ISDIR(st.st_mode)) {
        errno = EISDIR;
        return dest_fail(f, path, "a directory is in the way");
    }
    return unlinkat(f->cur, name, 0) == 0 ? 0 : dest_fail(f, path, "cannot replace");
}

/* The atime and mtime to give an extracted entry: both its image mtime. */
static void mtime_times(struct timespec ts[2], const rfs_stat *st)
{
    ts[0] = ts[1] = (struct timespec){st->mtime_sec, st->mtime_nsec};
}

/* Write all n bytes (a short write is retried, so that errno names the
 * reason, e.g. ENOSPC, when it stops); 0 or -1. */
static int write_full(int fd, const uint8_t *buf, size_t n)
{
    while (n) {
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

static int extract_data(fsck *f, int fd, uint64_t ino, const char *path, const rfs_stat *st)
{
    for (uint64_t off = 0; off < st->size;) {
        size_t got = 0;
        size_t want = st->size - off < f->sum.tile_size ? st->size - off : f->sum.tile_size;
        rfs_err err = rfs_image_read(f->img, f->ctx, ino, off, want, f->buf, &got);
        if (err || got == 0)
            return problem(f, "%s at offset %llu: %s", path, (unsigned long long)off,
                           err ? rfs_strerror(err) : "short read"), -1;
        if (write_full(fd, f->buf, got) != 0)
            return dest_fail(f, path, "write failed");
        off += got;
    }
    return 0;
}

static int extract_file(fsck *f, uint64_t ino, const char *path, const rfs_stat *st)
{
    if (extract_clear(f, path))
        return -1;
    int fd = openat(f->cur, rfs_tree_basename(path),
                    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return dest_fail(f, path, "");
    struct timespec ts[2];
    mtime_times(ts, st);
    int rc = extract_data(f, fd, ino, path, st);
    if (rc == 0 && (fchmod(fd, st->mode & 07777) || futimens(fd, ts)))
        rc = dest_fail(f, path, "");
    close(fd);
    return rc;
}

static int extract_link(fsck *f, uint64_t ino, const char *path, const rfs_stat *st)
{
    const char *target, *name = rfs_tree_basename(path);
    struct timespec ts[2];
    mtime_times(ts, st);
    rfs_image_readlink(f->img, ino, &target);
    if (extract_clear(f, path))
        return -1;
    if (symlinkat(target, f->cur, name) || utimensat(f->cur, name, ts, AT_SYMLINK_NOFOLLOW))
        return dest_fail(f, path, "");
    return 0;
}

/* A regular file with several names: the first name extracted is written,
 * each further one is a hard link to it (by its path from DIR). */
static int extract_hardlinked(fsck *f, uint64_t ino, const char *path, const rfs_stat *st)
{
    char **first = &f->written[ino - 1];
    if (!*first) {
        if (!(*first = strdup(path)))
            return fprintf(stderr, "ransfs-fsck: out of memory\n"), -1;
        return extract_file(f, ino, path, st);
    }
    if (extract_clear(f, path))
        return -1;
    if (linkat(f->root, *first, f->cur, rfs_tree_basename(path), 0) != 0)
        return dest_fail(f, path, "cannot make a hard link");
    return 0;
}

/* Make directory path (not the root) and enter it.  With -f an existing
 * directory is used as it is. */
static int extract_dir_pre(fsck *f, const char *path)
{
    const char *name = rfs_tree_basename(path);
    struct stat st;
    if (mkdirat(f->cur, name, 0700) != 0) {
        int exists = errno == EEXIST && f->o->force &&
                     fstatat(f->cur, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
        if (!exists)
            return dest_fail(f, path, "");
        if (!S_ISDIR(st.st_mode) &&
            (extract_clear(f, path) || mkdirat(f->cur, name, 0700) != 0))
            return dest_fail(f, path, "");
    }
    return dir_enter(f, path);
}

/* Leave directory path and give it its mode and mtime last (its entries
 * are in, and a mode without write permission no longer matters). */
static int extract_dir_post(fsck *f, const char *path, const rfs_stat *st)
{
    struct timespec ts[2];
    mtime_times(ts, st);
    int fd = path[0] ? dup(f->cur) : f->cur;
    if (fd < 0)
        return dest_fail(f, path, "");
    int rc = fd != f->cur ? dir_leave(f, path) : 0;
    if (rc == 0 && (fchmod(fd, st->mode & 07777) || futimens(fd, ts)))
        rc = dest_fail(f, path, "");
    if (fd != f->cur)
        close(fd);
    return rc;
}

static int extract_one(void *user, uint64_t ino, const char *path, const rfs_stat *st, int post)
{
    fsck *f = user;
    int sel = sel_class(f, path);
    if (sel == SEL_OUT)
        return walk_pass(st);
    if (S_ISDIR(st->mode)) {
        if (post)
            return extract_dir_post(f, path, st);
        return path[0] ? extract_dir_pre(f, path) : 0;
    }
    if (S_ISLNK(st->mode))
        return extract_link(f, ino, path, st);
    if (st->nlink > 1)
        return extract_hardlinked(f, ino, path, st);
    return extract_file(f, ino, path, st);
}

/* Refuse a DIR that extraction could clobber, before anything is written:
 * without -f it must not exist or be an empty directory; with -f it may
 * hold anything but must be a directory.  0, or -1 after a message. */
static int extract_dest_check(const fsck *f)
{
    struct stat st;
    if (stat(f->dest, &st) != 0)
        return errno == ENOENT ? 0
               : (fprintf(stderr, "ransfs-fsck: %s: %s\n", f->dest, strerror(errno)), -1);
    if (!S_ISDIR(st.st_mode))
        return fprintf(stderr, "ransfs-fsck: %s: exists and is not a directory\n", f->dest), -1;
    if (f->o->force)
        return 0;
    DIR *d = opendir(f->dest);
    struct dirent *e;
    int empty = 1;
    if (!d)
        return fprintf(stderr, "ransfs-fsck: %s: %s\n", f->dest, strerror(errno)), -1;
    while (empty && (e = readdir(d)))
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(d);
    if (!empty)
        fprintf(stderr, "ransfs-fsck: %s: exists and is not empty (-f extracts into it)\n",
                f->dest);
    return empty ? 0 : -1;
}

/* Undo a failed extraction into a fresh directory: remove what the walk
 * made (the selected entries; an absent one is skipped).  Best effort. */
static int remove_one(void *user, uint64_t ino, const char *path, const rfs_stat *st, int post)
{
    fsck *f = user;
    const char *name = rfs_tree_basename(path);
    (void)ino;
    if (sel_class(f, path) == SEL_OUT)
        return walk_pass(st);
    if (!S_ISDIR(st->mode)) {
        unlinkat(f->cur, name, 0);
        return 0;
    }
    if (!path[0])
        return 0;
    if (post) {
        if (dir_move(f, path, "..", NULL) != 0)
            return -1;
        unlinkat(f->cur, name, AT_REMOVEDIR);
        return 0;
    }
    fchmodat(f->cur, name, 0700, 0); /* its final mode may forbid the removal */
    return dir_move(f, path, name, NULL) != 0 ? RFS_TREE_SKIP : 0;
}

static void extract_remove(fsck *f, const char *tmp)
{
    close(f->cur);
    if ((f->cur = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0 && fchmod(f->cur, 0700) == 0)
        rfs_tree_walk(f->img, remove_one, f);
    rmdir(tmp);
}

/* DIR.tmp.XXXXXX beside DIR (trailing '/' of DIR dropped), made; NULL
 * after a message. */
static char *extract_tmpdir(const char *dest)
{
    size_t n = strlen(dest);
    while (n > 1 && dest[n - 1] == '/')
        n--;
    char *tmp = malloc(n + sizeof ".tmp.XXXXXX");
    if (!tmp)
        return fprintf(stderr, "ransfs-fsck: out of memory\n"), NULL;
    memcpy(tmp, dest, n);
    memcpy(tmp + n, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
    if (!mkdtemp(tmp)) {
        fprintf(stderr, "ransfs-fsck: %s: cannot create: %s\n", dest, strerror(errno));
        free(tmp);
        return NULL;
    }
    return tmp;
}

/* Move the finished tree at tmp to DIR, which must still not exist. */
static int extract_publish(const fsck *f, const char *tmp)
{
    int r = renameat2(AT_FDCWD, tmp, AT_FDCWD, f->dest, RENAME_NOREPLACE);
    if (r != 0 && errno == EINVAL) /* a file system without RENAME_NOREPLACE */
        r = rename(tmp, f->dest);
    if (r != 0)
        fprintf(stderr, "ransfs-fsck: %s: cannot move the extracted tree into place: %s\n",
                f->dest, strerror(errno));
    return r;
}

/*
 * Write the tree.  A DIR that does not exist is built as DIR.tmp.XXXXXX
 * beside it and renamed into place when complete, so a failed extraction
 * (a full disk, an I/O error) leaves nothing behind; an existing DIR
 * (empty, or any with -f) is written in place.
 */
static int extract_run(fsck *f)
{
    struct stat st;
    char *tmp = NULL;
    if (stat(f->dest, &st) != 0 && errno == ENOENT && !(tmp = extract_tmpdir(f->dest)))
        return -1;
    f->cur = open(tmp ? tmp : f->dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int ok = f->cur >= 0 && (f->root = dup(f->cur)) >= 0;
    int rc = ok ? rfs_tree_walk(f->img, extract_one, f) : -1;
    if (!ok)
        fprintf(stderr, "ransfs-fsck: %s: %s\n", f->dest, strerror(errno));
    else if (rc != 0 && !f->problems)
        fprintf(stderr, "ransfs-fsck: out of memory\n");
    if (rc == 0 && tmp)
        rc = extract_publish(f, tmp);
    if (rc != 0 && tmp)
        extract_remove(f, tmp);
    free(tmp);
    return rc;
}

/* ------------------------------------------------------------ compare */

static int difference(fsck *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int difference(fsck *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    f->differences++;
    return 0;
}

static const char *type_name(uint32_t mode)
{
    return S_ISDIR(mode) ? "directory" : S_ISLNK(mode) ? "symlink" : S_ISREG(mode)
           ? "regular file" : "special file";
}

/* Read up to n bytes of fd at off (short only at end of file); -1 on error. */
static ssize_t read_full(int fd, uint8_t *buf, size_t n, uint64_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, buf + done, n - done, (off_t)(off + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        done += (size_t)r;
    }
    return (ssize_t)done;
}

/* The first offset where the image file and the DIR file differ (their
 * common length when one is a prefix of the other), or UINT64_MAX when
 * equal; -2 (as uint64) after a read error, reported. */
static uint64_t first_difference(fsck *f, int fd, uint64_t ino, const char *path,
                                 const rfs_stat *st)
{
    for (uint64_t off = 0;; ) {
        size_t want = f->sum.tile_size, got = 0;
        if (off < st->size) {
            rfs_err err = rfs_image_read(f->img, f->ctx, ino, off, want, f->buf, &got);
            if (err)
                return problem(f, "%s at offset %llu: %s", path, (unsigned long long)off,
                               rfs_strerror(err)), UINT64_MAX - 1;
        }
        ssize_t have = read_full(fd, f->buf2, want, off);
        if (have < 0)
            return dest_fail(f, path, "read failed"), UINT64_MAX - 1;
        size_t n = got < (size_t)have ? got : (size_t)have;
        if (memcmp(f->buf, f->buf2, n) != 0)
            for (size_t i = 0; i < n; i++)
                if (f->buf[i] != f->buf2[i])
                    return off + i;
        if (got != (size_t)have)
            return off + n;
        if (got < want)
            return UINT64_MAX;
        off += got;
    }
}

static void compare_file(fsck *f, uint64_t ino, const char *path, const rfs_stat *st,
                         const struct stat *ds)
{
    int fd = openat(f->cur, rfs_tree_basename(path), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        dest_fail(f, path, "");
        return;
    }
    uint64_t at = first_difference(f, fd, ino, path, st);
    close(fd);
    if (at == UINT64_MAX - 1 || at == UINT64_MAX)
        return;
    if (st->size != (uint64_t)ds->st_size)
        difference(f, "%s: differs at offset %llu (size %llu in the image, %llu in %s)", path,
                   (unsigned long long)at, (unsigned long long)st->size,
                   (unsigned long long)ds->st_size, f->dest);
    else
        difference(f, "%s: differs at offset %llu", path, (unsigned long long)at);
}

/* Hard links: names that share a file in the image must share one in DIR,
 * and the other way round.  Only files with several names are recorded
 * (few), so a linear search does. */
static void compare_hardlinks(fsck *f, uint64_t ino, const char *path, const rfs_stat *st,
                              const struct stat *ds)
{
    if (st->nlink < 2 && ds->st_nlink < 2)
        return;
    for (size_t i = 0; i < f->n_links; i++) {
        const link_seen *l = &f->links[i];
        int same_src = l->dev == ds->st_dev && l->ino == ds->st_ino, same_img = l->img_ino == ino;
        if (same_src && same_img)
            return;
        if (same_src || same_img) {
            difference(f, "%s: a hard link to %s in %s, not in %s", path, l->path,
                       same_img ? "the image" : f->dest, same_img ? f->dest : "the image");
            return;
        }
    }
    char *copy = strdup(path);
    if (!copy || rfs_array_reserve(&f->links, &f->links_cap, f->n_links + 1, sizeof *f->links)) {
        free(copy);
        problem(f, "out of memory");
        return;
    }
    f->links[f->n_links++] = (link_seen){ds->st_dev, ds->st_ino, ino, copy};
}

static void compare_link(fsck *f, uint64_t ino, const char *path)
{
    const char *target;
    char buf[4097];
    rfs_image_readlink(f->img, ino, &target);
    ssize_t n = readlinkat(f->cur, rfs_tree_basename(path), buf, sizeof buf - 1);
    if (n < 0) {
        dest_fail(f, path, "");
        return;
    }
    buf[n] = '\0';
    if (strcmp(buf, target) != 0)
        difference(f, "%s: symlink target differs: '%s' in the image, '%s' in %s", path,
                   target, buf, f->dest);
}

/* Report the entries of DIR's directory (open as f->cur) that the image
 * directory ino lacks. */
static void compare_extra(fsck *f, uint64_t ino, const char *path)
{
    int fd = dup(f->cur);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *e;
    if (!d) {
        if (fd >= 0)
            close(fd);
        dest_fail(f, path, "cannot list");
        return;
    }
    rewinddir(d);
    while ((e = readdir(d))) {
        uint64_t child;
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
            rfs_image_lookup(f->img, ino, e->d_name, &child) != RFS_OK)
            difference(f, "only in %s: %s%s%s", f->dest, path, path[0] ? "/" : "", e->d_name);
    }
    closedir(d);
}

/* The DIR side of entry path: its lstat, or 1 when it is absent (reported). */
static int compare_lstat(fsck *f, const char *path, struct stat *ds)
{
    int r = path[0] ? fstatat(f->cur, rfs_tree_basename(path), ds, AT_SYMLINK_NOFOLLOW)
                    : fstat(f->cur, ds);
    if (r == 0)
        return 0;
    if (errno == ENOENT)
        return difference(f, "only in the image: %s", path), 1;
    return dest_fail(f, path, "");
}

static int compare_one(void *user, uint64_t ino, const char *path, const rfs_stat *st, int post)
{
    fsck *f = user;
    struct stat ds;
    int sel = sel_class(f, path), dir = S_ISDIR(st->mode);
    const char *shown = path[0] ? path : ".";
    if (post)
        return path[0] ? dir_leave(f, path) : 0;
    if (sel == SEL_OUT)
        return walk_pass(st);
    int r = compare_lstat(f, path, &ds);
    if (r)
        return r > 0 && dir ? RFS_TREE_SKIP : r < 0 ? -1 : 0;
    f->compared++;
    if ((ds.st_mode & S_IFMT) != (st->mode & S_IFMT)) {
        difference(f, "%s: type differs: %s in the image, %s in %s", shown, type_name(st->mode),
                   type_name(ds.st_mode), f->dest);
        return walk_pass(st);
    }
    if (!S_ISLNK(st->mode) && (ds.st_mode & 07777) != (st->mode & 07777) && sel == SEL_IN)
        difference(f, "%s: mode differs: %04o in the image, %04o in %s", shown,
                   st->mode & 07777, (unsigned)ds.st_mode & 07777, f->dest);
    if (S_ISREG(st->mode)) {
        compare_file(f, ino, path, st, &ds);
        compare_hardlinks(f, ino, path, st, &ds);
    }
    else if (S_ISLNK(st->mode))
        compare_link(f, ino, path);
    if (!dir)
        return 0;
    if (path[0] && dir_enter(f, path) != 0)
        return -1;
    if (sel == SEL_IN)
        compare_extra(f, ino, path);
    return 0;
}

/* --compare: 0 when DIR and the image agree, else -1. */
static int compare_run(fsck *f)
{
    f->cur = open(f->dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (f->cur < 0)
        return fprintf(stderr, "ransfs-fsck: %s: %s\n", f->dest, strerror(errno)), -1;
    if (rfs_tree_walk(f->img, compare_one, f) != 0 && !f->problems) {
        fprintf(stderr, "ransfs-fsck: out of memory\n");
        return -1;
    }
    if (f->differences)
        fprintf(stderr, "ransfs-fsck: %s: %llu difference(s) from %s\n", f->image,
                (unsigned long long)f->differences, f->dest);
    return f->differences || f->problems ? -1 : 0;
}

/* ------------------------------------------------------------ main */

static const char usage_text[] =
    "usage: ransfs-fsck [-q] [-j N] IMAGE\n"
    "       ransfs-fsck [-q] [-j N] [-f] --extract DIR IMAGE [PATH...]\n"
    "       ransfs-fsck [-q] --compare DIR IMAGE [PATH...]\n"
    "       ransfs-fsck --version\n"
    "Check every unit of IMAGE; extract it into DIR, or compare it with DIR.\n"
    "  -j, --threads N     decode threads, 1..256 (default: all cores)\n"
    "  -q, --quiet         print only problems and differences, no summary line\n"
    "  -x, --extract DIR   after a clean check, write the tree (or the PATHs) into\n"
    "                      DIR, which must not exist or be empty\n"
    "  -f, --force         with --extract: write into an existing DIR\n"
    "      --compare DIR   compare the tree (or the PATHs) with DIR byte for byte\n"
    "  -h, --help          this text\n"
    "      --version       print the version and the features built in\n"
    "Exit status: 0 all good, 1 damaged image, failed extraction or a difference,\n"
    "2 usage error.\n";

static int usage(void)
{
    fputs(usage_text, stderr);
    return 2;
}

static int parse_threads(const char *arg, unsigned *n)
{
    char *end;
    long j = strtol(arg, &end, 10);
    if (*end || j < 1 || j > 256) {
        fprintf(stderr, "ransfs-fsck: -j %s: want a thread count from 1 to 256\n", arg);
        return 2;
    }
    *n = (unsigned)j;
    return -1;
}

/* Take IMAGE and the PATHs (normalised in place) from argv. */
static int parse_positional(int argc, char **argv, fsck_opts *o)
{
    if (argc - optind < 1 || (argc - optind > 1 && !o->dest && !o->compare))
        return usage();
    o->image = argv[optind];
    o->paths = argv + optind + 1;
    o->n_paths = argc - optind - 1;
    for (int i = 0; i < o->n_paths; i++)
        if (rfs_tree_path_norm(o->paths[i]) != 0) {
            fprintf(stderr, "ransfs-fsck: %s: a PATH inside the image has no '..'\n",
                    o->paths[i]);
            return 2;
        }
    return -1;
}

/* Parse the command line into o.  Returns -1 to go on, else the exit
 * status (0 after --help or --version, 2 on a usage error). */
static int parse_args(int argc, char **argv, fsck_opts *o)
{
    static const struct option longopts[] = {{"extract", required_argument, 0, 'x'},
                                             {"compare", required_argument, 0, 'C'},
                                             {"force", no_argument, 0, 'f'},
                                             {"quiet", no_argument, 0, 'q'},
                                             {"threads", required_argument, 0, 'j'},
                                             {"help", no_argument, 0, 'h'},
                                             {"version", no_argument, 0, 'V'},
                                             {0, 0, 0, 0}};
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int c, rc;
    o->n_threads = cores > 0 ? (unsigned)cores : 1;
    while ((c = getopt_long(argc, argv, "qfhx:j:", longopts, NULL)) != -1) {
        if (c == 'x')
            o->dest = optarg;
        else if (c == 'C')
            o->compare = optarg;
        else if (c == 'f')
            o->force = 1;
        else if (c == 'q')
            o->quiet = 1;
        else if (c == 'j' && (rc = parse_threads(optarg, &o->n_threads)) >= 0)
            return rc;
        else if (c == 'V')
            return rfs_build_print(stdout, "ransfs-fsck", NULL) == 0 ? 0 : 1;
        else if (c == 'h')
            return fputs(usage_text, stdout), 0;
        else if (c != 'j')
            return usage();
    }
    if ((o->dest && o->compare) || (o->force && !o->dest))
        return usage();
    return parse_positional(argc, argv, o);
}

static void fsck_free(fsck *f)
{
    for (uint64_t i = 0; f->ino_path && i < f->sum.n_inodes; i++)
        free(f->ino_path[i]);
    for (uint64_t i = 0; f->written && i < f->sum.n_inodes; i++)
        free(f->written[i]);
    free(f->ino_path);
    for (size_t i = 0; i < f->n_links; i++)
        free(f->links[i].path);
    free(f->links);
    free(f->written);
    free(f->unit_ino);
    free(f->unit_off);
    free(f->unit_err);
    free(f->buf);
    free(f->buf2);
    if (f->cur >= 0)
        close(f->cur);
    if (f->root >= 0)
        close(f->root);
    rfs_rctx_destroy(f->ctx);
    rfs_tool_image_close(f->img, f->remote);
}

/* Open the image and make the work arrays.  0, or 1 after a message. */
static int fsck_open(fsck *f)
{
    char why[512];
    rfs_tool_guard_arm("ransfs-fsck", f->image);
    if (rfs_tool_image_open(&f->img, &f->remote, f->image, why, sizeof why) != RFS_OK) {
        fprintf(stderr, "ransfs-fsck: %s: %s\n", f->image, why);
        return 1;
    }
    rfs_image_get_summary(f->img, &f->sum);
    f->ctx = rfs_rctx_create(f->img);
    f->buf = malloc(f->sum.tile_size);
    f->buf2 = malloc(f->sum.tile_size);
    f->unit_ino = calloc(f->sum.n_units + 1, sizeof *f->unit_ino);
    f->unit_off = calloc(f->sum.n_units + 1, sizeof *f->unit_off);
    f->ino_path = calloc(f->sum.n_inodes, sizeof *f->ino_path);
    f->written = calloc(f->sum.n_inodes, sizeof *f->written);
    f->unit_err = calloc(f->sum.n_units + 1, sizeof *f->unit_err);
    if (!f->ctx || !f->buf || !f->buf2 || !f->unit_ino || !f->unit_off || !f->ino_path ||
        !f->written || !f->unit_err) {
        fprintf(stderr, "ransfs-fsck: out of memory\n");
        return 1;
    }
    return 0;
}

/* The work the options ask for; 0 on success. */
static int fsck_run(fsck *f)
{
    if (sel_check(f) != 0)
        return -1;
    if (f->o->compare) {
        if (compare_run(f) != 0)
            return -1;
        if (!f->o->quiet)
            printf("%s: same as %s: %llu entries compared\n", f->image, f->dest,
                   (unsigned long long)f->compared);
        return 0;
    }
    if ((f->o->dest && extract_dest_check(f) != 0) || check_run(f) != 0 ||
        (f->o->dest && extract_run(f) != 0))
        return -1;
    if (!f->o->quiet)
        printf("%s: ok: %llu inodes, %llu units, %llu bytes of files in %llu bytes\n", f->image,
               (unsigned long long)f->sum.n_inodes, (unsigned long long)f->sum.n_units,
               (unsigned long long)f->sum.content_bytes, (unsigned long long)f->sum.image_bytes);
    return 0;
}

int main(int argc, char **argv)
{
    fsck_opts o = {0};
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0)
        return rc;
    fsck f = {.o = &o, .image = o.image, .cur = -1, .root = -1, .dest = o.dest ? o.dest : o.compare};
    rc = fsck_open(&f) != 0 || fsck_run(&f) != 0 ? 1 : 0;
    fsck_free(&f);
    return rc;
}
