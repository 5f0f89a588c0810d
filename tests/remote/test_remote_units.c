/*
 * test_remote_units.c - remote/ without a server: URL parsing, the S3
 * credential chain, the cache dir's chunk map, sharing and LRU eviction.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "rfs_cred.h"
#include "rfs_rcache.h"
#include "rfs_url.h"

static char g_tmp[256];

static int tmp_setup(void **state)
{
    snprintf(g_tmp, sizeof g_tmp, "/tmp/test_remote_units.XXXXXX");
    assert_non_null(mkdtemp(g_tmp));
    return 0;
}

static int tmp_teardown(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* ------------------------------------------------------------ URLs */

static void test_url_http(void **state)
{
    rfs_url u;
    char why[200];
    assert_int_equal(rfs_url_parse(&u, "http://127.0.0.1:8080/a/b.rfs", NULL, NULL, why,
                                   sizeof why), RFS_OK);
    assert_false(u.is_s3);
    assert_string_equal(u.fetch, "http://127.0.0.1:8080/a/b.rfs");
    assert_string_equal(u.display, "http://127.0.0.1:8080/a/b.rfs");
    rfs_url_free(&u);
    /* credentials and the query never reach display */
    assert_int_equal(rfs_url_parse(&u, "https://bob:s3cr3t@cdn.example/m.rfs?X-Sig=abc#f", NULL,
                                   NULL, why, sizeof why), RFS_OK);
    assert_string_equal(u.fetch, "https://bob:s3cr3t@cdn.example/m.rfs?X-Sig=abc#f");
    assert_string_equal(u.display, "https://cdn.example/m.rfs");
    rfs_url_free(&u);
}

static void test_url_s3(void **state)
{
    rfs_url u;
    char why[200];
    assert_int_equal(rfs_url_parse(&u, "s3://models/org/llama 3/w+1.rfs",
                                   "http://127.0.0.1:8333/", "eu-west-1", why, sizeof why),
                     RFS_E_ARG); /* a space in a URL */
    assert_int_equal(rfs_url_parse(&u, "s3://models/org/llama-3/w+1~x.rfs",
                                   "http://127.0.0.1:8333/", "eu-west-1", why, sizeof why),
                     RFS_OK);
    assert_true(u.is_s3);
    assert_string_equal(u.bucket, "models");
    assert_string_equal(u.key, "org/llama-3/w+1~x.rfs");
    assert_string_equal(u.fetch, "http://127.0.0.1:8333/models/org/llama-3/w%2B1~x.rfs");
    assert_string_equal(u.display, "s3://models/org/llama-3/w+1~x.rfs");
    rfs_url_free(&u);
    assert_int_equal(rfs_url_parse(&u, "s3://models/k.rfs", NULL, "eu-west-1", why, sizeof why),
                     RFS_OK);
    assert_string_equal(u.fetch, "https://s3.eu-west-1.amazonaws.com/models/k.rfs");
    rfs_url_free(&u);
}

static void test_url_bad(void **state)
{
    static const char *const bad[] = {
        "ftp://h/x", "http://", "http:///x", "http://host", "http://host/", "s3://",
        "s3://ab/k", "s3://Bucket/k", "s3://bucket", "s3://bucket/", "http://h/a\tb",
        "/local/path.rfs",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rfs_url u;
        char why[200] = "";
        assert_int_equal(rfs_url_parse(&u, bad[i], "http://e:1", NULL, why, sizeof why),
                         RFS_E_ARG);
        assert_true(why[0] != '\0');
        assert_null(u.fetch);
    }
    rfs_url u;
    char why[200];
    assert_int_equal(rfs_url_parse(&u, "s3://bucket/k", "ftp://e", NULL, why, sizeof why),
                     RFS_E_ARG);
    assert_true(rfs_url_is_remote("s3://b/k"));
    assert_false(rfs_url_is_remote("./s3://b/k"));
}

/* ------------------------------------------------------------ credentials */

