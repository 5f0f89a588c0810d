/*
 * rfs_main_remote.h - `ransfs URL MOUNTPOINT`: the remote options and the
 * remote image's start-up, kept out of rfs_main.c (docs/remote.md).
 *
 * Contract: rfs_main_remote_parse takes the remote -o options out of args
 * (before the main option parse, which never sees them).  For a URL,
 * rfs_main_remote_open opens the remote source and the image on it, or
 * prints one line (the URL without credentials and the reason) and fails.
 * Without libcurl at build time a URL is refused with one line.  Not
 * thread-safe; the stats call is.
 */
#ifndef RFS_MAIN_REMOTE_H
#define RFS_MAIN_REMOTE_H

#include <stddef.h>

#include <fuse_lowlevel.h>

#include "rfs_image.h"

typedef struct rfs_main_remote {
    char *s3_endpoint, *s3_region, *cache_dir, *cache_dir_size, *fetch_size, *ca_file;
    unsigned fetch_parallel, timeout, retries;
    int s3_anonymous;
    struct rfs_remote *remote; /* NULL for a local image */
} rfs_main_remote;

/* The option lines of --help. */
extern const char rfs_main_remote_usage[];

/* 0, or -1 after printing a line (a bad value). */
int rfs_main_remote_parse(struct fuse_args *args, rfs_main_remote *mr);
/* 1 when image names a remote image. */
int rfs_main_remote_is_url(const char *image);
/* Open url as *img; *display gets the URL as shown (heap).  0, or -1 after
 * printing one line. */
int rfs_main_remote_open(rfs_main_remote *mr, const char *url,
                         void (*log)(void *ctx, const char *line), void *log_ctx,
                         rfs_image **img, char **display);
/* Start the remote source's threads (read-ahead): after the fork. */
void rfs_main_remote_start(rfs_main_remote *mr);
/* Append the remote stats as JSON members ("\"remote_...\":N,..."). */
size_t rfs_main_remote_stats(void *mr, char *buf, size_t cap);
void rfs_main_remote_free(rfs_main_remote *mr);

#endif
