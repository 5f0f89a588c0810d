/*
 * hd_reseal - test helper for the corruption sweep: recompute the XXH3-64
 * of every metadata section and of the superblock of IMAGE in place, so a
 * byte flipped in metadata gets past the checksums and reaches the
 * reader's structural cross-checks (docs/format.md 2.1).  Sections whose
 * table entry points outside the file are left alone.
 *   hd_reseal IMAGE
 * Exit 0 on success, 1 on an I/O error or a file shorter than a superblock.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>

#include "rfs_image_format.h"

static unsigned char *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long n;
    if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)) && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    } else if (buf) {
        *size = (size_t)n;
    }
    if (f)
        fclose(f);
    return buf;
}

int main(int argc, char **argv)
{
    size_t size = 0;
    unsigned char *img;
    FILE *f;
    if (argc != 2) {
        fputs("usage: hd_reseal IMAGE\n", stderr);
        return 2;
    }
    if (!(img = slurp(argv[1], &size)) || size < RFS_IMG_SB_SIZE) {
        fprintf(stderr, "hd_reseal: %s: cannot read a superblock\n", argv[1]);
        return 1;
    }
    for (unsigned s = 0; s < RFS_SECT_COUNT; s++) {
        unsigned char *e = img + RFS_IMG_SECT_TABLE_OFF + s * RFS_IMG_SECT_ENTRY_SIZE;
        uint64_t off = rfs_ld64(e), len = rfs_ld64(e + 8);
        if (off <= size && len <= size - off)
            rfs_st64(e + 24, XXH3_64bits(img + off, len));
    }
    rfs_st64(img + RFS_IMG_SB_CSUM_OFF, XXH3_64bits(img, RFS_IMG_SB_CSUM_OFF));
    if (!(f = fopen(argv[1], "r+b")) || fwrite(img, 1, RFS_IMG_SB_SIZE, f) != RFS_IMG_SB_SIZE ||
        fclose(f) != 0) {
        fprintf(stderr, "hd_reseal: %s: cannot write the superblock\n", argv[1]);
        return 1;
    }
    free(img);
    return 0;
}
