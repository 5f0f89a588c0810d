/*
 * rfs_tile_common.c - error strings and the one parser of tile headers and
 * plane descriptors (the CPU decoder, the GPU planner and the tools use it).
 */
#include <string.h>

#include "rfs_internal.h"
#include "rfs_tile.h"

const char *rfs_strerror(rfs_err err)
{
    switch (err) {
    case RFS_OK: return "success";
    case RFS_E_NOMEM: return "out of memory";
    case RFS_E_ARG: return "invalid argument from the caller";
    case RFS_E_TRUNCATED: return "truncated input";
    case RFS_E_HEADER: return "bad tile header";
    case RFS_E_TABLE: return "bad frequency table";
    case RFS_E_STATE: return "rANS initial state out of range";
    case RFS_E_OVERRUN: return "rANS stream overrun";
    case RFS_E_TRAILING: return "trailing garbage after stream";
    case RFS_E_FINAL_STATE: return "rANS final state mismatch";
    case RFS_E_DST_SMALL: return "destination buffer too small";
    case RFS_E_NO_SHARED: return "tile needs a shared table that is missing";
    case RFS_E_TOO_BIG: return "tile larger than the context allows";
    case RFS_E_IO: return "I/O error";
    case RFS_E_MAGIC: return "not a ransfs image (bad magic)";
    case RFS_E_VERSION: return "unsupported image version or feature";
    case RFS_E_CORRUPT: return "image metadata is inconsistent";
    case RFS_E_CHECKSUM: return "checksum mismatch";
    case RFS_E_NOENT: return "no such file or directory";
    case RFS_E_NOTDIR: return "not a directory";
    case RFS_E_ISDIR: return "is a directory";
    case RFS_E_INVAL: return "operation does not apply to this inode";
    case RFS_E_ZSTD: return "zstd block failed to decode";
    case RFS_E_GPU: return "no usable GPU, or a CUDA call failed";
    }
    return "unknown error";
}

rfs_err rfs_tile_info(const uint8_t *src, size_t src_size, unsigned *width, uint32_t *n_elems,
                      rfs_transform *xf)
{
    if (src_size < RFS_TILE_HDR_SIZE)
        return RFS_E_TRUNCATED;
    if (!rfs_width_xf_valid(src[0], src[1]) || src[2] != RFS_PROB_BITS || src[3] != 0)
        return RFS_E_HEADER;
    *width = src[0];
    *xf = (rfs_transform)src[1];
    *n_elems = rfs_ld32(src + 4);
    return RFS_OK;
}

/* One plane descriptor d of plane p of a tile of n elements and width w
 * (8 bytes, in bounds). */
static rfs_err plane_desc_parse(rfs_plane_layout *pl, const uint8_t *d, uint32_t n, unsigned p,
                                unsigned w)
{
    unsigned mode = d[0];
    uint32_t size = rfs_ld32(d + 4);
    if (mode >= RFS_PM_COUNT || d[2] || d[3] || (mode != RFS_PM_CONST && d[1]))
        return RFS_E_HEADER;
    if (mode == RFS_PM_RANS_CTX && (w < 2 || p != RFS_CTX_PLANE(w)))
        return RFS_E_HEADER;
    if ((mode == RFS_PM_RAW && size != n) || (mode == RFS_PM_CONST && size != 0))
        return RFS_E_HEADER;
    pl->mode = (rfs_plane_mode)mode;
    pl->value = d[1];
    pl->size = size;
    return RFS_OK;
}

rfs_err rfs_tile_parse(rfs_tile_layout *lay, const uint8_t *src, size_t src_size)
{
    rfs_err err = rfs_tile_info(src, src_size, &lay->width, &lay->n, &lay->xf);
    if (err != RFS_OK)
        return err;
    size_t pos = rfs_tile_hdr_size(lay->width);
    if (src_size < pos)
        return RFS_E_TRUNCATED;
    for (unsigned p = 0; p < lay->width; p++) {
        rfs_plane_layout *pl = &lay->plane[p];
        err = plane_desc_parse(pl, src + RFS_TILE_HDR_SIZE + RFS_PLANE_DESC_SIZE * p, lay->n, p,
                               lay->width);
        if (err != RFS_OK)
            return err;
        if (pl->size > src_size - pos)
            return RFS_E_TRUNCATED;
        pl->off = pos;
        pos += pl->size;
    }
    return pos == src_size ? RFS_OK : RFS_E_TRAILING;
}

/* The stream part of a rANS payload of size bytes: the 32 states, then
 * whole words. */
static rfs_err stream_check(size_t size)
{
    if (size < RFS_STATES_SIZE)
        return RFS_E_TRUNCATED;
    return (size - RFS_STATES_SIZE) % 2 ? RFS_E_TRAILING : RFS_OK;
}

rfs_err rfs_plane_parse_ctx(const uint8_t *src, const rfs_plane_layout *pl, uint8_t *threshold,
                            uint16_t freq0[256], uint16_t freq1[256], size_t *stream_off,
                            size_t *stream_size)
{
    if (pl->mode != RFS_PM_RANS_CTX)
        return RFS_E_ARG;
    size_t off = pl->off, size = pl->size, used = 0;
    if (size < 1)
        return RFS_E_TRUNCATED;
    if (src[off] == 0) /* every element would use table 1: not a context */
        return RFS_E_HEADER;
    *threshold = src[off];
    off++;
    size--;
    uint16_t *freq[2] = {freq0, freq1};
    for (unsigned c = 0; c < 2; c++) {
        rfs_err err = rfs_table_parse_freq(freq[c], src + off, size, &used);
        if (err != RFS_OK)
            return err;
        off += used;
        size -= used;
    }
    rfs_err err = stream_check(size);
    if (err != RFS_OK)
        return err;
    *stream_off = off;
    *stream_size = size;
    return RFS_OK;
}

int rfs_tile_uses_ctx(const uint8_t *src, size_t src_size)
{
    rfs_tile_layout lay;
    if (rfs_tile_parse(&lay, src, src_size) != RFS_OK || lay.width < 2)
        return 0;
    return lay.plane[RFS_CTX_PLANE(lay.width)].mode == RFS_PM_RANS_CTX;
}

rfs_err rfs_plane_parse_rans(const uint8_t *src, const rfs_plane_layout *pl, int have_shared,
                             uint16_t freq[256], size_t *stream_off, size_t *stream_size)
{
    size_t off = pl->off, size = pl->size;
    if (pl->mode == RFS_PM_RANS_TILE) {
        size_t used = 0;
        rfs_err err = rfs_table_parse_freq(freq, src + off, size, &used);
        if (err != RFS_OK)
            return err;
        off += used;
        size -= used;
    } else if (pl->mode != RFS_PM_RANS_SHARED) {
        return RFS_E_ARG;
    } else if (!have_shared) {
        return RFS_E_NO_SHARED;
    }
    rfs_err err = stream_check(size);
    if (err != RFS_OK)
        return err;
    *stream_off = off;
    *stream_size = size;
    return RFS_OK;
}
