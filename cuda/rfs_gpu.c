/*
 * rfs_gpu.c - the host side of the GPU decoder (see rfs_gpu.h).
 *
 * Pipeline: two slots, each with a CUDA stream, a pinned staging buffer
 * (encoded tiles, then the batch descriptors), device copies of it, a
 * scratch area for decoded rANS planes and (host-to-host) a device and a
 * pinned output buffer.  While slot A's batch is copied in, decoded and
 * copied out on its stream, the CPU gathers the next batch into slot B and
 * launches it, then waits for A and scatters its tiles to the caller.
 *
 * The host plans each batch (rfs_gpu_plan.c: headers and per-tile tables
 * checked, outputs placed); a tile it refuses, or one the kernel flags, is
 * decoded by the CPU decoder, which also names the error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rfs_gpu_internal.h"
#include "rfs_gpu_launch.h"

#define META_ALIGN 256u

static size_t align_to(size_t v, size_t a)
{
    return (v + a - 1) / a * a;
}

const char *rfs_gpu_build(void)
{
    return "cuda";
}

int rfs_gpu_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); /* clear it */
        return 0;
    }
    return n;
}

int rfs_gpu_cuda_ok(rfs_gpu *g, cudaError_t e, const char *what)
{
    if (e == cudaSuccess)
        return 1;
    g->st.cuda_errors++;
    if (!g->broken && g->o.log) {
        char msg[256];
        snprintf(msg, sizeof(msg), "ransfs gpu: %s failed: %s; decoding on the CPU from now on",
                 what, cudaGetErrorString(e));
        g->o.log(g->o.log_ctx, msg);
    }
    g->broken = 1;
    return 0;
}

/* --------------------------------------------------------- create/destroy */

static void why_set(char *why, size_t cap, const char *what, cudaError_t e)
{
    if (why && cap)
        snprintf(why, cap, "%s: %s", what, e == cudaSuccess ? "failed" : cudaGetErrorString(e));
}

/* Descriptor bytes a batch of at most max_tiles tiles and max_chunks chunks needs. */
static size_t meta_bound(size_t max_tiles, size_t max_chunks)
{
    size_t planes = RFS_MAX_WIDTH * max_tiles;
    /* a RANS_CTX plane has two tables: at most one table more per tile */
    return max_tiles * sizeof(rfs_gpu_tile_desc) + planes * sizeof(rfs_gpu_task) +
           planes * sizeof(rfs_gpu_job) + max_chunks * sizeof(rfs_gpu_chunk) +
           (planes + max_tiles) * RFS_GPU_TABLE_WORDS * sizeof(uint32_t) +
           max_tiles * sizeof(rfs_gpu_ctx_job) + 7 * META_ALIGN;
}

static cudaError_t slot_alloc(rfs_gpu *g, rfs_gpu_slot *s)
{
    size_t stage = g->in_cap + RFS_GPU_SLACK + META_ALIGN + g->meta_cap;
    cudaError_t e;
    if ((e = cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking)) ||
        (e = cudaEventCreateWithFlags(&s->done, cudaEventDisableTiming)) ||
        (e = cudaHostAlloc((void **)&s->h_stage, stage, cudaHostAllocDefault)) ||
        (e = cudaMalloc((void **)&s->d_stage, stage)) ||
        (e = cudaHostAlloc((void **)&s->h_out, g->out_cap, cudaHostAllocDefault)) ||
        (e = cudaMalloc((void **)&s->d_out, g->out_cap)) ||
        (e = cudaMalloc((void **)&s->d_scratch, g->scratch_cap + RFS_GPU_SLACK)) ||
        (e = cudaHostAlloc((void **)&s->h_err, g->max_tiles * 4, cudaHostAllocDefault)) ||
        (e = cudaMalloc((void **)&s->d_err, g->max_tiles * 4)))
        return e;
    s->unit = malloc(g->max_tiles * sizeof(*s->unit));
    s->tile = malloc(g->max_tiles * sizeof(*s->tile));
    s->off = malloc(g->max_tiles * sizeof(*s->off));
    if (!s->unit || !s->tile || !s->off)
        return cudaErrorMemoryAllocation;
    rfs_gpu_plan_init(&s->plan, s->h_stage, g->in_cap, g->scratch_cap, g->out_cap, g->max_tiles);
    s->plan.max_chunks = g->max_chunks;
    return cudaSuccess;
}

