/*
 * rfs_rcache.c - the cache dir of remote images (design note in
 * rfs_rcache.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rfs_xxhash.h"

#include "rfs_rcache.h"

struct rfs_rcache {
    char dir[4096];  /* DIR/v1 */
    char path[4200]; /* DIR/v1/<id> */
    int data_fd, map_fd;
    uint64_t size, chunk, n_chunks;
    const uint8_t *data;
    const uint8_t *map;
};

static rfs_err rc_fail(char *why, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static rfs_err rc_fail(char *why, size_t cap, const char *fmt, ...)
{
    if (why && cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, cap, fmt, ap);
        va_end(ap);
    }
    return RFS_E_IO;
}

int rfs_rcache_default_dir(char *buf, size_t cap)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (geteuid() == 0)
        snprintf(buf, cap, "/var/cache/ransfs");
    else if (xdg && *xdg == '/')
        snprintf(buf, cap, "%s/ransfs", xdg);
    else if (home && *home)
        snprintf(buf, cap, "%s/.cache/ransfs", home);
    else
        return -1;
    return 0;
}

/* dst = a "/" b; -1 (dst empty) when it does not fit. */
static int path_join(char *dst, size_t cap, const char *a, const char *b)
{
    int n = snprintf(dst, cap, "%s/%s", a, b);
    if (n < 0 || (size_t)n >= cap) {
        dst[0] = '\0';
        return -1;
    }
    return 0;
}

/* mkdir -p, mode 0700 for what it creates. */
static int mkdirs(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(tmp, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

static uint64_t dir_entry_bytes(const char *objdir)
{
    char p[4400];
    struct stat st;
    path_join(p, sizeof p, objdir, "data");
    return stat(p, &st) == 0 ? (uint64_t)st.st_blocks * 512u : 0;
}

typedef struct obj_ent {
    char name[40];
    int64_t mtime;
    uint64_t bytes;
} obj_ent;

static int ent_older(const void *a, const void *b)
{
    const obj_ent *x = a, *y = b;
    return (x->mtime > y->mtime) - (x->mtime < y->mtime);
}

/* Remove object dir name if no process has it open; 1 when removed. */
static int obj_remove(const char *dir, const char *name)
{
    char p[4300];
    char od[4300];
    if (path_join(od, sizeof od, dir, name) != 0)
        return 0;
    path_join(p, sizeof p, od, "map");
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return 0; /* in use */
    }
    unlink(p);
    path_join(p, sizeof p, od, "data");
    unlink(p);
    rmdir(od);
    if (fd >= 0)
        close(fd);
    return 1;
}

/* List the objects of dir (with the dir lock held). */
static obj_ent *objs_list(const char *dir, size_t *n)
{
    DIR *d = opendir(dir);
    obj_ent *v = NULL;
    size_t cap = 0;
    struct dirent *e;
    *n = 0;
    if (!d)
        return NULL;
    while ((e = readdir(d))) {
        char p[4300];
        struct stat st;
        if (e->d_name[0] == '.' || strlen(e->d_name) >= sizeof v->name)
            continue;
        if (path_join(p, sizeof p, dir, e->d_name) != 0 || stat(p, &st) != 0 || !S_ISDIR(st.st_mode))
            continue;
        if (*n == cap) {
            obj_ent *nv = realloc(v, (cap = cap ? 2 * cap : 16) * sizeof *v);
            if (!nv)
                break;
            v = nv;
        }
        memcpy(v[*n].name, e->d_name, strlen(e->d_name) + 1); /* length checked above */
        v[*n].mtime = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        v[*n].bytes = dir_entry_bytes(p);
        (*n)++;
    }
    closedir(d);
    return v;
}

/* Evict LRU objects not in use (not self) until the dir is within limit. */
static void evict(rfs_rcache *c, uint64_t limit, rfs_rcache_info *info)
{
    size_t n;
    obj_ent *v = objs_list(c->dir, &n);
    uint64_t total = 0;
    const char *self = strrchr(c->path, '/') + 1;
    for (size_t i = 0; i < n; i++)
        total += v[i].bytes;
    qsort(v, n, sizeof *v, ent_older);
    for (size_t i = 0; i < n && total > limit; i++) {
        if (strcmp(v[i].name, self) != 0 && obj_remove(c->dir, v[i].name)) {
            total -= v[i].bytes;
            info->evicted++;
        }
    }
    info->dir_bytes = total;
    free(v);
}

static void identity_hex(const char *identity, char out[33])
{
    XXH128_hash_t h = XXH3_128bits(identity, strlen(identity));
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)h.high64,
             (unsigned long long)h.low64);
}

/* Open or create data and map of the object (dir lock held). */
static rfs_err obj_files_open(rfs_rcache *c, char *why, size_t cap)
{
    char p[4300];
    struct stat st;
    if (mkdir(c->path, 0700) != 0 && errno != EEXIST)
        return rc_fail(why, cap, "cache dir %s: %s", c->path, strerror(errno));
    path_join(p, sizeof p, c->path, "data");
    c->data_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (c->data_fd < 0 || fstat(c->data_fd, &st) != 0 ||
        ((uint64_t)st.st_size != c->size && ftruncate(c->data_fd, (off_t)c->size) != 0))
        return rc_fail(why, cap, "cache file %s: %s", p, strerror(errno));
    path_join(p, sizeof p, c->path, "map");
    c->map_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (c->map_fd < 0 || fstat(c->map_fd, &st) != 0 ||
        ((uint64_t)st.st_size != c->n_chunks && ftruncate(c->map_fd, (off_t)c->n_chunks) != 0))
        return rc_fail(why, cap, "cache file %s: %s", p, strerror(errno));
    /* In use from now on: eviction elsewhere cannot take it exclusively. */
    if (flock(c->map_fd, LOCK_SH) != 0)
        return rc_fail(why, cap, "cache file %s: cannot lock: %s", p, strerror(errno));
    return RFS_OK;
}

