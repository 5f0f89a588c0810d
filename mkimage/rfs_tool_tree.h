/*
 * rfs_tool_tree.h - walk the directory tree of an open image, for the
 * tools (fsck --extract, dump).  Depth-first, entries in name order; fn is
 * called before a directory's entries (post = 0) and, for directories, once
 * more after them (post = 1).  path is "" for the root, else "a/b/c".
 * A non-zero return from fn stops the walk and is returned.  Trees deeper
 * than RFS_TREE_MAX_DEPTH give -1 (and fn is not called for the rest).
 */
#ifndef RFS_TOOL_TREE_H
#define RFS_TOOL_TREE_H

#include "rfs_image.h"

#define RFS_TREE_MAX_DEPTH 512

typedef int (*rfs_tree_fn)(void *user, uint64_t ino, const char *path, const rfs_stat *st,
                           int post);

int rfs_tree_walk(const rfs_image *img, rfs_tree_fn fn, void *user);

#endif
