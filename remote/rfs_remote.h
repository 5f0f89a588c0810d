/*
 * rfs_remote.h - a remote image (http://, https://, s3://) as an rfs_source
 * for the image reader, with a persistent local cache dir (docs/remote.md).
 *
 * Contract:
 *  - rfs_remote_open pins the object with its first request (a ranged GET
 *    of the first fetch_size bytes: size, ETag, Last-Modified), opens its
 *    cache-dir entry and fills an rfs_source; every later request carries
 *    If-Match (or If-Unmodified-Since) and must answer for the pinned
 *    object, or the read fails (RFS_E_IO) and one line is logged; the new
 *    object's bytes are never stored.
 *  - ensure (rfs_source): the chunks (fetch_size, aligned) covering a range
 *    come from the cache dir or are fetched: adjacent missing chunks in one
 *    request, each chunk fetched by one thread at a time (single flight;
 *    others wait for it), at most fetch_parallel requests in flight.
 *    Failures are retried (connection errors, stalls past timeout, 429,
 *    5xx, short bodies, a wrong Content-Range) with exponential backoff and
 *    jitter, a bounded number of times; then RFS_E_IO.  Callers that
 *    waited for that flight get its RFS_E_IO too (one budget per flight),
 *    and until an attempt succeeds again the server counts as down: each
 *    fetch makes one attempt (a stalled server costs a read one timeout),
 *    read-ahead pauses.  Nothing failed is remembered: a later ensure
 *    tries again, so the mount recovers by itself when the server does.
 *  - Secrets (S3 credentials) are never logged, never in why, never in
 *    stats.  Log lines and messages show the URL without credentials.
 *  - Threads: ensure and the stats calls are thread-safe; open/close not.
 *    Until rfs_remote_start no thread is started (fetches run on the
 *    callers' threads), so a daemon may open before it forks.
 */
#ifndef RFS_REMOTE_H
#define RFS_REMOTE_H

#include <stddef.h>
#include <stdint.h>

#include "rfs_image.h"

typedef struct rfs_remote rfs_remote;

typedef struct rfs_remote_opts {
    const char *url;
    const char *s3_endpoint;  /* NULL: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS */
    const char *s3_region;    /* NULL: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1 */
    int s3_anonymous;         /* do not sign (public bucket) */
    const char *cache_dir;    /* NULL: rfs_rcache_default_dir */
    uint64_t cache_dir_size;  /* 0: 10 GiB */
    uint64_t fetch_size;      /* 0: 4 MiB; a power of two >= 64 KiB */
    unsigned fetch_parallel;  /* 0: 16 */
    unsigned timeout;         /* seconds, 0: 30 */
    unsigned retries;         /* attempts after the first, 0: 4 */
    const char *ca_file;      /* NULL: CURL_CA_BUNDLE, SSL_CERT_FILE, system store */
    void (*log)(void *ctx, const char *line); /* NULL: silent */
    void *log_ctx;
} rfs_remote_opts;

typedef struct rfs_remote_stats {
    uint64_t requests;     /* HTTP requests sent (every attempt) */
    uint64_t bytes;        /* body bytes received */
    uint64_t retries;      /* attempts after a failed one */
    uint64_t errors;       /* failed attempts */
    uint64_t cache_hits;   /* chunks needed and found in the cache dir */
    uint64_t cache_misses; /* chunks needed and fetched */
    uint64_t cache_bytes;  /* bytes the cache dir holds (all objects) */
} rfs_remote_stats;

#define RFS_REMOTE_DEFAULT_FETCH (4ull << 20)
#define RFS_REMOTE_DEFAULT_PARALLEL 16u
#define RFS_REMOTE_DEFAULT_TIMEOUT 30u
#define RFS_REMOTE_DEFAULT_DIR_SIZE (10ull << 30)

/*
 * Open url.  why gets one line (without the URL: the caller names it,
 * rfs_remote_url_display) saying what is wrong: an HTTP status at the pin (403, 404, ...), a TLS or connection
 * error, missing credentials, a cache dir that cannot be used.
 * Errors: RFS_E_ARG (bad URL or option), RFS_E_IO, RFS_E_NOENT (no
 * credentials), RFS_E_NOMEM.
 */
rfs_err rfs_remote_open(rfs_remote **r, const rfs_remote_opts *o, char *why, size_t why_cap);
void rfs_remote_close(rfs_remote *r);
/*
 * Start the read-ahead threads (fetch_parallel/2; they fetch ahead of
 * sequential readers).  Call once, after any fork; rfs_remote_close stops
 * them.  0, or -1 when no thread could start (then no read-ahead).
 */
int rfs_remote_start(rfs_remote *r);
/* The source for rfs_image_open_source; valid until rfs_remote_close. */
void rfs_remote_source(rfs_remote *r, rfs_source *src);
/* The URL as shown (no credentials, no query). */
const char *rfs_remote_display(const rfs_remote *r);
void rfs_remote_get_stats(rfs_remote *r, rfs_remote_stats *st);
/* The stats as JSON members, without braces: "\"remote_requests\":N,...". */
size_t rfs_remote_stats_json(rfs_remote *r, char *buf, size_t cap);

/* url as messages may show it (no userinfo, no query), into buf. */
void rfs_remote_url_display(const char *url, char *buf, size_t cap);

/* 1 when s is a URL this module opens. */
int rfs_remote_is_url(const char *s);

/*
 * For the tools: open a local image path or a remote URL (default options,
 * S3 endpoint and region from the environment).  *remote is NULL for a
 * local image; close with rfs_image_close then rfs_remote_close.
 */
rfs_err rfs_remote_image_open(rfs_image **img, rfs_remote **remote, const char *path_or_url,
                              char *why, size_t why_cap);

#endif
