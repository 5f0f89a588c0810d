/*
 * fuzz_tile_decode.c - any byte string given to the tile decoder, on every
 * CPU path this machine has: no crash, no out-of-bounds access, and all
 * paths agree on the error code and, on success, on the bytes.
 *
 * Input: byte 0 selects whether a shared table is supplied for plane 1
 * (built from the next 64 bytes as counts); the rest is the tile.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rfs_tile.h"

#define MAX_TILE (1u << 18) /* fuzz builds cap sizes */

static const char *const paths[] = {"scalar", "avx2", "avx512"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static rfs_dec *dec;
    static rfs_table shared;
    static uint8_t out[3][MAX_TILE];
    if (!dec)
        dec = rfs_dec_create(MAX_TILE);
    if (size < 1 || !dec)
        return 0;
    rfs_table_set set = {{NULL, NULL, NULL, NULL}};
    if (data[0] & 1 && size >= 65) {
        uint64_t counts[256] = {0};
        for (unsigned i = 0; i < 64; i++)
            counts[data[1 + i]] += 1 + i;
        rfs_table_from_counts(&shared, counts);
        set.plane[1] = &shared;
        data += 64;
        size -= 64;
    }
    data++;
    size--;
    rfs_err first = RFS_OK;
    size_t first_len = 0;
    for (unsigned k = 0; k < 3; k++) {
        if (!rfs_cpu_supports(paths[k]))
            continue;
        rfs_dec_set_backend(dec, paths[k]);
        size_t len = 0;
        rfs_err err = rfs_tile_decode(dec, out[k], MAX_TILE, &len, data, size, &set);
        if (k == 0) {
            first = err;
            first_len = len;
        } else if (err != first || (err == RFS_OK && (len != first_len ||
                                                      memcmp(out[k], out[0], len)))) {
            abort(); /* a SIMD path disagrees with scalar */
        }
    }
    return 0;
}
