/*
 * rfs_decode_loads_avx2.c - the avx2-loads decode backend: the AVX2 backend's
 * plane loops (rfs_decode_fused.h) with the table lookup done by scalar
 * loads instead of vpgatherdd (rfs_lanes_avx2.h, RFS_LANES_LOADS).  Same
 * bytes and error codes as every other backend; rfs_cpu.c picks it where
 * AVX2 is the best path and AVX-512 is absent (Zen 1-3, Intel client CPUs).
 */
#define RFS_LANES_LOADS 1

#include "rfs_backend.h"
#include "rfs_rans_lane.h"
#include "rfs_refill_avx2.h"

#include "rfs_decode_fused.h"

const rfs_backend rfs_backend_avx2_loads = {"avx2-loads", rfs_interleave_avx2, fused_rans_planes,
                                            fused_rans_w2, fused_rans_w4, NULL};
