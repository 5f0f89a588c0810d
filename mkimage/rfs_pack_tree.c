/*
 * rfs_pack_tree.c - walk the source tree into the packer's nodes and files,
 * and read source bytes (pread, never mmap: a file truncated under us must
 * give an error, not SIGBUS, and a tree of many files must not run out of
 * mappings).  Every read checks that the file is still the one the walk saw.
 *
 * Inode numbering: the root is node 0; a directory's entries are read,
 * sorted by name (strcmp) and appended as consecutive nodes, then its
 * subdirectories are walked in that order.  So numbering depends only on
 * the tree.  A further name of a hard-linked file already walked is an
 * entry naming that node (no node of its own).  Special files are skipped
 * with a warning.
 *
 * Symlinks are judged as the mount will resolve them: lexically, from
 * their place in the image.  One whose target is absolute or climbs above
 * the root leaves the tree; without -L it is kept, with a warning, and with
 * -L the walk takes what it points to instead (a Hugging Face snapshot's
 * NAME -> ../../blobs/HASH).  Links that stay inside are always kept.
 * Exclude patterns see paths relative to SOURCE, so they do not depend on
 * where a followed link led.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "rfs_pack_internal.h"

struct pk_seen {
    dev_t dev;
    ino_t ino;
    uint32_t node; /* the node its first name made */
};

/* The directories being walked, innermost first: a followed link must not
 * lead back into one of them. */
typedef struct pk_anc {
    dev_t dev;
    ino_t ino;
    const struct pk_anc *up;
} pk_anc;

int pk_fail(pk_plan *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, p->err_cap, fmt, ap);
    va_end(ap);
    return -1;
}

void pk_warn(pk_plan *p, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (p->o->warn)
        p->o->warn(p->o->user, msg);
}

static char *path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *s = malloc(a + b + 2);
    if (!s)
        return NULL;
    memcpy(s, dir, a);
    s[a] = '/';
    memcpy(s + a + 1, name, b + 1);
    return s;
}

static int64_t node_add(pk_plan *p, const char *name, char *path, const struct stat *sb)
{
    if (p->n_nodes >= UINT32_MAX - 1 ||
        rfs_array_reserve(&p->nodes, &p->cap_nodes, p->n_nodes + 1, sizeof *p->nodes)) {
        free(path);
        return pk_fail(p, "%s: too many files or out of memory", name);
    }
    pk_node *n = &p->nodes[p->n_nodes];
    n->name = strdup(name);
    n->path = path;
    n->mode = sb->st_mode & (S_IFMT | 07777);
    n->mtime_sec = sb->st_mtim.tv_sec;
    n->mtime_nsec = (uint32_t)sb->st_mtim.tv_nsec;
    n->file = -1;
    if (!n->name)
        return pk_fail(p, "out of memory");
    return (int64_t)p->n_nodes++;
}

/* The node of a hard-linked file walked before under another name, or -1. */
static int64_t seen_node(const pk_plan *p, const struct stat *sb)
{
    if (!S_ISREG(sb->st_mode) || sb->st_nlink < 2)
        return -1;
    for (size_t i = 0; i < p->n_seen; i++)
        if (p->seen[i].dev == sb->st_dev && p->seen[i].ino == sb->st_ino)
            return p->seen[i].node;
    return -1;
}

/* Remember node k, a file with other names, for when they are walked. */
static int seen_add(pk_plan *p, const struct stat *sb, uint32_t k)
{
    if (sb->st_nlink < 2)
        return 0;
    if (rfs_array_reserve(&p->seen, &p->cap_seen, p->n_seen + 1, sizeof *p->seen))
        return pk_fail(p, "out of memory");
    p->seen[p->n_seen++] = (struct pk_seen){sb->st_dev, sb->st_ino, k};
    return 0;
}

/* An entry `name` of directory dir naming node: a further name of that file. */
static int link_add(pk_plan *p, uint32_t dir, const char *name, uint32_t node)
{
    pk_node *d = &p->nodes[dir];
    if (!d->kid_name && !(d->kid_name = calloc(d->cap_kids, sizeof *d->kid_name)))
        return pk_fail(p, "out of memory");
    if (!(d->kid_name[d->n_kids] = strdup(name)))
        return pk_fail(p, "out of memory");
    d->kids[d->n_kids++] = node;
    p->n_links++;
    return 0;
}

