/*
 * fuzz_image_open.c - any byte string as an image: rfs_image_open must
 * refuse it or give an image whose whole tree can be walked and read
 * (every unit decoded and checked) without a crash or out-of-bounds access,
 * and whose units decode as pairs exactly as they do alone.
 *
 * Input: byte 0 bit 0 set = "reseal": recompute the metadata section and
 * superblock checksums after mutation, so the fuzzer reaches the reader's
 * structural cross-checks instead of stopping at a checksum (as the
 * corruption sweep's hd_reseal does; for a TRAILER image, the superblock
 * at the end).  The rest is the image.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <xxhash.h>

#include "rfs_image.h"
#include "rfs_image_format.h"

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
        rfs_image_dir_parent(img, ino, &child);
        size_t got = 0;
        for (uint64_t off = 0; off < st.size && off < 8 * MAX_READ; off += MAX_READ)
            if (rfs_image_read(img, ctx, ino, off, MAX_READ, buf, &got) != RFS_OK)
                break;
    }
}

/* Decode neighbouring units as pairs (rfs_image_unit_decode2, as the
 * daemon's batches and ransfs-fsck do): each must get exactly what it gets
 * alone (rfs_image_unit_decode). */
static void pairs(rfs_image *img, rfs_rctx *ctx)
{
    static uint8_t want[2][MAX_READ], got[2][MAX_READ];
    rfs_image_summary sum;
    rfs_image_get_summary(img, &sum);
    for (uint64_t u = 0; u + 1 < sum.n_units && u < 64; u += 2) {
        rfs_unit_io io[2];
        rfs_err err[2];
        size_t len[2];
        for (unsigned j = 0; j < 2; j++) {
            len[j] = 0;
            err[j] = rfs_image_unit_decode(img, ctx, u + j, want[j], MAX_READ, &len[j]);
            io[j] = (rfs_unit_io){.unit = u + j, .dst = got[j], .dst_cap = MAX_READ};
        }
        rfs_err r = rfs_image_unit_decode2(img, ctx, io);
        if (r != (err[0] != RFS_OK ? err[0] : err[1]))
            abort(); /* the pair's result is not the first failing unit's */
        for (unsigned j = 0; j < 2; j++)
            if (io[j].err != err[j] || (err[j] == RFS_OK && (io[j].dst_size != len[j] ||
                                                             memcmp(got[j], want[j], len[j]))))
                abort(); /* a unit of the pair decodes otherwise than alone */
    }
}

/* Make every section checksum and the superblock checksum match.  When
 * the stub at offset 0 says TRAILER, the superblock is the last
 * RFS_IMG_SB_SIZE bytes (docs/format.md 2.1.3) and the stub is left as is. */
static void reseal(uint8_t *img, size_t size)
{
    if (size < RFS_IMG_SB_SIZE)
        return;
    uint8_t *sb = img;
    if ((rfs_ld32(img + 12) & RFS_IMG_F_TRAILER) && size >= 2 * RFS_IMG_SB_SIZE)
        sb = img + size - RFS_IMG_SB_SIZE;
    for (unsigned s = 0; s < RFS_SECT_COUNT; s++) {
        uint8_t *e = sb + RFS_IMG_SECT_TABLE_OFF + s * RFS_IMG_SECT_ENTRY_SIZE;
        uint64_t off = rfs_ld64(e), len = rfs_ld64(e + 8);
        if (off <= size && len <= size - off)
            rfs_st64(e + 24, XXH3_64bits(img + off, len));
    }
    rfs_sb_seal(sb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t *buf;
    if (!buf && !(buf = malloc(MAX_READ)))
        return 0;
    if (size < 1)
        return 0;
    int resealed = data[0] & 1;
    uint8_t *img = malloc(size);
    int fd = img ? memfd_create("fuzz-image", 0) : -1;
    if (fd < 0) {
        free(img);
        return 0;
    }
    memcpy(img, data + 1, --size);
    if (resealed)
        reseal(img, size);
    if (write(fd, img, size) == (ssize_t)size) {
        char path[64], why[256];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        rfs_image *img = NULL;
        if (rfs_image_open(&img, path, why, sizeof(why)) == RFS_OK) {
            rfs_rctx *ctx = rfs_rctx_create(img);
            if (ctx) {
                walk(img, ctx, buf);
                pairs(img, ctx);
            }
            rfs_rctx_destroy(ctx);
            rfs_image_close(img);
        }
    }
    close(fd);
    free(img);
    return 0;
}
