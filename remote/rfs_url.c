/*
 * rfs_url.c - parse http(s):// and s3:// URLs of remote images.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rfs_url.h"

static rfs_err url_fail(char *why, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static rfs_err url_fail(char *why, size_t cap, const char *fmt, ...)
{
    if (why && cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, cap, fmt, ap);
        va_end(ap);
    }
    return RFS_E_ARG;
}

static int has_prefix(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

int rfs_url_is_remote(const char *s)
{
    return s && (has_prefix(s, "http://") || has_prefix(s, "https://") || has_prefix(s, "s3://"));
}

/* Bytes no URL here may hold: controls, space, and what HTTP forbids. */
static int url_bytes_ok(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

/* "scheme://[userinfo@]host/path?q#f" -> "scheme://host/path" */
static char *display_of(const char *url)
{
    const char *auth = strstr(url, "://") + 3;
    size_t host_end = strcspn(auth, "/?#");
    const char *at = memchr(auth, '@', host_end);
    const char *host = at ? at + 1 : auth;
    size_t tail = strcspn(auth + host_end, "?#");
    char *d = malloc(strlen(url) + 1);
    if (!d)
        return NULL;
    size_t n = (size_t)(auth - url);
    memcpy(d, url, n);
    memcpy(d + n, host, (size_t)(auth + host_end - host));
    n += (size_t)(auth + host_end - host);
    memcpy(d + n, auth + host_end, tail);
    d[n + tail] = '\0';
    return d;
}

static rfs_err http_parse(rfs_url *u, const char *url, char *why, size_t cap)
{
    const char *auth = strstr(url, "://") + 3;
    size_t host_end = strcspn(auth, "/?#");
    const char *at = memchr(auth, '@', host_end);
    if (host_end == 0 || (at && at + 1 == auth + host_end))
        return url_fail(why, cap, "no host in the URL");
    if (auth[host_end] != '/' || auth[host_end + 1] == '\0' || auth[host_end + 1] == '?')
        return url_fail(why, cap, "no object path in the URL");
    u->fetch = strdup(url);
    u->display = display_of(url);
    return u->fetch && u->display ? RFS_OK : RFS_E_NOMEM;
}

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

/* The key as S3 wants it in a path: every byte but unreserved and '/' as %XX. */
static char *key_encode(const char *key)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(3 * strlen(key) + 1), *o = out;
    if (!out)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        if (unreserved(*p) || *p == '/') {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}

static int bucket_ok(const char *b, size_t n)
{
    if (n < 3 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(b[i] >= 'a' && b[i] <= 'z') && !(b[i] >= '0' && b[i] <= '9') && b[i] != '-' &&
            b[i] != '.' && b[i] != '_')
            return 0;
    return 1;
}

static rfs_err s3_parse(rfs_url *u, const char *url, const char *endpoint, const char *region,
                        char *why, size_t cap)
{
    const char *b = url + 5;
    size_t bn = strcspn(b, "/");
    if (!bucket_ok(b, bn))
        return url_fail(why, cap, "bad bucket name in the URL (3-63 of a-z 0-9 . - _)");
    if (b[bn] != '/' || b[bn + 1] == '\0')
        return url_fail(why, cap, "no object key in the URL (s3://BUCKET/KEY)");
    char ep[512];
    if (endpoint && *endpoint) {
        if (!has_prefix(endpoint, "http://") && !has_prefix(endpoint, "https://"))
            return url_fail(why, cap, "the S3 endpoint must start with http:// or https://");
        snprintf(ep, sizeof ep, "%s", endpoint);
    } else {
        snprintf(ep, sizeof ep, "https://s3.%s.amazonaws.com", region ? region : "us-east-1");
    }
    size_t el = strlen(ep);
    while (el > 0 && ep[el - 1] == '/')
        ep[--el] = '\0';
    u->is_s3 = 1;
    u->bucket = strndup(b, bn);
    u->key = strdup(b + bn + 1);
    char *enc = key_encode(b + bn + 1);
    if (!u->bucket || !u->key || !enc) {
        free(enc);
        return RFS_E_NOMEM;
    }
    size_t n = el + bn + strlen(enc) + 3;
    u->fetch = malloc(n);
    if (u->fetch)
        snprintf(u->fetch, n, "%s/%s/%s", ep, u->bucket, enc);
    free(enc);
    u->display = strdup(url);
    return u->fetch && u->display ? RFS_OK : RFS_E_NOMEM;
}

rfs_err rfs_url_parse(rfs_url *u, const char *url, const char *endpoint, const char *region,
                      char *why, size_t why_cap)
{
    memset(u, 0, sizeof *u);
    if (!rfs_url_is_remote(url))
        return url_fail(why, why_cap, "not an http://, https:// or s3:// URL");
    if (!url_bytes_ok(url) || (endpoint && !url_bytes_ok(endpoint)))
        return url_fail(why, why_cap, "the URL holds a space or control character");
    rfs_err err = has_prefix(url, "s3://") ? s3_parse(u, url, endpoint, region, why, why_cap)
                                           : http_parse(u, url, why, why_cap);
    if (err)
        rfs_url_free(u);
    return err;
}

void rfs_url_free(rfs_url *u)
{
    free(u->fetch);
    free(u->display);
    free(u->bucket);
    free(u->key);
    memset(u, 0, sizeof *u);
}
