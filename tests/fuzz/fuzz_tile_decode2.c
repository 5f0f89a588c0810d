/*
 * fuzz_tile_decode2.c - any two byte strings given to the two-tile decoder
 * (rfs_tile_decode2), on every CPU path this machine has: no crash, no
 * out-of-bounds access, and each tile gets exactly the error and bytes
 * that decoding it alone on the scalar path gives.
 *
 * Why a target of its own: where both tiles have only their top plane
 * rANS-coded, the AVX-512 VBMI path decodes the two in lockstep
 * (vbmi_rans_top2), a loop that single-tile decodes never reach, and the
 * daemon's batches, ransfs-fsck and ransfs_read_tensors all decode pairs.
 *
 * Input: the shared-table prefix of fuzz_shared.h (planes 1 and 3); then
 * 3 bytes, the first tile's length (little-endian, cut to what is left);
 * the first tile; the second tile is the rest.  Each tile is copied to a heap buffer of its exact size, so
 * that ASan catches a read past either tile's end.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_shared.h"
#include "rfs_tile.h"

#define MAX_TILE (1u << 18) /* fuzz builds cap sizes */

/* The two tiles of the input after the shared-table part: each in a heap
 * buffer of its exact size (the caller frees them); 0 when too short or
 * out of memory. */
static int take_tiles(const uint8_t *data, size_t size, uint8_t *tile[2], size_t len[2])
{
    if (size < 3)
        return 0;
    size_t la = (size_t)data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16;
    data += 3, size -= 3;
    len[0] = la < size ? la : size;
    len[1] = size - len[0];
    for (unsigned j = 0; j < 2; j++) {
        tile[j] = malloc(len[j] ? len[j] : 1);
        if (tile[j])
            memcpy(tile[j], data + (j ? len[0] : 0), len[j]);
    }
    return tile[0] && tile[1];
}

/* What one tile gives alone on the scalar path. */
typedef struct alone {
    rfs_err err;
    size_t len;
    uint8_t out[MAX_TILE];
} alone;

/* Abort unless the pair decoded on dec's backend gives each tile what it
 * gives alone, and the first failing tile's error as the pair's. */
static void check_pair(rfs_dec *dec, uint8_t *const tile[2], const size_t len[2],
                       const rfs_table_set *set, const alone want[2])
{
    static uint8_t got[2][MAX_TILE];
    rfs_tile_io io[2];
    for (unsigned j = 0; j < 2; j++)
        io[j] = (rfs_tile_io){.dst = got[j], .dst_cap = MAX_TILE, .src = tile[j],
                              .src_size = len[j], .shared = set};
    rfs_err err = rfs_tile_decode2(dec, io);
    if (err != (want[0].err != RFS_OK ? want[0].err : want[1].err))
        abort(); /* the pair's result is not the first failing tile's */
    for (unsigned j = 0; j < 2; j++)
        if (io[j].err != want[j].err ||
            (io[j].err == RFS_OK &&
             (io[j].dst_size != want[j].len || memcmp(got[j], want[j].out, want[j].len))))
            abort(); /* a tile of the pair decodes otherwise than alone */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static rfs_dec *dec;
    static rfs_table shared;
    static alone want[2];
    if (!dec)
        dec = rfs_dec_create(MAX_TILE);
    if (size < 1 || !dec)
        return 0;
    rfs_table_set set = {{NULL, NULL, NULL, NULL}};
    fuzz_take_shared(&data, &size, 3, &shared, &set);
    uint8_t *tile[2] = {NULL, NULL};
    size_t len[2];
    if (take_tiles(data, size, tile, len)) {
        rfs_dec_set_backend(dec, "scalar");
        for (unsigned j = 0; j < 2; j++) {
            want[j].len = 0;
            want[j].err = rfs_tile_decode(dec, want[j].out, MAX_TILE, &want[j].len, tile[j],
                                          len[j], &set);
        }
        const char *const *paths = rfs_dec_backend_names();
        for (unsigned k = 0; paths[k]; k++)
            if (rfs_cpu_supports(paths[k])) {
                rfs_dec_set_backend(dec, paths[k]);
                check_pair(dec, tile, len, &set, want);
            }
    }
    free(tile[0]), free(tile[1]);
    return 0;
}