static void slot_free(rfs_gpu_slot *s)
{
    if (s->busy)
        cudaEventSynchronize(s->done);
    if (s->stream)
        cudaStreamDestroy(s->stream);
    if (s->done)
        cudaEventDestroy(s->done);
    cudaFreeHost(s->h_stage);
    cudaFree(s->d_stage);
    cudaFreeHost(s->h_out);
    cudaFree(s->d_out);
    cudaFree(s->d_scratch);
    cudaFreeHost(s->h_err);
    cudaFree(s->d_err);
    free(s->unit);
    free(s->tile);
    free(s->off);
    rfs_gpu_plan_free(&s->plan);
    memset(s, 0, sizeof(*s));
}

void rfs_gpu_destroy(rfs_gpu *g)
{
    if (!g)
        return;
    if (g->name[0]) { /* the device was opened: CUDA resources may exist */
        cudaSetDevice(g->o.device);
        for (int k = 0; k < 2; k++)
            slot_free(&g->slot[k]);
        cudaFreeHost(g->h_bounce);
    }
    rfs_dec_destroy(g->cpu);
    free(g->cpu_buf);
    free(g);
}

/* Size the batch buffers from the options. */
static void size_buffers(rfs_gpu *g)
{
    size_t b = g->o.batch_bytes;
    g->out_cap = b;
    g->in_cap = b + b / 8 + (1u << 20);
    g->max_tiles = b / (16u << 10) > 4096 ? b / (16u << 10) : 4096;
    g->scratch_cap = b + RFS_MAX_WIDTH * RFS_GPU_ALIGN * g->max_tiles;
    g->max_chunks = 2 * g->max_tiles + b / (4 * RFS_GPU_IL_GROUPS);
    g->meta_cap = meta_bound(g->max_tiles, g->max_chunks);
    g->bounce_cap = 4u << 20;
}

static rfs_err open_device(rfs_gpu *g, char *why, size_t why_cap)
{
    int count = rfs_gpu_device_count();
    if (count <= 0 || g->o.device < 0 || g->o.device >= count) {
        if (why && why_cap)
            snprintf(why, why_cap, count <= 0 ? "no CUDA device" : "no CUDA device %d",
                     g->o.device);
        return RFS_E_GPU;
    }
    struct cudaDeviceProp prop;
    cudaError_t e = cudaSetDevice(g->o.device);
    if (e == cudaSuccess)
        e = cudaGetDeviceProperties(&prop, g->o.device);
    if (e != cudaSuccess) {
        why_set(why, why_cap, "cudaSetDevice", e);
        return RFS_E_GPU;
    }
    if (prop.major < 7) {
        if (why && why_cap)
            snprintf(why, why_cap, "%s (sm_%d%d) is older than sm_70", prop.name, prop.major,
                     prop.minor);
        return RFS_E_GPU;
    }
    snprintf(g->name, sizeof(g->name), "%.255s (sm_%d%d, %d SMs)", prop.name, prop.major, prop.minor,
             prop.multiProcessorCount);
    return RFS_OK;
}

