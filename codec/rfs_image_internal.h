/*
 * rfs_image_internal.h - the rfs_image struct shared by rfs_image.c (open,
 * validate) and rfs_image_read.c (queries, decode).  Not a public header.
 * Everything here is filled once by rfs_image_open and read-only after,
 * except raw_ok: a cache of RAW extents whose checksum has matched once
 * (the image is immutable while open), set with atomic stores.
 */
#ifndef RFS_IMAGE_INTERNAL_H
#define RFS_IMAGE_INTERNAL_H

#include <stdatomic.h>

#include "rfs_image.h"
#include "rfs_image_format.h"

struct rfs_image {
    int fd;
    const uint8_t *map; /* the whole image, PROT_READ */
    uint64_t map_size;
    int own_map;        /* map and fd are ours (a local file), not an rfs_source's */
    rfs_source src;     /* src.ensure == NULL for a local file */

    uint32_t features; /* superblock feature flags, all known (RFS_IMG_FEATURES_KNOWN) */
    uint32_t tile_size, unit_max;
    uint64_t image_size, content_bytes, data_off, data_len;
    uint64_t meta_end; /* where the sections end: the image size, less a trailer */
    rfs_sect sect[RFS_SECT_COUNT];

    uint64_t n_inodes, n_dirents, n_extents, n_units, n_tensors, n_dims;
    rfs_inode_rec *inodes; /* inode i+1 at index i */
    rfs_dirent_rec *dirents;
    rfs_extent_rec *extents;
    atomic_uchar *raw_ok;  /* per extent: 1 once its XXH3 has matched */
    rfs_unit_rec *units;
    rfs_tensor_rec *tensors;
    uint64_t *dims;
    char *names; /* copy of the name pool: every name is NUL-terminated */
    uint64_t names_len;
    uint32_t *nlink;       /* per inode: its names, or for a directory 2 + subdirectories */
    uint32_t *parent;      /* per inode: the directory of its first entry (root: itself) */
    uint64_t n_links;      /* entries beyond the first naming an inode (hard links) */
    rfs_table *tables;     /* all parsed shared tables */
    struct rfs_small_plan *plans; /* their permute-lookup plans (rfs_tables_plan), or NULL */
    rfs_table_set *tsets;  /* per tensor, pointing into tables */
};

/* Make [off, off+len) of the image valid before it is read (rfs_source);
 * RFS_OK at once for a local file. */
static inline rfs_err rfs_img_ensure(const rfs_image *img, uint64_t off, uint64_t len)
{
    if (!img->src.ensure || len == 0)
        return RFS_OK;
    return img->src.ensure(img->src.ctx, off, len);
}

#endif
