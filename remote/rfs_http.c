/*
 * rfs_http.c - a pool of libcurl easy handles doing ranged GETs.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "rfs_http.h"

struct rfs_http {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    CURL **free_h; /* stack of idle handles */
    unsigned n_free, n;
    CURL **all;
    char *token_hdr; /* "x-amz-security-token: ..." or NULL */
};

typedef struct get_ctx {
    rfs_http_sink sink;
    void *sink_ctx;
    uint64_t off, len;
    rfs_http_resp *resp;
    char errbody[1024];
} get_ctx;

#define RFS_HTTP_BUFFER (512L << 10)

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_init;
static void curl_init_once(void) { g_curl_init = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* Keep the start of an error body: S3 names the reason in <Code>. */
static void error_body(get_ctx *g, const char *data, size_t n)
{
    size_t have = strlen(g->errbody), k = sizeof g->errbody - 1 - have;
    memcpy(g->errbody + have, data, n < k ? n : k);
    g->errbody[have + (n < k ? n : k)] = '\0';
    const char *a = strstr(g->errbody, "<Code>"), *b = a ? strstr(a, "</Code>") : NULL;
    if (a && b && (size_t)(b - a - 6) < sizeof g->resp->s3_code) {
        memcpy(g->resp->s3_code, a + 6, (size_t)(b - a - 6));
        g->resp->s3_code[b - a - 6] = '\0';
    }
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    get_ctx *g = arg;
    size_t n = size * nmemb;
    rfs_http_resp *r = g->resp;
    /* Only the bytes asked for reach the sink: an error page is dropped,
     * and a body for another range aborts the transfer. */
    if (r->status != 206 && r->status != 200) {
        error_body(g, data, n);
        return n;
    }
    if (r->status == 206 ? !r->has_range || r->range_first != g->off : g->off != 0)
        return 0;
    if (n > g->len - g->resp->got) /* more than asked for: abort */
        return 0;
    if (g->sink(g->sink_ctx, g->resp->got, data, n) != 0)
        return 0;
    g->resp->got += n;
    return n;
}

/* Copy a header value (after "Name:"), trimmed, into dst. */
static void header_value(char *dst, size_t cap, const char *v, size_t n)
{
    while (n && (*v == ' ' || *v == '\t'))
        v++, n--;
    while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' '))
        n--;
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static void parse_content_range(rfs_http_resp *r, const char *v)
{
    unsigned long long a, b, t;
    if (sscanf(v, "bytes %llu-%llu/%llu", &a, &b, &t) == 3) {
        r->range_first = a;
        r->range_last = b;
        r->total = t;
        r->has_range = 1;
    } else if (sscanf(v, "bytes */%llu", &t) == 1) {
        r->total = t;
    }
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    get_ctx *g = arg;
    size_t n = size * nmemb;
    char v[256];
    if (n > 5 && !strncmp(data, "HTTP/", 5)) { /* a new response (after a 100 or redirect) */
        /* curl's header bytes are not NUL-terminated: parse a bounded copy */
        header_value(v, sizeof v, data, n);
        const char *sp = strchr(v, ' ');
        g->resp->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        g->resp->has_range = 0;
        g->resp->etag[0] = g->resp->last_modified[0] = '\0';
    } else if (n > 14 && !strncasecmp(data, "Content-Range:", 14)) {
        header_value(v, sizeof v, data + 14, n - 14);
        parse_content_range(g->resp, v);
    } else if (n > 5 && !strncasecmp(data, "ETag:", 5)) {
        header_value(g->resp->etag, sizeof g->resp->etag, data + 5, n - 5);
    } else if (n > 14 && !strncasecmp(data, "Last-Modified:", 14)) {
        header_value(g->resp->last_modified, sizeof g->resp->last_modified, data + 14, n - 14);
    }
    return n;
}

static CURL *handle_new(const rfs_http_opts *o)
{
    CURL *c = curl_easy_init();
    if (!c)
        return NULL;
    char sig[128];
    curl_easy_setopt(c, CURLOPT_URL, o->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)o->timeout);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)o->timeout);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    /* 512 KiB receive buffer (default 16 KiB): a 4 MiB chunk in 8 reads
     * and body callbacks (pwrites into the cache dir) instead of 256.  On
     * the 1 Gbit/s bench (docs/benchmarks.md) cold loads ran 2-3 s faster. */
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, RFS_HTTP_BUFFER);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L); /* a redirect is an answer to judge */
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "ransfs/0.1");
    if (o->ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, o->ca_file);
    if (o->s3_region) {
        snprintf(sig, sizeof sig, "aws:amz:%s:s3", o->s3_region);
        curl_easy_setopt(c, CURLOPT_AWS_SIGV4, sig);
        curl_easy_setopt(c, CURLOPT_USERNAME, o->access_key);
        curl_easy_setopt(c, CURLOPT_PASSWORD, o->secret_key);
    }
    return c;
}