rfs_err rfs_gpu_create(rfs_gpu **out, const rfs_gpu_opts *opts, char *why, size_t why_cap)
{
    *out = NULL;
    rfs_gpu *g = calloc(1, sizeof(*g));
    if (!g)
        return RFS_E_NOMEM;
    if (opts)
        g->o = *opts;
    else
        rfs_gpu_opts_default(&g->o);
    if (g->o.batch_bytes < (1u << 20))
        g->o.batch_bytes = 1u << 20;
    if (!g->o.max_unit)
        g->o.max_unit = 4u << 20;
    size_buffers(g);
    rfs_err err = open_device(g, why, why_cap);
    if (err != RFS_OK)
        goto fail;
    err = RFS_E_NOMEM;
    g->cpu = rfs_dec_create(g->o.max_unit);
    g->cpu_buf = malloc(g->o.max_unit);
    if (!g->cpu || !g->cpu_buf)
        goto fail;
    err = RFS_E_GPU;
    cudaError_t e = cudaHostAlloc((void **)&g->h_bounce, g->bounce_cap, cudaHostAllocDefault);
    for (int k = 0; k < 2 && e == cudaSuccess; k++)
        e = slot_alloc(g, &g->slot[k]);
    if (e != cudaSuccess) {
        why_set(why, why_cap, "allocating GPU staging buffers", e);
        goto fail;
    }
    *out = g;
    return RFS_OK;
fail:
    rfs_gpu_destroy(g);
    return err;
}

const char *rfs_gpu_name(const rfs_gpu *g)
{
    return g->name;
}

int rfs_gpu_usable(const rfs_gpu *g)
{
    return !g->broken;
}

void rfs_gpu_get_stats(const rfs_gpu *g, rfs_gpu_stats *st)
{
    *st = g->st;
}

/* --------------------------------------------------------------- batches */

/* Decode one unit on the CPU into dst (decoded_size bytes). */
static rfs_err cpu_decode(rfs_gpu *g, void *dst, size_t decoded_size, const uint8_t *src,
                          size_t src_size, const rfs_table_set *shared)
{
    size_t got = 0;
    g->st.units_cpu++;
    if (!src)
        return RFS_E_ARG;
    rfs_err err = rfs_tile_decode(g->cpu, dst, decoded_size, &got, src, src_size, shared);
    if (err == RFS_OK && got != decoded_size)
        err = RFS_E_CORRUPT;
    return err;
}

/* Copy the descriptors behind the input in h_stage; fill v with the device
 * addresses; returns the bytes to upload. */
static size_t stage_meta(rfs_gpu_slot *s, rfs_gpu_view *v, uint8_t *out_base)
{
    const rfs_gpu_plan *p = &s->plan;
    size_t at = align_to(p->in_used + RFS_GPU_SLACK, META_ALIGN);
    struct {
        const void *src;
        size_t size;
        const void **dst;
    } parts[] = {
        {p->tiles, p->n_tiles * sizeof(*p->tiles), (const void **)&v->tiles},
        {p->tasks, p->n_tasks * sizeof(*p->tasks), (const void **)&v->tasks},
        {p->jobs, p->n_jobs * sizeof(*p->jobs), (const void **)&v->jobs},
        {p->chunks, p->n_chunks * sizeof(*p->chunks), (const void **)&v->chunks},
        {p->tables, p->n_tables * RFS_GPU_TABLE_WORDS * sizeof(uint32_t),
         (const void **)&v->tables},
        {p->ctx_jobs, p->n_ctx_jobs * sizeof(*p->ctx_jobs), (const void **)&v->ctx_jobs},
    };
    for (size_t k = 0; k < sizeof(parts) / sizeof(parts[0]); k++) {
        if (parts[k].size)
            memcpy(s->h_stage + at, parts[k].src, parts[k].size);
        *parts[k].dst = s->d_stage + at;
        at = align_to(at + parts[k].size, META_ALIGN);
    }
    v->in = s->d_stage;
    v->scratch = s->d_scratch;
    v->out = out_base;
    v->err = s->d_err;
    v->n_jobs = (uint32_t)p->n_jobs;
    v->n_chunks = (uint32_t)p->n_chunks;
    v->n_ctx_jobs = (uint32_t)p->n_ctx_jobs;
    return at;
}

