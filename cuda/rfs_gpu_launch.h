/*
 * rfs_gpu_launch.h - internal: the C entry points of the kernels
 * (rfs_gpu_kernels.cu), so that the host side (rfs_gpu.c) is plain C.
 */
#ifndef RFS_GPU_LAUNCH_H
#define RFS_GPU_LAUNCH_H

#include "rfs_gpu_warp.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Enqueue the decode kernel then the interleave kernel of one batch on
 * stream (a cudaStream_t).  v holds device pointers; v->err must be zeroed.
 * Returns the cudaError_t of the launches (0 on success).
 */
int rfs_gpu_launch(const rfs_gpu_view *v, void *stream);

#ifdef __cplusplus
}
#endif
#endif
