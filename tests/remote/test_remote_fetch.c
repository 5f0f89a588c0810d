/*
 * test_remote_fetch.c - the remote source against a real HTTP server
 * (Debian's nginx, started here on a free loopback port with its own
 * config and pid file in a temporary dir), without FUSE, so that the
 * concurrent fetch path also runs under ThreadSanitizer (tests/hardening/
 * tsan.sh).  The image is packed here from tests/data/human32-mini; every
 * read is compared with the same image opened as a local file.
 *
 *  - many threads read random ranges at once, with the read-ahead threads
 *    running: right bytes, and no chunk fetched twice (single flight:
 *    misses <= chunks);
 *  - a reopen on the same cache dir makes one request (the pin) only;
 *  - the server stopped: EIO once the retries are spent, then one attempt
 *    per read while it stays down; started again: the same read succeeds
 *    (recovery) and the next outage gets the whole budget again;
 *  - the object replaced on the server: EIO for uncached bytes, never the
 *    new bytes; a missing object: the open fails naming HTTP 404.
 * Skips (77) when nginx is not installed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "rfs_image.h"
#include "rfs_pack.h"
#include "rfs_remote.h"

#define NGINX "/usr/sbin/nginx"
#define FETCH (64u << 10)

static char g_tmp[256], g_img[300], g_url[300];
static int g_port, g_port_fd = -1;
static pid_t g_nginx = -1;
static rfs_image *g_local;

/*
 * A loopback port for nginx, kept reserved for the whole test: a socket
 * bound to it with SO_REUSEADDR and never listening.  nginx binds its
 * listener with SO_REUSEADDR too, so it can share the port; while nginx is
 * down the port refuses connections (as a dead server's does) and no other
 * test running at the same time can be given it by bind(port 0).  Without
 * the reservation another test's server took the port during an outage
 * and the "restarted" nginx found it busy.
 */
static int reserve_port(int *fd)
{
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    assert_true(s >= 0);
    assert_int_equal(setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one), 0);
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &n), 0);
    *fd = s;
    return ntohs(a.sin_port);
}

static int port_answers(int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = connect(s, (struct sockaddr *)&a, sizeof a) == 0;
    close(s);
    return ok;
}

static void write_text(const char *path, const char *fmt, ...)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fclose(f);
}

