/*
 * rfs_main.c - `ransfs [options] IMAGE MOUNTPOINT`: options, start-up order,
 * daemonising and shutdown.
 *
 * Start-up order (why it is this way):
 *  1. parse options, open and validate the image: a bad image fails here,
 *     in the calling process, with one line and a non-zero exit;
 *  2. mount (fuse_session_mount);
 *  3. without -f, fork: the parent waits on a pipe until the child reports
 *     that the mount answers (a statfs through it succeeded), so scripts can
 *     use the mount as soon as the command returns; threads and any GPU are
 *     started only in the child, after the fork;
 *  4. a helper thread does that statfs, then raises the connection's kernel
 *     readahead (root only), then reports.
 * Shutdown: the session loop ends on unmount or SIGINT/SIGTERM/SIGHUP
 * (libfuse's handlers; all our own threads block signals), requests in
 * flight finish, then the engine drains its pool and everything is freed.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <syslog.h>
#include <unistd.h>

#include "rfs_build.h"
#include "rfs_engine.h"
#include "rfs_fuse.h"
#include "rfs_fuse_io.h"
#include "rfs_gpu.h"
#include "rfs_main_remote.h"

#define RFS_DEFAULT_CACHE (256ull << 20)
#define RFS_DEFAULT_PREFETCH (32ull << 20)
#define RFS_DEFAULT_READAHEAD (4ull << 20) /* docs/benchmarks.md, issue 11 step 3 */

typedef struct rfs_cfg {
    char *image;
    char *mountpoint; /* as typed; fuse_parse_cmdline resolves its own copy */
    char *cache;
    char *prefetch;
    char *readahead;
    char *gpu;
    char *gpu_min;
    unsigned threads;
    unsigned uid, gid;
    int uid_set, gid_set;
    int direct_io;
    int help, version;
} rfs_cfg;

typedef struct rfs_main {
    rfs_cfg cfg;
    char *image_abs; /* realpath of the image: fsname, syslog */
    struct fuse_cmdline_opts opts;
    uint64_t cache_bytes, prefetch_bytes, readahead_bytes, gpu_min_bytes;
    rfs_gpu_mode gpu;
    rfs_image *img;
    rfs_main_remote remote; /* remote options; the source of a URL image */
    rfs_fs fs;
    rfs_engine *eng;
    struct fuse_session *se;
    rfs_fuse_io fio; /* the session's I/O hook */
    int notify_fd; /* pipe to the waiting parent, -1 when none */
    pthread_t ready_thread;
    int ready_started;
} rfs_main;

enum { KEY_HELP, KEY_VERSION };

#define OPT(t, f, v) {t, offsetof(rfs_cfg, f), v}
static const struct fuse_opt rfs_opt_spec[] = {
    OPT("cache=%s", cache, 0),
    OPT("prefetch=%s", prefetch, 0),
    OPT("readahead=%s", readahead, 0),
    OPT("gpu=%s", gpu, 0),
    OPT("gpu_min=%s", gpu_min, 0),
    OPT("threads=%u", threads, 0),
    OPT("uid=%u", uid, 0),
    OPT("uid=", uid_set, 1),
    OPT("gid=%u", gid, 0),
    OPT("gid=", gid_set, 1),
    OPT("direct_io", direct_io, 1),
    FUSE_OPT_KEY("-h", KEY_HELP),
    FUSE_OPT_KEY("--help", KEY_HELP),
    FUSE_OPT_KEY("-V", KEY_VERSION),
    FUSE_OPT_KEY("--version", KEY_VERSION),
    FUSE_OPT_END,
};

