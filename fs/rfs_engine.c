/*
 * rfs_engine.c - read path, prefetch and statistics (see rfs_engine.h).
 *
 * Design note: a read of [off, off+len)
 *  1. walks the file's spans (rfs_image_map): RAW spans become image-range
 *     pieces (merged when contiguous); unit spans take a cache reference,
 *     creating the entry when absent (this read then owns its decode);
 *  2. decodes all owned units as one batch (CPU pool with the calling
 *     thread taking part, or the GPU for large batches) and publishes them;
 *  3. only then waits for units that other threads are decoding (an owner
 *     never waits before publishing, so two readers can't deadlock);
 *  4. points the memory pieces into the cached buffers.
 * Prefetch reserves the absent units of a range and queues them as small
 * low-priority jobs; a job claims each unit just before decoding it, and a
 * read that reaches a unit no job has claimed yet claims and decodes it in
 * step 2 instead of waiting (so it waits only for decodes under way).  Pool
 * workers never wait on the cache, so every claimed entry is always making
 * progress.
 */
#include "rfs_engine.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rfs_array.h"
#include "rfs_guard.h"
#include "rfs_image_info.h"
#include "rfs_pool.h"

#define RFS_PREFETCH_MIN (1u << 20)

struct rfs_engine {
    const rfs_image *img;
    rfs_image_summary sum;
    rfs_cache *cache;
    rfs_pool *pool;
    rfs_batch cpu;
    rfs_batch gpu;
    int have_gpu;
    rfs_hist decode_ns;
    rfs_hist request_us; /* FUSE read requests, arrival to reply */
    uint64_t prefetch_min, prefetch_max, prefetch_cap;
    void (*log)(void *, const char *);
    void *log_ctx;
    atomic_int stopping;
    atomic_uchar *bad_logged; /* one bit per unit */
    atomic_uint bad_raw_logged; /* damaged RAW extents logged so far */
    struct stat img_stat;       /* the image file when the engine started */
    atomic_int img_changed;     /* it has changed since: RAW reads fail */
    atomic_uint_least64_t bytes_served, raw_bytes, reads, read_errors;
    atomic_uint_least64_t tiles_decoded, decode_errors, decoded_bytes;
    atomic_uint_least64_t gpu_batches;
    atomic_uint_least64_t prefetch_batches, prefetch_inflight, prefetch_resets;
    atomic_uint_least64_t prefetch_stolen;
    /* Where read time goes, summed over requests (ns): all of it, the
     * serving thread's CPU, decoding the units a read owns, waiting for
     * units other threads decode, the reply. */
    atomic_uint_least64_t req_ns, req_cpu_ns, req_decode_ns, req_wait_ns, req_reply_ns;
};

/* ------------------------------------------------------------ lifecycle */

/*
 * The one place that refuses -o gpu=on: when the GPU backend cannot open,
 * because there is no usable device or because the build has no CUDA
 * (cuda/rfs_gpu_none.c says so), gpu=on fails with the reason and
 * gpu=auto goes on with the CPU alone.
 */
static rfs_err open_gpu(rfs_engine *eng, rfs_gpu_mode mode, size_t gpu_min, char *why,
                        size_t why_cap)
{
    char gwhy[200] = "";
    rfs_gpu_batch_opts go = {&eng->cpu, gpu_min, eng->log, eng->log_ctx};
    if (mode == RFS_GPU_OFF)
        return RFS_OK;
    if (rfs_gpu_batch_open(&eng->gpu, eng->img, &go, gwhy, sizeof(gwhy)) == RFS_OK) {
        eng->have_gpu = 1;
        return RFS_OK;
    }
    if (mode == RFS_GPU_ON) {
        snprintf(why, why_cap, "gpu=on but no usable GPU: %s", gwhy);
        return RFS_E_ARG;
    }
    return RFS_OK;
}

static unsigned online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1u;
}

static void set_prefetch_limits(rfs_engine *eng, const rfs_engine_opts *o)
{
    uint64_t max = o->prefetch_max;
    /* Never let prefetch push more than a quarter of the cache around. */
    if (max > o->cache_bytes / 4)
        max = o->cache_bytes / 4;
    eng->prefetch_max = max;
    eng->prefetch_min = RFS_PREFETCH_MIN > max ? max : RFS_PREFETCH_MIN;
    eng->prefetch_cap = max * 2;
}

