/*
 * rfs_batch_gpu.c - the GPU batch-decode backend (see rfs_batch.h) on top of
 * the C interface of cuda/ (rfs_gpu.h, no CUDA types).  Built into the
 * daemon only when the cuda/ target exists, so fs/ depends on cuda/ and
 * never the other way round.
 *
 * Design note: one rfs_gpu (streams, pinned and device staging buffers)
 * serves the whole daemon behind a mutex.  A decode() call
 *  1. checks every item on the calling thread, without the lock, with
 *     rfs_image_unit_check (index lookup, capacity, XXH3, tile header), so
 *     a corrupt unit fails exactly as on the CPU backend and never reaches
 *     the GPU;
 *  2. hands zstd units to the CPU backend (the worker pool);
 *  3. takes the lock and decodes the tiles with rfs_gpu_decode_batch, which
 *     double-buffers the batches and re-decodes tiles the GPU refuses or
 *     flags on the CPU, with the CPU decoder's error;
 *  4. drops the mapped encoded pages, as the CPU backend does.
 * A demand read (background = 0) that finds the GPU busy goes to the CPU
 * instead of queueing behind another batch; prefetch waits its turn.
 * After a CUDA failure (logged once, by rfs_gpu through gpu_log) the GPU is
 * unusable and every later call goes straight to the CPU backend, which
 * decodes in parallel.
 */
#include "rfs_batch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rfs_gpu.h"
#include "rfs_guard.h"

/* Decoded bytes per GPU batch: 2 slots x ~2.3x pinned, ~3.3x on the device. */
#define GPU_BATCH_BYTES (16u << 20)

typedef struct gpu_backend {
    const rfs_image *img;
    const rfs_batch *cpu;
    rfs_gpu *gpu;              /* used only with mu held */
    pthread_mutex_t mu;
    void (*log)(void *, const char *);
    void *log_ctx;
    char name[128];            /* JSON-safe device name */
    atomic_int usable;
    /* Snapshot of the rfs_gpu counters (taken with mu held) ... */
    atomic_uint_least64_t launches, units_dev, units_gpu_cpu, dev_errors;
    /* ... and the units this file sent to the CPU backend. */
    atomic_uint_least64_t units_to_cpu;
} gpu_backend;

enum { ITEM_DONE, ITEM_GPU, ITEM_CPU };

/* rfs_gpu's one-line CUDA failure message, to the daemon's log. */
static void gpu_log(void *ctx, const char *msg)
{
    gpu_backend *gb = ctx;
    if (!strncmp(msg, "ransfs ", 7))
        msg += 7; /* the daemon's log adds its own prefix */
    if (gb->log)
        gb->log(gb->log_ctx, msg);
}

/* Everything to the CPU backend. */
static void to_cpu(gpu_backend *gb, rfs_batch_item *items, size_t n, int background)
{
    gb->cpu->decode(gb->cpu->self, items, n, background);
    atomic_fetch_add(&gb->units_to_cpu, n);
}

typedef struct unit_check {
    const rfs_image *img;
    const rfs_batch_item *it;
    rfs_unit_src *src;
} unit_check;

/* rfs_image_unit_check: reads every encoded byte from the image mapping. */
static rfs_err unit_check_guarded(void *arg)
{
    unit_check *c = arg;
    return rfs_image_unit_check(c->img, c->it->unit, c->it->dst_cap, c->src);
}

/* Step 1: look the item up and check it; fills u for a tile. */
static int item_prepare(gpu_backend *gb, rfs_batch_item *it, rfs_gpu_unit *u)
{
    rfs_unit_src src;
    it->dst_size = 0;
    it->err = rfs_image_unit_source(gb->img, it->unit, &src);
    if (it->err != RFS_OK)
        return ITEM_DONE;
    if (src.kind != RFS_UNIT_TILE)
        return ITEM_CPU;
    /* The checks rfs_image_unit_decode starts with: a unit failing them
     * fails exactly as on the CPU backend. */
    unit_check c = {gb->img, it, &src};
    it->err = rfs_guard_call(unit_check_guarded, &c);
    if (it->err != RFS_OK) {
        rfs_batch_drop_source(gb->img, it->unit, 0);
        return ITEM_DONE;
    }
    *u = (rfs_gpu_unit){src.data, src.size, src.decoded_size, src.shared, it->dst, RFS_OK, 0};
    return ITEM_GPU;
}

/* Step 3, with mu held: decode the tiles and refresh the counter snapshot. */
static void gpu_run(gpu_backend *gb, rfs_gpu_unit *u, size_t n)
{
    rfs_gpu_stats st;
    rfs_gpu_decode_batch(gb->gpu, u, n);
    rfs_gpu_get_stats(gb->gpu, &st);
    atomic_store(&gb->launches, st.batches);
    atomic_store(&gb->units_dev, st.units_gpu);
    atomic_store(&gb->units_gpu_cpu, st.units_cpu);
    atomic_store(&gb->dev_errors, st.cuda_errors);
    if (!rfs_gpu_usable(gb->gpu))
        atomic_store(&gb->usable, 0);
}

