/*
 * fake_cuda.c - see fake_cuda/cuda_runtime_api.h.  Also defines
 * rfs_gpu_launch (normally in cuda/rfs_gpu_kernels.cu) with the emulated
 * kernels of warp_emu.c, so cuda/rfs_gpu.c runs unchanged on the CPU.
 */
#include <stdlib.h>
#include <string.h>

#include "cuda_runtime_api.h"
#include "rfs_gpu_launch.h"
#include "warp_emu.h"

static int devices = 1;
static long fail_in, launches;
static int token;

void fake_cuda_set_devices(int n)
{
    devices = n;
}

void fake_cuda_fail_at(long k)
{
    fail_in = k;
}

long fake_cuda_launches(void)
{
    return launches;
}

/* 1 when this call is the one chosen to fail. */
static int failing(void)
{
    return fail_in > 0 && --fail_in == 0;
}

#define CHECK()                                                                                \
    do {                                                                                       \
        if (failing())                                                                         \
            return cudaErrorLaunchFailure;                                                     \
    } while (0)

cudaError_t cudaGetDeviceCount(int *n)
{
    *n = devices;
    return devices ? cudaSuccess : cudaErrorNoDevice;
}
cudaError_t cudaGetLastError(void) { return cudaSuccess; }
const char *cudaGetErrorString(cudaError_t e) { return e ? "fake CUDA failure" : "no error"; }
cudaError_t cudaSetDevice(int d) { return d < devices ? cudaSuccess : cudaErrorNoDevice; }
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int d)
{
    memset(p, 0, sizeof(*p));
    strcpy(p->name, "fake GPU (CPU warp emulator)");
    p->major = 9;
    p->multiProcessorCount = 1;
    return d < devices ? cudaSuccess : cudaErrorNoDevice;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned f)
{
    (void)f;
    *s = (cudaStream_t)&token;
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) { (void)s; return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t s) { (void)s; CHECK(); return cudaSuccess; }
cudaError_t cudaEventCreate(cudaEvent_t *e) { *e = (cudaEvent_t)&token; return cudaSuccess; }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned f)
{
    (void)f;
    *e = (cudaEvent_t)&token;
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) { (void)e; return cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s)
{
    (void)e, (void)s;
    CHECK();
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) { (void)e; CHECK(); return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b)
{
    (void)a, (void)b;
    *ms = 1.0f;
    return cudaSuccess;
}
cudaError_t cudaHostAlloc(void **p, size_t n, unsigned f)
{
    (void)f;
    *p = malloc(n ? n : 1);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFreeHost(void *p) { free(p); return cudaSuccess; }
cudaError_t cudaMalloc(void **p, size_t n)
{
    *p = malloc(n ? n : 1);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFree(void *p) { free(p); return cudaSuccess; }
cudaError_t cudaMemcpy(void *d, const void *s, size_t n, enum cudaMemcpyKind k)
{
    (void)k;
    CHECK();
    memcpy(d, s, n);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, enum cudaMemcpyKind k,
                            cudaStream_t st)
{
    (void)st;
    return cudaMemcpy(d, s, n, k);
}
cudaError_t cudaMemset(void *p, int v, size_t n)
{
    CHECK();
    memset(p, v, n);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s)
{
    (void)s;
    return cudaMemset(p, v, n);
}

int rfs_gpu_launch(const rfs_gpu_view *v, void *stream)
{
    (void)stream;
    if (failing())
        return cudaErrorLaunchFailure;
    launches++;
    emu_decode_kernel(v);
    emu_ctx_kernel(v);
    emu_interleave_kernel(v);
    return cudaSuccess;
}