rfs_err rfs_engine_create(rfs_engine **out, const rfs_image *img, const rfs_engine_opts *o,
                          char *why, size_t why_cap)
{
    rfs_engine *eng = calloc(1, sizeof(*eng));
    rfs_err err = RFS_E_NOMEM;
    *out = NULL;
    if (!eng)
        goto fail;
    eng->img = img;
    if (!rfs_image_is_sourced(img) && fstat(rfs_image_fd(img), &eng->img_stat) != 0) {
        err = RFS_E_IO;
        snprintf(why, why_cap, "cannot stat the image: %s", strerror(errno));
        goto fail_quiet;
    }
    rfs_image_get_summary(img, &eng->sum);
    eng->log = o->log;
    eng->log_ctx = o->log_ctx;
    set_prefetch_limits(eng, o);
    eng->bad_logged = calloc(eng->sum.n_units / 8 + 1, 1);
    eng->cache = rfs_cache_create(o->cache_bytes);
    eng->pool = rfs_pool_create(o->threads ? o->threads : online_cpus());
    if (!eng->bad_logged || !eng->cache || !eng->pool)
        goto fail;
    err = rfs_batch_cpu_open(&eng->cpu, img, eng->pool, &eng->decode_ns);
    if (err != RFS_OK)
        goto fail;
    err = open_gpu(eng, o->gpu, o->gpu_min_bytes, why, why_cap);
    if (err != RFS_OK)
        goto fail;
    *out = eng;
    return RFS_OK;
fail:
    if (err == RFS_E_NOMEM)
        snprintf(why, why_cap, "out of memory starting the read engine");
fail_quiet:
    rfs_engine_destroy(eng);
    return err;
}

void rfs_engine_destroy(rfs_engine *eng)
{
    if (!eng)
        return;
    atomic_store(&eng->stopping, 1);
    rfs_pool_destroy(eng->pool); /* queued prefetch jobs see stopping */
    if (eng->have_gpu)
        eng->gpu.close(eng->gpu.self);
    if (eng->cpu.close)
        eng->cpu.close(eng->cpu.self);
    rfs_cache_destroy(eng->cache);
    free(eng->bad_logged);
    free(eng);
}

const rfs_image *rfs_engine_image(const rfs_engine *eng)
{
    return eng->img;
}

uint64_t rfs_engine_prefetch_min(const rfs_engine *eng)
{
    return eng->prefetch_min;
}

uint64_t rfs_engine_prefetch_max(const rfs_engine *eng)
{
    return eng->prefetch_max;
}

/* ------------------------------------------------------------ decoding */

/* Decode a batch on the GPU when it is big enough, else on the CPU. */
static void batch_decode(rfs_engine *eng, rfs_batch_item *items, size_t n, int background)
{
    size_t bytes = 0, ok = 0;
    for (size_t i = 0; i < n; i++)
        bytes += items[i].dst_cap;
    if (eng->have_gpu && bytes >= eng->gpu.min_bytes) {
        eng->gpu.decode(eng->gpu.self, items, n, background);
        atomic_fetch_add(&eng->gpu_batches, 1);
    } else {
        eng->cpu.decode(eng->cpu.self, items, n, background);
    }
    for (size_t i = 0; i < n; i++) {
        if (items[i].err == RFS_OK && items[i].dst_size != items[i].dst_cap)
            items[i].err = RFS_E_CORRUPT; /* index and unit disagree on size */
        if (items[i].err == RFS_OK)
            ok++;
    }
    atomic_fetch_add(&eng->tiles_decoded, ok);
    atomic_fetch_add(&eng->decoded_bytes, bytes);
    atomic_fetch_add(&eng->decode_errors, n - ok);
}

static void item_for(rfs_batch_item *it, rfs_centry *e)
{
    it->unit = rfs_centry_unit(e);
    it->dst = rfs_centry_data(e);
    it->dst_cap = rfs_centry_size(e);
    it->dst_size = 0;
    it->err = RFS_OK;
}