/* 1 when this entry is packed, 0 when skipped (warned). */
static int entry_wanted(pk_plan *p, const char *path, const struct stat *sb)
{
    if (sb->st_dev == p->skip_dev && sb->st_ino == p->skip_ino)
        return 0;
    if (!S_ISREG(sb->st_mode) && !S_ISDIR(sb->st_mode) && !S_ISLNK(sb->st_mode)) {
        pk_warn(p, "%s: special file (device, fifo or socket): skipped", path);
        p->st->skipped++;
        return 0;
    }
    return 1;
}

/* Record a regular file; its bytes are read later (rfs_pack_stream.c), and
 * an unreadable file fails there, naming itself. */
static int load_file(pk_plan *p, pk_node *n, const struct stat *sb)
{
    if (rfs_array_reserve(&p->files, &p->cap_files, p->n_files + 1, sizeof *p->files))
        return pk_fail(p, "out of memory");
    pk_file *f = &p->files[p->n_files];
    memset(f, 0, sizeof *f);
    f->node = (uint32_t)(n - p->nodes);
    f->dup_of = -1;
    f->size = n->size = (uint64_t)sb->st_size;
    f->dev = sb->st_dev;
    f->ino = sb->st_ino;
    f->ctime = sb->st_ctim;
    n->file = (int64_t)p->n_files++;
    return 0;
}

