/*
 * rfs_remote.c - a remote image as an rfs_source: pin, chunk fetches with
 * single flight and retries, the cache dir, stats.
 *
 * Design note.  The object is cut into fetch_size chunks.  A chunk is
 * present when the cache dir's map says so (this or another process
 * fetched it); ensure(off, len) returns at once when every chunk of the
 * range is present.  Otherwise, under mu, the caller claims the first run
 * of adjacent chunks that are neither present nor in flight in this
 * process, fetches the run with one ranged GET (outside mu), stores it
 * (data, then map) and wakes the waiters; chunks another thread has in
 * flight are waited for.  So a chunk is fetched once at a time, reads of
 * present chunks never wait on the network, and n readers of n different
 * chunks fetch in parallel (bounded by the curl handle pool).
 *
 * Read-ahead: once rfs_remote_start has run, a read whose previous chunk
 * is present also queues the absent chunks after it (a window of up to
 * 64 MiB, at most fetch_parallel chunks) for fetch_parallel/2 threads, one
 * chunk per request, so a sequential reader keeps several requests in
 * flight and finds its next chunks present or in flight.
 *
 * Failures.  A fetch that spends its retry budget marks its chunks failed
 * and the server down.  A thread that waited for a chunk whose flight
 * failed gets the failure (EIO) instead of starting its own budget: one
 * budget per flight, however many readers wait.  While the server is down
 * every fetch makes one attempt (no retries, no backoff) and read-ahead
 * pauses, so a stalled server costs each read at most one timeout rather
 * than a budget per chunk per reader; the first attempt that succeeds
 * ends it (recovery needs no remount: failures are never remembered as
 * facts of the object).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rfs_cred.h"
#include "rfs_http.h"
#include "rfs_rcache.h"
#include "rfs_remote.h"
#include "rfs_url.h"

#define RUN_MAX_CHUNKS 16 /* one request fetches at most this many chunks */
#define LOG_MAX 32        /* fetch failures logged, then silence */

enum { CH_INFLIGHT = 1, CH_FAILED = 2 }; /* chunk_st: claimed here; its last flight failed */

struct rfs_remote {
    rfs_url url;
    rfs_cred cred;
    char region[64];
    rfs_http *http;
    rfs_rcache *cache;
    uint64_t size, chunk, n_chunks;
    unsigned retries, parallel;
    char etag[256], last_mod[64];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint8_t *chunk_st; /* per chunk, CH_* flags, under mu */
    /* Read-ahead (rfs_remote_start): chunks queued ahead of a sequential
     * reader, fetched by ra_n threads; all under mu. */
    uint64_t *ra_queue;
    size_t ra_head, ra_len, ra_cap;
    unsigned ra_window; /* chunks ahead of the last one read */
    pthread_t *ra_threads;
    unsigned ra_n;
    int ra_stop;
    pthread_cond_t ra_cv;
    atomic_int changed;
    atomic_int down; /* the last fetch spent its budget, none succeeded since */
    atomic_uint logged;
    uint64_t other_bytes; /* cache dir bytes of other objects, at open */
    atomic_uint_fast64_t requests, bytes, n_retries, errors, hits, misses;
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
};

static rfs_err r_fail(char *why, size_t cap, rfs_err err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static rfs_err r_fail(char *why, size_t cap, rfs_err err, const char *fmt, ...)
{
    if (why && cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, cap, fmt, ap);
        va_end(ap);
    }
    return err;
}

