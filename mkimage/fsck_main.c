/*
 * fsck_main.c - ransfs-fsck: check an image completely.
 *   ransfs-fsck [-q] [-j N] IMAGE [--extract DIR]
 * Opens the image (which validates all metadata), verifies and decodes
 * every unit (on N threads, default: all cores; each with its own decode
 * context) and every RAW extent, and reports each problem on one line
 * naming the unit and the file and offset that use it, in unit order
 * whatever N is.  --extract DIR then
 * writes the tree out (contents, modes, mtimes, symlinks).
 * Exit status: 0 all good; 1 the image is damaged or extraction failed;
 * 2 usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rfs_image.h"
#include "rfs_image_info.h"
#include "rfs_tool_tree.h"

typedef struct fsck {
    const char *image;
    rfs_image *img;
    rfs_rctx *ctx;
    rfs_image_summary sum;
    uint64_t *unit_ino; /* first file using each unit (0: none) ... */
    uint64_t *unit_off; /* ... and the file offset of the unit's first byte */
    char **ino_path;    /* path of each inode, for messages */
    uint8_t *buf;
    uint64_t problems;
    unsigned n_threads;
    rfs_err *unit_err;  /* result of decoding each unit */
    atomic_uint_fast64_t next_unit;
    int dirfd;          /* --extract: destination directory */
    const char *dest;
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