static int same_time(struct timespec a, struct timespec b)
{
    return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

/* Same file, same size, same mtime and ctime as the walk saw?  0, or -1 with
 * err.  ctime also catches a write that put the old mtime back (cp -p,
 * rsync -t, touch -d). */
static int src_same(const pk_plan *p, const pk_file *f, const struct stat *sb, char *err,
                    size_t err_cap)
{
    const pk_node *n = &p->nodes[f->node];
    if (sb->st_dev != f->dev || sb->st_ino != f->ino || !S_ISREG(sb->st_mode))
        snprintf(err, err_cap, "%s: replaced by another file during packing", n->path);
    else if ((uint64_t)sb->st_size != f->size)
        snprintf(err, err_cap, "%s: changed size during packing (%llu bytes, now %llu)", n->path,
                 (unsigned long long)f->size, (unsigned long long)sb->st_size);
    else if (sb->st_mtim.tv_sec != n->mtime_sec || (uint32_t)sb->st_mtim.tv_nsec != n->mtime_nsec ||
             !same_time(sb->st_ctim, f->ctime))
        snprintf(err, err_cap, "%s: modified during packing", n->path);
    else
        return 0;
    return -1;
}

int pk_src_open(const pk_plan *p, const pk_file *f, int *fd, char *err, size_t err_cap)
{
    const char *path = p->nodes[f->node].path;
    struct stat sb;
    *fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (*fd < 0) {
        if (errno == ENOENT)
            snprintf(err, err_cap, "%s: vanished during packing", path);
        else
            snprintf(err, err_cap, "%s: cannot read: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(*fd, &sb) != 0) {
        snprintf(err, err_cap, "%s: cannot read: %s", path, strerror(errno));
    } else if (src_same(p, f, &sb, err, err_cap) == 0) {
        if (f->size >= ((uint64_t)4 << 20)) /* a syscall not worth it for small files */
            posix_fadvise(*fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        return 0;
    }
    close(*fd);
    *fd = -1;
    return -1;
}

/* WILLNEED for bytes [off, off + len) of file f, at most *left in all. */
static void readahead_file(const pk_plan *p, const pk_file *f, uint64_t off, uint64_t len,
                           uint64_t *left)
{
    char err[512];
    int fd;
    if (len > *left)
        len = *left;
    if (len == 0 || pk_src_open(p, f, &fd, err, sizeof err))
        return; /* the stream reports it, if it still matters then */
    posix_fadvise(fd, (off_t)off, (off_t)len, POSIX_FADV_WILLNEED);
    close(fd);
    *left -= len;
}

/* Two passes: first the head of every file, then the rest of the files up
 * to PK_RA_BULK_MAX.  Why: the plan reads the head of every file (its type,
 * a safetensors header) one after the other, and a file's head queued
 * behind the whole of a big file before it waited for that read
 * (all-MiniLM-L6-v2, cold: 9 of the pack's 79 ms were the plan).  A bigger
 * file is left to the kernel's own readahead of the stream's sequential
 * reads (pk_src_open asks for POSIX_FADV_SEQUENTIAL): WILLNEED fills the
 * page cache in 4 KiB folios, on this thread, while the stream's reader
 * waits for the same pages (MiniLM in bf16, cold: its 24 MB first group read
 * in 29 ms instead of 20, the pack 71 ms instead of 57; docs/benchmarks.md). */
static void *readahead_main(void *arg)
{
    const pk_readahead *ra = arg;
    const pk_plan *p = ra->p;
    uint64_t left = PK_READAHEAD;
    for (size_t i = 0; i < p->n_files && left; i++) {
        const pk_file *f = &p->files[i];
        readahead_file(p, f, 0, f->size < PK_RA_HEAD ? f->size : PK_RA_HEAD, &left);
    }
    for (size_t i = 0; i < p->n_files && left; i++) {
        const pk_file *f = &p->files[i];
        if (f->size > PK_RA_HEAD && pk_readahead_whole(f))
            readahead_file(p, f, PK_RA_HEAD, f->size - PK_RA_HEAD, &left);
    }
    return NULL;
}

void pk_readahead_start(pk_readahead *ra, const pk_plan *p)
{
    ra->p = p;
    ra->live = pthread_create(&ra->thread, NULL, readahead_main, ra) == 0;
}

void pk_readahead_join(pk_readahead *ra)
{
    if (ra->live)
        pthread_join(ra->thread, NULL);
    ra->live = 0;
}

int pk_src_read(const pk_plan *p, const pk_file *f, int fd, void *buf, uint64_t off,
                uint64_t len, char *err, size_t err_cap)
{
    uint8_t *b = buf;
    uint64_t done = 0;
    while (done < len) {
        size_t want = len - done > (1u << 30) ? (1u << 30) : (size_t)(len - done);
        ssize_t got = pread(fd, b + done, want, (off_t)(off + done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            snprintf(err, err_cap, "%s: cannot read: %s", p->nodes[f->node].path,
                     strerror(errno));
            return -1;
        }
        if (got == 0) {
            snprintf(err, err_cap, "%s: truncated during packing (ends at %llu, %llu expected)",
                     p->nodes[f->node].path, (unsigned long long)(off + done),
                     (unsigned long long)f->size);
            return -1;
        }
        done += (uint64_t)got;
    }
    return 0;
}

int pk_src_verify_all(pk_plan *p)
{
    for (size_t i = 0; i < p->n_files; i++) {
        const pk_file *f = &p->files[i];
        struct stat sb;
        if (lstat(p->nodes[f->node].path, &sb) != 0) {
            if (errno == ENOENT)
                return pk_fail(p, "%s: vanished during packing", p->nodes[f->node].path);
            return pk_fail(p, "%s: cannot stat: %s", p->nodes[f->node].path, strerror(errno));
        }
        if (src_same(p, f, &sb, p->err, p->err_cap))
            return -1;
    }
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void names_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Read and sort the names of directory path. */
static int dir_names(pk_plan *p, const char *path, char ***names, size_t *n)
{
    DIR *d = opendir(path);
    if (!d)
        return pk_fail(p, "%s: cannot read directory: %s", path, strerror(errno));
    size_t cap = 0;
    struct dirent *de;
    *names = NULL;
    *n = 0;
    while ((errno = 0, de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (rfs_array_reserve(names, &cap, *n + 1, sizeof **names) ||
            !((*names)[*n] = strdup(de->d_name))) {
            errno = ENOMEM;
            break;
        }
        (*n)++;
    }
    int e = errno;
    closedir(d);
    if (e) {
        names_free(*names, *n);
        *names = NULL;
        return pk_fail(p, "%s: cannot read directory: %s", path, strerror(e));
    }
    if (*n)
        qsort(*names, *n, sizeof **names, name_cmp);
    return 0;
}

/* Whether an exclude pattern takes the entry name in directory rel_dir
 * (relative to SOURCE, "" for the root): a pattern without '/' is matched
 * against the name, one with '/' against the whole relative path. */
static int excluded(const pk_plan *p, const char *rel_dir, const char *name)
{
    char *rel = NULL;
    int hit = 0;
    for (size_t i = 0; i < p->o->n_exclude && !hit; i++) {
        const char *pat = p->o->exclude[i];
        if (!strchr(pat, '/'))
            hit = fnmatch(pat, name, 0) == 0;
        else if (rel || (rel = *rel_dir ? path_join(rel_dir, name) : strdup(name)))
            hit = fnmatch(pat, rel, FNM_PATHNAME) == 0;
    }
    free(rel);
    return hit;
}

/* Whether symlink target t, in directory rel_dir of the image, leads out
 * of the tree: absolute, or climbing above the root. */
static int link_leaves(const char *rel_dir, const char *t)
{
    if (t[0] == '/')
        return 1;
    long depth = *rel_dir != '\0';
    for (const char *c = rel_dir; *c; c++)
        depth += *c == '/';
    for (const char *c = t; *c;) {
        size_t n = strcspn(c, "/");
        if (n == 2 && c[0] == '.' && c[1] == '.') {
            if (--depth < 0)
                return 1;
        } else if (n && !(n == 1 && c[0] == '.')) {
            depth++;
        }
        c += n + (c[n] == '/');
    }
    return 0;
}

static int anc_holds(const pk_anc *a, const struct stat *sb)
{
    for (; a; a = a->up)
        if (a->dev == sb->st_dev && a->ino == sb->st_ino)
            return 1;
    return 0;
}

/* The symlink at *path (lstat'ed into *sb): warn when it leaves the tree or
 * dangles, or, with -L, when it leaves the tree, make *path and *sb those of
 * what it points to.  A symlink given as SOURCE itself (no directories up)
 * is always followed, as cp and tar do with their operands: the image holds
 * nothing else it could point to.  0, or -1 with p->err. */
static int link_check(pk_plan *p, const char *rel_dir, char **path, struct stat *sb,
                      const pk_anc *up)
{
    char t[4097];
    struct stat to;
    ssize_t len = readlink(*path, t, sizeof t - 1);
    if (len <= 0 || len > 4095)
        return 0; /* entry_add reports it */
    t[len] = '\0';
    int leaves = link_leaves(rel_dir, t), dangles = stat(*path, &to) != 0;
    if (!dangles && ((leaves && p->o->dereference) || !up)) {
        char *real = realpath(*path, NULL);
        if (!real)
            return pk_fail(p, "%s: cannot follow the symlink: %s", *path, strerror(errno));
        if (S_ISDIR(to.st_mode) && anc_holds(up, &to)) {
            free(real);
            return pk_fail(p, "%s: symlink to '%s' leads back into a directory that holds it: "
                           "cannot follow it", *path, t);
        }
        free(*path);
        *path = real;
        *sb = to;
    } else if (leaves || dangles) {
        pk_warn(p, "%s: symlink to '%s' %s: stored as a symlink%s", *path, t,
                !leaves ? "dangles" : dangles ? "points outside SOURCE and dangles"
                                              : "points outside SOURCE",
                leaves && !dangles ? " (-L stores what it points to)" : "");
    }
    return 0;
}

/* Extended attributes are not stored: count the entries that have any but
 * security.selinux (a label every file has on such hosts, and the mount's
 * own), for one warning after the walk. */
static void xattr_note(pk_plan *p, const char *path)
{
    char names[4096];
    ssize_t n = llistxattr(path, names, sizeof names);
    int other = n < 0 && errno == ERANGE;
    for (ssize_t i = 0; i < n && !other; i += (ssize_t)strlen(names + i) + 1)
        other = strcmp(names + i, "security.selinux") != 0;
    if (!other)
        return;
    if (!p->st->xattr_files++)
        p->xattr_first = strdup(path);
}

static int entry_add(pk_plan *p, uint32_t dir, const char *rel_dir, const char *name,
                     const pk_anc *up)
{
    if (excluded(p, rel_dir, name)) {
        p->st->excluded++;
        return 0;
    }
    char *path = path_join(p->nodes[dir].path, name);
    struct stat sb;
    if (!path)
        return pk_fail(p, "out of memory");
    if (lstat(path, &sb) != 0) {
        int e = errno;
        pk_fail(p, "%s: cannot stat: %s", path, strerror(e));
        free(path);
        return -1;
    }
    if (S_ISLNK(sb.st_mode) && link_check(p, rel_dir, &path, &sb, up)) {
        free(path);
        return -1;
    }
    xattr_note(p, path);
    int64_t same = seen_node(p, &sb);
    if (same >= 0 || !entry_wanted(p, path, &sb)) {
        free(path);
        return same >= 0 ? link_add(p, dir, name, (uint32_t)same) : 0;
    }
    int64_t k = node_add(p, name, path, &sb);
    if (k < 0)
        return -1;
    pk_node *n = &p->nodes[k];
    pk_node *d = &p->nodes[dir];
    d->kids[d->n_kids++] = (uint32_t)k;
    if (S_ISLNK(sb.st_mode)) {
        char buf[4097];
        ssize_t len = readlink(n->path, buf, sizeof buf - 1);
        if (len <= 0 || len > 4095)
            return pk_fail(p, "%s: cannot read symlink: %s", n->path,
                           len < 0 ? strerror(errno) : "target empty or too long");
        buf[len] = '\0';
        n->size = (uint64_t)len;
        if (!(n->link = strdup(buf)))
            return pk_fail(p, "out of memory");
        p->st->symlinks++;
    } else if (S_ISREG(sb.st_mode)) {
        p->st->files++;
        return load_file(p, n, &sb) || seen_add(p, &sb, (uint32_t)k) ? -1 : 0;
    } else {
        p->st->dirs++;
    }
    return 0;
}

/* Walk directory node dir, at rel (relative to SOURCE) in the image, inside
 * the directories up. */
static int walk_dir(pk_plan *p, uint32_t dir, const char *rel, const pk_anc *up)
{
    char **names = NULL;
    size_t n = 0;
    struct stat sb;
    if (stat(p->nodes[dir].path, &sb) != 0)
        return pk_fail(p, "%s: cannot stat: %s", p->nodes[dir].path, strerror(errno));
    pk_anc here = {sb.st_dev, sb.st_ino, up};
    if (dir_names(p, p->nodes[dir].path, &names, &n))
        return -1;
    int rc = 0;
    p->nodes[dir].kids = calloc(n ? n : 1, sizeof(uint32_t));
    p->nodes[dir].cap_kids = n ? n : 1;
    if (!p->nodes[dir].kids)
        rc = pk_fail(p, "out of memory");
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = entry_add(p, dir, rel, names[i], &here);
    names_free(names, n);
    p->nodes[dir].size = p->nodes[dir].n_kids;
    for (uint32_t i = 0; i < p->nodes[dir].n_kids && rc == 0; i++) {
        uint32_t k = p->nodes[dir].kids[i];
        if (!S_ISDIR(p->nodes[k].mode))
            continue;
        const char *name = p->nodes[k].name;
        char *sub = *rel ? path_join(rel, name) : strdup(name);
        rc = sub ? walk_dir(p, k, sub, &here) : pk_fail(p, "out of memory");
        free(sub);
    }
    return rc;
}

static int tree_walk(pk_plan *p)
{
    struct stat sb;
    const char *src = p->o->source;
    if (stat(src, &sb) != 0)
        return pk_fail(p, "%s: cannot read source: %s", src, strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
        char *path = strdup(src);
        if (!path || node_add(p, "", path, &sb) < 0)
            return pk_fail(p, "out of memory");
        p->st->dirs++;
        return walk_dir(p, 0, "", NULL);
    }
    if (!S_ISREG(sb.st_mode))
        return pk_fail(p, "%s: source is neither a directory nor a regular file", src);
    /* A single file: the root is a directory holding it. */
    struct stat root = sb;
    root.st_mode = S_IFDIR | 0755;
    char *slash = strrchr(src, '/');
    const char *base = slash ? slash + 1 : src;
    char *dir = slash ? strndup(src, (size_t)(slash - src) + (slash == src)) : strdup(".");
    if (!dir || node_add(p, "", dir, &root) < 0)
        return pk_fail(p, "out of memory");
    if (!(p->nodes[0].kids = calloc(1, sizeof(uint32_t))))
        return pk_fail(p, "out of memory");
    p->nodes[0].cap_kids = 1;
    p->nodes[0].size = 1;
    if (access(src, R_OK) != 0)
        return pk_fail(p, "%s: cannot read source: %s", src, strerror(errno));
    return entry_add(p, 0, "", base, NULL);
}

int pk_tree_walk(pk_plan *p)
{
    if (tree_walk(p))
        return -1;
    uint64_t n = p->st->xattr_files;
    if (n)
        pk_warn(p, "%s: extended attributes are not stored (%llu entr%s with some)",
                p->xattr_first ? p->xattr_first : p->o->source, (unsigned long long)n,
                n > 1 ? "ies" : "y");
    return 0;
}

void pk_tree_free(pk_plan *p)
{
    for (size_t i = 0; i < p->n_files; i++) {
        free(p->files[i].reg);
    }
    for (size_t i = 0; i < p->n_nodes; i++) {
        free(p->nodes[i].name);
        free(p->nodes[i].path);
        free(p->nodes[i].link);
        free(p->nodes[i].kids);
        for (uint32_t k = 0; p->nodes[i].kid_name && k < p->nodes[i].n_kids; k++)
            free(p->nodes[i].kid_name[k]);
        free(p->nodes[i].kid_name);
    }
    free(p->nodes);
    free(p->files);
    free(p->seen);
    free(p->xattr_first);
}
