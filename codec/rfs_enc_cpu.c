/*
 * rfs_enc_cpu.c - choose the encoder's CPU paths (plane split, rANS loop)
 * once per process, as rfs_cpu.c does for the decoder: AVX2 where cpuid
 * allows, unless RANSFS_CPU says otherwise (scalar: the scalar paths; avx2,
 * avx2-loads or avx512: AVX2, the widest the encoder has).  Its own file, apart from
 * the decoder's choice, so the daemon links no encoder code.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "rfs_enc_paths.h"

static const rfs_enc_paths enc_scalar = {"scalar", rfs_split_planes_scalar, NULL, NULL};
static const rfs_enc_paths enc_avx2 = {"avx2", rfs_split_planes_avx2, rfs_rans_encode_steps_avx2,
                                       rfs_rans_encode_ctx_steps_avx2};

static const rfs_enc_paths *enc_best(void)
{
    return rfs_cpu_supports("avx2") ? &enc_avx2 : &enc_scalar;
}

const rfs_enc_paths *rfs_enc_paths_by_name(const char *name)
{
    if (!name)
        return NULL;
    if (!strcmp(name, "auto"))
        return enc_best();
    if (!strcmp(name, "scalar"))
        return &enc_scalar;
    if (!strcmp(name, "avx2") && rfs_cpu_supports("avx2"))
        return &enc_avx2;
    return NULL;
}

static const rfs_enc_paths *enc_default;
static pthread_once_t enc_once = PTHREAD_ONCE_INIT;

static void enc_default_init(void)
{
    const char *env = getenv("RANSFS_CPU");
    const rfs_enc_paths *b = NULL;
    /* The decoder's names: avx512 asks for the widest path there is, and
     * avx2-loads is a decoder variant of avx2. */
    if (env && ((!strcmp(env, "avx512") && rfs_cpu_supports("avx512")) ||
                !strcmp(env, "avx2-loads")))
        env = "avx2";
    if (env && *env)
        b = rfs_enc_paths_by_name(env);
    /* An unknown or unsupported override falls back to the best path. */
    enc_default = b ? b : enc_best();
}

const rfs_enc_paths *rfs_enc_paths_default(void)
{
    pthread_once(&enc_once, enc_default_init);
    return enc_default;
}