static void log_bad_unit(rfs_engine *eng, uint64_t ino, uint64_t unit, rfs_err err)
{
    unsigned char bit = (unsigned char)(1u << (unit & 7));
    char line[256];
    if (unit / 8 > eng->sum.n_units / 8)
        return;
    if (err == RFS_E_IO && rfs_image_is_sourced(eng->img))
        return; /* a remote fetch failure: the source logged it, once */
    if (atomic_fetch_or(&eng->bad_logged[unit / 8], bit) & bit)
        return;
    if (!eng->log)
        return;
    snprintf(line, sizeof(line), "unit %llu (file inode %llu) cannot be read: %s",
             (unsigned long long)unit, (unsigned long long)ino, rfs_strerror(err));
    eng->log(eng->log_ctx, line);
}

/* A damaged RAW extent: logged for the first few only (no per-extent
 * bitmap; each read of it still fails with EIO). */
static void log_bad_raw(rfs_engine *eng, uint64_t ino, uint64_t raw_off, rfs_err err)
{
    char line[256];
    if (!eng->log || atomic_fetch_add(&eng->bad_raw_logged, 1) >= 16)
        return;
    snprintf(line, sizeof(line), "raw extent at image offset %llu (file inode %llu) cannot be "
             "read: %s", (unsigned long long)raw_off, (unsigned long long)ino, rfs_strerror(err));
    eng->log(eng->log_ctx, line);
}

/* ------------------------------------------------------------ readv */

void rfs_readv_init(rfs_readv *rv)
{
    memset(rv, 0, sizeof(*rv));
    rv->pieces = rv->inline_pieces;
    rv->cap_pieces = RFS_READV_INLINE;
    rv->refs = rv->inline_refs;
    rv->cap_refs = RFS_READV_INLINE;
}

/* Grow an array that starts inline; 0 on success. */
static int grow(void **arr, size_t *cap, size_t elem, const void *inline_arr)
{
    size_t ncap = *cap * 2;
    void *n = malloc(ncap * elem);
    if (!n)
        return -1;
    memcpy(n, *arr, *cap * elem);
    if (*arr != inline_arr)
        free(*arr);
    *arr = n;
    *cap = ncap;
    return 0;
}

static rfs_err add_piece(rfs_readv *rv, const rfs_piece *p)
{
    rfs_piece *last = rv->n_pieces ? &rv->pieces[rv->n_pieces - 1] : NULL;
    if (p->ref < 0 && last && last->ref < 0 && last->raw_off + last->len == p->raw_off) {
        last->len += p->len;
        return RFS_OK;
    }
    if (rv->n_pieces == rv->cap_pieces &&
        grow((void **)&rv->pieces, &rv->cap_pieces, sizeof(rfs_piece), rv->inline_pieces))
        return RFS_E_NOMEM;
    rv->pieces[rv->n_pieces++] = *p;
    return RFS_OK;
}

/* Reference unit (decoded size size) for rv; *idx receives its ref index. */
static rfs_err add_ref(rfs_engine *eng, rfs_readv *rv, uint64_t unit, size_t size, long *idx)
{
    rfs_readv_ref *last = rv->n_refs ? &rv->refs[rv->n_refs - 1] : NULL;
    int owned;
    if (last && rfs_centry_unit(last->e) == unit) {
        *idx = (long)rv->n_refs - 1;
        return RFS_OK;
    }
    if (rv->n_refs == rv->cap_refs &&
        grow((void **)&rv->refs, &rv->cap_refs, sizeof(rfs_readv_ref), rv->inline_refs))
        return RFS_E_NOMEM;
    rfs_centry *e = rfs_cache_acquire(eng->cache, unit, size, &owned);
    if (!e)
        return RFS_E_NOMEM;
    rv->refs[rv->n_refs].e = e;
    rv->refs[rv->n_refs].owned = owned;
    *idx = (long)rv->n_refs++;
    return RFS_OK;
}

typedef struct raw_check {
    const rfs_image *img;
    uint64_t ino, off;
} raw_check;

/* The RAW extent's checksum (first use): touches the image mapping. */
static rfs_err raw_verify_guarded(void *arg)
{
    raw_check *c = arg;
    return rfs_image_raw_verify(c->img, c->ino, c->off);
}

