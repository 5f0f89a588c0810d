/*
 * rfs_tool_tree.c - depth-first walk of an image's tree (rfs_tool_tree.h).
 *
 * Design note.  The walk is a loop over an explicit stack of frames, one
 * per open directory (its inode, stat, next entry and the length of its
 * path), not recursion: mkimage packs whatever depth the source has, and
 * the tools must walk every tree the reader accepts, so the depth is
 * bounded only by memory.  The path is one growing buffer; entering an
 * entry appends "/name", leaving it cuts the buffer back to the frame's
 * length.
 */
#include "rfs_tool_tree.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rfs_array.h"

typedef struct frame {
    uint64_t ino, next, count;
    size_t path_len;
    rfs_stat st;
} frame;

typedef struct walker {
    const rfs_image *img;
    rfs_tree_fn fn;
    void *user;
    frame *stack;
    size_t depth, stack_cap;
    char *path;
    size_t path_cap;
} walker;

/* Append "/name" (or "name" at the root) to the path, len long; its new
 * length goes to *out. */
static int path_push(walker *w, size_t len, const char *name, size_t *out)
{
    size_t nl = strlen(name), sep = len ? 1 : 0;
    if (rfs_array_reserve(&w->path, &w->path_cap, len + sep + nl + 1, 1))
        return -1;
    if (sep)
        w->path[len] = '/';
    memcpy(w->path + len + sep, name, nl + 1);
    *out = len + sep + nl;
    return 0;
}

/* Visit ino (its path is in w->path, path_len long): call fn, and push a
 * frame for a directory whose entries are to be walked. */
static int enter(walker *w, uint64_t ino, size_t path_len)
{
    rfs_stat st;
    if (rfs_image_stat(w->img, ino, &st) != RFS_OK)
        return -1;
    int rc = w->fn(w->user, ino, w->path, &st, 0);
    if (rc == RFS_TREE_SKIP && S_ISDIR(st.mode))
        return 0;
    if (rc || !S_ISDIR(st.mode))
        return rc;
    if (rfs_array_reserve(&w->stack, &w->stack_cap, w->depth + 1, sizeof *w->stack))
        return -1;
    frame *f = &w->stack[w->depth++];
    *f = (frame){.ino = ino, .path_len = path_len, .st = st};
    rfs_image_dir_count(w->img, ino, &f->count);
    return 0;
}

/* One step at the top frame: enter its next entry, or leave it. */
static int step(walker *w)
{
    frame *f = &w->stack[w->depth - 1];
    w->path[f->path_len] = '\0';
    if (f->next == f->count) {
        frame done = *f;
        w->depth--;
        return w->fn(w->user, done.ino, w->path, &done.st, 1);
    }
    uint64_t child;
    const char *name;
    if (rfs_image_dir_entry(w->img, f->ino, f->next++, &child, &name) != RFS_OK)
        return -1;
    size_t len;
    if (path_push(w, f->path_len, name, &len))
        return -1;
    return enter(w, child, len);
}

int rfs_tree_walk(const rfs_image *img, rfs_tree_fn fn, void *user)
{
    walker w = {.img = img, .fn = fn, .user = user};
    size_t len;
    int rc = path_push(&w, 0, "", &len);
    if (rc == 0)
        rc = enter(&w, RFS_ROOT_INO, 0);
    while (rc == 0 && w.depth > 0)
        rc = step(&w);
    free(w.stack);
    free(w.path);
    return rc;
}

int rfs_tree_path_norm(char *path)
{
    char *out = path;
    const char *p = path;
    while (*p) {
        while (*p == '/')
            p++;
        const char *end = strchrnul(p, '/');
        size_t n = (size_t)(end - p);
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return -1;
        if (n && !(n == 1 && p[0] == '.')) {
            if (out != path)
                *out++ = '/';
            memmove(out, p, n);
            out += n;
        }
        p = end;
    }
    *out = '\0';
    return 0;
}

const char *rfs_tree_basename(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}
