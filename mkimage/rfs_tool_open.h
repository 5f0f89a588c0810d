/*
 * rfs_tool_open.h - the tools open a local image path or a remote URL
 * (http://, https://, s3://; docs/remote.md) through one call.
 *
 * Contract: rfs_tool_image_open behaves as rfs_image_open for a path; for
 * a URL it opens the remote source (default options: cache dir
 * RANSFS_CACHE_DIR or the default, S3 endpoint and region from
 * AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL / AWS_REGION) and the image on it.
 * *keep holds the source; rfs_tool_image_close(img, keep) closes both.
 * Without remote support built in, a URL fails with a reason saying so.
 */
#ifndef RFS_TOOL_OPEN_H
#define RFS_TOOL_OPEN_H

#include <stddef.h>

#include "rfs_image.h"

rfs_err rfs_tool_image_open(rfs_image **img, void **keep, const char *path_or_url, char *why,
                            size_t why_cap);
void rfs_tool_image_close(rfs_image *img, void *keep);

#endif