/*
 * RAW pieces are served from the image file itself (spliced by libfuse)
 * once their extent's checksum has passed, so a file rewritten under the
 * mount would hand out its new bytes, and a shortened one a short read
 * that the kernel takes for the end of the file.  Any change to the file
 * (write, truncate, utime) moves its ctime: one fstat per read with RAW
 * pieces tells, and from then on those reads fail with EIO.  A change in
 * the microseconds between this check and the splice is not covered.
 */
static rfs_err image_unchanged(rfs_engine *eng)
{
    struct stat sb;
    const struct stat *was = &eng->img_stat;
    /* A sourced (remote) image: its fd is a cache file that fetches write
     * to; the source pins the object itself (docs/remote.md). */
    if (rfs_image_is_sourced(eng->img))
        return RFS_OK;
    if (!atomic_load(&eng->img_changed) && fstat(rfs_image_fd(eng->img), &sb) == 0 &&
        sb.st_size == was->st_size && sb.st_ctim.tv_sec == was->st_ctim.tv_sec &&
        sb.st_ctim.tv_nsec == was->st_ctim.tv_nsec)
        return RFS_OK;
    if (atomic_exchange(&eng->img_changed, 1) == 0 && eng->log)
        eng->log(eng->log_ctx, "the image file changed under the mount: reads of its stored-raw "
                               "ranges fail with EIO from now on (unmount and mount again)");
    return RFS_E_IO;
}

/* Step 1: pieces and references for [off, off+len). */
static rfs_err plan_read(rfs_engine *eng, uint64_t ino, uint64_t off, size_t len, rfs_readv *rv)
{
    uint64_t pos = off, end = off + len;
    while (pos < end) {
        rfs_span sp;
        rfs_piece p = {NULL, 0, 0, -1};
        rfs_err err = rfs_image_map(eng->img, ino, pos, &sp);
        if (err != RFS_OK)
            return err;
        if (sp.length == 0)
            return RFS_E_CORRUPT;
        p.len = sp.length < end - pos ? (size_t)sp.length : (size_t)(end - pos);
        if (sp.is_raw) {
            /* RAW bytes are served from the image file as they are, so
             * their checksum is this read's only guard against damage. */
            raw_check rc = {eng->img, ino, pos};
            err = rfs_guard_call(raw_verify_guarded, &rc);
            if (err != RFS_OK) {
                log_bad_raw(eng, ino, sp.raw_off, err);
                return err;
            }
            p.raw_off = sp.raw_off;
            rv->has_raw = 1;
        } else {
            if (sp.unit_size == 0 || sp.unit_off > sp.unit_size ||
                p.len > sp.unit_size - sp.unit_off)
                return RFS_E_CORRUPT;
            err = add_ref(eng, rv, sp.unit, sp.unit_size, &p.ref);
            if (err != RFS_OK)
                return err;
            p.raw_off = sp.unit_off;
        }
        err = add_piece(rv, &p);
        if (err != RFS_OK)
            return err;
        pos += p.len;
    }
    return rv->has_raw ? image_unchanged(eng) : RFS_OK;
}

/*
 * Units that prefetch has reserved but no worker has started: this read
 * decodes them itself rather than wait behind the queued prefetch work.
 */
static void claim_queued(rfs_engine *eng, rfs_readv *rv)
{
    uint64_t stolen = 0;
    for (size_t i = 0; i < rv->n_refs; i++)
        if (!rv->refs[i].owned && rfs_cache_claim(eng->cache, rv->refs[i].e)) {
            rv->refs[i].owned = 1;
            stolen++;
        }
    if (stolen)
        atomic_fetch_add(&eng->prefetch_stolen, stolen);
}

