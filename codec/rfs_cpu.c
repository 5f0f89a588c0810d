/*
 * rfs_cpu.c - choose the CPU decode backend once per process: the best one
 * cpuid allows (AVX-512 VBMI; for the planes it does not take, and without
 * it, the AVX2 loop with scalar table loads on AMD, else AVX-512, else that
 * AVX2 loop; rfs_backend_gather_best), unless RANSFS_CPU names another
 * (rfs_dec_backend_names).  The encoder's choice is rfs_enc_cpu.c.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "rfs_backend.h"

int rfs_cpu_supports(const char *name)
{
    if (!strcmp(name, "scalar") || !strcmp(name, "auto"))
        return 1;
    __builtin_cpu_init();
    if (!strcmp(name, "avx2") || !strcmp(name, "avx2-loads"))
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2");
    if (!strcmp(name, "avx512"))
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2");
    if (!strcmp(name, "avx512vbmi"))
        return rfs_cpu_supports("avx512") && __builtin_cpu_supports("avx512vbmi");
    return 0;
}

/* On AMD the AVX2 loop with its table looked up by scalar loads wins: on
 * Zen 3 (no AVX-512) 11-14% over the gathers, on Zen 4 3-7% over the AVX2
 * gathers on real fp16 and 12% where every plane is rANS, which are the
 * planes the VBMI backend hands on (docs/benchmarks.md; Zen 4 runs 512-bit
 * and masked ops as two 256-bit halves, and its gathers issue only every
 * ~9 cycles).  Elsewhere AVX-512 is preferred, and the scalar loads
 * where it is absent (unmeasured on Intel).  All give identical bytes, so the
 * choice only moves speed. */
const rfs_backend *rfs_backend_gather_best(void)
{
    __builtin_cpu_init();
    if (!rfs_cpu_supports("avx2"))
        return &rfs_backend_scalar;
    if (__builtin_cpu_is("amd"))
        return &rfs_backend_avx2_loads;
    return rfs_cpu_supports("avx512") ? &rfs_backend_avx512 : &rfs_backend_avx2_loads;
}

const char *const *rfs_dec_backend_names(void)
{
    static const char *const names[] = {"scalar",     "avx2", "avx2-loads", "avx512",
                                        "avx512vbmi", NULL};
    return names;
}

/* VBMI where present: its permute lookups beat the gathers on the planes
 * they take (bf16 and f32 exponents), and it hands every other plane to the
 * best gather path. */
static const rfs_backend *backend_best(void)
{
    if (rfs_cpu_supports("avx512vbmi"))
        return &rfs_backend_avx512vbmi;
    return rfs_backend_gather_best();
}

const rfs_backend *rfs_backend_by_name(const char *name)
{
    if (!name || !rfs_cpu_supports(name))
        return NULL;
    if (!strcmp(name, "auto"))
        return backend_best();
    if (!strcmp(name, "avx512vbmi"))
        return &rfs_backend_avx512vbmi;
    if (!strcmp(name, "avx512"))
        return &rfs_backend_avx512;
    if (!strcmp(name, "avx2"))
        return &rfs_backend_avx2;
    if (!strcmp(name, "avx2-loads"))
        return &rfs_backend_avx2_loads;
    return &rfs_backend_scalar;
}

static const rfs_backend *default_backend;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static void default_init(void)
{
    const char *env = getenv("RANSFS_CPU");
    const rfs_backend *b = env && *env ? rfs_backend_by_name(env) : NULL;
    /* An unknown or unsupported override falls back to the best path. */
    default_backend = b ? b : backend_best();
}

const rfs_backend *rfs_backend_default(void)
{
    pthread_once(&default_once, default_init);
    return default_backend;
}
