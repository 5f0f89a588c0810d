/*
 * fuzz_shared.h - the fuzz inputs' shared-table prefix, one reading of it
 * for the tile targets (fuzz_tile_decode, fuzz_tile_decode2).
 *
 * Byte 0 selects planes: bit 0 plane 1, bit 1 plane 3 (of the bits the
 * target allows in mask).  When any is selected and 64 more bytes follow,
 * those bytes, as counts (byte i adds 1 + i to its value's count), make
 * one table that every selected plane gets.  fuzz_take_shared consumes
 * byte 0 and, when used, the 64 bytes.
 */
#ifndef FUZZ_SHARED_H
#define FUZZ_SHARED_H

#include <stddef.h>
#include <stdint.h>

#include "rfs_tile.h"

static inline void fuzz_take_shared(const uint8_t **data, size_t *size, unsigned mask,
                                    rfs_table *tab, rfs_table_set *set)
{
    unsigned sel = (*data)[0] & mask;
    (*data)++, (*size)--;
    if (!sel || *size < 64)
        return;
    uint64_t counts[256] = {0};
    for (unsigned i = 0; i < 64; i++)
        counts[(*data)[i]] += 1 + i;
    /* never fails: every count is at least 1 */
    if (rfs_table_from_counts(tab, counts) == RFS_OK) {
        if (sel & 1)
            set->plane[1] = tab;
        if (sel & 2)
            set->plane[3] = tab;
    }
    *data += 64, *size -= 64;
}

#endif