static void usage(FILE *f, const char *prog)
{
    fprintf(f, "usage: %s [options] IMAGE MOUNTPOINT\n\n"
           "Mount a ransfs image read-only.\n\n"
           "ransfs options:\n"
           "    -o cache=SIZE          decoded-tile cache budget (default 256M)\n"
           "    -o threads=N           decode worker threads (default: CPUs)\n"
           "    -o prefetch=SIZE       largest sequential prefetch window (default 32M, 0 = off)\n"
           "    -o readahead=SIZE      kernel readahead of the mount, root only (default 4M,\n"
           "                           0 = leave the kernel default)\n"
           "    -o gpu=auto|on|off     decode bulk reads on a GPU (default auto)\n"
           "    -o gpu_min=SIZE        smallest batch decoded on the GPU (default 8M)\n"
           "    -o uid=N -o gid=N      owner of all files (default: the mounting user)\n"
           "    -o direct_io           reads bypass the page cache (one-pass loaders reading\n"
           "                           1 MiB or more at a time; docs/mount.md)\n"
           "%s"
           "    IMAGE may be a URL: http://..., https://..., s3://BUCKET/KEY (docs/remote.md).\n"
           "    SIZE takes K, M, G suffixes (powers of 1024).\n"
           "    Every mount is ro,nosuid,nodev: -o rw, suid and dev are overridden.\n\n",
           prog, rfs_main_remote_usage);
}

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
    rfs_cfg *cfg = data;
    switch (key) {
    case KEY_HELP:
        cfg->help = 1;
        return 0;
    case KEY_VERSION:
        cfg->version = 1;
        return 0;
    case FUSE_OPT_KEY_NONOPT:
        if (!cfg->image) {
            cfg->image = strdup(arg);
            return 0;
        }
        if (!cfg->mountpoint)
            cfg->mountpoint = strdup(arg);
        return 1; /* the mount point, also for fuse_parse_cmdline */
    default:
        return 1;
    }
}

/* "256M", "1G", "4096", "512k", "2MiB" -> bytes; -1 on a malformed size. */
static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    unsigned shift = 0;
    if (!s || !*s || *s == '-')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    default: break;
    }
    if (shift && (*end == 'i' || *end == 'I'))
        end++;
    if (*end == 'b' || *end == 'B')
        end++;
    if (*end || (shift && v > (UINT64_MAX >> shift)))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

static int size_opt(const char *name, const char *val, uint64_t dflt, uint64_t *out)
{
    if (!val) {
        *out = dflt;
        return 0;
    }
    if (parse_size(val, out) == 0)
        return 0;
    fprintf(stderr, "ransfs: bad size for -o %s: '%s'\n", name, val);
    return -1;
}

