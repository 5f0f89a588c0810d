/*
 * rfs_image_info.h - introspection of an open image, for ransfs-dump,
 * ransfs-fsck and the tests: the tensor table, each file's extents and the
 * image layout.  Same contract as rfs_image.h: the image owns everything the
 * returned structs point to (valid until rfs_image_close); the functions
 * only read validated metadata and are safe from any number of threads.
 */
#ifndef RFS_IMAGE_INFO_H
#define RFS_IMAGE_INFO_H

#include <stdint.h>

#include "rfs_image.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rfs_tensor_info {
    const char *name;      /* e.g. the safetensors key, or the file name */
    uint64_t ino;          /* regular file that holds the tensor */
    const char *dtype;     /* "F16", "BF16", "F32", "F8_E4M3", "F8_E5M2", "I8", "U8" */
    unsigned width;        /* element width in bytes: 1, 2 or 4 */
    rfs_transform transform;
    unsigned ndim;
    const uint64_t *dims;  /* ndim dimensions, outermost first */
    uint64_t n_elems;
    uint64_t first_unit;   /* its tiles are units first_unit .. first_unit+n_units-1 */
    uint32_t n_units;
    uint32_t tile_size;
    unsigned shared_mask;  /* bit p: a shared table for plane p is stored */
    uint32_t table_bytes;  /* bytes of serialised shared tables */
    int64_t alias_of;      /* -1, or the tensor whose tiles this one reuses */
} rfs_tensor_info;

/* Number of tensor records. */
uint64_t rfs_image_tensor_count(const rfs_image *img);
/* Tensor idx.  Errors: RFS_E_NOENT when idx is out of range. */
rfs_err rfs_image_tensor_info(const rfs_image *img, uint64_t idx, rfs_tensor_info *ti);

typedef struct rfs_extent_info {
    uint64_t file_off;
    uint64_t length;
    int is_raw;       /* 1: bytes at image offset src; 0: units from unit src */
    uint64_t src;
    uint32_t stride;  /* units: decoded size of every unit but the last */
    uint64_t xxh3;    /* raw: XXH3-64 of its bytes */
} rfs_extent_info;

/* Extents of regular file ino.  Errors: RFS_E_NOENT, RFS_E_ISDIR, RFS_E_INVAL. */
rfs_err rfs_image_extent_count(const rfs_image *img, uint64_t ino, uint64_t *count);
rfs_err rfs_image_extent_info(const rfs_image *img, uint64_t ino, uint64_t idx,
                              rfs_extent_info *ei);

/*
 * Check the XXH3-64 of the RAW extent holding byte off of file ino (RAW
 * extents are at most one tile long).  RFS_OK also when that byte is in a
 * UNITS extent (units are checked when decoded).  rfs_image_read calls it;
 * a caller that serves RAW spans itself (rfs_image_map, then pread/splice
 * on rfs_image_fd) calls it before serving them.  A match is remembered
 * for the open image (the image is immutable while open), so each extent
 * is hashed once; a mismatch is reported every time.  Thread-safe.
 * The extent's bytes are made valid first (rfs_source's ensure; its error,
 * e.g. RFS_E_IO, is returned and nothing is remembered).
 * Errors: RFS_E_CHECKSUM, RFS_E_NOENT, RFS_E_ISDIR, RFS_E_INVAL, RFS_E_IO.
 */
rfs_err rfs_image_raw_verify(const rfs_image *img, uint64_t ino, uint64_t off);

/*
 * Offset in the image file of the encoded bytes of unit `unit` (they are
 * rfs_unit_src.size bytes long; rfs_image_unit_source gives their address
 * in the mapping instead).  For tools and tests that inspect or patch an
 * image file.  Errors: RFS_E_NOENT when unit >= the unit count.
 */
rfs_err rfs_image_unit_offset(const rfs_image *img, uint64_t unit, uint64_t *off);

/* Tensor that owns tile unit `unit`, or -1 (zstd block, or out of range). */
int64_t rfs_image_unit_tensor(const rfs_image *img, uint64_t unit);

typedef struct rfs_image_layout {
    uint64_t data_off, data_len;  /* the data region: units and RAW extents */
    uint64_t meta_off, meta_len;  /* the metadata sections after it */
    uint64_t n_extents, n_tensors;
} rfs_image_layout;

void rfs_image_get_layout(const rfs_image *img, rfs_image_layout *lay);

#ifdef __cplusplus
}
#endif
#endif
