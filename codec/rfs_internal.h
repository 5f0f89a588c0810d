/*
 * rfs_internal.h - internal helpers shared by the codec's .c files:
 * little-endian load/store and the tile header layout.  Not public API.
 */
#ifndef RFS_INTERNAL_H
#define RFS_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "rfs_tile.h"

static inline uint16_t rfs_ld16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}

static inline uint32_t rfs_ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t rfs_ld64(const uint8_t *p)
{
    return (uint64_t)rfs_ld32(p) | (uint64_t)rfs_ld32(p + 4) << 32;
}

static inline void rfs_st16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void rfs_st32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void rfs_st64(uint8_t *p, uint64_t v)
{
    rfs_st32(p, (uint32_t)v);
    rfs_st32(p + 4, (uint32_t)(v >> 32));
}

/* Header size of a tile of width w: fixed part plus one descriptor per plane. */
static inline size_t rfs_tile_hdr_size(unsigned w)
{
    return RFS_TILE_HDR_SIZE + (size_t)w * RFS_PLANE_DESC_SIZE;
}

/* Fill t->start[] and the decode lookup t->dec[] from t->freq[], whose
 * sum must be 2^12 (a table checked by rfs_table_parse_freq or built by
 * rfs_table_from_counts). */
void rfs_table_build_lookup(rfs_table *t);

/* 1 when (width, transform) is a combination format v1 allows. */
static inline int rfs_width_xf_valid(unsigned w, unsigned xf)
{
    if (w != 1 && w != 2 && w != 4)
        return 0;
    return xf == RFS_XF_NONE || (xf == RFS_XF_ROT1 && w >= 2);
}

/* Transform one element (held in the low 8w bits of v). */
static inline uint32_t rfs_xf_apply(uint32_t v, unsigned w, rfs_transform xf)
{
    if (xf != RFS_XF_ROT1)
        return v;
    if (w == 2)
        return ((v << 1) | (v >> 15)) & 0xffffu;
    return (v << 1) | (v >> 31);
}

static inline uint32_t rfs_xf_undo(uint32_t t, unsigned w, rfs_transform xf)
{
    if (xf != RFS_XF_ROT1)
        return t;
    if (w == 2)
        return ((t >> 1) | (t << 15)) & 0xffffu;
    return (t >> 1) | (t << 31);
}

/* Load element i of width w (little-endian) as a 32-bit value. */
static inline uint32_t rfs_ld_elem(const uint8_t *src, size_t i, unsigned w)
{
    const uint8_t *p = src + i * w;
    if (w == 1)
        return p[0];
    if (w == 2)
        return rfs_ld16(p);
    return rfs_ld32(p);
}

#endif
