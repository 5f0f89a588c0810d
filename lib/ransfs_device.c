/*
 * ransfs_device.c - libransfs: decode tensors into CUDA device memory
 * through cuda/'s C interface (rfs_gpu.h; see ransfs.h).  Without CUDA in
 * the build rfs_gpu is its stand-in and every call is RANSFS_E_NOCUDA.
 *
 * An rfs_gpu owns large pinned and device staging buffers and serves one
 * thread at a time, so the image keeps one per device, made on first use
 * and used under its own lock.
 */
#include <stdlib.h>
#include <string.h>

#include "rfs_gpu.h"
#include "ransfs_internal.h"

/* Same sizing as the daemon's GPU backend: a batch holds at least 4 of the
 * image's largest units. */
#define DEVICE_BATCH_BYTES (64u << 20)

static ransfs_err gpu_create(const ransfs *img, int device, rfs_gpu **gpu)
{
    rfs_image_summary sum;
    rfs_gpu_opts go;
    char why[256];
    rfs_image_get_summary(img->img, &sum);
    rfs_gpu_opts_default(&go);
    go.device = device;
    go.max_unit = sum.unit_max ? sum.unit_max : 1;
    go.batch_bytes = go.max_unit > DEVICE_BATCH_BYTES / 4 ? 4 * go.max_unit : DEVICE_BATCH_BYTES;
    rfs_err err = rfs_gpu_create(gpu, &go, why, sizeof why);
    return err == RFS_E_NOMEM ? RANSFS_E_NOMEM : err ? RANSFS_E_CUDA : RANSFS_OK;
}

/* The decoder slot of device, made on first use (under img->lock). */
static ransfs_err slot_get(ransfs *img, int device, rfs_lib_gpu_slot **out)
{
    ransfs_err err = RANSFS_OK;
    rfs_lib_gpu_slot *s;
    pthread_mutex_lock(&img->lock);
    for (s = img->gpus; s && s->device != device; s = s->next)
        ;
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            err = RANSFS_E_NOMEM;
        else if ((err = gpu_create(img, device, &s->gpu)) != RANSFS_OK) {
            free(s);
            s = NULL;
        } else {
            s->device = device;
            pthread_mutex_init(&s->lock, NULL);
            s->next = img->gpus;
            img->gpus = s;
        }
    }
    pthread_mutex_unlock(&img->lock);
    *out = s;
    return err;
}

void rfs_lib_gpus_free(ransfs *img)
{
    rfs_lib_gpu_slot *s = img->gpus;
    while (s) {
        rfs_lib_gpu_slot *next = s->next;
        rfs_gpu_destroy(s->gpu);
        pthread_mutex_destroy(&s->lock);
        free(s);
        s = next;
    }
    img->gpus = NULL;
}

ransfs_err ransfs_read_tensors_device(ransfs *img, const char *path, const ransfs_tensor *t,
                                      size_t n, void *const *dev_dst, int device, void *stream)
{
    (void)stream; /* see ransfs.h: the work runs on the decoder's own streams */
    uint64_t ino;
    ransfs_err err = rfs_lib_ranges_check(img, path, t, n, dev_dst, &ino);
    if (err)
        return err;
    if (strcmp(rfs_gpu_build(), "cuda") != 0 || device < 0 || device >= rfs_gpu_device_count())
        return RANSFS_E_NOCUDA;
    rfs_lib_gpu_slot *s;
    if ((err = slot_get(img, device, &s)))
        return err;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; err == RANSFS_OK && i < n; i++) {
        size_t got = 0;
        if (!t[i].size)
            continue;
        rfs_err e = rfs_gpu_read_to_device(s->gpu, img->img, ino, t[i].offset, t[i].size,
                                           dev_dst[i], &got);
        err = e ? rfs_lib_err(e) : got != t[i].size ? RANSFS_E_CORRUPT : RANSFS_OK;
    }
    pthread_mutex_unlock(&s->lock);
    return err;
}