/* Enqueue the slot's batch: upload, both kernels, and the downloads. */
static void launch(rfs_gpu *g, rfs_gpu_slot *s, uint8_t *out_base, int host_out)
{
    rfs_gpu_plan *p = &s->plan;
    rfs_gpu_view v;
    s->busy = 1;
    s->failed = 1;
    if (rfs_gpu_plan_finish(p) != RFS_OK)
        return; /* out of host memory: finish() decodes the batch on the CPU */
    size_t up = stage_meta(s, &v, out_base);
    cudaStream_t st = s->stream;
    if (!rfs_gpu_cuda_ok(g, cudaMemcpyAsync(s->d_stage, s->h_stage, up, cudaMemcpyHostToDevice, st),
                         "upload") ||
        !rfs_gpu_cuda_ok(g, cudaMemsetAsync(s->d_err, 0, p->n_tiles * 4, st), "memset") ||
        !rfs_gpu_cuda_ok(g, (cudaError_t)rfs_gpu_launch(&v, st), "kernel launch"))
        return;
    if (host_out && p->out_used &&
        !rfs_gpu_cuda_ok(g, cudaMemcpyAsync(s->h_out, s->d_out, p->out_used,
                                            cudaMemcpyDeviceToHost, st), "download"))
        return;
    if (!rfs_gpu_cuda_ok(g, cudaMemcpyAsync(s->h_err, s->d_err, p->n_tiles * 4,
                                            cudaMemcpyDeviceToHost, st), "download") ||
        !rfs_gpu_cuda_ok(g, cudaEventRecord(s->done, st), "event"))
        return;
    s->failed = 0;
    g->st.batches++;
}

/* Wait for the slot; 1 when its results are valid. */
static int wait_slot(rfs_gpu *g, rfs_gpu_slot *s)
{
    s->busy = 0;
    if (s->failed)
        return 0;
    return rfs_gpu_cuda_ok(g, cudaEventSynchronize(s->done), "decode batch");
}

/* ------------------------------------------------------- host to host */

/* Plan units [i, n) into s until it is full; the GPU can't take a unit:
 * decode it on the CPU now.  Returns the next unit. */
static size_t fill_host(rfs_gpu *g, rfs_gpu_slot *s, rfs_gpu_unit *u, size_t i, size_t n)
{
    rfs_gpu_plan_reset(&s->plan);
    s->n = 0;
    for (; i < n; i++) {
        uint32_t tile;
        uint64_t off;
        rfs_err why = RFS_E_TOO_BIG;
        rfs_gpu_plan_res r = RFS_GPU_CPU;
        if (u[i].decoded_size <= UINT32_MAX)
            r = rfs_gpu_plan_add(&s->plan, u[i].src, u[i].src_size, u[i].decoded_size,
                                 u[i].shared, RFS_GPU_OUT_AUTO, 0, 0, &tile, &off, &why);
        if (r == RFS_GPU_FULL)
            break;
        if (r == RFS_GPU_CPU) {
            u[i].err = cpu_decode(g, u[i].dst, u[i].decoded_size, u[i].src, u[i].src_size,
                                  u[i].shared);
            continue;
        }
        s->unit[s->n] = i;
        s->tile[s->n] = tile;
        s->off[s->n++] = off;
    }
    return i;
}

/* Wait for s and hand its tiles to the caller (CPU for the flagged ones). */
static void finish_host(rfs_gpu *g, rfs_gpu_slot *s, rfs_gpu_unit *u)
{
    int ok = wait_slot(g, s);
    for (size_t k = 0; k < s->n; k++) {
        rfs_gpu_unit *x = &u[s->unit[k]];
        if (ok && !s->h_err[s->tile[k]]) {
            if (x->decoded_size)
                memcpy(x->dst, s->h_out + s->off[k], x->decoded_size);
            x->err = RFS_OK;
            x->on_gpu = 1;
            g->st.units_gpu++;
            g->st.bytes_gpu += x->decoded_size;
        } else {
            x->err = cpu_decode(g, x->dst, x->decoded_size, x->src, x->src_size, x->shared);
        }
    }
    s->n = 0;
}

