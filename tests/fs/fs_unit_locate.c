/*
 * fs_unit_locate - test helper: where does the unit holding byte OFFSET of
 * file PATH live in IMAGE?  Prints one line:
 *     UNIT IMAGE_OFFSET ENCODED_SIZE FILE_START FILE_LENGTH
 * where [FILE_START, FILE_START+FILE_LENGTH) is the file range the unit
 * decodes to and IMAGE_OFFSET is the file offset of its encoded bytes
 * (rfs_image_unit_offset).  Exit 1 when OFFSET is in a RAW extent or
 * anything fails.
 */
#include <stdio.h>
#include <stdlib.h>

#include "rfs_image.h"
#include "rfs_image_info.h"

int main(int argc, char **argv)
{
    rfs_image *img;
    rfs_span sp;
    rfs_unit_src src;
    uint64_t ino, off, at;
    char why[256] = "";
    if (argc != 4) {
        fprintf(stderr, "usage: fs_unit_locate IMAGE PATH OFFSET\n");
        return 2;
    }
    off = strtoull(argv[3], NULL, 0);
    if (rfs_image_open(&img, argv[1], why, sizeof(why)) != RFS_OK) {
        fprintf(stderr, "fs_unit_locate: %s: %s\n", argv[1], why);
        return 1;
    }
    if (rfs_image_lookup_path(img, argv[2], &ino) != RFS_OK ||
        rfs_image_map(img, ino, off, &sp) != RFS_OK || sp.is_raw ||
        rfs_image_unit_source(img, sp.unit, &src) != RFS_OK ||
        rfs_image_unit_offset(img, sp.unit, &at) != RFS_OK) {
        fprintf(stderr, "fs_unit_locate: %s offset %s is not in a coded unit\n", argv[2], argv[3]);
        rfs_image_close(img);
        return 1;
    }
    printf("%llu %llu %u %llu %u\n", (unsigned long long)sp.unit, (unsigned long long)at,
           src.size, (unsigned long long)(off - sp.unit_off), sp.unit_size);
    rfs_image_close(img);
    return 0;
}
