/*
 * test_remote_source.c - the codec's byte-source seam (rfs_image_open_source).
 *
 * The golden images (a plain one and a TRAILER one) are opened through a
 * source whose mapping starts out poisoned (0x5a everywhere); its ensure
 * hook copies in the real bytes of exactly the range asked for.  A reader
 * that touched a byte it had not ensured would see poison: a checksum
 * failure or wrong bytes.  Every inode is read back and compared with the
 * same image opened as a local file; the open must ask for at most three
 * ranges (superblock, trailer, metadata); a failing ensure is an error, at
 * open and at read, and a later good ensure recovers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "rfs_image.h"
#include "rfs_image_info.h"
#include "testutil.h"

typedef struct poisoned {
    uint8_t *real, *map;
    size_t size;
    unsigned calls;
    int fail; /* ensure fails while set */
} poisoned;

static rfs_err poisoned_ensure(void *ctx, uint64_t off, uint64_t len)
{
    poisoned *p = ctx;
    assert_true(off <= p->size && len <= p->size - off);
    p->calls++;
    if (p->fail)
        return RFS_E_IO;
    memcpy(p->map + off, p->real + off, len);
    return RFS_OK;
}

static void poisoned_init(poisoned *p, const char *path, rfs_source *src)
{
    memset(p, 0, sizeof *p);
    p->real = tu_must_read_file(path, &p->size);
    p->map = malloc(p->size);
    assert_non_null(p->map);
    memset(p->map, 0x5a, p->size);
    *src = (rfs_source){p, p->size, p->map, -1, poisoned_ensure};
}

static void poisoned_free(poisoned *p)
{
    free(p->real);
    free(p->map);
}

/* Every regular file of a and b reads back the same. */
static void compare_images(const rfs_image *a, const rfs_image *b)
{
    rfs_image_summary sa, sb;
    rfs_image_get_summary(a, &sa);
    rfs_image_get_summary(b, &sb);
    assert_int_equal(sa.n_inodes, sb.n_inodes);
    rfs_rctx *ca = rfs_rctx_create(a), *cb = rfs_rctx_create(b);
    assert_non_null(ca);
    assert_non_null(cb);
    unsigned files = 0;
    for (uint64_t ino = 1; ino <= sa.n_inodes; ino++) {
        rfs_stat st;
        assert_int_equal(rfs_image_stat(b, ino, &st), RFS_OK);
        if (!S_ISREG(st.mode))
            continue;
        uint8_t *ba = malloc(st.size + 1), *bb = malloc(st.size + 1);
        size_t ga = 0, gb = 0;
        assert_int_equal(rfs_image_read(a, ca, ino, 0, st.size, ba, &ga), RFS_OK);
        assert_int_equal(rfs_image_read(b, cb, ino, 0, st.size, bb, &gb), RFS_OK);
        assert_int_equal(ga, st.size);
        assert_int_equal(gb, st.size);
        assert_memory_equal(ba, bb, st.size);
        free(ba);
        free(bb);
        files++;
    }
    assert_true(files > 0);
    rfs_rctx_destroy(ca);
    rfs_rctx_destroy(cb);
}

static void check_image(const char *name)
{
    char path[512], why[256];
    snprintf(path, sizeof path, "%s/golden/%s", RFS_TEST_DATA, name);
    poisoned p;
    rfs_source src;
    poisoned_init(&p, path, &src);
    rfs_image *local, *img;
    assert_int_equal(rfs_image_open(&local, path, why, sizeof why), RFS_OK);
    assert_false(rfs_image_is_sourced(local));
    rfs_err err = rfs_image_open_source(&img, &src, why, sizeof why);
    if (err)
        fail_msg("%s: %s", name, why);
    /* superblock; for a TRAILER image the trailer; then all sections */
    assert_true(p.calls >= 2 && p.calls <= 3);
    assert_true(rfs_image_is_sourced(img));
    assert_int_equal(rfs_image_fd(img), -1);
    compare_images(local, img);
    rfs_image_close(img);
    rfs_image_close(local);
    poisoned_free(&p);
}

static void test_plain_image(void **state) { check_image("tree_v1.img"); }
static void test_trailer_image(void **state) { check_image("tree_stream.img"); }
static void test_hardlink_image(void **state) { check_image("tree_hardlinks.img"); }

/* An ensure failure at open is the open's error, with the range named. */
static void test_open_fails(void **state)
{
    char path[512], why[256];
    snprintf(path, sizeof path, "%s/golden/tree_v1.img", RFS_TEST_DATA);
    poisoned p;
    rfs_source src;
    poisoned_init(&p, path, &src);
    p.fail = 1;
    rfs_image *img = (rfs_image *)1;
    assert_int_equal(rfs_image_open_source(&img, &src, why, sizeof why), RFS_E_IO);
    assert_null(img);
    assert_non_null(strstr(why, "cannot read image bytes [0, +"));
    poisoned_free(&p);
}

/* A read whose bytes cannot be fetched fails; once they can, it succeeds. */
static void test_read_fails_then_recovers(void **state)
{
    char path[512], why[256];
    snprintf(path, sizeof path, "%s/golden/tree_v1.img", RFS_TEST_DATA);
    poisoned p;
    rfs_source src;
    poisoned_init(&p, path, &src);
    rfs_image *img, *local;
    assert_int_equal(rfs_image_open_source(&img, &src, why, sizeof why), RFS_OK);
    assert_int_equal(rfs_image_open(&local, path, why, sizeof why), RFS_OK);
    uint64_t ino;
    assert_int_equal(rfs_image_lookup_path(img, "model.safetensors", &ino), RFS_OK);
    rfs_rctx *ctx = rfs_rctx_create(img);
    uint8_t buf[16];
    size_t got = 0;
    p.fail = 1;
    assert_int_equal(rfs_image_read(img, ctx, ino, 0, sizeof buf, buf, &got), RFS_E_IO);
    p.fail = 0;
    assert_int_equal(rfs_image_read(img, ctx, ino, 0, sizeof buf, buf, &got), RFS_OK);
    assert_int_equal(got, sizeof buf);
    rfs_rctx_destroy(ctx);
    compare_images(local, img);
    rfs_image_close(img);
    rfs_image_close(local);
    poisoned_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_image),
        cmocka_unit_test(test_trailer_image),
        cmocka_unit_test(test_hardlink_image),
        cmocka_unit_test(test_open_fails),
        cmocka_unit_test(test_read_fails_then_recovers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
