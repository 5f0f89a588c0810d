/*
 * fuzz_tile_roundtrip.c - encode arbitrary data, decode it on every CPU
 * path, compare with the input.  Byte 0 picks width and transform, raw
 * planes (bit 3) and RANS_CTX allowed (bit 4); the rest is the tile's
 * elements (trimmed to a whole number of elements).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rfs_tile.h"

#define MAX_TILE (1u << 18)

#define MAX_PATHS 8 /* at least rfs_dec_backend_names()'s count */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static rfs_enc *enc;
    static rfs_dec *dec;
    static uint8_t coded[MAX_TILE + 64], out[MAX_TILE];
    if (!enc) {
        enc = rfs_enc_create(MAX_TILE);
        dec = rfs_dec_create(MAX_TILE);
    }
    if (size < 1 || !enc || !dec)
        return 0;
    unsigned w = 1u << (data[0] % 3);
    rfs_transform xf = (w > 1 && (data[0] & 4)) ? RFS_XF_ROT1 : RFS_XF_NONE;
    data++;
    size--;
    if (size > MAX_TILE)
        size = MAX_TILE;
    size -= size % w;
    rfs_tile_params p = {.width = w, .transform = xf, .raw_only = (data[-1] & 8) != 0,
                         .ctx = (data[-1] & 16) != 0};
    size_t csize = 0;
    if (rfs_tile_encode(enc, coded, sizeof(coded), &csize, data, size, &p) != RFS_OK)
        abort();
    const char *const *paths = rfs_dec_backend_names();
    for (unsigned k = 0; k < MAX_PATHS && paths[k]; k++) {
        if (!rfs_cpu_supports(paths[k]))
            continue;
        size_t len = 0;
        rfs_dec_set_backend(dec, paths[k]);
        if (rfs_tile_decode(dec, out, sizeof(out), &len, coded, csize, NULL) != RFS_OK ||
            len != size || (size && memcmp(out, data, size)))
            abort();
    }
    return 0;
}
