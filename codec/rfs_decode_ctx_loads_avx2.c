/*
 * rfs_decode_ctx_loads_avx2.c - the AVX2 RANS_CTX plane decoder with table
 * lookups by scalar loads (rfs_decode_ctx_fused.h, RFS_LANES_LOADS), for
 * the avx2-loads backend.  Built with -mavx2 -mbmi2 -mpopcnt.
 */
#define RFS_LANES_LOADS 1

#include "rfs_decode_ctx_fused.h"

const rfs_ctx_paths rfs_ctx_paths_avx2_loads = {ctx_plane_avx2, ctx_elems_avx2};