static rfs_err obj_map(rfs_rcache *c, char *why, size_t cap)
{
    void *d = mmap(NULL, c->size, PROT_READ, MAP_SHARED, c->data_fd, 0);
    if (d == MAP_FAILED)
        return rc_fail(why, cap, "cache dir %s: cannot map data: %s", c->path, strerror(errno));
    c->data = d;
    void *m = mmap(NULL, c->n_chunks, PROT_READ, MAP_SHARED, c->map_fd, 0);
    if (m == MAP_FAILED)
        return rc_fail(why, cap, "cache dir %s: cannot map the chunk map: %s", c->path,
                       strerror(errno));
    c->map = m;
    return RFS_OK;
}

rfs_err rfs_rcache_open(rfs_rcache **out, const char *dir, uint64_t limit, const char *identity,
                        uint64_t size, uint64_t chunk, rfs_rcache_info *info, char *why,
                        size_t why_cap)
{
    rfs_err err;
    char hex[33], lockp[4300];
    *out = NULL;
    memset(info, 0, sizeof *info);
    rfs_rcache *c = calloc(1, sizeof *c);
    if (!c)
        return RFS_E_NOMEM;
    c->data_fd = c->map_fd = -1;
    c->size = size;
    c->chunk = chunk;
    c->n_chunks = size ? (size - 1) / chunk + 1 : 0;
    identity_hex(identity, hex);
    if (strlen(dir) > 3900) {
        free(c);
        return rc_fail(why, why_cap, "cache dir path too long");
    }
    path_join(c->dir, sizeof c->dir, dir, "v1");
    path_join(c->path, sizeof c->path, c->dir, hex);
    if (size == 0 || chunk == 0) {
        free(c);
        return rc_fail(why, why_cap, "empty object");
    }
    if (mkdirs(c->dir) != 0) {
        err = rc_fail(why, why_cap, "cache dir %s: %s", c->dir, strerror(errno));
        free(c);
        return err;
    }
    path_join(lockp, sizeof lockp, c->dir, ".lock");
    int lk = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lk < 0 || flock(lk, LOCK_EX) != 0) {
        err = rc_fail(why, why_cap, "cache dir %s: cannot lock: %s", lockp, strerror(errno));
        if (lk >= 0)
            close(lk);
        free(c);
        return err;
    }
    err = obj_files_open(c, why, why_cap);
    if (!err) {
        utimensat(AT_FDCWD, c->path, NULL, 0); /* last use: now */
        evict(c, limit, info);
    }
    close(lk); /* drops the dir lock */
    if (!err)
        err = obj_map(c, why, why_cap);
    if (err) {
        rfs_rcache_close(c);
        return err;
    }
    *out = c;
    return RFS_OK;
}

void rfs_rcache_close(rfs_rcache *c)
{
    if (!c)
        return;
    if (c->data)
        munmap((void *)c->data, c->size);
    if (c->map)
        munmap((void *)c->map, c->n_chunks);
    if (c->data_fd >= 0) {
        utimensat(AT_FDCWD, c->path, NULL, 0);
        close(c->data_fd);
    }
    if (c->map_fd >= 0)
        close(c->map_fd); /* drops the in-use lock */
    free(c);
}

const uint8_t *rfs_rcache_base(const rfs_rcache *c) { return c->data; }
int rfs_rcache_fd(const rfs_rcache *c) { return c->data_fd; }
uint64_t rfs_rcache_chunks(const rfs_rcache *c) { return c->n_chunks; }
const char *rfs_rcache_path(const rfs_rcache *c) { return c->path; }

int rfs_rcache_present(const rfs_rcache *c, uint64_t i)
{
    /* Acquire: the data a concurrent writer stored before its map byte. */
    return i < c->n_chunks &&
           atomic_load_explicit((const _Atomic uint8_t *)(c->map + i), memory_order_acquire) == 1;
}

static rfs_err pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t w = pwrite(fd, p, len, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return RFS_E_IO;
        p += w;
        len -= (size_t)w;
        off += (uint64_t)w;
    }
    return RFS_OK;
}

rfs_err rfs_rcache_write(rfs_rcache *c, uint64_t off, const void *buf, size_t len)
{
    if (off > c->size || len > c->size - off)
        return RFS_E_ARG;
    return pwrite_all(c->data_fd, buf, len, off);
}

rfs_err rfs_rcache_mark(rfs_rcache *c, uint64_t off, uint64_t len)
{
    if (len == 0 || off % c->chunk || off > c->size || len > c->size - off ||
        (len % c->chunk && off + len != c->size))
        return RFS_E_ARG;
    uint64_t first = off / c->chunk, n = (len - 1) / c->chunk + 1;
    uint8_t ones[256];
    memset(ones, 1, sizeof ones);
    for (uint64_t i = 0; i < n; i += sizeof ones) {
        size_t k = n - i < sizeof ones ? (size_t)(n - i) : sizeof ones;
        rfs_err err = pwrite_all(c->map_fd, ones, k, first + i);
        if (err)
            return err;
    }
    return RFS_OK;
}

rfs_err rfs_rcache_put(rfs_rcache *c, uint64_t off, const void *buf, size_t len)
{
    rfs_err err = rfs_rcache_write(c, off, buf, len);
    return err ? err : rfs_rcache_mark(c, off, len);
}

uint64_t rfs_rcache_bytes(const rfs_rcache *c)
{
    struct stat st;
    return fstat(c->data_fd, &st) == 0 ? (uint64_t)st.st_blocks * 512u : 0;
}