/* Record which file and offset use each unit; check each RAW extent. */
static int index_file(void *user, uint64_t ino, const char *path, const rfs_stat *st, int post)
{
    fsck *f = user;
    if (post)
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

/* Worker: decode units taken in turn from next_unit; NULL or "" on error. */
static void *units_decode_main(void *arg)
{
    fsck *f = arg;
    rfs_rctx *ctx = rfs_rctx_create(f->img);
    uint8_t *buf = malloc(f->sum.unit_max ? f->sum.unit_max : 1);
    uint64_t u;
    if (!ctx || !buf) {
        rfs_rctx_destroy(ctx);
        free(buf);
        return "";
    }
    while ((u = atomic_fetch_add(&f->next_unit, 1)) < f->sum.n_units) {
        size_t got;
        f->unit_err[u] = rfs_image_unit_decode(f->img, ctx, u, buf, f->sum.unit_max, &got);
    }
    rfs_rctx_destroy(ctx);
    free(buf);
    return NULL;
}

/* Decode every unit on n_threads threads (this one included). */
static int units_decode(fsck *f)
{
    pthread_t th[256];
    unsigned started = 0, n = f->n_threads > 256 ? 256 : f->n_threads;
    int rc = 0;
    atomic_init(&f->next_unit, 0);
    for (unsigned t = 1; t < n && t < f->sum.n_units; t++, started++)
        if (pthread_create(&th[started], NULL, units_decode_main, f) != 0)
            break;
    if (units_decode_main(f))
        rc = -1;
    for (unsigned t = 0; t < started; t++) {
        void *r;
        pthread_join(th[t], &r);
        if (r)
            rc = -1;
    }
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

/* ------------------------------------------------------------ extract */

static int extract_file(fsck *f, uint64_t ino, const char *path, const rfs_stat *st)
{
    int fd = openat(f->dirfd, path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return fprintf(stderr, "ransfs-fsck: %s/%s: %s\n", f->dest, path, strerror(errno)), -1;
    int rc = 0;
    for (uint64_t off = 0; off < st->size && rc == 0;) {
        size_t got = 0;
        size_t want = st->size - off < f->sum.tile_size ? st->size - off : f->sum.tile_size;
        rfs_err err = rfs_image_read(f->img, f->ctx, ino, off, want, f->buf, &got);
        if (err || got == 0) {
            fprintf(stderr, "ransfs-fsck: %s: %s at offset %llu: %s\n", f->image, path,
                    (unsigned long long)off, err ? rfs_strerror(err) : "short read");
            rc = -1;
        } else if (write(fd, f->buf, got) != (ssize_t)got) {
            fprintf(stderr, "ransfs-fsck: %s/%s: write failed: %s\n", f->dest, path,
                    strerror(errno));
            rc = -1;
        }
        off += got;
    }
    struct timespec ts[2] = {{st->mtime_sec, st->mtime_nsec}, {st->mtime_sec, st->mtime_nsec}};
    if (rc == 0 && (fchmod(fd, st->mode & 07777) || futimens(fd, ts)))
        rc = (fprintf(stderr, "ransfs-fsck: %s/%s: %s\n", f->dest, path, strerror(errno)), -1);
    close(fd);
    return rc;
}

static int extract_one(void *user, uint64_t ino, const char *path, const rfs_stat *st, int post)
{
    fsck *f = user;
    const char *p = path[0] ? path : ".";
    struct timespec ts[2] = {{st->mtime_sec, st->mtime_nsec}, {st->mtime_sec, st->mtime_nsec}};
    if (S_ISDIR(st->mode)) {
        if (!post && path[0] && mkdirat(f->dirfd, p, 0700) != 0)
            return fprintf(stderr, "ransfs-fsck: %s/%s: %s\n", f->dest, p, strerror(errno)), -1;
        if (post && (fchmodat(f->dirfd, p, st->mode & 07777, 0) ||
                     utimensat(f->dirfd, p, ts, 0)))
            return fprintf(stderr, "ransfs-fsck: %s/%s: %s\n", f->dest, p, strerror(errno)), -1;
        return 0;
    }
    if (S_ISLNK(st->mode)) {
        const char *target;
        rfs_image_readlink(f->img, ino, &target);
        if (symlinkat(target, f->dirfd, p) || utimensat(f->dirfd, p, ts, AT_SYMLINK_NOFOLLOW))
            return fprintf(stderr, "ransfs-fsck: %s/%s: %s\n", f->dest, p, strerror(errno)), -1;
        return 0;
    }
    return extract_file(f, ino, p, st);
}

static int extract(fsck *f)
{
    if (mkdir(f->dest, 0700) != 0 && errno != EEXIST)
        return fprintf(stderr, "ransfs-fsck: %s: %s\n", f->dest, strerror(errno)), -1;
    f->dirfd = open(f->dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (f->dirfd < 0)
        return fprintf(stderr, "ransfs-fsck: %s: %s\n", f->dest, strerror(errno)), -1;
    int rc = rfs_tree_walk(f->img, extract_one, f);
    close(f->dirfd);
    return rc;
}

/* ------------------------------------------------------------ main */

static void fsck_free(fsck *f)
{
    for (uint64_t i = 0; f->ino_path && i < f->sum.n_inodes; i++)
        free(f->ino_path[i]);
    free(f->ino_path);
    free(f->unit_ino);
    free(f->unit_off);
    free(f->unit_err);
    free(f->buf);
    rfs_rctx_destroy(f->ctx);
    rfs_image_close(f->img);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"extract", required_argument, 0, 'x'},
                                             {"quiet", no_argument, 0, 'q'},
                                             {"threads", required_argument, 0, 'j'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    fsck f = {.dirfd = -1};
    int quiet = 0, c;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    f.n_threads = cores > 0 ? (unsigned)cores : 1;
    while ((c = getopt_long(argc, argv, "qhx:j:", longopts, NULL)) != -1) {
        char *end;
        if (c == 'x')
            f.dest = optarg;
        else if (c == 'j') {
            long j = strtol(optarg, &end, 10);
            if (*end || j < 1 || j > 256) {
                fprintf(stderr, "ransfs-fsck: -j %s: want a thread count from 1 to 256\n", optarg);
                return 2;
            }
            f.n_threads = (unsigned)j;
        } else if (c == 'q')
            quiet = 1;
        else {
            fputs("usage: ransfs-fsck [-q] [-j N] IMAGE [--extract DIR]\n", c == 'h' ? stdout : stderr);
            return c == 'h' ? 0 : 2;
        }
    }
    if (argc - optind != 1) {
        fputs("usage: ransfs-fsck [-q] [-j N] IMAGE [--extract DIR]\n", stderr);
        return 2;
    }
    f.image = argv[optind];
    char why[512];
    rfs_err err = rfs_image_open(&f.img, f.image, why, sizeof why);
    if (err) {
        fprintf(stderr, "ransfs-fsck: %s: %s\n", f.image, why);
        return 1;
    }
    rfs_image_get_summary(f.img, &f.sum);
    f.ctx = rfs_rctx_create(f.img);
    f.buf = malloc(f.sum.tile_size);
    f.unit_ino = calloc(f.sum.n_units + 1, sizeof *f.unit_ino);
    f.unit_off = calloc(f.sum.n_units + 1, sizeof *f.unit_off);
    f.ino_path = calloc(f.sum.n_inodes, sizeof *f.ino_path);
    f.unit_err = calloc(f.sum.n_units + 1, sizeof *f.unit_err);
    int rc = 1;
    if (!f.ctx || !f.buf || !f.unit_ino || !f.unit_off || !f.ino_path || !f.unit_err) {
        fprintf(stderr, "ransfs-fsck: out of memory\n");
        goto out;
    }
    if (rfs_tree_walk(f.img, index_file, &f) != 0) {
        problem(&f, "directory tree too deep to walk");
        goto out;
    }
    if (units_decode(&f) != 0) {
        fprintf(stderr, "ransfs-fsck: out of memory\n");
        goto out;
    }
    units_check(&f);
    if (f.problems) {
        fprintf(stderr, "ransfs-fsck: %s: %llu problem(s) found\n", f.image,
                (unsigned long long)f.problems);
        goto out;
    }
    if (f.dest && extract(&f) != 0)
        goto out;
    if (!quiet)
        printf("%s: ok: %llu inodes, %llu units, %llu bytes of files in %llu bytes\n", f.image,
               (unsigned long long)f.sum.n_inodes, (unsigned long long)f.sum.n_units,
               (unsigned long long)f.sum.content_bytes, (unsigned long long)f.sum.image_bytes);
    rc = 0;
out:
    fsck_free(&f);
    return rc;
}
