/*
 * warp_emu.h - the two CUDA kernels run on the CPU: a warp emulator that
 * steps 32 lanes in lock-step through the per-lane code the kernels use
 * (codec/rfs_rans_lane.h, cuda/rfs_gpu_warp.h).  Each loop of the kernels
 * in cuda/rfs_gpu_kernels.cu is mirrored here: a warp intrinsic becomes a
 * loop over the 32 lanes that finishes before the next phase starts
 * (__ballot_sync: OR of every lane's bit; __shfl_sync: every lane reads the
 * source lane's register as it was before the shuffle; __any_sync: OR).
 */
#ifndef RFS_WARP_EMU_H
#define RFS_WARP_EMU_H

#include "rfs_gpu_warp.h"

/* Kernel 1 over every block (job) of v; sets v->err[tile] on a bad stream. */
void emu_decode_kernel(const rfs_gpu_view *v);
/* Kernel 1b over every block (RANS_CTX plane) of v, after kernel 1. */
void emu_ctx_kernel(const rfs_gpu_view *v);
/* Kernel 2 over every block (chunk) of v; skips tiles with an error. */
void emu_interleave_kernel(const rfs_gpu_view *v);

#endif
