/*
 * rfs_decode_ctx_avx2.c - the AVX2 RANS_CTX plane decoder with gathered
 * table lookups (rfs_decode_ctx_fused.h), for the avx2 and AVX-512
 * backends.  Built with -mavx2 -mbmi2 -mpopcnt.
 */
#include "rfs_decode_ctx_fused.h"

const rfs_ctx_paths rfs_ctx_paths_avx2 = {ctx_plane_avx2, ctx_elems_avx2};
