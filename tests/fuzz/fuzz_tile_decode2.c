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
 * Input: byte 0 selects whether a shared table is supplied (bit 0: for
 * plane 1, bit 1: for plane 3; built from the next 64 bytes as counts, as
 * fuzz_tile_decode does); then 3 bytes, the first tile's length
 * (little-endian, cut to what is left); the first tile; the second tile is
 * the rest.  Each tile is copied to a heap buffer of its exact size, so
 * that ASan catches a read past either tile's end.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rfs_tile.h"

#define MAX_TILE (1u << 18) /* fuzz builds cap sizes */

/* The shared table set selected by data[0] (consuming its 64 bytes). */
static void take_shared(const uint8_t **data, size_t *size, rfs_table *tab, rfs_table_set *set)
{
    uint8_t sel = (*data)[0];
    (*data)++, (*size)--;
    if (!(sel & 3) || *size < 64)
        return;
    uint64_t counts[256] = {0};
    for (unsigned i = 0; i < 64; i++)
        counts[(*data)[i]] += 1 + i;
    if (rfs_table_from_counts(tab, counts) == RFS_OK) {
        if (sel & 1)
            set->plane[1] = tab;
        if (sel & 2)
            set->plane[3] = tab;
    }
    *data += 64, *size -= 64;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static rfs_dec *dec;
    static rfs_table shared;
    static uint8_t want[2][MAX_TILE], got[2][MAX_TILE];
    if (!dec)
        dec = rfs_dec_create(MAX_TILE);
    if (size < 4 || !dec)
        return 0;
    rfs_table_set set = {{NULL, NULL, NULL, NULL}};
    take_shared(&data, &size, &shared, &set);
    if (size < 3)
        return 0;
    size_t la = (size_t)data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16;
    data += 3, size -= 3;
    if (la > size)
        la = size;
    const size_t len[2] = {la, size - la};
    uint8_t *tile[2] = {malloc(len[0] ? len[0] : 1), malloc(len[1] ? len[1] : 1)};
    if (!tile[0] || !tile[1]) {
        free(tile[0]), free(tile[1]);
        return 0;
    }
    memcpy(tile[0], data, len[0]);
    memcpy(tile[1], data + len[0], len[1]);

    /* what each tile gives alone, on the scalar path */
    rfs_err want_err[2];
    size_t want_len[2];
    rfs_dec_set_backend(dec, "scalar");
    for (unsigned j = 0; j < 2; j++) {
        want_len[j] = 0;
        want_err[j] = rfs_tile_decode(dec, want[j], MAX_TILE, &want_len[j], tile[j], len[j], &set);
    }
    const char *const *paths = rfs_dec_backend_names();
    for (unsigned k = 0; paths[k]; k++) {
        if (!rfs_cpu_supports(paths[k]))
            continue;
        rfs_dec_set_backend(dec, paths[k]);
        rfs_tile_io io[2];
        for (unsigned j = 0; j < 2; j++)
            io[j] = (rfs_tile_io){.dst = got[j], .dst_cap = MAX_TILE, .src = tile[j],
                                  .src_size = len[j], .shared = &set};
        rfs_err err = rfs_tile_decode2(dec, io);
        if (err != (want_err[0] != RFS_OK ? want_err[0] : want_err[1]))
            abort(); /* the pair's result is not the first failing tile's */
        for (unsigned j = 0; j < 2; j++)
            if (io[j].err != want_err[j] ||
                (io[j].err == RFS_OK &&
                 (io[j].dst_size != want_len[j] || memcmp(got[j], want[j], want_len[j]))))
                abort(); /* a tile of the pair decodes otherwise than alone */
    }
    free(tile[0]), free(tile[1]);
    return 0;
}
