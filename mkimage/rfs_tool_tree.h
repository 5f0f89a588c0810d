/*
 * rfs_tool_tree.h - walk the directory tree of an open image, for the
 * tools (fsck --extract and --compare, dump).
 *
 * Contract:
 *  - Depth-first, entries in name order.  fn is called before a
 *    directory's entries (post = 0) and, for directories, once more after
 *    them (post = 1).  path is "" for the root, else "a/b/c"; it and st are
 *    valid only during the call.
 *  - No depth limit: the walk keeps its own stack on the heap (it grows
 *    with the depth, one small frame per level), so any tree the image
 *    reader accepts is walked whole, however deep.
 *  - fn returns 0 to go on; RFS_TREE_SKIP from the pre-visit of a
 *    directory skips its entries and its post-visit; any other value stops
 *    the walk and is returned.
 *  - Returns 0, fn's stopping value, or -1 when memory runs out (fn is not
 *    called for the rest).  Reads only validated metadata: any thread.
 */
#ifndef RFS_TOOL_TREE_H
#define RFS_TOOL_TREE_H

#include "rfs_image.h"

#define RFS_TREE_SKIP 1

typedef int (*rfs_tree_fn)(void *user, uint64_t ino, const char *path, const rfs_stat *st,
                           int post);

int rfs_tree_walk(const rfs_image *img, rfs_tree_fn fn, void *user);

/*
 * Normalise a path given on a command line in place: drop leading,
 * trailing and doubled '/' and "." components.  Returns -1 for a ".."
 * component (an image path never climbs), else 0; "/" becomes "".
 */
int rfs_tree_path_norm(char *path);

/* The last component of a walk path ("" for the root). */
const char *rfs_tree_basename(const char *path);

#endif
