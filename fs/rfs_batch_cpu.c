/*
 * rfs_batch_cpu.c - the CPU batch-decode backend (see rfs_batch.h).
 *
 * Each thread that decodes (pool workers and FUSE threads taking part in
 * rfs_pool_for) needs its own rfs_rctx.  They are made on first use, found
 * again through a pthread key, destroyed by the key's destructor when the
 * thread exits, and the ones still alive at close are destroyed there (all
 * contexts are on a list for that).
 */
#include "rfs_batch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "rfs_guard.h"
#include "rfs_pool.h"

typedef struct cpu_ctx {
    struct cpu_ctx *prev, *next;
    struct cpu_backend *owner;
    rfs_rctx *rctx;
} cpu_ctx;

typedef struct cpu_backend {
    const rfs_image *img;
    rfs_pool *pool;
    rfs_hist *hist;
    pthread_key_t key;
    pthread_mutex_t mu;
    cpu_ctx *all; /* every live context */
} cpu_backend;

static void ctx_unlink(cpu_backend *cb, cpu_ctx *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        cb->all = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

/* pthread key destructor: the thread is exiting. */
static void ctx_thread_exit(void *arg)
{
    cpu_ctx *c = arg;
    cpu_backend *cb = c->owner;
    pthread_mutex_lock(&cb->mu);
    ctx_unlink(cb, c);
    pthread_mutex_unlock(&cb->mu);
    rfs_rctx_destroy(c->rctx);
    free(c);
}

static rfs_rctx *ctx_get(cpu_backend *cb)
{
    cpu_ctx *c = pthread_getspecific(cb->key);
    if (c)
        return c->rctx;
    c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->owner = cb;
    c->rctx = rfs_rctx_create(cb->img);
    if (!c->rctx || pthread_setspecific(cb->key, c) != 0) {
        rfs_rctx_destroy(c->rctx);
        free(c);
        return NULL;
    }
    pthread_mutex_lock(&cb->mu);
    c->next = cb->all;
    if (cb->all)
        cb->all->prev = c;
    cb->all = c;
    pthread_mutex_unlock(&cb->mu);
    return c->rctx;
}

/*
 * Drop the mapping of a unit's encoded bytes once decoded.  The image is
 * mapped MAP_SHARED, so its pages would otherwise pile up in the daemon's RSS
 * (as file pages) until the whole image is resident.  The pages stay in the
 * page cache; a later decode maps them again (minor fault), and a neighbour
 * decoding there at the same time simply refaults.
 */
/* The page-aligned range of the image mapping holding unit's encoded bytes. */
static int source_pages(const rfs_image *img, uint64_t unit, uintptr_t *lo, uintptr_t *hi)
{
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    rfs_unit_src src;
    if (rfs_image_unit_source(img, unit, &src) != RFS_OK || src.size == 0)
        return 0;
    *lo = (uintptr_t)src.data & ~(page - 1);
    *hi = ((uintptr_t)src.data + src.size + page - 1) & ~(page - 1);
    return 1;
}

/*
 * A local image is dropped in whole aligned regions of this size, the PMD
 * size on x86-64 and arm64 with 4 KiB pages.  A cached image's page cache is
 * mostly folios that large, and a fault maps such a folio whole, with one
 * PMD.  Unmapping part of it splits the PMD: a TLB flush on every CPU the
 * daemon runs on, and from then on 4 KiB mappings, a fault per 64 KiB
 * (fault-around), for the region's other units.  Dropped unit by unit, the
 * splits were ~5% of the daemon's CPU on the 5 GiB shard (docs/benchmarks.md,
 * "Image pages dropped in 2 MiB regions").
 */
#define RFS_DROP_REGION ((uintptr_t)2 << 20)

static uintptr_t region_down(uintptr_t a) { return a & ~(RFS_DROP_REGION - 1); }

/* Drop [lo, hi) of the mapping [map_lo, map_hi), clamped to it. */
static void drop_pages(uintptr_t map_lo, uintptr_t map_hi, uintptr_t lo, uintptr_t hi)
{
    lo = lo > map_lo ? lo : map_lo;
    hi = hi < map_hi ? hi : map_hi;
    if (hi > lo)
        (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* How many regions behind a stream a prefetched unit drops (below). */
#define RFS_DROP_BACK 8

/* Every this many drops (256 MiB of tiles), one drop is of the whole
 * mapping instead: it takes what the rules below leave mapped, a stream's
 * last regions where it stops (mmap-threads, four streams per tensor, left
 * ~130 MiB of the 5 GiB shard's image mapped without this) and a region a
 * straggler mapped again after its last drop.  Units being decoded then
 * refault. */
#define RFS_DROP_SWEEP 1024
static atomic_uint_fast64_t drops_done;

/*
 * The regions a prefetched unit drops.  Prefetch decodes a stream in unit
 * order, so only a unit whose pages cross a region's end acts: it drops the
 * regions ending past the previous unit's pages and at or before its own
 * end (the region it completes), and the RFS_DROP_BACK regions before them
 * again, which a neighbour still decoding there has mapped back in; never
 * below the mapping's start.  (One region back was not enough: on two
 * cores a descheduled worker can lag further, and ~10% of the 5 GiB shard's
 * image stayed mapped.)  Dropping a range already unmapped costs a page
 * table walk, no TLB flush.
 */
static void drop_behind(uintptr_t map_lo, uintptr_t map_hi, uintptr_t prev_hi, uintptr_t hi)
{
    const uintptr_t back = RFS_DROP_BACK * RFS_DROP_REGION;
    uintptr_t lo = region_down(prev_hi), end = region_down(hi);
    if (end > lo)
        drop_pages(map_lo, map_hi, lo > map_lo + back ? lo - back : map_lo, end);
}

void rfs_batch_drop_source(const rfs_image *img, uint64_t unit, int in_stream)
{
    const uint8_t *base;
    uint64_t size;
    uintptr_t lo, hi, prev_lo, prev_hi;
    if (!source_pages(img, unit, &lo, &hi))
        return;
    if (rfs_image_is_sourced(img)) { /* its units need not share one mapping */
        drop_pages(lo, hi, lo, hi);
        return;
    }
    rfs_image_mapping(img, &base, &size);
    uintptr_t map_lo = (uintptr_t)base, map_hi = (uintptr_t)base + size;
    if ((atomic_fetch_add(&drops_done, 1) + 1) % RFS_DROP_SWEEP == 0)
        drop_pages(map_lo, map_hi, map_lo, map_hi);
    else if (in_stream && unit > 0 && source_pages(img, unit - 1, &prev_lo, &prev_hi) &&
             prev_lo < lo)
        drop_behind(map_lo, map_hi, prev_hi, hi);
    else /* alone (a read waits on it): the regions its pages lie in, whole */
        drop_pages(map_lo, map_hi, region_down(lo), region_down(hi + RFS_DROP_REGION - 1));
}

void rfs_batch_want_source(const rfs_image *img, uint64_t unit)
{
    uintptr_t lo, hi;
    if (source_pages(img, unit, &lo, &hi))
        (void)madvise((void *)lo, hi - lo, MADV_WILLNEED);
}

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14; older kernels say EINVAL */
#endif

/*
 * Map a unit's encoded bytes in, reading what is not cached, just before a
 * worker decodes it.  MADV_POPULATE_READ faults the range in through the
 * mmap read-ahead path (large folios, sequential windows) and leaves the
 * pages mapped, so verifying and decoding take no page faults.
 * MADV_WILLNEED instead fills the page cache 4 KiB folio by 4 KiB folio
 * (force_page_cache_ra): on a cold sequential read of the 5 GiB shard it
 * was a fifth of the daemon's CPU.  Where the kernel has no
 * MADV_POPULATE_READ this does nothing and the decode faults the pages in.
 * On an I/O error or a truncated image it fails and the decode's own
 * access reports the error (the SIGBUS guard).  Not for a sourced
 * (remote) image: its bytes are valid only once the decode's ensure call
 * has fetched them, so there is nothing to read ahead of it.
 */
static void map_source(const rfs_image *img, uint64_t unit)
{
    uintptr_t lo, hi;
    if (!rfs_image_is_sourced(img) && source_pages(img, unit, &lo, &hi))
        (void)madvise((void *)lo, hi - lo, MADV_POPULATE_READ);
}

/*
 * A batch of n items runs as n - pairs pool items (rfs_pool_pairs: pairs
 * only where a worker would get two items anyway), a pair of adjacent
 * items in one rfs_image_unit_decode2 call: the AVX-512 VBMI backend
 * decodes two tiles in lockstep, faster than one after the other.
 */
typedef struct cpu_job {
    cpu_backend *cb;
    rfs_batch_item *items;
    size_t pairs;
    int background;
} cpu_job;

typedef struct unit_decode {
    const rfs_image *img;
    rfs_rctx *ctx;
    rfs_batch_item *it;
} unit_decode;

/* Verify and decode one unit: touches the image mapping (rfs_guard_call). */
static rfs_err unit_decode_guarded(void *arg)
{
    unit_decode *u = arg;
    return rfs_image_unit_decode(u->img, u->ctx, u->it->unit, u->it->dst, u->it->dst_cap,
                                 &u->it->dst_size);
}

static rfs_err item_decode(const rfs_image *img, rfs_rctx *ctx, rfs_batch_item *it)
{
    unit_decode u = {img, ctx, it};
    return rfs_guard_call(unit_decode_guarded, &u);
}

typedef struct pair_decode {
    const rfs_image *img;
    rfs_rctx *ctx;
    rfs_unit_io io[2];
    int done; /* 0 after a fault: io is half written */
} pair_decode;

/* Verify and decode two units (rfs_guard_call, as unit_decode_guarded).
 * The decoder's one allocation for pairs (rfs_image_unit_decode2) loads
 * nothing from the image, so a fault cannot abandon it half done. */
static rfs_err pair_decode_guarded(void *arg)
{
    pair_decode *p = arg;
    rfs_err err = rfs_image_unit_decode2(p->img, p->ctx, p->io);
    p->done = 1;
    return err;
}

/* Two items in one call.  A fault (the image file shrank) abandons the
 * pair half done; each item is then decoded alone, so only a unit that
 * lies past the new end fails. */
static void items_decode2(const rfs_image *img, rfs_rctx *ctx, rfs_batch_item *it[2])
{
    pair_decode p = {.img = img, .ctx = ctx};
    for (unsigned j = 0; j < 2; j++)
        p.io[j] = (rfs_unit_io){.unit = it[j]->unit, .dst = it[j]->dst, .dst_cap = it[j]->dst_cap};
    rfs_guard_call(pair_decode_guarded, &p);
    for (unsigned j = 0; j < 2; j++) {
        if (!p.done) {
            it[j]->err = item_decode(img, ctx, it[j]);
            continue;
        }
        it[j]->err = p.io[j].err;
        it[j]->dst_size = p.io[j].dst_size;
    }
}

/* Pool item i: one item, or a pair (see cpu_job). */
static void cpu_decode_one(void *arg, unsigned worker, size_t i)
{
    cpu_job *job = arg;
    size_t k, first = rfs_pool_pair_item(job->pairs, i, &k);
    rfs_batch_item *it[2] = {&job->items[first], &job->items[first + k - 1]};
    rfs_rctx *ctx = ctx_get(job->cb);
    (void)worker;
    for (size_t j = 0; j < k; j++) {
        it[j]->dst_size = 0;
        it[j]->err = RFS_E_NOMEM;
    }
    if (!ctx)
        return;
    for (size_t j = 0; j < k; j++)
        map_source(job->cb->img, it[j]->unit);
    uint64_t t0 = rfs_hist_now_ns();
    if (k == 2)
        items_decode2(job->cb->img, ctx, it);
    else
        it[0]->err = item_decode(job->cb->img, ctx, it[0]);
    /* a pair's units finish together: each is charged half the time */
    uint64_t ns = (rfs_hist_now_ns() - t0) / k;
    for (size_t j = 0; j < k; j++) {
        if (job->cb->hist && it[j]->err == RFS_OK)
            rfs_hist_add(job->cb->hist, ns);
        rfs_batch_drop_source(job->cb->img, it[j]->unit, job->background);
    }
}

static void cpu_decode(void *self, rfs_batch_item *items, size_t n, int background)
{
    cpu_backend *cb = self;
    cpu_job job = {cb, items, rfs_pool_pairs(n, rfs_pool_threads(cb->pool) + 1), background};
    /* A read waits on this batch: ask for every unit's encoded bytes at
     * once, so on a cold page cache their reads are issued together (one
     * unit populated alone after random reads can arrive page by page: the
     * kernel stops mmap read-ahead for a mapping that keeps missing; random
     * 4 KiB pread p99 4.4 ms against 0.65 with this).  Prefetch batches go
     * without: each worker maps its unit in (map_source), cheaper per byte,
     * and on a sequential trend the read-ahead windows keep the disk busy. */
    for (size_t i = 0; i < n && !background; i++)
        rfs_batch_want_source(cb->img, items[i].unit);
    rfs_pool_for(cb->pool, background ? RFS_PRIO_LOW : RFS_PRIO_HIGH, n - job.pairs,
                 cpu_decode_one, &job);
}

static void cpu_close(void *self)
{
    cpu_backend *cb = self;
    if (!cb)
        return;
    /* Contexts of threads that are still alive (e.g. this one). */
    while (cb->all) {
        cpu_ctx *c = cb->all;
        ctx_unlink(cb, c);
        rfs_rctx_destroy(c->rctx);
        free(c);
    }
    pthread_setspecific(cb->key, NULL);
    pthread_key_delete(cb->key);
    pthread_mutex_destroy(&cb->mu);
    free(cb);
}

rfs_err rfs_batch_cpu_open(rfs_batch *b, const rfs_image *img, struct rfs_pool *pool,
                           rfs_hist *hist)
{
    cpu_backend *cb = calloc(1, sizeof(*cb));
    if (!cb)
        return RFS_E_NOMEM;
    if (pthread_key_create(&cb->key, ctx_thread_exit) != 0) {
        free(cb);
        return RFS_E_NOMEM;
    }
    pthread_mutex_init(&cb->mu, NULL);
    cb->img = img;
    cb->pool = pool;
    cb->hist = hist;
    b->name = "cpu";
    b->self = cb;
    b->decode = cpu_decode;
    b->min_bytes = 0;
    b->close = cpu_close;
    b->get_stats = NULL;
    return RFS_OK;
}