rfs_err rfs_gpu_decode_batch(rfs_gpu *g, rfs_gpu_unit *u, size_t n)
{
    if (!g || (!u && n))
        return RFS_E_ARG;
    for (size_t i = 0; i < n; i++) {
        u[i].err = RFS_OK;
        u[i].on_gpu = 0;
    }
    if (!g->broken)
        rfs_gpu_cuda_ok(g, cudaSetDevice(g->o.device), "cudaSetDevice");
    size_t next = 0;
    for (int cur = 0; next < n || g->slot[0].busy || g->slot[1].busy; cur ^= 1) {
        rfs_gpu_slot *s = &g->slot[cur];
        if (s->busy)
            finish_host(g, s, u);
        if (next < n && g->broken) {
            for (; next < n; next++)
                u[next].err = cpu_decode(g, u[next].dst, u[next].decoded_size, u[next].src,
                                         u[next].src_size, u[next].shared);
        } else if (next < n) {
            next = fill_host(g, s, u, next, n);
            if (s->n)
                launch(g, s, s->d_out, 1);
        }
    }
    return RFS_OK;
}

/* --------------------------------------------------------- to device */

/* A valid window inside dev_cap? */
static int dev_unit_ok(const rfs_gpu_dev_unit *x, size_t dev_cap)
{
    return x->lo <= x->hi && x->hi <= x->decoded_size && x->dst_off <= dev_cap &&
           x->hi - x->lo <= dev_cap - x->dst_off && x->decoded_size <= UINT32_MAX;
}

/* Decode x on the CPU and upload its window (synchronously on s's stream). */
static rfs_err cpu_to_device(rfs_gpu *g, rfs_gpu_slot *s, uint8_t *dev, rfs_gpu_dev_unit *x)
{
    rfs_err err = x->decoded_size > g->o.max_unit ? RFS_E_TOO_BIG
                  : cpu_decode(g, g->cpu_buf, x->decoded_size, x->src, x->src_size, x->shared);
    if (err != RFS_OK || x->hi == x->lo)
        return err;
    if (!rfs_gpu_cuda_ok(g, cudaMemcpyAsync(dev + x->dst_off, g->cpu_buf + x->lo, x->hi - x->lo,
                                            cudaMemcpyHostToDevice, s->stream), "upload") ||
        !rfs_gpu_cuda_ok(g, cudaStreamSynchronize(s->stream), "upload"))
        return RFS_E_GPU;
    return RFS_OK;
}

static size_t fill_dev(rfs_gpu *g, rfs_gpu_slot *s, uint8_t *dev, size_t dev_cap,
                       rfs_gpu_dev_unit *u, size_t i, size_t n)
{
    rfs_gpu_plan_reset(&s->plan);
    s->n = 0;
    for (; i < n && !g->broken; i++) {
        uint32_t tile;
        uint64_t off;
        rfs_err why;
        if (!dev_unit_ok(&u[i], dev_cap)) {
            u[i].err = RFS_E_ARG;
            continue;
        }
        rfs_gpu_plan_res r = rfs_gpu_plan_add(&s->plan, u[i].src, u[i].src_size,
                                              u[i].decoded_size, u[i].shared, u[i].dst_off,
                                              u[i].lo, u[i].hi, &tile, &off, &why);
        if (r == RFS_GPU_FULL)
            break;
        if (r == RFS_GPU_CPU) {
            u[i].err = cpu_to_device(g, s, dev, &u[i]);
            continue;
        }
        s->unit[s->n] = i;
        s->tile[s->n++] = tile;
    }
    return i;
}

static void finish_dev(rfs_gpu *g, rfs_gpu_slot *s, uint8_t *dev, rfs_gpu_dev_unit *u)
{
    int ok = wait_slot(g, s);
    for (size_t k = 0; k < s->n; k++) {
        rfs_gpu_dev_unit *x = &u[s->unit[k]];
        if (!ok) {
            x->err = RFS_E_GPU;
        } else if (s->h_err[s->tile[k]]) {
            x->err = cpu_to_device(g, s, dev, x);
        } else {
            x->err = RFS_OK;
            g->st.units_gpu++;
            g->st.bytes_gpu += x->hi - x->lo;
        }
    }
    s->n = 0;
}

