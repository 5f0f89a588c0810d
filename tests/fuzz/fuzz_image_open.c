/*
 * fuzz_image_open.c - any byte string as an image: rfs_image_open must
 * refuse it or give an image whose whole tree can be walked and read
 * (every unit decoded and checked) without a crash or out-of-bounds access.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "rfs_image.h"

#define MAX_READ (1u << 20)

/* Read every regular file of the image and touch every directory entry. */
static void walk(rfs_image *img, rfs_rctx *ctx, uint8_t *buf)
{
    rfs_image_summary sum;
    rfs_image_get_summary(img, &sum);
    for (uint64_t ino = 1; ino <= sum.n_inodes && ino < 100000; ino++) {
        rfs_stat st;
        if (rfs_image_stat(img, ino, &st) != RFS_OK)
            continue;
        uint64_t count = 0, child;
        const char *name;
        if (rfs_image_dir_count(img, ino, &count) == RFS_OK)
            for (uint64_t i = 0; i < count && i < 10000; i++)
                if (rfs_image_dir_entry(img, ino, i, &child, &name) == RFS_OK)
                    rfs_image_lookup(img, ino, name, &child);
        rfs_image_readlink(img, ino, &name);
        size_t got = 0;
        for (uint64_t off = 0; off < st.size && off < 8 * MAX_READ; off += MAX_READ)
            if (rfs_image_read(img, ctx, ino, off, MAX_READ, buf, &got) != RFS_OK)
                break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t *buf;
    if (!buf && !(buf = malloc(MAX_READ)))
        return 0;
    int fd = memfd_create("fuzz-image", 0);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) == (ssize_t)size) {
        char path[64], why[256];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        rfs_image *img = NULL;
        if (rfs_image_open(&img, path, why, sizeof(why)) == RFS_OK) {
            rfs_rctx *ctx = rfs_rctx_create(img);
            if (ctx)
                walk(img, ctx, buf);
            rfs_rctx_destroy(ctx);
            rfs_image_close(img);
        }
    }
    close(fd);
    return 0;
}
