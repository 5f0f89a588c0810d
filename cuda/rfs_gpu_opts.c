/*
 * rfs_gpu_opts.c - the decoder's default options: plain C, part of rfs_gpu
 * with or without CUDA (rfs_gpu.c, rfs_gpu_none.c), so callers fill their
 * options the same way in every build.
 */
#include <string.h>

#include "rfs_gpu.h"

void rfs_gpu_opts_default(rfs_gpu_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->batch_bytes = 64u << 20;
    o->max_unit = 4u << 20;
}