static int parse_cfg(rfs_main *m)
{
    const char *g = m->cfg.gpu ? m->cfg.gpu : "auto";
    if (size_opt("cache", m->cfg.cache, RFS_DEFAULT_CACHE, &m->cache_bytes) ||
        size_opt("prefetch", m->cfg.prefetch, RFS_DEFAULT_PREFETCH, &m->prefetch_bytes) ||
        size_opt("readahead", m->cfg.readahead, RFS_DEFAULT_READAHEAD, &m->readahead_bytes) ||
        size_opt("gpu_min", m->cfg.gpu_min, 0, &m->gpu_min_bytes))
        return -1;
    if (m->cache_bytes < (4u << 20)) {
        fprintf(stderr, "ransfs: -o cache=%s is too small (minimum 4M)\n", m->cfg.cache);
        return -1;
    }
    if (!strcmp(g, "auto"))
        m->gpu = RFS_GPU_AUTO;
    else if (!strcmp(g, "on"))
        m->gpu = RFS_GPU_ON;
    else if (!strcmp(g, "off"))
        m->gpu = RFS_GPU_OFF;
    else {
        fprintf(stderr, "ransfs: -o gpu= takes auto, on or off, not '%s'\n", g);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ logging */

static void log_line(void *ctx, const char *line)
{
    rfs_main *m = ctx;
    if (m->opts.foreground)
        fprintf(stderr, "ransfs: %s: %s\n", m->cfg.image, line);
    else
        syslog(LOG_ERR, "%s: %s", m->image_abs, line);
}

/* Report to the waiting parent (daemon mode) or stderr (foreground). */
static void report(rfs_main *m, const char *msg)
{
    if (m->notify_fd >= 0) {
        ssize_t n = write(m->notify_fd, msg, strlen(msg));
        (void)n;
        close(m->notify_fd);
        m->notify_fd = -1;
    } else if (strcmp(msg, "OK\n") != 0) {
        fputs(msg, stderr);
    }
}

/* ------------------------------------------------------------ daemon */

/*
 * Fork; the parent waits for the child's report and exits with it (0 for
 * "OK", else prints the child's line and exits 1).  Returns in the child.
 */
static int daemon_fork(rfs_main *m)
{
    int p[2];
    pid_t pid;
    if (pipe(p) != 0)
        return -1;
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid > 0) {
        char msg[1024];
        size_t got = 0;
        ssize_t n;
        close(p[1]);
        while (got < sizeof(msg) - 1 && (n = read(p[0], msg + got, sizeof(msg) - 1 - got)) != 0) {
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                break;
            got += (size_t)n;
        }
        msg[got] = 0;
        if (!strcmp(msg, "OK\n"))
            _exit(0);
        fputs(got ? msg : "ransfs: the daemon exited before the mount answered\n", stderr);
        _exit(1);
    }
    close(p[0]);
    m->notify_fd = p[1];
    setsid();
    if (chdir("/") != 0)
        return -1;
    openlog("ransfs", LOG_PID, LOG_DAEMON);
    return 0;
}

static void stdio_to_null(void)
{
    int fd = open("/dev/null", O_RDWR);
    if (fd < 0)
        return;
    dup2(fd, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    if (fd > 2)
        close(fd);
}

/* Set /sys/class/bdi/<maj>:<min>/read_ahead_kb of the mount (root only). */
static void set_readahead(const rfs_main *m)
{
    struct stat st;
    char path[128], val[32];
    int fd;
    if (m->readahead_bytes == 0 || geteuid() != 0 || stat(m->opts.mountpoint, &st) != 0)
        return;
    snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", major(st.st_dev),
             minor(st.st_dev));
    snprintf(val, sizeof(val), "%llu\n", (unsigned long long)(m->readahead_bytes / 1024));
    fd = open(path, O_WRONLY);
    if (fd < 0)
        return;
    if (write(fd, val, strlen(val)) < 0 && m->opts.debug)
        fprintf(stderr, "ransfs: cannot set %s: %s\n", path, strerror(errno));
    close(fd);
}

static void *ready_main(void *arg)
{
    rfs_main *m = arg;
    struct statvfs sv;
    char msg[PATH_MAX + 128];
    if (statvfs(m->opts.mountpoint, &sv) != 0) {
        snprintf(msg, sizeof(msg), "ransfs: %s: the mount does not answer: %s\n",
                 m->opts.mountpoint, strerror(errno));
        report(m, msg);
        return NULL;
    }
    /* After the first answered request INIT is done, so the kernel will not
     * lower the readahead again. */
    set_readahead(m);
    report(m, "OK\n");
    if (!m->opts.foreground)
        stdio_to_null();
    return NULL;
}

static int start_ready_thread(rfs_main *m)
{
    sigset_t all, old;
    int r;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    r = pthread_create(&m->ready_thread, NULL, ready_main, m);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    m->ready_started = r == 0;
    return r;
}

/* ------------------------------------------------------------ main */

static void fs_settings(rfs_main *m);
static int open_remote_image(rfs_main *m);

static int open_image(rfs_main *m)
{
    char why[256] = "";
    if (rfs_main_remote_is_url(m->cfg.image))
        return open_remote_image(m);
    rfs_err err = rfs_image_open(&m->img, m->cfg.image, why, sizeof(why));
    if (err == RFS_OK)
        err = rfs_fs_init(&m->fs, m->img);
    if (err != RFS_OK) {
        fprintf(stderr, "ransfs: %s: %s\n", m->cfg.image, why[0] ? why : rfs_strerror(err));
        return -1;
    }
    m->image_abs = realpath(m->cfg.image, NULL);
    if (!m->image_abs) {
        fprintf(stderr, "ransfs: %s: %s\n", m->cfg.image, strerror(errno));
        return -1;
    }
    fs_settings(m);
    return 0;
}

/* A URL: the remote source, then the image on it.  From here on the URL is
 * shown without credentials (cfg.image is what messages print). */
static int open_remote_image(rfs_main *m)
{
    if (rfs_main_remote_open(&m->remote, m->cfg.image, log_line, m, &m->img, &m->image_abs) != 0)
        return -1;
    free(m->cfg.image);
    m->cfg.image = strdup(m->image_abs);
    if (!m->cfg.image || rfs_fs_init(&m->fs, m->img) != RFS_OK)
        return -1;
    m->fs.stats_extra = rfs_main_remote_stats;
    m->fs.stats_ctx = &m->remote;
    fs_settings(m);
    return 0;
}

static void fs_settings(rfs_main *m)
{
    m->fs.uid = m->cfg.uid_set ? (uid_t)m->cfg.uid : getuid();
    m->fs.gid = m->cfg.gid_set ? (gid_t)m->cfg.gid : getgid();
    m->fs.direct_io = m->cfg.direct_io;
    m->fs.max_readahead = m->readahead_bytes;
    m->fs.timeout = 365.0 * 86400.0; /* "forever": the image is immutable */
}

static int start_engine(rfs_main *m)
{
    char why[256] = "", msg[PATH_MAX + 300];
    rfs_engine_opts eo = {
        .cache_bytes = m->cache_bytes,
        .threads = m->cfg.threads,
        .prefetch_max = m->prefetch_bytes,
        .gpu = m->gpu,
        .gpu_min_bytes = (size_t)m->gpu_min_bytes,
        .log = log_line,
        .log_ctx = m,
    };
    rfs_err err = rfs_engine_create(&m->eng, m->img, &eo, why, sizeof(why));
    rfs_main_remote_start(&m->remote); /* threads: after the fork, like the engine's */
    if (err == RFS_OK) {
        m->fs.eng = m->eng;
        return 0;
    }
    snprintf(msg, sizeof(msg), "ransfs: %s: %s\n", m->cfg.image, why[0] ? why : rfs_strerror(err));
    report(m, msg);
    return -1;
}

/*
 * Refuse a mount point that cannot work, before anything is mounted: one
 * that is not a directory (FUSE would mount over a file, and every access
 * would then fail), or one that is the root of a mount already (a second
 * mount would stack silently on the first and hide it).  Also refused:
 * /dev/fd/N, libfuse's "already mounted by the caller" form (mount.fuse3's
 * drop_privileges), because that mount was made with the caller's options
 * (mount.fuse3's are rw,suid,dev and no default_permissions) and ransfs
 * could not make it ro,nosuid,nodev.  A kernel without
 * STATX_ATTR_MOUNT_ROOT (before 5.8) skips the mount-root check.
 */
static int check_mountpoint(const char *mnt)
{
    struct statx sx;
    if (!strncmp(mnt, "/dev/fd/", 8)) {
        fprintf(stderr, "ransfs: %s: a mount made by the caller (mount.fuse3 drop_privileges) "
                        "is not supported: it would not be ro,nosuid,nodev\n", mnt);
        return -1;
    }
    if (statx(AT_FDCWD, mnt, 0, STATX_TYPE, &sx) != 0) {
        fprintf(stderr, "ransfs: %s: cannot use as mount point: %s\n", mnt, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(sx.stx_mode)) {
        fprintf(stderr, "ransfs: %s: mount point is not a directory\n", mnt);
        return -1;
    }
    if (sx.stx_attributes_mask & sx.stx_attributes & STATX_ATTR_MOUNT_ROOT) {
        fprintf(stderr, "ransfs: %s: already a mount point (unmount it first)\n", mnt);
        return -1;
    }
    return 0;
}

/*
 * Mount options every ransfs mount gets, after the user's so they win
 * (libfuse applies ro/rw, suid/nosuid and dev/nodev in order).  nosuid and
 * nodev cannot be left to the caller: mount.fuse3, which `mount -t
 * fuse.ransfs` and fstab go through, appends "dev,suid" to every mount
 * whose options do not say nosuid/nodev, and an image's setuid bits are
 * its writer's choice (docs/security.md).  The fsname is the image's
 * absolute path, so /proc/mounts names the real file.
 */
static int add_fixed_opts(rfs_main *m, struct fuse_args *args)
{
    char *opts = NULL, *fsname = NULL;
    int r;
    if (asprintf(&fsname, "fsname=%s", m->image_abs) < 0)
        return -1;
    r = fuse_opt_add_opt(&opts, "ro,nosuid,nodev,default_permissions,subtype=ransfs") ||
        fuse_opt_add_opt_escaped(&opts, fsname) || fuse_opt_add_arg(args, "-o") ||
        fuse_opt_add_arg(args, opts);
    free(fsname);
    free(opts);
    return r ? -1 : 0;
}

static int run_loop(rfs_main *m)
{
    struct fuse_loop_config *lc;
    unsigned ncpu = (unsigned)sysconf(_SC_NPROCESSORS_ONLN), threads;
    int r;
    if (m->opts.singlethread)
        return fuse_session_loop(m->se);
    threads = 2 * (ncpu ? ncpu : 1);
    if (threads < 8)
        threads = 8;
    if (m->opts.max_threads > threads)
        threads = m->opts.max_threads;
    lc = fuse_loop_cfg_create();
    if (!lc)
        return -1;
    fuse_loop_cfg_set_clone_fd(lc, 1);
    fuse_loop_cfg_set_max_threads(lc, threads);
    if (m->opts.max_idle_threads != UINT_MAX)
        fuse_loop_cfg_set_idle_threads(lc, m->opts.max_idle_threads);
    r = fuse_session_loop_mt(m->se, lc);
    fuse_loop_cfg_destroy(lc);
    return r;
}

static void free_main(rfs_main *m)
{
    rfs_engine_destroy(m->eng);
    rfs_fs_fini(&m->fs);
    rfs_image_close(m->img);
    rfs_main_remote_free(&m->remote); /* after the image on it */
    free(m->opts.mountpoint);
    free(m->image_abs);
    free(m->cfg.image);
    free(m->cfg.mountpoint);
    free(m->cfg.cache);
    free(m->cfg.prefetch);
    free(m->cfg.readahead);
    free(m->cfg.gpu);
    free(m->cfg.gpu_min);
    free(m->fs.conn_opts);
}

int main(int argc, char **argv)
{
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    rfs_main m;
    int ret = 1, mounted = 0;
    memset(&m, 0, sizeof(m));
    m.notify_fd = -1;
    if (rfs_main_remote_parse(&args, &m.remote) != 0 ||
        fuse_opt_parse(&args, &m.cfg, rfs_opt_spec, opt_proc) != 0) {
        ret = 2;
        goto out;
    }
    if (m.cfg.help) {
        usage(stdout, argv[0]);
        fuse_cmdline_help();
        fuse_lowlevel_help();
        ret = 0;
        goto out;
    }
    if (m.cfg.version) {
        char extra[96];
        snprintf(extra, sizeof(extra), "libfuse %s, GPU decode: %s", fuse_pkgversion(),
                 rfs_gpu_build());
        ret = rfs_build_print(stdout, "ransfs", extra) == 0 ? 0 : 1;
        goto out;
    }
    if (!m.cfg.image || !m.cfg.mountpoint) {
        usage(stderr, argv[0]);
        ret = 2;
        goto out;
    }
    /* Bad option values and stray arguments are usage errors (2); a bad
     * mount point or image is a failure (1). */
    if (parse_cfg(&m) != 0) {
        ret = 2;
        goto out;
    }
    if (check_mountpoint(m.cfg.mountpoint) != 0)
        goto out;
    if (fuse_parse_cmdline(&args, &m.opts) != 0 ||
        !(m.fs.conn_opts = fuse_parse_conn_info_opts(&args))) {
        ret = 2;
        goto out;
    }
    if (open_image(&m) != 0)
        goto out;
    /* In the foreground, start everything before mounting: errors come first. */
    if (m.opts.foreground && start_engine(&m) != 0)
        goto out;
    if (add_fixed_opts(&m, &args) != 0)
        goto out;
    m.se = fuse_session_new(&args, &rfs_fuse_ops, sizeof(rfs_fuse_ops), &m.fs);
    if (!m.se)
        goto out;
    if (fuse_set_signal_handlers(m.se) != 0)
        goto out_session;
    if (fuse_session_mount(m.se, m.opts.mountpoint) != 0)
        goto out_signals;
    mounted = 1;
    if (rfs_fuse_io_attach(m.se, &m.fs, &m.fio) != 0)
        goto out_unmount;
    if (!m.opts.foreground && (daemon_fork(&m) != 0 || start_engine(&m) != 0))
        goto out_unmount;
    if (start_ready_thread(&m) != 0)
        goto out_unmount;
    ret = run_loop(&m) != 0;
out_unmount:
    if (mounted)
        fuse_session_unmount(m.se);
out_signals:
    fuse_remove_signal_handlers(m.se);
out_session:
    fuse_session_destroy(m.se); /* closes /dev/fuse: a pending statfs fails */
    if (m.ready_started)
        pthread_join(m.ready_thread, NULL);
out:
    free_main(&m);
    fuse_opt_free_args(&args);
    return ret;
}