/* Step 2: decode and publish the units this read owns. */
static rfs_err decode_owned(rfs_engine *eng, rfs_readv *rv)
{
    rfs_batch_item stack[RFS_READV_INLINE], *items = stack;
    size_t n = 0;
    claim_queued(eng, rv);
    for (size_t i = 0; i < rv->n_refs; i++)
        n += rv->refs[i].owned;
    if (n == 0)
        return RFS_OK;
    if (n > RFS_READV_INLINE && !(items = malloc(n * sizeof(*items)))) {
        for (size_t i = 0; i < rv->n_refs; i++)
            if (rv->refs[i].owned)
                rfs_cache_publish(eng->cache, rv->refs[i].e, RFS_E_NOMEM);
        return RFS_E_NOMEM;
    }
    n = 0;
    for (size_t i = 0; i < rv->n_refs; i++)
        if (rv->refs[i].owned)
            item_for(&items[n++], rv->refs[i].e);
    batch_decode(eng, items, n, 0);
    n = 0;
    for (size_t i = 0; i < rv->n_refs; i++)
        if (rv->refs[i].owned)
            rfs_cache_publish(eng->cache, rv->refs[i].e, items[n++].err);
    if (items != stack)
        free(items);
    return RFS_OK;
}

/* Step 3: wait for every unit; the first error wins, each bad unit is logged. */
static rfs_err wait_all(rfs_engine *eng, uint64_t ino, rfs_readv *rv)
{
    rfs_err first = RFS_OK;
    for (size_t i = 0; i < rv->n_refs; i++) {
        rfs_err err = rfs_cache_wait(eng->cache, rv->refs[i].e);
        if (err == RFS_OK)
            continue;
        if (err != RFS_E_NOMEM)
            log_bad_unit(eng, ino, rfs_centry_unit(rv->refs[i].e), err);
        if (first == RFS_OK)
            first = err;
    }
    return first;
}

rfs_err rfs_engine_read(rfs_engine *eng, uint64_t ino, uint64_t off, size_t len, rfs_readv *rv)
{
    rfs_err err;
    uint64_t raw = 0, t0, t1;
    rv->n_pieces = rv->n_refs = 0;
    rv->bytes = 0;
    rv->has_raw = 0;
    atomic_fetch_add(&eng->reads, 1);
    err = plan_read(eng, ino, off, len, rv);
    if (err != RFS_OK) {
        /* Entries this read created must still be published. */
        for (size_t i = 0; i < rv->n_refs; i++)
            if (rv->refs[i].owned)
                rfs_cache_publish(eng->cache, rv->refs[i].e, RFS_E_NOMEM);
        goto fail;
    }
    t0 = rfs_hist_now_ns();
    err = decode_owned(eng, rv);
    t1 = rfs_hist_now_ns();
    if (err == RFS_OK)
        err = wait_all(eng, ino, rv);
    atomic_fetch_add(&eng->req_decode_ns, t1 - t0);
    atomic_fetch_add(&eng->req_wait_ns, rfs_hist_now_ns() - t1);
    if (err != RFS_OK)
        goto fail;
    for (size_t i = 0; i < rv->n_pieces; i++) {
        rfs_piece *p = &rv->pieces[i];
        if (p->ref >= 0)
            p->mem = (const uint8_t *)rfs_centry_data(rv->refs[p->ref].e) + p->raw_off;
        else
            raw += p->len;
    }
    if (raw)
        atomic_fetch_add(&eng->raw_bytes, raw);
    rv->bytes = len;
    return RFS_OK;
fail:
    atomic_fetch_add(&eng->read_errors, 1);
    rfs_readv_release(eng, rv);
    return err;
}

void rfs_readv_release(rfs_engine *eng, rfs_readv *rv)
{
    for (size_t i = 0; i < rv->n_refs; i++)
        rfs_cache_release(eng->cache, rv->refs[i].e);
    if (rv->pieces != rv->inline_pieces)
        free(rv->pieces);
    if (rv->refs != rv->inline_refs)
        free(rv->refs);
    rfs_readv_init(rv);
}

void rfs_engine_note_served(rfs_engine *eng, size_t bytes)
{
    atomic_fetch_add(&eng->bytes_served, bytes);
}

void rfs_engine_note_request(rfs_engine *eng, uint64_t ns, uint64_t cpu_ns, uint64_t reply_ns)
{
    rfs_hist_add(&eng->request_us, ns / 1000u);
    atomic_fetch_add(&eng->req_ns, ns);
    atomic_fetch_add(&eng->req_cpu_ns, cpu_ns);
    atomic_fetch_add(&eng->req_reply_ns, reply_ns);
}

void rfs_engine_note_prefetch_reset(rfs_engine *eng)
{
    atomic_fetch_add(&eng->prefetch_resets, 1);
}

/* ------------------------------------------------------------ prefetch */