rfs_err rfs_gpu_decode_to_device(rfs_gpu *g, void *dev_dst, size_t dev_cap, rfs_gpu_dev_unit *u,
                                 size_t n)
{
    if (!g || (!u && n) || (!dev_dst && n))
        return RFS_E_ARG;
    for (size_t i = 0; i < n; i++)
        u[i].err = RFS_E_GPU;
    if (g->broken || !rfs_gpu_cuda_ok(g, cudaSetDevice(g->o.device), "cudaSetDevice"))
        return RFS_E_GPU;
    uint8_t *dev = dev_dst;
    size_t next = 0;
    for (int cur = 0; next < n || g->slot[0].busy || g->slot[1].busy; cur ^= 1) {
        rfs_gpu_slot *s = &g->slot[cur];
        if (s->busy)
            finish_dev(g, s, dev, u);
        if (next < n && !g->broken) {
            next = fill_dev(g, s, dev, dev_cap, u, next, n);
            if (s->n)
                launch(g, s, dev, 0);
        } else {
            next = n;
        }
    }
    if (g->broken)
        return RFS_E_GPU;
    for (size_t i = 0; i < n; i++)
        if (u[i].err != RFS_OK)
            return u[i].err;
    return RFS_OK;
}

/* ------------------------------------------------------------- helpers */

void *rfs_gpu_dev_alloc(rfs_gpu *g, size_t size)
{
    void *p = NULL;
    if (g->broken || cudaSetDevice(g->o.device) != cudaSuccess ||
        cudaMalloc(&p, size ? size : 1) != cudaSuccess)
        return NULL;
    return p;
}

void rfs_gpu_dev_free(rfs_gpu *g, void *dev)
{
    if (dev && cudaSetDevice(g->o.device) == cudaSuccess)
        cudaFree(dev);
}

/* One synchronous cudaMemcpy of the helpers below; a failure is logged once. */
static rfs_err dev_copy(rfs_gpu *g, void *dst, const void *src, size_t size,
                        enum cudaMemcpyKind kind, const char *what)
{
    if (!size)
        return RFS_OK;
    if (!rfs_gpu_cuda_ok(g, cudaSetDevice(g->o.device), "cudaSetDevice") ||
        !rfs_gpu_cuda_ok(g, cudaMemcpy(dst, src, size, kind), what))
        return RFS_E_GPU;
    return RFS_OK;
}

rfs_err rfs_gpu_dev_download(rfs_gpu *g, void *dst, const void *dev_src, size_t size)
{
    return dev_copy(g, dst, dev_src, size, cudaMemcpyDeviceToHost, "download");
}

rfs_err rfs_gpu_dev_fill(rfs_gpu *g, void *dev, int byte, size_t size)
{
    if (!size)
        return RFS_OK;
    if (!rfs_gpu_cuda_ok(g, cudaSetDevice(g->o.device), "cudaSetDevice") ||
        !rfs_gpu_cuda_ok(g, cudaMemset(dev, byte, size), "memset"))
        return RFS_E_GPU;
    return RFS_OK;
}

rfs_err rfs_gpu_dev_upload(rfs_gpu *g, void *dev_dst, const void *src, size_t size)
{
    return dev_copy(g, dev_dst, src, size, cudaMemcpyHostToDevice, "upload");
}

void *rfs_gpu_host_alloc(rfs_gpu *g, size_t size)
{
    void *p = NULL;
    if (g->broken || cudaSetDevice(g->o.device) != cudaSuccess ||
        cudaHostAlloc(&p, size ? size : 1, cudaHostAllocDefault) != cudaSuccess)
        return NULL;
    return p;
}

void rfs_gpu_host_free(rfs_gpu *g, void *host)
{
    (void)g;
    if (host)
        cudaFreeHost(host);
}

