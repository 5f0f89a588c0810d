/*
 * rfs_main_remote.c - remote -o options and opening a remote image for the
 * daemon (the remote source itself is remote/rfs_remote.c).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rfs_main_remote.h"
#ifdef RFS_HAVE_REMOTE
#include "rfs_remote.h"
#endif

const char rfs_main_remote_usage[] =
    "    -o cache_dir=DIR       remote images: local cache of fetched bytes (default\n"
    "                           $XDG_CACHE_HOME/ransfs, /var/cache/ransfs for root)\n"
    "    -o cache_dir_size=SIZE cache dir limit, least recently used out (default 10G)\n"
    "    -o fetch_size=SIZE     remote fetch unit, a power of two (default 4M)\n"
    "    -o fetch_parallel=N    remote requests in flight at most (default 16)\n"
    "    -o timeout=SECONDS     remote connect and stall timeout (default 30)\n"
    "    -o retries=N           retries of a failed remote request (default 4)\n"
    "    -o ca_file=FILE        CA bundle for https:// (also CURL_CA_BUNDLE, SSL_CERT_FILE)\n"
    "    -o s3_endpoint=URL     S3-compatible endpoint, path-style (default AWS)\n"
    "    -o s3_region=REGION    S3 signing region (default AWS_REGION, else us-east-1)\n"
    "    -o s3_anonymous        do not sign S3 requests (public bucket)\n";

#define ROPT(t, f, v) {t, offsetof(rfs_main_remote, f), v}
static const struct fuse_opt remote_opt_spec[] = {
    ROPT("s3_endpoint=%s", s3_endpoint, 0),
    ROPT("s3_region=%s", s3_region, 0),
    ROPT("s3_anonymous", s3_anonymous, 1),
    ROPT("cache_dir=%s", cache_dir, 0),
    ROPT("cache_dir_size=%s", cache_dir_size, 0),
    ROPT("fetch_size=%s", fetch_size, 0),
    ROPT("fetch_parallel=%u", fetch_parallel, 0),
    ROPT("timeout=%u", timeout, 0),
    ROPT("retries=%u", retries, 0),
    ROPT("ca_file=%s", ca_file, 0),
    FUSE_OPT_END,
};

static int keep_others(void *data, const char *arg, int key, struct fuse_args *outargs)
{
    return 1; /* everything but the remote options goes on to the main parse */
}

int rfs_main_remote_parse(struct fuse_args *args, rfs_main_remote *mr)
{
    if (fuse_opt_parse(args, mr, remote_opt_spec, keep_others) != 0)
        return -1;
    if (mr->fetch_parallel > 256) {
        fprintf(stderr, "ransfs: -o fetch_parallel=%u: at most 256\n", mr->fetch_parallel);
        return -1;
    }
    return 0;
}

void rfs_main_remote_free(rfs_main_remote *mr)
{
#ifdef RFS_HAVE_REMOTE
    rfs_remote_close(mr->remote);
#endif
    free(mr->s3_endpoint);
    free(mr->s3_region);
    free(mr->cache_dir);
    free(mr->cache_dir_size);
    free(mr->fetch_size);
    free(mr->ca_file);
    memset(mr, 0, sizeof *mr);
}

int rfs_main_remote_is_url(const char *image)
{
    return image && (!strncmp(image, "http://", 7) || !strncmp(image, "https://", 8) ||
                     !strncmp(image, "s3://", 5));
}

#ifdef RFS_HAVE_REMOTE
/* "4M", "10G", "65536" -> bytes (K, M, G, T: powers of 1024). */
static int remote_size(const char *name, const char *v, uint64_t *out)
{
    char *end;
    unsigned shift = 0;
    *out = 0;
    if (!v)
        return 0;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    default: break;
    }
    if (errno || end == v || *v == '-' || *end || n == 0 || (shift && n > (UINT64_MAX >> shift))) {
        fprintf(stderr, "ransfs: bad size for -o %s: '%s'\n", name, v);
        return -1;
    }
    *out = (uint64_t)n << shift;
    return 0;
}

int rfs_main_remote_open(rfs_main_remote *mr, const char *url,
                         void (*log)(void *ctx, const char *line), void *log_ctx,
                         rfs_image **img, char **display)
{
    char why[768] = "";
    rfs_remote_opts o = {
        .url = url, .s3_endpoint = mr->s3_endpoint, .s3_region = mr->s3_region,
        .s3_anonymous = mr->s3_anonymous, .cache_dir = mr->cache_dir,
        .fetch_parallel = mr->fetch_parallel, .timeout = mr->timeout, .retries = mr->retries,
        .ca_file = mr->ca_file, .log = log, .log_ctx = log_ctx,
    };
    if (remote_size("cache_dir_size", mr->cache_dir_size, &o.cache_dir_size) ||
        remote_size("fetch_size", mr->fetch_size, &o.fetch_size))
        return -1;
    rfs_err err = rfs_remote_open(&mr->remote, &o, why, sizeof why);
    if (err) {
        char shown[1024];
        rfs_remote_url_display(url, shown, sizeof shown);
        fprintf(stderr, "ransfs: %s: %s\n", shown, why[0] ? why : rfs_strerror(err));
        return -1;
    }
    rfs_source src;
    rfs_remote_source(mr->remote, &src);
    err = rfs_image_open_source(img, &src, why, sizeof why);
    if (err) {
        fprintf(stderr, "ransfs: %s: %s\n", rfs_remote_display(mr->remote),
                why[0] ? why : rfs_strerror(err));
        return -1;
    }
    *display = strdup(rfs_remote_display(mr->remote));
    return *display ? 0 : -1;
}

void rfs_main_remote_start(rfs_main_remote *mr)
{
    if (mr->remote && rfs_remote_start(mr->remote) != 0)
        fprintf(stderr, "ransfs: %s: no read-ahead threads (reads fetch on demand only)\n",
                rfs_remote_display(mr->remote));
}

size_t rfs_main_remote_stats(void *ctx, char *buf, size_t cap)
{
    rfs_main_remote *mr = ctx;
    return mr->remote ? rfs_remote_stats_json(mr->remote, buf, cap) : 0;
}
#else
int rfs_main_remote_open(rfs_main_remote *mr, const char *url,
                         void (*log)(void *ctx, const char *line), void *log_ctx,
                         rfs_image **img, char **display)
{
    fprintf(stderr, "ransfs: %s: remote images are not built in (libcurl was not found at "
                    "build time)\n", strncmp(url, "s3://", 5) ? "http(s) URL" : "s3 URL");
    return -1;
}

size_t rfs_main_remote_stats(void *ctx, char *buf, size_t cap) { return 0; }
void rfs_main_remote_start(rfs_main_remote *mr) {}
#endif
