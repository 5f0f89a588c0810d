/*
 * rfs_tool_open.c - a local image or a remote URL, for ransfs-fsck and
 * ransfs-dump.
 */
#include <stdio.h>
#include <string.h>

#include "rfs_tool_open.h"
#ifdef RFS_HAVE_REMOTE
#include "rfs_remote.h"
#endif

rfs_err rfs_tool_image_open(rfs_image **img, void **keep, const char *path_or_url, char *why,
                            size_t why_cap)
{
    *keep = NULL;
#ifdef RFS_HAVE_REMOTE
    rfs_remote *r = NULL;
    rfs_err err = rfs_remote_image_open(img, &r, path_or_url, why, why_cap);
    *keep = r;
    return err;
#else
    if (!strncmp(path_or_url, "http://", 7) || !strncmp(path_or_url, "https://", 8) ||
        !strncmp(path_or_url, "s3://", 5)) {
        *img = NULL;
        snprintf(why, why_cap, "remote images are not built in (libcurl was not found at "
                               "build time)");
        return RFS_E_ARG;
    }
    return rfs_image_open(img, path_or_url, why, why_cap);
#endif
}

void rfs_tool_image_close(rfs_image *img, void *keep)
{
    rfs_image_close(img);
#ifdef RFS_HAVE_REMOTE
    rfs_remote_close(keep);
#endif
}
