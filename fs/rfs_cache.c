/*
 * rfs_cache.c - decoded-unit cache (see rfs_cache.h).
 *
 * Design note: eviction and buffers.
 *  - Entries sit in a hash table (unit -> entry) and on a CLOCK ring.  New
 *    entries go just behind the hand, so they are inspected last; a hit
 *    sets the entry's `used` bit (but see evict-behind below).  The hand skips referenced and in-flight
 *    entries, clears set bits, and evicts the first entry with a clear bit.
 *    A scan gives up after two turns of the ring (everything pinned).
 *  - Large buffers (> RFS_CACHE_SMALL) come from mmap in size classes of four
 *    steps per power of two (at most 25% slack) and are recycled through a
 *    free list per class, so a decode writes into pages that are already
 *    faulted in and freed memory really leaves the process (munmap), which is
 *    what makes the RSS bound hold.  Free buffers count towards the budget and
 *    are unmapped first when room is needed for another class.  While the
 *    budget has room, buffers of a class that divides 2 MiB (the 256 KiB
 *    tile) are carved from 2 MiB-aligned chunks with MADV_HUGEPAGE: the
 *    first fill of the cache then takes one page fault per 2 MiB instead of
 *    one per 4 KiB, and pinning a buffer for the reply's writev walks huge
 *    pages.  A chunk's buffers are unmapped one by one like any other (the
 *    kernel splits the huge page).
 *  - Evict behind the reader, not ahead of it: a prefetched entry starts
 *    with its bit set and the first read of it clears the bit, so what a
 *    sequential reader has consumed (which it will not read again: the
 *    kernel's page cache has those bytes now) goes before what prefetch has
 *    decoded for it and it has not reached yet.  Entries a read decoded
 *    itself start clear too; only a second read sets the bit.
 *  - Small buffers (tiny tensors, last tiles) use malloc.
 *  - Every entry is charged its buffer's class size plus its own struct.
 */
#include "rfs_cache.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define RFS_CACHE_SMALL (64u * 1024u)
#define RFS_CACHE_NCLASS 192 /* 4 classes per power of two from 2^16 to 2^63 */
#define RFS_CACHE_CHUNK (2u << 20) /* a transparent huge page on x86-64 */

enum { ST_DECODING = 0, ST_READY = 1, ST_FAILED = 2 };

struct rfs_centry {
    uint64_t unit;
    struct rfs_centry *hnext; /* hash chain */
    struct rfs_centry *prev;  /* CLOCK ring */
    struct rfs_centry *next;
    uint8_t *data;
    size_t size;   /* decoded bytes */
    size_t charge; /* bytes counted against the budget */
    int cls;       /* size class of data, -1 for malloc */
    unsigned refs;
    uint8_t state;
    uint8_t used;
    uint8_t prefetched;
    uint8_t detached; /* out of the index; freed at the last release */
    uint8_t claimed;  /* someone is decoding it (see rfs_cache_claim) */
    rfs_err err;
};

struct rfs_cache {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t budget;
    size_t bytes;      /* entries' charges + free buffers */
    size_t free_bytes; /* part of bytes held by free lists */
    rfs_centry **buckets;
    size_t n_buckets;  /* power of two */
    size_t n_entries;
    rfs_centry *hand;  /* CLOCK hand, NULL when the ring is empty */
    void *free_list[RFS_CACHE_NCLASS];
    rfs_cache_stats st;
};

/* ------------------------------------------------------------ size classes */

static unsigned floor_log2(size_t v)
{
    return 63u - (unsigned)__builtin_clzll((unsigned long long)v);
}

/* Class of a large buffer and its capacity: base * (1, 1.25, 1.5, 1.75, 2). */
static int size_class(size_t size, size_t *cap)
{
    unsigned lg;
    size_t base, step, c;
    if (size <= RFS_CACHE_SMALL) {
        *cap = (size + 15u) & ~(size_t)15u;
        return -1;
    }
    lg = floor_log2(size - 1);
    base = (size_t)1 << lg;
    step = base / 4;
    c = (size + step - 1) / step * step;
    *cap = c;
    return (int)((lg - 16u) * 4u + (unsigned)((c - base) / step)) - 1;
}

size_t rfs_cache_charge(size_t size)
{
    size_t cap;
    size_class(size, &cap);
    return cap + sizeof(rfs_centry);
}