/*
 * Prefetch jobs decode at most this many units each on the CPU: a reader
 * that reaches a unit still queued claims it and decodes it itself
 * (claim_queued), so what can make it wait is only the jobs the workers
 * have started, a few units each.  With a GPU one range is one job (its
 * batches want to be large).
 */
#define RFS_PF_JOB_UNITS 8

typedef struct pf_job {
    rfs_engine *eng;
    size_t n;
    uint64_t bytes;
    rfs_centry **entries; /* n reserved entries, each referenced by the job */
    rfs_batch_item *items;
} pf_job;

typedef struct pf_list {
    rfs_centry **entries;
    size_t n, cap;
} pf_list;

/* Entries that will not be decoded: those still unclaimed are dropped
 * (RFS_E_NOMEM), those a reader claimed are its own; all are released. */
static void pf_abandon(rfs_engine *eng, rfs_centry **entries, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (rfs_cache_claim(eng->cache, entries[i]))
            rfs_cache_publish(eng->cache, entries[i], RFS_E_NOMEM);
        rfs_cache_release(eng->cache, entries[i]);
    }
}

static void pf_job_free(pf_job *job)
{
    free(job->entries);
    free(job->items);
    free(job);
}

/* Claim what no reader has taken, decode and publish it; release all. */
static void pf_job_run(void *arg)
{
    pf_job *job = arg;
    rfs_engine *eng = job->eng;
    size_t m = 0;
    if (atomic_load(&eng->stopping)) {
        pf_abandon(eng, job->entries, job->n);
        goto done;
    }
    for (size_t i = 0; i < job->n; i++) {
        rfs_centry *e = job->entries[i];
        if (!rfs_cache_claim(eng->cache, e))
            continue; /* a reader decodes it */
        job->entries[i] = job->entries[m]; /* claimed ones first */
        job->entries[m] = e;
        item_for(&job->items[m++], e);
    }
    if (m)
        batch_decode(eng, job->items, m, 1);
    for (size_t i = 0; i < job->n; i++) {
        if (i < m)
            rfs_cache_publish(eng->cache, job->entries[i], job->items[i].err);
        rfs_cache_release(eng->cache, job->entries[i]);
    }
done:
    atomic_fetch_sub(&eng->prefetch_inflight, job->bytes);
    pf_job_free(job);
}

/* Reserve the absent units of [start, end) into list. */
static void pf_collect(rfs_engine *eng, pf_list *list, uint64_t ino, uint64_t start, uint64_t end)
{
    uint64_t pos = start, last_unit = UINT64_MAX;
    while (pos < end) {
        rfs_span sp;
        if (rfs_image_map(eng->img, ino, pos, &sp) != RFS_OK || sp.length == 0)
            return;
        if (!sp.is_raw && sp.unit != last_unit && sp.unit_size > 0) {
            rfs_centry *e;
            last_unit = sp.unit;
            if (rfs_array_reserve(&list->entries, &list->cap, list->n + 1,
                                  sizeof(*list->entries)))
                return;
            e = rfs_cache_reserve(eng->cache, sp.unit, sp.unit_size);
            if (e)
                list->entries[list->n++] = e;
        }
        pos += sp.length;
    }
}

/* Queue entries [0, n) as one low-priority job; 0 on success. */
static int pf_submit(rfs_engine *eng, rfs_centry **entries, size_t n)
{
    pf_job *job = calloc(1, sizeof(*job));
    if (!job)
        return -1;
    job->eng = eng;
    job->n = n;
    job->entries = malloc(n * sizeof(*job->entries));
    job->items = calloc(n, sizeof(*job->items));
    if (!job->entries || !job->items) {
        pf_job_free(job);
        return -1;
    }
    memcpy(job->entries, entries, n * sizeof(*entries));
    for (size_t i = 0; i < n; i++)
        job->bytes += rfs_centry_size(entries[i]);
    atomic_fetch_add(&eng->prefetch_inflight, job->bytes);
    atomic_fetch_add(&eng->prefetch_batches, 1);
    if (rfs_pool_submit(eng->pool, RFS_PRIO_LOW, pf_job_run, job) != 0) {
        atomic_fetch_sub(&eng->prefetch_inflight, job->bytes);
        pf_job_free(job);
        return -1;
    }
    return 0;
}

