/*
 * rfs_url.h - the URL forms of a remote image (docs/remote.md).
 *
 *   http://HOST[:PORT]/PATH, https://...   fetched as they are;
 *   s3://BUCKET/KEY                        path-style against an endpoint:
 *                                          ENDPOINT/BUCKET/KEY, the key
 *                                          percent-encoded (RFC 3986
 *                                          unreserved bytes and '/' kept).
 *
 * Contract: rfs_url_parse fills every string (heap, freed by rfs_url_free)
 * or returns an error with a one-line reason.  display never holds a
 * userinfo part ("user:secret@"), a query or a fragment: it is what logs,
 * error lines, the fsname and the cache identity show.  Pure functions, no
 * I/O; thread-safe.
 */
#ifndef RFS_URL_H
#define RFS_URL_H

#include <stddef.h>

#include "rfs_tile.h"

typedef struct rfs_url {
    int is_s3;
    char *fetch;   /* the URL requested */
    char *display; /* the URL as shown: no credentials, no query */
    char *bucket;  /* s3 only, else NULL */
    char *key;     /* s3 only (not encoded), else NULL */
} rfs_url;

/* 1 when s names a remote image (http://, https:// or s3://). */
int rfs_url_is_remote(const char *s);

/*
 * Parse url.  For s3://, endpoint is the S3 endpoint URL (scheme and host,
 * e.g. "http://127.0.0.1:8333"; NULL: https://s3.REGION.amazonaws.com with
 * region, which must then be non-NULL).  Errors: RFS_E_ARG (malformed, with
 * why), RFS_E_NOMEM.
 */
rfs_err rfs_url_parse(rfs_url *u, const char *url, const char *endpoint, const char *region,
                      char *why, size_t why_cap);
void rfs_url_free(rfs_url *u);

#endif