/* CA bundle from the environment when no -o ca_file: libcurl reads
 * CURL_CA_BUNDLE only in its command-line tool, so honour both here. */
static const char *env_ca_file(void)
{
    const char *v = getenv("CURL_CA_BUNDLE");
    if (v && *v)
        return v;
    v = getenv("SSL_CERT_FILE");
    return v && *v ? v : NULL;
}

rfs_err rfs_http_create(rfs_http **out, const rfs_http_opts *o, char *why, size_t why_cap)
{
    pthread_once(&g_curl_once, curl_init_once);
    *out = NULL;
    if (g_curl_init != CURLE_OK) {
        snprintf(why, why_cap, "libcurl initialisation failed");
        return RFS_E_IO;
    }
    rfs_http *h = calloc(1, sizeof *h);
    if (!h)
        return RFS_E_NOMEM;
    rfs_http_opts oo = *o;
    if (!oo.ca_file)
        oo.ca_file = env_ca_file();
    h->n = o->handles ? o->handles : 1;
    h->all = calloc(h->n, sizeof *h->all);
    h->free_h = calloc(h->n, sizeof *h->free_h);
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    if (o->session_token && *o->session_token &&
        asprintf(&h->token_hdr, "x-amz-security-token: %s", o->session_token) < 0)
        h->token_hdr = NULL;
    if (!h->all || !h->free_h || (o->session_token && *o->session_token && !h->token_hdr))
        goto nomem;
    for (unsigned i = 0; i < h->n; i++) {
        if (!(h->all[i] = handle_new(&oo)))
            goto nomem;
        h->free_h[h->n_free++] = h->all[i];
    }
    *out = h;
    return RFS_OK;
nomem:
    rfs_http_destroy(h);
    return RFS_E_NOMEM;
}

void rfs_http_destroy(rfs_http *h)
{
    if (!h)
        return;
    for (unsigned i = 0; h->all && i < h->n; i++)
        if (h->all[i])
            curl_easy_cleanup(h->all[i]);
    free(h->all);
    free(h->free_h);
    if (h->token_hdr) {
        explicit_bzero(h->token_hdr, strlen(h->token_hdr));
        free(h->token_hdr);
    }
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h);
}

static CURL *handle_take(rfs_http *h)
{
    pthread_mutex_lock(&h->mu);
    while (h->n_free == 0)
        pthread_cond_wait(&h->cv, &h->mu);
    CURL *c = h->free_h[--h->n_free];
    pthread_mutex_unlock(&h->mu);
    return c;
}

static void handle_give(rfs_http *h, CURL *c)
{
    pthread_mutex_lock(&h->mu);
    h->free_h[h->n_free++] = c;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

static struct curl_slist *request_headers(const rfs_http *h, const char *if_match,
                                          const char *if_unmod)
{
    struct curl_slist *l = NULL, *t;
    char line[320];
    if (if_match) {
        snprintf(line, sizeof line, "If-Match: %s", if_match);
        if (!(t = curl_slist_append(l, line)))
            goto fail;
        l = t;
    } else if (if_unmod) {
        snprintf(line, sizeof line, "If-Unmodified-Since: %s", if_unmod);
        if (!(t = curl_slist_append(l, line)))
            goto fail;
        l = t;
    }
    if (h->token_hdr) {
        if (!(t = curl_slist_append(l, h->token_hdr)))
            goto fail;
        l = t;
    }
    return l;
fail:
    curl_slist_free_all(l);
    return NULL;
}

rfs_err rfs_http_get(rfs_http *h, uint64_t off, uint64_t len, const char *if_match,
                     const char *if_unmod, rfs_http_sink sink, void *sink_ctx,
                     rfs_http_resp *resp)
{
    char range[64];
    memset(resp, 0, sizeof *resp);
    if (len == 0)
        return RFS_E_ARG;
    get_ctx g = {sink, sink_ctx, off, len, resp, ""};
    struct curl_slist *hdrs = request_headers(h, if_match, if_unmod);
    if ((if_match || if_unmod || h->token_hdr) && !hdrs)
        return RFS_E_NOMEM;
    snprintf(range, sizeof range, "%llu-%llu", (unsigned long long)off,
             (unsigned long long)(off + len - 1));
    CURL *c = handle_take(h);
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_RANGE, range);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &g);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &g);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
    handle_give(h, c);
    curl_slist_free_all(hdrs);
    resp->curl_code = (int)rc;
    if (rc == CURLE_OK)
        return RFS_OK;
    snprintf(resp->err, sizeof resp->err, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
    /* strip a trailing newline curl may leave */
    size_t n = strlen(resp->err);
    if (n && resp->err[n - 1] == '\n')
        resp->err[n - 1] = '\0';
    return RFS_E_IO;
}