int rfs_engine_tensor_at(rfs_engine *eng, uint64_t ino, uint64_t off, uint64_t *start,
                         uint64_t *end)
{
    rfs_span sp;
    rfs_unit_src src;
    if (rfs_image_map(eng->img, ino, off, &sp) != RFS_OK || sp.is_raw ||
        sp.ext_len <= sp.unit_size ||
        rfs_image_unit_source(eng->img, sp.unit, &src) != RFS_OK || src.kind != RFS_UNIT_TILE)
        return 0;
    *start = sp.ext_off;
    *end = sp.ext_off + sp.ext_len;
    return 1;
}

void rfs_engine_prefetch(rfs_engine *eng, uint64_t ino, uint64_t start, uint64_t end)
{
    pf_list list = {NULL, 0, 0};
    size_t done = 0, per = eng->have_gpu ? SIZE_MAX : RFS_PF_JOB_UNITS;
    if (eng->prefetch_max == 0 || atomic_load(&eng->stopping) ||
        atomic_load(&eng->prefetch_inflight) >= eng->prefetch_cap)
        return;
    pf_collect(eng, &list, ino, start, end);
    while (done < list.n) {
        size_t k = list.n - done < per ? list.n - done : per;
        if (pf_submit(eng, list.entries + done, k) != 0)
            break;
        done += k;
    }
    pf_abandon(eng, list.entries + done, list.n - done);
    free(list.entries);
}

/* ------------------------------------------------------------ stats */

#define RFS_REQUEST_BINS 32 /* 2^31 us = 36 minutes: enough for any request */

/*
 * snprintf after the *n bytes asked for so far: *n becomes the whole length
 * asked for, as one snprintf of everything would return it (so a short buf
 * still reports the size it needs), or stays negative after an error.
 */
