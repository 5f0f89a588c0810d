/*
 * rfs_tool_tree.c - depth-first walk of an image's tree (rfs_tool_tree.h).
 */
#include "rfs_tool_tree.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int walk(const rfs_image *img, uint64_t ino, char *path, size_t len, size_t cap,
                unsigned depth, rfs_tree_fn fn, void *user)
{
    rfs_stat st;
    int rc;
    if (depth > RFS_TREE_MAX_DEPTH || rfs_image_stat(img, ino, &st) != RFS_OK)
        return -1;
    if ((rc = fn(user, ino, path, &st, 0)) || !S_ISDIR(st.mode))
        return rc;
    uint64_t n = 0;
    rfs_image_dir_count(img, ino, &n);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t child;
        const char *name;
        if (rfs_image_dir_entry(img, ino, i, &child, &name) != RFS_OK)
            return -1;
        size_t nl = strlen(name), sep = len ? 1 : 0;
        if (len + sep + nl + 1 > cap)
            return -1;
        if (sep)
            path[len] = '/';
        memcpy(path + len + sep, name, nl + 1);
        rc = walk(img, child, path, len + sep + nl, cap, depth + 1, fn, user);
        path[len] = '\0';
        if (rc)
            return rc;
    }
    return fn(user, ino, path, &st, 1);
}

int rfs_tree_walk(const rfs_image *img, rfs_tree_fn fn, void *user)
{
    size_t cap = (size_t)RFS_TREE_MAX_DEPTH * 256 + 1;
    char *path = malloc(cap);
    if (!path)
        return -1;
    path[0] = '\0';
    int rc = walk(img, RFS_ROOT_INO, path, 0, cap, 0, fn, user);
    free(path);
    return rc;
}
