/*
 * fs_unit_locate - test helper: where does the unit holding byte OFFSET of
 * file PATH live in IMAGE?  Prints one line:
 *     UNIT IMAGE_OFFSET ENCODED_SIZE FILE_START FILE_LENGTH
 * where [FILE_START, FILE_START+FILE_LENGTH) is the file range the unit
 * decodes to.  The reader API gives the encoded bytes' address inside its
 * mapping, not their file offset, so the helper finds them in the file
 * (encoded units are long and effectively unique).  Exit 1 when OFFSET is in
 * a RAW extent or anything fails.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rfs_image.h"

static unsigned char *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long n;
    if (!f || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
        return NULL;
    buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *size = (size_t)n;
    return buf;
}

int main(int argc, char **argv)
{
    rfs_image *img;
    rfs_span sp;
    rfs_unit_src src;
    uint64_t ino, off;
    unsigned char *file, *hit;
    size_t size;
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
        rfs_image_unit_source(img, sp.unit, &src) != RFS_OK) {
        fprintf(stderr, "fs_unit_locate: %s offset %s is not in a coded unit\n", argv[2], argv[3]);
        return 1;
    }
    file = slurp(argv[1], &size);
    hit = file ? memmem(file, size, src.data, src.size) : NULL;
    if (!hit) {
        fprintf(stderr, "fs_unit_locate: unit bytes not found in the file\n");
        return 1;
    }
    printf("%llu %llu %u %llu %u\n", (unsigned long long)sp.unit,
           (unsigned long long)(hit - file), src.size, (unsigned long long)(off - sp.unit_off),
           sp.unit_size);
    free(file);
    rfs_image_close(img);
    return 0;
}