static void json_add(char *buf, size_t cap, int *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void json_add(char *buf, size_t cap, int *n, const char *fmt, ...)
{
    va_list ap;
    size_t at;
    int m;
    if (*n < 0)
        return;
    at = (size_t)*n < cap ? (size_t)*n : cap;
    va_start(ap, fmt);
    m = vsnprintf(buf ? buf + at : NULL, cap - at, fmt, ap);
    va_end(ap);
    *n = m < 0 ? m : *n + m;
}

/*
 * The request latency part of the stats: percentiles and the whole
 * histogram folded into power-of-two bins of microseconds, so a reader can
 * tell a slow tail from a slow median.
 */
static void request_stats_json(rfs_engine *eng, char *buf, size_t cap, int *n)
{
    uint64_t bins[RFS_REQUEST_BINS];
    unsigned nb = rfs_hist_pow2(&eng->request_us, bins, RFS_REQUEST_BINS);
    json_add(buf, cap, n,
             "\"read_us_count\":%llu,\"read_us_p50\":%llu,\"read_us_p90\":%llu,"
             "\"read_us_p99\":%llu,\"read_us_max\":%llu,\"read_us_log2\":[",
             (unsigned long long)rfs_hist_count(&eng->request_us),
             (unsigned long long)rfs_hist_quantile(&eng->request_us, 0.50),
             (unsigned long long)rfs_hist_quantile(&eng->request_us, 0.90),
             (unsigned long long)rfs_hist_quantile(&eng->request_us, 0.99),
             (unsigned long long)rfs_hist_quantile(&eng->request_us, 1.0));
    for (unsigned k = 0; k < nb; k++)
        json_add(buf, cap, n, "%s%llu", k ? "," : "", (unsigned long long)bins[k]);
    json_add(buf, cap, n,
             "],\"read_us_sum\":%llu,\"read_cpu_us_sum\":%llu,\"read_decode_us_sum\":%llu,"
             "\"read_wait_us_sum\":%llu,\"read_reply_us_sum\":%llu,",
             (unsigned long long)(atomic_load(&eng->req_ns) / 1000u),
             (unsigned long long)(atomic_load(&eng->req_cpu_ns) / 1000u),
             (unsigned long long)(atomic_load(&eng->req_decode_ns) / 1000u),
             (unsigned long long)(atomic_load(&eng->req_wait_ns) / 1000u),
             (unsigned long long)(atomic_load(&eng->req_reply_ns) / 1000u));
}

/* The GPU part of the stats: its batches, then the backend's own counters. */
static void gpu_stats_json(rfs_engine *eng, char *buf, size_t cap, int *n)
{
    rfs_batch_stats gs = {0};
    if (eng->have_gpu && eng->gpu.get_stats)
        eng->gpu.get_stats(eng->gpu.self, &gs);
    json_add(buf, cap, n,
             "\"gpu\":\"%s\",\"gpu_batches\":%llu,\"gpu_tiles\":%llu,"
             "\"gpu_fallback_tiles\":%llu,\"gpu_launches\":%llu,\"gpu_errors\":%llu,"
             "\"gpu_usable\":%s}",
             eng->have_gpu ? eng->gpu.name : "off",
             (unsigned long long)atomic_load(&eng->gpu_batches),
             (unsigned long long)gs.units_dev, (unsigned long long)gs.units_cpu,
             (unsigned long long)gs.launches, (unsigned long long)gs.dev_errors,
             eng->have_gpu && gs.usable ? "true" : "false");
}

size_t rfs_engine_stats_json(rfs_engine *eng, char *buf, size_t cap)
{
    rfs_cache_stats cs;
    int n = 0;
    rfs_cache_get_stats(eng->cache, &cs);
    json_add(
        buf, cap, &n,
        "{\"bytes_served\":%llu,\"raw_bytes_served\":%llu,\"reads\":%llu,\"read_errors\":%llu,"
        "\"tiles_decoded\":%llu,\"decoded_bytes\":%llu,\"decode_errors\":%llu,"
        "\"cache_hits\":%llu,\"cache_waits\":%llu,\"cache_misses\":%llu,\"evictions\":%llu,"
        "\"prefetch_hits\":%llu,\"prefetched_tiles\":%llu,\"prefetch_batches\":%llu,"
        "\"prefetch_late\":%llu,\"prefetch_unused\":%llu,\"prefetch_resets\":%llu,"
        "\"prefetch_stolen\":%llu,"
        "\"cache_bytes\":%llu,\"cache_peak_bytes\":%llu,\"cache_budget\":%llu,"
        "\"cache_over_budget\":%llu,\"cache_entries\":%llu,"
        "\"decode_us_p50\":%.1f,\"decode_us_p99\":%.1f,"
        "\"decode_threads\":%u,\"image_faults\":%llu,\"image_changed\":%s,",
        (unsigned long long)atomic_load(&eng->bytes_served),
        (unsigned long long)atomic_load(&eng->raw_bytes),
        (unsigned long long)atomic_load(&eng->reads),
        (unsigned long long)atomic_load(&eng->read_errors),
        (unsigned long long)atomic_load(&eng->tiles_decoded),
        (unsigned long long)atomic_load(&eng->decoded_bytes),
        (unsigned long long)atomic_load(&eng->decode_errors), (unsigned long long)cs.hits,
        (unsigned long long)cs.waits, (unsigned long long)cs.misses,
        (unsigned long long)cs.evictions, (unsigned long long)cs.prefetch_hits,
        (unsigned long long)cs.prefetched,
        (unsigned long long)atomic_load(&eng->prefetch_batches),
        (unsigned long long)cs.prefetch_late, (unsigned long long)cs.prefetch_unused,
        (unsigned long long)atomic_load(&eng->prefetch_resets),
        (unsigned long long)atomic_load(&eng->prefetch_stolen), (unsigned long long)cs.bytes,
        (unsigned long long)cs.bytes_peak, (unsigned long long)cs.budget,
        (unsigned long long)cs.over_budget, (unsigned long long)cs.entries,
        (double)rfs_hist_quantile(&eng->decode_ns, 0.50) / 1000.0,
        (double)rfs_hist_quantile(&eng->decode_ns, 0.99) / 1000.0, rfs_pool_threads(eng->pool),
        (unsigned long long)rfs_guard_faults(), atomic_load(&eng->img_changed) ? "true" : "false");
    request_stats_json(eng, buf, cap, &n);
    gpu_stats_json(eng, buf, cap, &n);
    return n < 0 ? 0 : (size_t)n;
}