/* Decode items at[0..m) on the CPU backend (tmp: room for m items). */
static void some_to_cpu(gpu_backend *gb, rfs_batch_item *items, const size_t *at, size_t m,
                        rfs_batch_item *tmp, int background)
{
    for (size_t k = 0; k < m; k++)
        tmp[k] = items[at[k]];
    to_cpu(gb, tmp, m, background);
    for (size_t k = 0; k < m; k++)
        items[at[k]] = tmp[k];
}

static void gpu_decode(void *self, rfs_batch_item *items, size_t n, int background)
{
    gpu_backend *gb = self;
    rfs_gpu_unit *u = NULL;
    size_t *gpu_at = NULL, *cpu_at = NULL, ng = 0, nc = 0;
    rfs_batch_item *tmp = NULL;
    if (!atomic_load(&gb->usable))
        goto cpu_all;
    u = malloc(n * sizeof(*u));
    gpu_at = malloc(n * sizeof(*gpu_at));
    cpu_at = malloc(n * sizeof(*cpu_at));
    tmp = malloc(n * sizeof(*tmp));
    if (!u || !gpu_at || !cpu_at || !tmp)
        goto cpu_all;
    for (size_t i = 0; i < n; i++) /* cold reads issued together, as on the CPU */
        rfs_batch_want_source(gb->img, items[i].unit);
    for (size_t i = 0; i < n; i++) {
        int r = item_prepare(gb, &items[i], &u[ng]);
        if (r == ITEM_GPU)
            gpu_at[ng++] = i;
        else if (r == ITEM_CPU)
            cpu_at[nc++] = i;
    }
    if (nc)
        some_to_cpu(gb, items, cpu_at, nc, tmp, background);
    if (ng) {
        int locked = background ? pthread_mutex_lock(&gb->mu) == 0
                                : pthread_mutex_trylock(&gb->mu) == 0;
        if (locked && atomic_load(&gb->usable)) {
            gpu_run(gb, u, ng);
            pthread_mutex_unlock(&gb->mu);
            for (size_t k = 0; k < ng; k++) {
                rfs_batch_item *it = &items[gpu_at[k]];
                it->err = u[k].err;
                it->dst_size = u[k].err == RFS_OK ? u[k].decoded_size : 0;
                rfs_batch_drop_source(gb->img, it->unit, background);
            }
        } else {
            if (locked)
                pthread_mutex_unlock(&gb->mu);
            /* GPU busy (demand read) or broken: the checked tiles to the CPU. */
            some_to_cpu(gb, items, gpu_at, ng, tmp, background);
        }
    }
    free(u);
    free(gpu_at);
    free(cpu_at);
    free(tmp);
    return;
cpu_all:
    free(u);
    free(gpu_at);
    free(cpu_at);
    free(tmp);
    to_cpu(gb, items, n, background);
}

static void gpu_get_stats(void *self, rfs_batch_stats *st)
{
    gpu_backend *gb = self;
    st->launches = atomic_load(&gb->launches);
    st->units_dev = atomic_load(&gb->units_dev);
    st->units_cpu = atomic_load(&gb->units_gpu_cpu) + atomic_load(&gb->units_to_cpu);
    st->dev_errors = atomic_load(&gb->dev_errors);
    st->usable = atomic_load(&gb->usable);
}

static void gpu_close(void *self)
{
    gpu_backend *gb = self;
    if (!gb)
        return;
    rfs_gpu_destroy(gb->gpu);
    pthread_mutex_destroy(&gb->mu);
    free(gb);
}

/* The device name, without characters that would need escaping in JSON. */
static void set_name(gpu_backend *gb, const char *dev)
{
    snprintf(gb->name, sizeof(gb->name), "cuda: %s", dev);
    for (char *p = gb->name; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
            *p = ' ';
}

rfs_err rfs_gpu_batch_open(rfs_batch *b, const rfs_image *img, const rfs_gpu_batch_opts *o,
                           char *why, size_t why_cap)
{
    rfs_image_summary sum;
    rfs_gpu_opts go;
    rfs_err err;
    gpu_backend *gb;
    if (!b || !img || !o || !o->cpu) {
        snprintf(why, why_cap, "rfs_gpu_batch_open: no CPU backend given");
        return RFS_E_ARG;
    }
    if (!(gb = calloc(1, sizeof(*gb))))
        return RFS_E_NOMEM;
    rfs_image_get_summary(img, &sum);
    rfs_gpu_opts_default(&go);
    go.max_unit = sum.unit_max ? sum.unit_max : 1;
    /* A batch holds at least 4 of the largest units. */
    go.batch_bytes = go.max_unit > GPU_BATCH_BYTES / 4 ? 4 * go.max_unit : GPU_BATCH_BYTES;
    go.log = gpu_log;
    go.log_ctx = gb;
    gb->img = img;
    gb->cpu = o->cpu;
    gb->log = o->log;
    gb->log_ctx = o->log_ctx;
    err = rfs_gpu_create(&gb->gpu, &go, why, why_cap);
    if (err != RFS_OK) {
        free(gb);
        return err;
    }
    pthread_mutex_init(&gb->mu, NULL);
    atomic_init(&gb->usable, 1);
    set_name(gb, rfs_gpu_name(gb->gpu));
    b->name = gb->name;
    b->self = gb;
    b->decode = gpu_decode;
    b->min_bytes = o->min_bytes ? o->min_bytes : RFS_GPU_BATCH_MIN;
    b->close = gpu_close;
    b->get_stats = gpu_get_stats;
    return RFS_OK;
}