/* Plan the first units that fit into s (refused ones skipped). */
static void plan_bench(rfs_gpu_slot *s, const rfs_gpu_unit *u, size_t n, uint64_t *bytes,
                       size_t *n_used)
{
    rfs_gpu_plan_reset(&s->plan);
    *bytes = 0;
    *n_used = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t tile;
        uint64_t off;
        rfs_err why;
        rfs_gpu_plan_res r = rfs_gpu_plan_add(&s->plan, u[i].src, u[i].src_size,
                                              u[i].decoded_size, u[i].shared, RFS_GPU_OUT_AUTO,
                                              0, 0, &tile, &off, &why);
        if (r == RFS_GPU_FULL)
            break;
        if (r == RFS_GPU_PLANNED) {
            *bytes += u[i].decoded_size;
            (*n_used)++;
        }
    }
}

/* iters runs of both kernels between two events; seconds per run. */
static rfs_err time_kernels(rfs_gpu *g, rfs_gpu_slot *s, const rfs_gpu_view *v, unsigned iters,
                            double *seconds)
{
    cudaEvent_t t0 = NULL, t1 = NULL;
    cudaStream_t st = s->stream;
    float ms = 0;
    rfs_err err = RFS_E_GPU;
    if (!rfs_gpu_cuda_ok(g, cudaEventCreate(&t0), "event") ||
        !rfs_gpu_cuda_ok(g, cudaEventCreate(&t1), "event") ||
        !rfs_gpu_cuda_ok(g, cudaEventRecord(t0, st), "event"))
        goto fail;
    for (unsigned k = 0; k < iters; k++)
        if (!rfs_gpu_cuda_ok(g, (cudaError_t)rfs_gpu_launch(v, st), "kernel launch"))
            goto fail;
    if (!rfs_gpu_cuda_ok(g, cudaEventRecord(t1, st), "event") ||
        !rfs_gpu_cuda_ok(g, cudaEventSynchronize(t1), "decode batch") ||
        !rfs_gpu_cuda_ok(g, cudaEventElapsedTime(&ms, t0, t1), "event"))
        goto fail;
    *seconds = ms / 1000.0 / iters;
    err = RFS_OK;
fail:
    if (t0)
        cudaEventDestroy(t0);
    if (t1)
        cudaEventDestroy(t1);
    return err;
}

rfs_err rfs_gpu_bench_kernels(rfs_gpu *g, const rfs_gpu_unit *u, size_t n, unsigned iters,
                              double *seconds, uint64_t *bytes, size_t *n_used)
{
    if (!g || (!u && n) || !iters)
        return RFS_E_ARG;
    if (g->broken || !rfs_gpu_cuda_ok(g, cudaSetDevice(g->o.device), "cudaSetDevice"))
        return RFS_E_GPU;
    rfs_gpu_slot *s = &g->slot[0];
    plan_bench(s, u, n, bytes, n_used);
    if (!*n_used || rfs_gpu_plan_finish(&s->plan) != RFS_OK)
        return RFS_E_ARG;
    rfs_gpu_view v;
    size_t up = stage_meta(s, &v, s->d_out);
    size_t nt = s->plan.n_tiles;
    if (!rfs_gpu_cuda_ok(g, cudaMemcpy(s->d_stage, s->h_stage, up, cudaMemcpyHostToDevice),
                         "upload") ||
        !rfs_gpu_cuda_ok(g, cudaMemset(s->d_err, 0, nt * 4), "memset"))
        return RFS_E_GPU;
    rfs_err err = time_kernels(g, s, &v, 1, seconds); /* warm-up */
    if (err == RFS_OK)
        err = time_kernels(g, s, &v, iters, seconds);
    if (err != RFS_OK)
        return err;
    if (!rfs_gpu_cuda_ok(g, cudaMemcpy(s->h_err, s->d_err, nt * 4, cudaMemcpyDeviceToHost),
                         "download"))
        return RFS_E_GPU;
    for (size_t k = 0; k < nt; k++)
        if (s->h_err[k])
            return RFS_E_CORRUPT;
    return RFS_OK;
}
