/*
 * rfs_http.h - ranged GETs over libcurl (HTTP/1.1, HTTPS, S3 SigV4).
 *
 * Contract:
 *  - A pool of n curl easy handles, each keeping its connection alive
 *    between requests (connection reuse); rfs_http_get takes a free handle
 *    (waiting while all n are busy: n bounds the requests in flight) and
 *    gives it back.  Thread-safe after rfs_http_create.
 *  - One call is one attempt: no retries here (rfs_remote.c owns the retry
 *    policy).  Stalls: a connection that moves no byte for timeout seconds
 *    fails (CURLOPT_LOW_SPEED_*), as does a connect that takes longer.
 *  - S3 signing is libcurl's CURLOPT_AWS_SIGV4 with the credentials given;
 *    a session token goes in x-amz-security-token.  Secrets are copied
 *    into the handles only, never into why.
 */
#ifndef RFS_HTTP_H
#define RFS_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "rfs_tile.h"

typedef struct rfs_http rfs_http;

typedef struct rfs_http_opts {
    const char *url;        /* the URL to GET */
    unsigned handles;       /* pool size (requests in flight at most) */
    unsigned timeout;       /* seconds: connect, and longest stall */
    const char *ca_file;    /* NULL: CURL_CA_BUNDLE, SSL_CERT_FILE, system */
    const char *s3_region;  /* non-NULL: sign with SigV4 for service s3 */
    const char *access_key, *secret_key, *session_token;
} rfs_http_opts;

/* What one ranged GET saw. */
typedef struct rfs_http_resp {
    long status;            /* HTTP status, 0 when no response */
    int curl_code;          /* CURLcode, 0 on transfer success */
    uint64_t range_first, range_last, total; /* Content-Range; total 0 if absent */
    int has_range;
    char etag[256];
    char last_modified[64];
    uint64_t got;           /* body bytes delivered */
    char err[256];          /* curl's error text */
    char s3_code[64];       /* <Code> of an S3 error body, e.g. SignatureDoesNotMatch */
} rfs_http_resp;

/* Body sink: n bytes at body offset at; nonzero aborts the transfer. */
typedef int (*rfs_http_sink)(void *ctx, uint64_t at, const void *data, size_t n);

rfs_err rfs_http_create(rfs_http **h, const rfs_http_opts *o, char *why, size_t why_cap);
void rfs_http_destroy(rfs_http *h);

/*
 * GET bytes [off, off+len) with a Range header, and If-Match: if_match
 * (or If-Unmodified-Since: if_unmod) when non-NULL.  The body goes to sink
 * (at most len bytes are accepted; more aborts).  Returns RFS_OK when a
 * response arrived in full (any status: the caller judges resp), RFS_E_IO
 * for a transport failure (resp->curl_code, resp->err).
 */
rfs_err rfs_http_get(rfs_http *h, uint64_t off, uint64_t len, const char *if_match,
                     const char *if_unmod, rfs_http_sink sink, void *sink_ctx,
                     rfs_http_resp *resp);

#endif