static void clear_aws_env(void)
{
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_SHARED_CREDENTIALS_FILE");
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_cred_env_first(void **state)
{
    char path[300], why[300];
    rfs_cred c;
    clear_aws_env();
    snprintf(path, sizeof path, "%s/credentials", g_tmp);
    write_text(path, "[default]\naws_access_key_id = FILEKEY\naws_secret_access_key = FILESEC\n");
    setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
    setenv("AWS_ACCESS_KEY_ID", "ENVKEY", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "ENVSECRET", 1);
    setenv("AWS_SESSION_TOKEN", "ENVTOKEN", 1);
    assert_int_equal(rfs_cred_load(&c, why, sizeof why), RFS_OK);
    assert_string_equal(c.access_key, "ENVKEY");
    assert_string_equal(c.secret_key, "ENVSECRET");
    assert_string_equal(c.session_token, "ENVTOKEN");
    assert_string_equal(c.source, "environment");
    rfs_cred_free(&c);
    assert_null(c.secret_key);
    /* a half-set environment falls through to the file */
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
    assert_int_equal(rfs_cred_load(&c, why, sizeof why), RFS_OK);
    assert_string_equal(c.access_key, "FILEKEY");
    assert_string_equal(c.secret_key, "FILESEC");
    assert_null(c.session_token);
    rfs_cred_free(&c);
    clear_aws_env();
}

static void test_cred_file_profiles(void **state)
{
    char path[300], why[300] = "";
    rfs_cred c;
    clear_aws_env();
    snprintf(path, sizeof path, "%s/credentials2", g_tmp);
    write_text(path, "# comment\n[default]\naws_access_key_id=DK\naws_secret_access_key=DS\n\n"
                     "[profile seaweed]\r\n aws_access_key_id = SK \r\n"
                     "aws_secret_access_key = SS=with=equals\r\naws_session_token = ST\r\n"
                     "[broken]\naws_access_key_id = BK\n");
    setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
    setenv("AWS_PROFILE", "seaweed", 1);
    assert_int_equal(rfs_cred_load(&c, why, sizeof why), RFS_OK);
    assert_string_equal(c.access_key, "SK");
    assert_string_equal(c.secret_key, "SS=with=equals");
    assert_string_equal(c.session_token, "ST");
    rfs_cred_free(&c);
    /* a profile lacking its secret: named, the values never shown */
    setenv("AWS_PROFILE", "broken", 1);
    assert_int_equal(rfs_cred_load(&c, why, sizeof why), RFS_E_CORRUPT);
    assert_non_null(strstr(why, "[broken]"));
    assert_null(strstr(why, "BK"));
    setenv("AWS_PROFILE", "nope", 1);
    assert_int_equal(rfs_cred_load(&c, why, sizeof why), RFS_E_NOENT);
    assert_non_null(strstr(why, "no profile [nope]"));
    assert_null(strstr(why, "DS"));
    /* HOME's ~/.aws/credentials when no file is named */
    char home[300], aws[320], cred[340];
    snprintf(home, sizeof home, "%s/home", g_tmp);
    snprintf(aws, sizeof aws, "%s/.aws", home);
    snprintf(cred, sizeof cred, "%s/credentials", aws);
    assert_int_equal(mkdir(home, 0700), 0);
    assert_int_equal(mkdir(aws, 0700), 0);
    write_text(cred, "[default]\naws_access_key_id=HK\naws_secret_access_key=HS\n");
    char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    clear_aws_env();
    setenv("HOME", home, 1);
    assert_int_equal(rfs_cred_load(&c, why, sizeof why), RFS_OK);
    assert_string_equal(c.access_key, "HK");
    rfs_cred_free(&c);
    unlink(cred);
    assert_int_equal(rfs_cred_load(&c, why, sizeof why), RFS_E_NOENT);
    assert_non_null(strstr(why, "s3_anonymous"));
    if (old_home)
        setenv("HOME", old_home, 1);
    free(old_home);
}

/* ------------------------------------------------------------ cache dir */

#define CHUNK 4096u

static void fill(uint8_t *b, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(seed * 131u + i * 7u + (i >> 9));
}

static void test_cache_chunks(void **state)
{
    char dir[300], why[300];
    snprintf(dir, sizeof dir, "%s/cache1", g_tmp);
    rfs_rcache *a, *b;
    rfs_rcache_info info;
    const uint64_t size = 3 * CHUNK + 100;
    assert_int_equal(rfs_rcache_open(&a, dir, 1u << 30, "obj A", size, CHUNK, &info, why,
                                     sizeof why), RFS_OK);
    assert_int_equal(rfs_rcache_chunks(a), 4);
    for (unsigned i = 0; i < 4; i++)
        assert_false(rfs_rcache_present(a, i));
    uint8_t buf[2 * CHUNK];
    fill(buf, sizeof buf, 1);
    /* a body written but not marked (a process killed mid-write) stays absent */
    assert_int_equal(rfs_rcache_write(a, CHUNK, buf, CHUNK), RFS_OK);
    assert_false(rfs_rcache_present(a, 1));
    assert_int_equal(rfs_rcache_put(a, 2 * CHUNK, buf, CHUNK + 100), RFS_OK);
    assert_true(rfs_rcache_present(a, 2));
    assert_true(rfs_rcache_present(a, 3));
    assert_false(rfs_rcache_present(a, 4)); /* past the end */
    assert_memory_equal(rfs_rcache_base(a) + 2 * CHUNK, buf, CHUNK + 100);
    /* unaligned or past-the-end marks are refused */
    assert_int_equal(rfs_rcache_mark(a, 1, CHUNK), RFS_E_ARG);
    assert_int_equal(rfs_rcache_mark(a, 0, CHUNK + 1), RFS_E_ARG);
    assert_int_equal(rfs_rcache_put(a, 3 * CHUNK, buf, CHUNK), RFS_E_ARG);
    /* a second opener (another daemon) of the same identity shares it */
    assert_int_equal(rfs_rcache_open(&b, dir, 1u << 30, "obj A", size, CHUNK, &info, why,
                                     sizeof why), RFS_OK);
    assert_string_equal(rfs_rcache_path(a), rfs_rcache_path(b));
    assert_true(rfs_rcache_present(b, 2));
    assert_false(rfs_rcache_present(b, 1));
    assert_int_equal(rfs_rcache_put(b, 0, buf, CHUNK), RFS_OK);
    assert_true(rfs_rcache_present(a, 0));
    assert_memory_equal(rfs_rcache_base(a), buf, CHUNK);
    rfs_rcache_close(b);
    rfs_rcache_close(a);
    /* reopened later: still there; another identity is another entry */
    assert_int_equal(rfs_rcache_open(&a, dir, 1u << 30, "obj A", size, CHUNK, &info, why,
                                     sizeof why), RFS_OK);
    assert_true(rfs_rcache_present(a, 0) && rfs_rcache_present(a, 3));
    assert_int_equal(rfs_rcache_open(&b, dir, 1u << 30, "obj A, new ETag", size, CHUNK, &info,
                                     why, sizeof why), RFS_OK);
    assert_string_not_equal(rfs_rcache_path(a), rfs_rcache_path(b));
    assert_false(rfs_rcache_present(b, 0));
    rfs_rcache_close(b);
    rfs_rcache_close(a);
}

static void set_age(const char *objdir, time_t t)
{
    struct timeval tv[2] = {{t, 0}, {t, 0}};
    assert_int_equal(utimes(objdir, tv), 0);
}

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* LRU: objects not in use go, oldest first, until the dir fits; one in use stays. */
static void test_cache_evict(void **state)
{
    char dir[300], why[300], pa[600], pb[600], pc[600];
    snprintf(dir, sizeof dir, "%s/cache2", g_tmp);
    rfs_rcache *a, *b, *c, *d;
    rfs_rcache_info info;
    const uint64_t size = 64 * CHUNK; /* 256 KiB each, filled */
    uint8_t *buf = malloc(size);
    fill(buf, size, 2);
    const char *ids[3] = {"old", "in use", "newer"};
    rfs_rcache **objs[3] = {&a, &b, &c};
    char *paths[3] = {pa, pb, pc};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rfs_rcache_open(objs[i], dir, 1u << 30, ids[i], size, CHUNK, &info,
                                         why, sizeof why), RFS_OK);
        assert_int_equal(rfs_rcache_put(*objs[i], 0, buf, size), RFS_OK);
        snprintf(paths[i], 600, "%s", rfs_rcache_path(*objs[i]));
    }
    rfs_rcache_close(a);
    rfs_rcache_close(c);
    set_age(pa, 1000000000);
    set_age(pb, 1000000100); /* the oldest but one, yet in use */
    set_age(pc, 1000000200);
    /* room for two objects: the oldest unused one goes */
    assert_int_equal(rfs_rcache_open(&d, dir, 2 * size + size / 2, "fresh", size, CHUNK, &info,
                                     why, sizeof why), RFS_OK);
    assert_int_equal(info.evicted, 1);
    assert_false(exists(pa));
    assert_true(exists(pb) && exists(pc));
    rfs_rcache_close(d);
    /* room for none: everything not in use goes, b stays */
    assert_int_equal(rfs_rcache_open(&d, dir, 1, "fresh", size, CHUNK, &info, why, sizeof why),
                     RFS_OK);
    assert_true(exists(pb));
    assert_false(exists(pc));
    assert_true(exists(rfs_rcache_path(d))); /* never the opener itself */
    assert_true(rfs_rcache_present(b, 63));
    rfs_rcache_close(d);
    rfs_rcache_close(b);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_http),
        cmocka_unit_test(test_url_s3),
        cmocka_unit_test(test_url_bad),
        cmocka_unit_test(test_cred_env_first),
        cmocka_unit_test(test_cred_file_profiles),
        cmocka_unit_test(test_cache_chunks),
        cmocka_unit_test(test_cache_evict),
    };
    return cmocka_run_group_tests(tests, tmp_setup, tmp_teardown);
}