static void r_log(rfs_remote *r, int always, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void r_log(rfs_remote *r, int always, const char *fmt, ...)
{
    char line[512];
    if (!r->log || (!always && atomic_fetch_add(&r->logged, 1) >= LOG_MAX))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    r->log(r->log_ctx, line);
}

int rfs_remote_is_url(const char *s) { return rfs_url_is_remote(s); }

void rfs_remote_url_display(const char *url, char *buf, size_t cap)
{
    rfs_url u;
    if (rfs_url_parse(&u, url, "http://endpoint", NULL, NULL, 0) == RFS_OK) {
        snprintf(buf, cap, "%s", u.display);
        rfs_url_free(&u);
    } else {
        snprintf(buf, cap, "%.*s", (int)strcspn(url, "@?#"), url);
    }
}
const char *rfs_remote_display(const rfs_remote *r) { return r->url.display; }

/* ------------------------------------------------------------ attempts */

typedef enum attempt_res { ATT_OK, ATT_RETRY, ATT_FAIL, ATT_CHANGED } attempt_res;

static const char *status_text(long s)
{
    switch (s) {
    case 301: case 302: case 307: case 308: return "redirect (not followed)";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 412: return "Precondition Failed (the object changed)";
    case 416: return "Range Not Satisfiable";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "";
    }
}

/* "HTTP 403 Forbidden (SignatureDoesNotMatch)" or the transport error. */
static void resp_describe(const rfs_http_resp *rs, char *buf, size_t cap)
{
    if (rs->curl_code && !rs->status)
        snprintf(buf, cap, "%s", rs->err);
    else if (rs->curl_code)
        snprintf(buf, cap, "HTTP %ld: %s", rs->status, rs->err);
    else
        snprintf(buf, cap, "HTTP %ld %s%s%s%s", rs->status, status_text(rs->status),
                 rs->s3_code[0] ? " (" : "", rs->s3_code, rs->s3_code[0] ? ")" : "");
}

static int retryable_status(long s) { return s == 429 || s == 408 || (s >= 500 && s <= 599); }

/* Judge a response to GET [off, off+len) of the pinned object. */
static attempt_res judge(rfs_remote *r, uint64_t off, uint64_t len, rfs_http_resp *rs,
                         char *why, size_t cap)
{
    if (rs->status == 412)
        return ATT_CHANGED;
    if (rs->curl_code)
        return resp_describe(rs, why, cap), ATT_RETRY;
    if (retryable_status(rs->status))
        return resp_describe(rs, why, cap), ATT_RETRY;
    if (rs->status != 206 && !(rs->status == 200 && off == 0 && len == r->size))
        return resp_describe(rs, why, cap), ATT_FAIL;
    if (r->etag[0] && rs->etag[0] && strcmp(r->etag, rs->etag) != 0)
        return ATT_CHANGED;
    if (rs->status == 206 && (!rs->has_range || rs->range_first != off ||
                              rs->range_last != off + len - 1 || rs->total != r->size)) {
        snprintf(why, cap, "wrong Content-Range: bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64
                 " for bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, rs->range_first, rs->range_last,
                 rs->total, off, off + len - 1, r->size);
        return rs->total && rs->total != r->size ? ATT_CHANGED : ATT_RETRY;
    }
    if (rs->got != len) {
        snprintf(why, cap, "short body: %" PRIu64 " of %" PRIu64 " bytes", rs->got, len);
        return ATT_RETRY;
    }
    return ATT_OK;
}

/* Sleep before attempt k (1, 2, ...): 0.2 s * 2^(k-1), at most 5 s, times
 * a jitter in [0.5, 1.5) so that many readers do not retry in lockstep. */
static void backoff(unsigned k, unsigned *seed)
{
    double base = 0.2 * (double)(1u << (k - 1 < 5 ? k - 1 : 5));
    if (base > 5.0)
        base = 5.0;
    double s = base * (0.5 + (double)rand_r(seed) / ((double)RAND_MAX + 1.0));
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ------------------------------------------------------------ chunk fetch */

typedef struct cache_sink {
    rfs_remote *r;
    uint64_t base;
} cache_sink;

static int to_cache(void *ctx, uint64_t at, const void *data, size_t n)
{
    cache_sink *s = ctx;
    return rfs_rcache_write(s->r->cache, s->base + at, data, n) == RFS_OK ? 0 : -1;
}

static void object_changed(rfs_remote *r)
{
    if (atomic_exchange(&r->changed, 1) == 0)
        r_log(r, 1, "the object changed on the server since the mount (ETag/Last-Modified): "
                    "reads of bytes not cached fail with EIO from now on (unmount and mount "
                    "again)");
}

/* The attempt [off, off+len) succeeded: store it; the server is up. */
static rfs_err fetched(rfs_remote *r, uint64_t off, uint64_t len)
{
    if (atomic_exchange(&r->down, 0))
        r_log(r, 0, "the server answers again");
    if (rfs_rcache_mark(r->cache, off, len) != RFS_OK) {
        r_log(r, 0, "cannot write the cache dir entry %s: %s", rfs_rcache_path(r->cache),
              strerror(errno));
        return RFS_E_IO;
    }
    return RFS_OK;
}

/*
 * GET [off, off+len) into the cache and mark it, retrying as the policy
 * says: retries attempts after the first, or none while the server is
 * down (see Failures above).
 */
static rfs_err fetch_range(rfs_remote *r, uint64_t off, uint64_t len)
{
    unsigned seed = (unsigned)(off / r->chunk) ^ (unsigned)time(NULL) ^ (unsigned)getpid();
    char why[320] = "";
    rfs_http_resp rs;
    cache_sink sink = {r, off};
    attempt_res a = ATT_RETRY;
    unsigned retries = atomic_load(&r->down) ? 0 : r->retries;
    for (unsigned k = 0; k <= retries && a == ATT_RETRY; k++) {
        if (k) {
            atomic_fetch_add(&r->n_retries, 1);
            backoff(k, &seed);
        }
        if (atomic_load(&r->changed))
            return RFS_E_IO;
        atomic_fetch_add(&r->requests, 1);
        rfs_http_get(r->http, off, len, r->etag[0] ? r->etag : NULL,
                     r->etag[0] ? NULL : (r->last_mod[0] ? r->last_mod : NULL), to_cache, &sink,
                     &rs);
        atomic_fetch_add(&r->bytes, rs.got);
        a = judge(r, off, len, &rs, why, sizeof why);
        if (a == ATT_OK)
            return fetched(r, off, len);
        atomic_fetch_add(&r->errors, 1);
    }
    if (a == ATT_CHANGED) {
        object_changed(r);
        return RFS_E_IO;
    }
    if (a == ATT_RETRY && !atomic_exchange(&r->down, 1))
        r_log(r, 0, "the server keeps failing: one attempt per read, no read-ahead, until it "
                    "answers again");
    r_log(r, 0, "bytes %" PRIu64 "-%" PRIu64 ": %s%s", off, off + len - 1, why,
          atomic_load(&r->changed) ? "" : " (gave up: EIO)");
    return RFS_E_IO;
}

/* Chunk c is present, or in flight here; with mu held. */
static int busy(const rfs_remote *r, uint64_t c)
{
    return (r->chunk_st[c] & CH_INFLIGHT) || rfs_rcache_present(r->cache, c);
}

/* Claim chunks [s, e] for a flight (with mu held). */
static void claim(rfs_remote *r, uint64_t s, uint64_t e)
{
    memset(r->chunk_st + s, CH_INFLIGHT, e - s + 1);
}

/* The flight of [s, e] ended with err; wake its waiters (with mu held). */
static void land(rfs_remote *r, uint64_t s, uint64_t e, rfs_err err)
{
    memset(r->chunk_st + s, err ? CH_FAILED : 0, e - s + 1);
    pthread_cond_broadcast(&r->cv);
}

/* Fetch chunks [s, e] (claimed in flight by the caller). */
static rfs_err fetch_run(rfs_remote *r, uint64_t s, uint64_t e)
{
    uint64_t off = s * r->chunk, end = (e + 1) * r->chunk;
    if (end > r->size)
        end = r->size;
    atomic_fetch_add(&r->misses, e - s + 1);
    return fetch_range(r, off, end - off);
}

/* ------------------------------------------------------------ read-ahead */

/*
 * A reader at chunk last whose chunk before first is present reads on
 * sequentially: queue the absent chunks of (last, last + window] that are
 * not in flight, for the read-ahead threads.  Random readers rarely find
 * their previous chunk present, and a wrong guess costs one window.
 */
static void readahead_note(rfs_remote *r, uint64_t first, uint64_t last)
{
    if (!r->ra_n || first == 0 || atomic_load(&r->down) ||
        !rfs_rcache_present(r->cache, first - 1))
        return;
    uint64_t end = last + r->ra_window < r->n_chunks - 1 ? last + r->ra_window : r->n_chunks - 1;
    uint64_t c = last + 1;
    while (c <= end && rfs_rcache_present(r->cache, c))
        c++;
    if (c > end)
        return; /* the window is full already: no lock taken */
    pthread_mutex_lock(&r->mu);
    for (; c <= end && r->ra_len < r->ra_cap; c++) {
        if (busy(r, c))
            continue;
        claim(r, c, c);
        r->ra_queue[(r->ra_head + r->ra_len++) % r->ra_cap] = c;
        pthread_cond_signal(&r->ra_cv);
    }
    pthread_mutex_unlock(&r->mu);
}

static void *readahead_main(void *arg)
{
    rfs_remote *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->ra_stop && r->ra_len == 0)
            pthread_cond_wait(&r->ra_cv, &r->mu);
        if (r->ra_stop)
            break;
        uint64_t c = r->ra_queue[r->ra_head];
        r->ra_head = (r->ra_head + 1) % r->ra_cap;
        r->ra_len--;
        pthread_mutex_unlock(&r->mu);
        /* A failure is logged and given to whoever waits for c.  Once the
         * server is down, what is queued is not fetched: read-ahead is a
         * guess, and each guess would cost a timeout. */
        rfs_err err = atomic_load(&r->down) ? RFS_E_IO : fetch_run(r, c, c);
        pthread_mutex_lock(&r->mu);
        land(r, c, c, err);
    }
    /* Whatever is still queued was never fetched: not in flight any more. */
    for (; r->ra_len; r->ra_len--, r->ra_head = (r->ra_head + 1) % r->ra_cap)
        r->chunk_st[r->ra_queue[r->ra_head]] = 0;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

int rfs_remote_start(rfs_remote *r)
{
    if (r->ra_n || r->n_chunks < 2)
        return 0;
    unsigned n = r->parallel > 1 ? r->parallel / 2 : 1;
    uint64_t win = (64ull << 20) / r->chunk;
    r->ra_window = (unsigned)(win < 2 ? 2 : win > r->parallel ? r->parallel : win);
    r->ra_cap = r->ra_window * 4u;
    r->ra_queue = calloc(r->ra_cap, sizeof *r->ra_queue);
    r->ra_threads = calloc(n, sizeof *r->ra_threads);
    if (!r->ra_queue || !r->ra_threads)
        return -1;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old); /* signals stay with the caller's threads */
    for (unsigned i = 0; i < n; i++) {
        if (pthread_create(&r->ra_threads[i], NULL, readahead_main, r) != 0)
            break;
        pthread_mutex_lock(&r->mu);
        r->ra_n++;
        pthread_mutex_unlock(&r->mu);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r->ra_n ? 0 : -1;
}

static void readahead_stop(rfs_remote *r)
{
    pthread_mutex_lock(&r->mu);
    r->ra_stop = 1;
    pthread_cond_broadcast(&r->ra_cv);
    unsigned n = r->ra_n;
    pthread_mutex_unlock(&r->mu);
    for (unsigned i = 0; i < n; i++)
        pthread_join(r->ra_threads[i], NULL);
    free(r->ra_threads);
    free(r->ra_queue);
}

/* ------------------------------------------------------------ ensure */

static rfs_err remote_ensure(void *ctx, uint64_t off, uint64_t len)
{
    rfs_remote *r = ctx;
    if (off > r->size || len > r->size - off)
        return RFS_E_ARG;
    uint64_t c = off / r->chunk, last = (off + len - 1) / r->chunk, first = c;
    readahead_note(r, first, last);
    while (c <= last && rfs_rcache_present(r->cache, c))
        c++;
    atomic_fetch_add(&r->hits, c - first);
    if (c > last)
        return RFS_OK;
    int waited = 0;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (c <= last && rfs_rcache_present(r->cache, c))
            c++;
        if (c > last)
            break;
        uint64_t s = c;
        while (s <= last && busy(r, s))
            s++;
        if (s > last) { /* everything missing is in flight elsewhere: wait */
            pthread_cond_wait(&r->cv, &r->mu);
            waited = 1;
            continue;
        }
        /* s was in flight when we began to wait (all missing chunks were)
         * and that flight failed: its failure is ours (one budget per
         * flight).  A reader that did not wait for it tries again. */
        if (waited && (r->chunk_st[s] & CH_FAILED)) {
            pthread_mutex_unlock(&r->mu);
            return RFS_E_IO;
        }
        uint64_t e = s;
        while (e < last && e - s + 1 < RUN_MAX_CHUNKS && !busy(r, e + 1))
            e++;
        claim(r, s, e);
        pthread_mutex_unlock(&r->mu);
        rfs_err err = fetch_run(r, s, e);
        pthread_mutex_lock(&r->mu);
        land(r, s, e, err);
        if (err) {
            pthread_mutex_unlock(&r->mu);
            return err;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return RFS_OK;
}

/* ------------------------------------------------------------ the pin */

typedef struct mem_sink {
    uint8_t *buf;
    size_t cap;
} mem_sink;

static int to_mem(void *ctx, uint64_t at, const void *data, size_t n)
{
    mem_sink *m = ctx;
    if (at > m->cap || n > m->cap - at)
        return -1;
    memcpy(m->buf + at, data, n);
    return 0;
}

/* Judge the first response: learn size, ETag, Last-Modified. */
static attempt_res pin_judge(rfs_remote *r, const rfs_http_resp *rs, char *why, size_t cap)
{
    char d[320];
    if (rs->status == 200 && rs->curl_code == 23 /* CURLE_WRITE_ERROR */) {
        snprintf(why, cap, "the server does not honour Range requests (HTTP 200 for a range)");
        return ATT_FAIL;
    }
    if (rs->curl_code || retryable_status(rs->status)) {
        resp_describe(rs, d, sizeof d);
        snprintf(why, cap, "%s", d);
        return ATT_RETRY;
    }
    if (rs->status == 416) {
        snprintf(why, cap, "HTTP 416: the object is empty, not a ransfs image");
        return ATT_FAIL;
    }
    if (rs->status != 206 && rs->status != 200) {
        resp_describe(rs, d, sizeof d);
        snprintf(why, cap, "%s", d);
        return ATT_FAIL;
    }
    if (rs->status == 206 && (!rs->has_range || rs->range_first != 0 || rs->total == 0 ||
                              rs->got != rs->range_last + 1)) {
        snprintf(why, cap, "bad Content-Range or short body in the first response");
        return ATT_RETRY;
    }
    r->size = rs->status == 206 ? rs->total : rs->got;
    snprintf(r->etag, sizeof r->etag, "%s", rs->etag);
    snprintf(r->last_mod, sizeof r->last_mod, "%s", rs->last_modified);
    return ATT_OK;
}

static rfs_err pin(rfs_remote *r, uint8_t *buf, uint64_t *got, char *why, size_t cap)
{
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    mem_sink m = {buf, r->chunk};
    rfs_http_resp rs;
    for (unsigned k = 0; k <= r->retries; k++) {
        if (k) {
            atomic_fetch_add(&r->n_retries, 1);
            backoff(k, &seed);
        }
        atomic_fetch_add(&r->requests, 1);
        rfs_http_get(r->http, 0, r->chunk, NULL, NULL, to_mem, &m, &rs);
        atomic_fetch_add(&r->bytes, rs.got);
        attempt_res a = pin_judge(r, &rs, why, cap);
        if (a == ATT_OK) {
            *got = rs.got;
            return RFS_OK;
        }
        atomic_fetch_add(&r->errors, 1);
        if (a == ATT_FAIL)
            return RFS_E_IO;
    }
    return RFS_E_IO;
}

/* ------------------------------------------------------------ open */

static int pow2_ok(uint64_t v) { return v >= (64u << 10) && !(v & (v - 1)); }

static void pick_region(rfs_remote *r, const rfs_remote_opts *o)
{
    const char *v = o->s3_region;
    if (!v || !*v)
        v = getenv("AWS_REGION");
    if (!v || !*v)
        v = getenv("AWS_DEFAULT_REGION");
    snprintf(r->region, sizeof r->region, "%s", v && *v ? v : "us-east-1");
}

static const char *pick_endpoint(const rfs_remote_opts *o)
{
    const char *v = o->s3_endpoint;
    if (!v || !*v)
        v = getenv("AWS_ENDPOINT_URL_S3");
    if (!v || !*v)
        v = getenv("AWS_ENDPOINT_URL");
    return v && *v ? v : NULL;
}

static rfs_err http_open(rfs_remote *r, const rfs_remote_opts *o, char *why, size_t cap)
{
    char w[256] = "";
    int sign = r->url.is_s3 && !o->s3_anonymous;
    if (sign && rfs_cred_load(&r->cred, w, sizeof w) != RFS_OK)
        return r_fail(why, cap, RFS_E_NOENT, "%s", w);
    rfs_http_opts ho = {
        .url = r->url.fetch,
        .handles = o->fetch_parallel ? o->fetch_parallel : RFS_REMOTE_DEFAULT_PARALLEL,
        .timeout = o->timeout ? o->timeout : RFS_REMOTE_DEFAULT_TIMEOUT,
        .ca_file = o->ca_file,
        .s3_region = sign ? r->region : NULL,
        .access_key = r->cred.access_key,
        .secret_key = r->cred.secret_key,
        .session_token = r->cred.session_token,
    };
    rfs_err err = rfs_http_create(&r->http, &ho, w, sizeof w);
    if (err)
        return r_fail(why, cap, err, "%s", w[0] ? w : rfs_strerror(err));
    return RFS_OK;
}

static rfs_err cache_open(rfs_remote *r, const rfs_remote_opts *o, char *why, size_t cap)
{
    char dir[4096], w[512] = "", *id = NULL;
    if (o->cache_dir && *o->cache_dir)
        snprintf(dir, sizeof dir, "%s", o->cache_dir);
    else if (rfs_rcache_default_dir(dir, sizeof dir) != 0)
        return r_fail(why, cap, RFS_E_IO, "no cache dir: HOME is unset (use -o cache_dir=)");
    if (asprintf(&id, "ransfs remote v1\n%s\n%" PRIu64 "\n%s\n%s\n%" PRIu64, r->url.display,
                 r->size, r->etag, r->last_mod, r->chunk) < 0)
        return RFS_E_NOMEM;
    rfs_rcache_info info;
    rfs_err err = rfs_rcache_open(&r->cache, dir, o->cache_dir_size ? o->cache_dir_size
                                                                    : RFS_REMOTE_DEFAULT_DIR_SIZE,
                                  id, r->size, r->chunk, &info, w, sizeof w);
    free(id);
    if (err)
        return r_fail(why, cap, err, "%s", w[0] ? w : rfs_strerror(err));
    uint64_t mine = rfs_rcache_bytes(r->cache);
    r->other_bytes = info.dir_bytes > mine ? info.dir_bytes - mine : 0;
    r->n_chunks = rfs_rcache_chunks(r->cache);
    r->chunk_st = calloc(r->n_chunks, 1);
    return r->chunk_st ? RFS_OK : RFS_E_NOMEM;
}

rfs_err rfs_remote_open(rfs_remote **out, const rfs_remote_opts *o, char *why, size_t why_cap)
{
    rfs_err err;
    char w[256] = "";
    uint8_t *head = NULL;
    uint64_t got = 0;
    *out = NULL;
    rfs_remote *r = calloc(1, sizeof *r);
    if (!r)
        return RFS_E_NOMEM;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    pthread_cond_init(&r->ra_cv, NULL);
    r->log = o->log;
    r->log_ctx = o->log_ctx;
    r->chunk = o->fetch_size ? o->fetch_size : RFS_REMOTE_DEFAULT_FETCH;
    r->retries = o->retries ? o->retries : 4;
    r->parallel = o->fetch_parallel ? o->fetch_parallel : RFS_REMOTE_DEFAULT_PARALLEL;
    pick_region(r, o);
    if ((err = rfs_url_parse(&r->url, o->url, pick_endpoint(o), r->region, w, sizeof w))) {
        r_fail(why, why_cap, err, "%s", w);
        goto fail;
    }
    if (!pow2_ok(r->chunk)) {
        err = r_fail(why, why_cap, RFS_E_ARG, "fetch_size must be a power of two >= 64K");
        goto fail;
    }
    if ((err = http_open(r, o, why, why_cap)))
        goto fail;
    err = RFS_E_NOMEM;
    if (!(head = malloc(r->chunk)) || (err = pin(r, head, &got, why, why_cap)) ||
        (err = cache_open(r, o, why, why_cap)))
        goto fail;
    /* The pin's bytes are the first chunk (or the whole object). */
    if (got == (r->size < r->chunk ? r->size : r->chunk) &&
        rfs_rcache_put(r->cache, 0, head, got) != RFS_OK) {
        err = r_fail(why, why_cap, RFS_E_IO, "cannot write the cache dir entry %s: %s",
                     rfs_rcache_path(r->cache), strerror(errno));
        goto fail;
    }
    free(head);
    *out = r;
    return RFS_OK;
fail:
    free(head);
    rfs_remote_close(r);
    return err;
}

void rfs_remote_close(rfs_remote *r)
{
    if (!r)
        return;
    readahead_stop(r);
    rfs_http_destroy(r->http);
    rfs_rcache_close(r->cache);
    rfs_cred_free(&r->cred);
    rfs_url_free(&r->url);
    free(r->chunk_st);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    pthread_cond_destroy(&r->ra_cv);
    free(r);
}

void rfs_remote_source(rfs_remote *r, rfs_source *src)
{
    *src = (rfs_source){r, r->size, rfs_rcache_base(r->cache), rfs_rcache_fd(r->cache),
                        remote_ensure};
}

/* ------------------------------------------------------------ stats */

void rfs_remote_get_stats(rfs_remote *r, rfs_remote_stats *st)
{
    st->requests = atomic_load(&r->requests);
    st->bytes = atomic_load(&r->bytes);
    st->retries = atomic_load(&r->n_retries);
    st->errors = atomic_load(&r->errors);
    st->cache_hits = atomic_load(&r->hits);
    st->cache_misses = atomic_load(&r->misses);
    st->cache_bytes = r->other_bytes + rfs_rcache_bytes(r->cache);
}

size_t rfs_remote_stats_json(rfs_remote *r, char *buf, size_t cap)
{
    rfs_remote_stats st;
    rfs_remote_get_stats(r, &st);
    int n = snprintf(buf, cap,
                     "\"remote_requests\":%" PRIu64 ",\"remote_bytes\":%" PRIu64
                     ",\"remote_retries\":%" PRIu64 ",\"remote_errors\":%" PRIu64
                     ",\"remote_cache_hits\":%" PRIu64 ",\"remote_cache_misses\":%" PRIu64
                     ",\"remote_cache_bytes\":%" PRIu64 ",\"remote_object_changed\":%s",
                     st.requests, st.bytes, st.retries, st.errors, st.cache_hits, st.cache_misses,
                     st.cache_bytes, atomic_load(&r->changed) ? "true" : "false");
    return n < 0 ? 0 : (size_t)n;
}

/* ------------------------------------------------------------ tools */

static void tool_log(void *ctx, const char *line)
{
    fprintf(stderr, "ransfs: %s: %s\n", (const char *)ctx, line);
}

rfs_err rfs_remote_image_open(rfs_image **img, rfs_remote **remote, const char *path_or_url,
                              char *why, size_t why_cap)
{
    *img = NULL;
    *remote = NULL;
    if (!rfs_remote_is_url(path_or_url))
        return rfs_image_open(img, path_or_url, why, why_cap);
    rfs_remote_opts o = {.url = path_or_url, .log = tool_log, .log_ctx = (void *)"remote image"};
    const char *dir = getenv("RANSFS_CACHE_DIR");
    o.cache_dir = dir && *dir ? dir : NULL;
    rfs_err err = rfs_remote_open(remote, &o, why, why_cap);
    if (err)
        return err;
    rfs_source src;
    rfs_remote_source(*remote, &src);
    err = rfs_image_open_source(img, &src, why, why_cap);
    if (err) {
        rfs_remote_close(*remote);
        *remote = NULL;
    }
    return err;
}