static void nginx_start(void)
{
    char conf[300];
    snprintf(conf, sizeof conf, "%s/nginx.conf", g_tmp);
    write_text(conf,
               "daemon off; master_process off; pid %s/nginx.pid; error_log %s/error.log;\n"
               "events {}\nhttp { access_log off; client_body_temp_path %s/t1;\n"
               " proxy_temp_path %s/t2; fastcgi_temp_path %s/t3; uwsgi_temp_path %s/t4;\n"
               " scgi_temp_path %s/t5;\n server { listen 127.0.0.1:%d; root %s/srv; } }\n",
               g_tmp, g_tmp, g_tmp, g_tmp, g_tmp, g_tmp, g_tmp, g_port, g_tmp);
    g_nginx = fork();
    assert_true(g_nginx >= 0);
    if (g_nginx == 0) {
        execl(NGINX, NGINX, "-c", conf, "-p", g_tmp, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500 && !port_answers(g_port); i++)
        usleep(10000);
    assert_true(port_answers(g_port));
}

static void nginx_stop(void)
{
    if (g_nginx > 0) {
        kill(g_nginx, SIGTERM);
        waitpid(g_nginx, NULL, 0);
        g_nginx = -1;
    }
}

static int setup(void **state)
{
    char src[300], err[256], srv[300];
    if (access(NGINX, X_OK) != 0) {
        fprintf(stderr, "skip: %s not installed (Debian package nginx-light or nginx)\n", NGINX);
        exit(77);
    }
    snprintf(g_tmp, sizeof g_tmp, "/tmp/test_remote_fetch.XXXXXX");
    assert_non_null(mkdtemp(g_tmp));
    snprintf(srv, sizeof srv, "%s/srv", g_tmp);
    assert_int_equal(mkdir(srv, 0755), 0);
    snprintf(g_img, sizeof g_img, "%s/srv/m.rfs", g_tmp);
    snprintf(src, sizeof src, "%s/human32-mini", RFS_TEST_DATA);
    rfs_pack_opts o = {.source = src, .image = g_img, .tile_size = 64u << 10, .n_threads = 2,
                       .zstd_level = 3};
    rfs_pack_stats st;
    if (rfs_pack(&o, &st, err, sizeof err) != 0)
        fail_msg("rfs_pack: %s", err);
    assert_int_equal(rfs_image_open(&g_local, g_img, err, sizeof err), RFS_OK);
    g_port = reserve_port(&g_port_fd);
    snprintf(g_url, sizeof g_url, "http://127.0.0.1:%d/m.rfs", g_port);
    nginx_start();
    return 0;
}

static int teardown(void **state)
{
    char cmd[300];
    nginx_stop();
    close(g_port_fd);
    rfs_image_close(g_local);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static rfs_remote_opts opts(const char *cache)
{
    static char dir[400];
    snprintf(dir, sizeof dir, "%s/%s", g_tmp, cache);
    return (rfs_remote_opts){.url = g_url, .cache_dir = dir, .fetch_size = FETCH,
                             .fetch_parallel = 4, .timeout = 5, .retries = 2};
}

static rfs_image *open_remote(rfs_remote **r, const rfs_remote_opts *o)
{
    char why[512];
    rfs_image *img;
    if (rfs_remote_open(r, o, why, sizeof why) != RFS_OK)
        fail_msg("rfs_remote_open: %s", why);
    rfs_source src;
    rfs_remote_source(*r, &src);
    if (rfs_image_open_source(&img, &src, why, sizeof why) != RFS_OK)
        fail_msg("rfs_image_open_source: %s", why);
    return img;
}

/* The regular files of the image: inode numbers and sizes. */
static unsigned regular_files(uint64_t *ino, uint64_t *size, unsigned cap)
{
    rfs_image_summary sum;
    unsigned n = 0;
    rfs_image_get_summary(g_local, &sum);
    for (uint64_t i = 1; i <= sum.n_inodes && n < cap; i++) {
        rfs_stat st;
        assert_int_equal(rfs_image_stat(g_local, i, &st), RFS_OK);
        if (S_ISREG(st.mode) && st.size) {
            ino[n] = i;
            size[n++] = st.size;
        }
    }
    assert_true(n > 0);
    return n;
}

/* Read [off, off+len) of ino from img and from the local image: equal? */
static rfs_err read_compare(rfs_image *img, rfs_rctx *ctx, rfs_rctx *lctx, uint64_t ino,
                            uint64_t off, size_t len)
{
    uint8_t *a = malloc(len), *b = malloc(len);
    size_t ga = 0, gb = 0;
    rfs_err err = rfs_image_read(img, ctx, ino, off, len, a, &ga);
    if (err == RFS_OK) {
        assert_int_equal(rfs_image_read(g_local, lctx, ino, off, len, b, &gb), RFS_OK);
        assert_int_equal(ga, gb);
        assert_memory_equal(a, b, ga);
    }
    free(a);
    free(b);
    return err;
}

typedef struct reader {
    rfs_image *img;
    unsigned seed;
    int failures;
} reader;

static void *reader_main(void *arg)
{
    reader *rd = arg;
    uint64_t ino[16], size[16];
    unsigned n = regular_files(ino, size, 16);
    rfs_rctx *ctx = rfs_rctx_create(rd->img), *lctx = rfs_rctx_create(g_local);
    for (int k = 0; k < 200; k++) {
        unsigned f = (unsigned)rand_r(&rd->seed) % n;
        uint64_t off = (uint64_t)rand_r(&rd->seed) % size[f];
        size_t len = 1 + (size_t)rand_r(&rd->seed) % (300u << 10);
        if (read_compare(rd->img, ctx, lctx, ino[f], off, len) != RFS_OK)
            rd->failures++;
    }
    rfs_rctx_destroy(ctx);
    rfs_rctx_destroy(lctx);
    return NULL;
}

static void test_concurrent_then_warm(void **state)
{
    rfs_remote *r;
    rfs_remote_opts o = opts("cache-a");
    rfs_image *img = open_remote(&r, &o);
    assert_int_equal(rfs_remote_start(r), 0); /* read-ahead threads race the readers */
    rfs_image_summary sum;
    rfs_image_get_summary(img, &sum);
    const uint64_t chunks = (sum.image_bytes + FETCH - 1) / FETCH;
    enum { N = 8 };
    pthread_t th[N];
    reader rd[N];
    unsigned seed = (unsigned)time(NULL);
    printf("seed %u, %llu chunks\n", seed, (unsigned long long)chunks);
    for (int i = 0; i < N; i++) {
        rd[i] = (reader){img, seed + (unsigned)i * 7919u, 0};
        assert_int_equal(pthread_create(&th[i], NULL, reader_main, &rd[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(rd[i].failures, 0);
    }
    rfs_remote_stats st;
    rfs_remote_get_stats(r, &st);
    assert_true(st.cache_misses <= chunks); /* single flight: no chunk twice */
    assert_true(st.requests <= st.cache_misses + 1);
    assert_int_equal(st.errors, 0);
    /* everything, then a warm reopen: the pin is the only request */
    uint64_t ino[16], size[16];
    unsigned n = regular_files(ino, size, 16);
    rfs_rctx *ctx = rfs_rctx_create(img), *lctx = rfs_rctx_create(g_local);
    for (unsigned f = 0; f < n; f++)
        assert_int_equal(read_compare(img, ctx, lctx, ino[f], 0, size[f]), RFS_OK);
    rfs_rctx_destroy(ctx);
    rfs_image_close(img);
    rfs_remote_close(r);
    img = open_remote(&r, &o);
    ctx = rfs_rctx_create(img);
    for (unsigned f = 0; f < n; f++)
        assert_int_equal(read_compare(img, ctx, lctx, ino[f], 0, size[f]), RFS_OK);
    rfs_remote_get_stats(r, &st);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.cache_misses, 0);
    assert_true(st.cache_hits > 0);
    assert_true(st.cache_bytes >= sum.image_bytes);
    rfs_rctx_destroy(ctx);
    rfs_rctx_destroy(lctx);
    rfs_image_close(img);
    rfs_remote_close(r);
}

static void test_server_down_then_back(void **state)
{
    rfs_remote *r;
    rfs_remote_opts o = opts("cache-b");
    o.retries = 1;
    rfs_image *img = open_remote(&r, &o);
    uint64_t ino[16], size[16];
    unsigned n = regular_files(ino, size, 16);
    unsigned big = 0;
    for (unsigned f = 1; f < n; f++)
        big = size[f] > size[big] ? f : big;
    rfs_rctx *ctx = rfs_rctx_create(img), *lctx = rfs_rctx_create(g_local);
    nginx_stop();
    assert_int_equal(read_compare(img, ctx, lctx, ino[big], size[big] / 2, 4096), RFS_E_IO);
    rfs_remote_stats st;
    rfs_remote_get_stats(r, &st);
    assert_int_equal(st.retries, 1);
    assert_int_equal(st.errors, 2);
    /* Down now: the next read of other bytes makes one attempt, no retry. */
    assert_int_equal(read_compare(img, ctx, lctx, ino[big], size[big] / 4, 4096), RFS_E_IO);
    rfs_remote_get_stats(r, &st);
    assert_int_equal(st.retries, 1);
    assert_int_equal(st.errors, 3);
    nginx_start();
    assert_int_equal(read_compare(img, ctx, lctx, ino[big], size[big] / 2, 4096), RFS_OK);
    /* Up again: the next outage gets the whole budget again. */
    nginx_stop();
    assert_int_equal(read_compare(img, ctx, lctx, ino[big], size[big] / 4 * 3, 4096), RFS_E_IO);
    rfs_remote_get_stats(r, &st);
    assert_int_equal(st.retries, 2);
    assert_int_equal(st.errors, 5);
    nginx_start();
    assert_int_equal(read_compare(img, ctx, lctx, ino[big], 0, size[big]), RFS_OK);
    rfs_rctx_destroy(ctx);
    rfs_rctx_destroy(lctx);
    rfs_image_close(img);
    rfs_remote_close(r);
}

static void test_object_replaced(void **state)
{
    char why[512], path[400];
    rfs_remote *r;
    rfs_remote_opts o = opts("cache-c");
    rfs_image *img = open_remote(&r, &o);
    uint64_t ino[16], size[16];
    unsigned n = regular_files(ino, size, 16);
    unsigned big = 0;
    for (unsigned f = 1; f < n; f++)
        big = size[f] > size[big] ? f : big;
    /* a new object under the same name: same size, other bytes, other mtime */
    snprintf(path, sizeof path, "%s.new", g_img);
    FILE *in = fopen(g_img, "rb"), *out = fopen(path, "wb");
    assert_non_null(in);
    assert_non_null(out);
    int c;
    while ((c = fgetc(in)) != EOF)
        fputc(c ^ 0x55, out);
    fclose(in);
    fclose(out);
    struct timespec ts[2] = {{1000000000, 0}, {1000000000, 0}};
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
    char saved[420];
    snprintf(saved, sizeof saved, "%s.orig", g_img);
    assert_int_equal(rename(g_img, saved), 0);
    assert_int_equal(rename(path, g_img), 0);
    rfs_rctx *ctx = rfs_rctx_create(img), *lctx = rfs_rctx_create(g_local);
    assert_int_equal(read_compare(img, ctx, lctx, ino[big], size[big] / 3, 4096), RFS_E_IO);
    char json[512];
    rfs_remote_stats_json(r, json, sizeof json);
    assert_non_null(strstr(json, "\"remote_object_changed\":true"));
    rfs_rctx_destroy(ctx);
    rfs_rctx_destroy(lctx);
    rfs_image_close(img);
    rfs_remote_close(r);
    assert_int_equal(rename(saved, g_img), 0);
    /* no such object: the open names the status */
    rfs_remote_opts o2 = opts("cache-c");
    char url[320];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/none.rfs", g_port);
    o2.url = url;
    assert_int_equal(rfs_remote_open(&r, &o2, why, sizeof why), RFS_E_IO);
    assert_non_null(strstr(why, "HTTP 404"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_then_warm),
        cmocka_unit_test(test_server_down_then_back),
        cmocka_unit_test(test_object_replaced),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