static void *big_map(size_t cap)
{
    void *p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* A 2 MiB-aligned anonymous mapping that asks for a transparent huge page
 * (one page fault instead of 512; the writev that sends a buffer pins its
 * pages by the huge page).  NULL when no mapping. */
static void *chunk_map(void)
{
    size_t span = 2 * (size_t)RFS_CACHE_CHUNK;
    uint8_t *p = big_map(span);
    if (!p)
        return NULL;
    uint8_t *a = (uint8_t *)(((uintptr_t)p + RFS_CACHE_CHUNK - 1) & ~(uintptr_t)(RFS_CACHE_CHUNK - 1));
    if (a > p)
        munmap(p, (size_t)(a - p));
    if (a + RFS_CACHE_CHUNK < p + span)
        munmap(a + RFS_CACHE_CHUNK, (size_t)(p + span - (a + RFS_CACHE_CHUNK)));
    (void)madvise(a, RFS_CACHE_CHUNK, MADV_HUGEPAGE); /* a hint: 4 KiB pages without */
    return a;
}

static size_t class_cap(int cls)
{
    unsigned lg = 16u + (unsigned)cls / 4u;
    size_t base = (size_t)1 << lg;
    return base + (base / 4) * (size_t)(cls % 4 + 1);
}

/* Unmap one free buffer of any class but keep; returns 0 when none. */
static int drop_free_buffer(rfs_cache *c, int keep)
{
    for (int k = 0; k < RFS_CACHE_NCLASS; k++) {
        void *p = c->free_list[k];
        if (!p || k == keep)
            continue;
        memcpy(&c->free_list[k], p, sizeof(void *));
        munmap(p, class_cap(k));
        c->free_bytes -= class_cap(k);
        c->bytes -= class_cap(k);
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ hash + ring */

static size_t hash_slot(const rfs_cache *c, uint64_t unit)
{
    return (size_t)((unit * 0x9E3779B97F4A7C15ull) >> 32) & (c->n_buckets - 1);
}

static rfs_centry *hash_find(const rfs_cache *c, uint64_t unit)
{
    rfs_centry *e = c->buckets[hash_slot(c, unit)];
    while (e && e->unit != unit)
        e = e->hnext;
    return e;
}

static void hash_grow(rfs_cache *c)
{
    size_t nb = c->n_buckets * 2, old_nb = c->n_buckets;
    rfs_centry **old = c->buckets, **nbk = calloc(nb, sizeof(*nbk));
    if (!nbk)
        return; /* chains just get longer */
    c->buckets = nbk;
    c->n_buckets = nb;
    for (size_t i = 0; i < old_nb; i++) {
        rfs_centry *e = old[i], *next;
        for (; e; e = next) {
            size_t s = hash_slot(c, e->unit);
            next = e->hnext;
            e->hnext = nbk[s];
            nbk[s] = e;
        }
    }
    free(old);
}

static void hash_remove(rfs_cache *c, rfs_centry *e)
{
    rfs_centry **pp = &c->buckets[hash_slot(c, e->unit)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
}

/* Insert e just behind the hand: the last place the hand will look. */
static void ring_insert(rfs_cache *c, rfs_centry *e)
{
    if (!c->hand) {
        e->prev = e->next = e;
        c->hand = e;
        return;
    }
    e->next = c->hand;
    e->prev = c->hand->prev;
    e->prev->next = e;
    c->hand->prev = e;
}

static void ring_remove(rfs_cache *c, rfs_centry *e)
{
    if (e->next == e) {
        c->hand = NULL;
        return;
    }
    if (c->hand == e)
        c->hand = e->next;
    e->prev->next = e->next;
    e->next->prev = e->prev;
}

/* ------------------------------------------------------------ eviction */

static void buffer_free(rfs_cache *c, rfs_centry *e)
{
    if (!e->data)
        return;
    if (e->cls < 0) {
        free(e->data);
        c->bytes -= e->charge - sizeof(rfs_centry);
    } else {
        /* Recycle: the bytes stay charged, now as a free buffer. */
        memcpy(e->data, &c->free_list[e->cls], sizeof(void *));
        c->free_list[e->cls] = e->data;
        c->free_bytes += e->charge - sizeof(rfs_centry);
    }
    e->charge = sizeof(rfs_centry);
    e->data = NULL;
}

static rfs_centry *clock_victim(rfs_cache *c)
{
    size_t limit = 2 * c->n_entries + 1;
    for (size_t i = 0; c->hand && i < limit; i++) {
        rfs_centry *e = c->hand;
        c->hand = e->next;
        if (e->refs || e->state == ST_DECODING)
            continue;
        if (e->used) {
            e->used = 0;
            continue;
        }
        return e;
    }
    return NULL;
}

static void entry_evict(rfs_cache *c, rfs_centry *e)
{
    hash_remove(c, e);
    ring_remove(c, e);
    buffer_free(c, e);
    c->bytes -= sizeof(rfs_centry);
    c->n_entries--;
    c->st.evictions++;
    c->st.prefetch_unused += e->prefetched;
    free(e);
}

/* Evict until bytes + need <= budget (need includes the new struct). */
static int make_room(rfs_cache *c, size_t need, int cls)
{
    while (c->bytes + need > c->budget) {
        rfs_centry *v;
        if (drop_free_buffer(c, cls))
            continue;
        v = clock_victim(c);
        if (!v)
            return 0;
        entry_evict(c, v);
        if (cls >= 0 && c->free_list[cls])
            return 1; /* a buffer of our class was just recycled */
    }
    return 1;
}

/* Give back memory above the budget (after an overshoot). */
static void trim(rfs_cache *c)
{
    if (c->bytes > c->budget)
        make_room(c, 0, -1);
}

/* A new buffer of class cls (capacity cap) whose free list is empty; under
 * the lock.  Where cap divides a huge page and the budget has room for a
 * whole one, the buffer is the first of a chunk_map and the others go on the
 * free list (charged as free buffers, as any recycled one); otherwise a
 * mapping of its own. */
static void *class_buffer_map(rfs_cache *c, int cls, size_t cap)
{
    uint8_t *p;
    if (RFS_CACHE_CHUNK % cap || c->bytes + RFS_CACHE_CHUNK > c->budget || !(p = chunk_map()))
        return big_map(cap);
    for (size_t off = RFS_CACHE_CHUNK - cap; off > 0; off -= cap) {
        memcpy(p + off, &c->free_list[cls], sizeof(void *));
        c->free_list[cls] = p + off;
        c->free_bytes += cap;
        c->bytes += cap;
    }
    return p;
}

/* Get a buffer for e (size set); under the lock.  0 on success. */
static int buffer_alloc(rfs_cache *c, rfs_centry *e)
{
    size_t cap;
    int cls = size_class(e->size, &cap);
    void *p;
    if (cls >= 0 && c->free_list[cls]) {
        p = c->free_list[cls];
        memcpy(&c->free_list[cls], p, sizeof(void *));
        c->free_bytes -= cap;
        c->bytes -= cap; /* charged again below */
    } else {
        if (!make_room(c, cap + sizeof(rfs_centry), cls))
            c->st.over_budget++;
        if (cls >= 0 && c->free_list[cls])
            return buffer_alloc(c, e);
        p = cls < 0 ? malloc(cap) : class_buffer_map(c, cls, cap);
        if (!p)
            return -1;
    }
    e->data = p;
    e->cls = cls;
    e->charge = cap + sizeof(rfs_centry);
    c->bytes += cap;
    return 0;
}

/* ------------------------------------------------------------ public */

rfs_cache *rfs_cache_create(size_t budget)
{
    rfs_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->n_buckets = 1024;
    c->buckets = calloc(c->n_buckets, sizeof(*c->buckets));
    if (!c->buckets) {
        free(c);
        return NULL;
    }
    c->budget = budget;
    c->st.budget = budget;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    return c;
}

void rfs_cache_destroy(rfs_cache *c)
{
    if (!c)
        return;
    while (c->hand) {
        assert(c->hand->refs == 0);
        entry_evict(c, c->hand);
    }
    while (drop_free_buffer(c, -1))
        ;
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c->buckets);
    free(c);
}

/* New owned entry for unit; under the lock.  NULL without memory. */
static rfs_centry *entry_create(rfs_cache *c, uint64_t unit, size_t size)
{
    rfs_centry *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->unit = unit;
    e->size = size;
    e->refs = 1;
    e->state = ST_DECODING;
    if (buffer_alloc(c, e) != 0) {
        free(e);
        return NULL;
    }
    c->bytes += sizeof(rfs_centry);
    if (c->bytes > c->st.bytes_peak)
        c->st.bytes_peak = c->bytes;
    if (c->n_entries >= c->n_buckets)
        hash_grow(c);
    size_t s = hash_slot(c, unit);
    e->hnext = c->buckets[s];
    c->buckets[s] = e;
    ring_insert(c, e);
    c->n_entries++;
    return e;
}

rfs_centry *rfs_cache_acquire(rfs_cache *c, uint64_t unit, size_t size, int *owner)
{
    rfs_centry *e;
    assert(size > 0);
    pthread_mutex_lock(&c->mu);
    e = hash_find(c, unit);
    if (e) {
        e->refs++;
        if (e->state == ST_DECODING)
            c->st.waits++;
        else
            c->st.hits++;
        if (e->prefetched) {
            /* Its reader has come: evict behind it (see Design note). */
            e->prefetched = 0;
            e->used = 0;
            c->st.prefetch_hits++;
            c->st.prefetch_late += e->state == ST_DECODING;
        } else {
            e->used = 1;
        }
        *owner = 0;
    } else {
        e = entry_create(c, unit, size);
        if (e) {
            e->claimed = 1;
            c->st.misses++;
        }
        *owner = e != NULL;
    }
    pthread_mutex_unlock(&c->mu);
    return e;
}

rfs_centry *rfs_cache_reserve(rfs_cache *c, uint64_t unit, size_t size)
{
    rfs_centry *e = NULL;
    assert(size > 0);
    pthread_mutex_lock(&c->mu);
    if (!hash_find(c, unit)) {
        e = entry_create(c, unit, size);
        if (e) {
            e->prefetched = 1;
            e->used = 1; /* kept over what readers have consumed */
            c->st.prefetched++;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return e;
}

int rfs_cache_claim(rfs_cache *c, rfs_centry *e)
{
    int won;
    pthread_mutex_lock(&c->mu);
    won = e->state == ST_DECODING && !e->claimed;
    if (won)
        e->claimed = 1;
    pthread_mutex_unlock(&c->mu);
    return won;
}

void rfs_cache_publish(rfs_cache *c, rfs_centry *e, rfs_err err)
{
    pthread_mutex_lock(&c->mu);
    assert(e->state == ST_DECODING);
    e->err = err;
    if (err == RFS_E_NOMEM || err == RFS_E_IO) {
        /* Not decoded (no memory, shutting down, the bytes could not be
         * fetched from a remote source): a fact of the moment, not of the
         * image, so forget it and a later read retries (the waiters that
         * hold the entry still get err). */
        e->state = ST_FAILED;
        buffer_free(c, e);
        hash_remove(c, e);
        ring_remove(c, e);
        c->n_entries--;
        e->detached = 1;
        trim(c);
    } else if (err != RFS_OK) {
        e->state = ST_FAILED;
        buffer_free(c, e);
        trim(c);
    } else {
        e->state = ST_READY;
    }
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

rfs_err rfs_cache_wait(rfs_cache *c, rfs_centry *e)
{
    rfs_err err;
    pthread_mutex_lock(&c->mu);
    while (e->state == ST_DECODING)
        pthread_cond_wait(&c->cv, &c->mu);
    err = e->err;
    pthread_mutex_unlock(&c->mu);
    return err;
}

void rfs_cache_release(rfs_cache *c, rfs_centry *e)
{
    pthread_mutex_lock(&c->mu);
    assert(e->refs > 0);
    e->refs--;
    if (e->refs == 0 && e->detached) {
        c->bytes -= sizeof(rfs_centry);
        free(e);
    } else if (e->refs == 0) {
        trim(c);
    }
    pthread_mutex_unlock(&c->mu);
}

void *rfs_centry_data(const rfs_centry *e)
{
    return e->data;
}

size_t rfs_centry_size(const rfs_centry *e)
{
    return e->size;
}

uint64_t rfs_centry_unit(const rfs_centry *e)
{
    return e->unit;
}

void rfs_cache_get_stats(rfs_cache *c, rfs_cache_stats *st)
{
    pthread_mutex_lock(&c->mu);
    *st = c->st;
    st->entries = c->n_entries;
    st->bytes = c->bytes;
    pthread_mutex_unlock(&c->mu);
}
