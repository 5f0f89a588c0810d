/*
 * rfs_cache.h - cache of decoded units with a byte budget.
 *
 * Units (tiles or zstd blocks) are keyed by their image-wide number.  The
 * cache holds their decoded bytes; it does not decode.  Whoever misses
 * decodes (single flight):
 *
 *     int owner;
 *     rfs_centry *e = rfs_cache_acquire(c, unit, size, &owner);
 *     if (owner) { decode into rfs_centry_data(e); rfs_cache_publish(c, e, err); }
 *     else       { err = rfs_cache_wait(c, e); }
 *     ... use rfs_centry_data(e) (read-only) ...
 *     rfs_cache_release(c, e);
 *
 * Contract:
 *  - Single flight: while one caller owns a unit's decode, every other
 *    acquire of that unit returns the same entry with owner = 0, and
 *    rfs_cache_wait blocks until the owner publishes.  An owner must publish
 *    exactly once, before it waits on any other entry.
 *  - References: an entry is never evicted or freed while referenced, so a
 *    reply may point into its bytes until it is released.
 *  - Budget: bytes held = decoded buffers (rounded up to their size class) +
 *    recycled free buffers.  A miss evicts unreferenced entries (CLOCK order)
 *    until the new buffer fits.  When everything is referenced the cache goes
 *    over budget rather than block (blocking could deadlock two readers that
 *    each hold references); the excess is at most the referenced bytes and is
 *    given back as soon as references drop.
 *  - Failed decodes: the entry keeps the error (no buffer, no bytes) so
 *    readers of a corrupt unit fail fast; it is evicted like any entry.
 *    RFS_E_NOMEM and RFS_E_IO (the unit's bytes could not be had now: a
 *    remote fetch ran out of retries) are not kept: the waiters of that
 *    decode get the error, the next acquire decodes again.
 *  - Threads: all functions are thread-safe (one mutex per cache).
 *  - Memory: the cache owns every buffer; data pointers are valid while the
 *    entry is referenced.
 *  - Errors: rfs_cache_acquire returns NULL only when memory runs out.
 *  - No FUSE, no decoding, no printing.
 */
#ifndef RFS_CACHE_H
#define RFS_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "rfs_tile.h"

typedef struct rfs_cache rfs_cache;
typedef struct rfs_centry rfs_centry;

typedef struct rfs_cache_stats {
    uint64_t hits;          /* acquires that found the unit decoded */
    uint64_t waits;         /* acquires that found it being decoded */
    uint64_t misses;        /* acquires that had to decode */
    uint64_t evictions;
    uint64_t prefetch_hits; /* first demand acquire of a prefetched unit */
    uint64_t prefetched;    /* units decoded by prefetch */
    uint64_t prefetch_late; /* first demand acquires that found it still decoding */
    uint64_t prefetch_unused; /* prefetched units evicted before any read used them */
    uint64_t over_budget;   /* buffers allocated beyond the budget */
    uint64_t entries;       /* entries now in the cache */
    uint64_t bytes;         /* bytes held now (entries + free buffers) */
    uint64_t bytes_peak;
    uint64_t budget;
} rfs_cache_stats;

/* Create a cache holding at most budget bytes (see Budget above). */
rfs_cache *rfs_cache_create(size_t budget);

/* Free the cache and all buffers.  No entry may be referenced. */
void rfs_cache_destroy(rfs_cache *c);

/*
 * Reference the entry of unit, creating it when absent.  size is the unit's
 * decoded size (> 0).  *owner = 1 when the caller created it: it must fill
 * rfs_centry_data(e) (size bytes) and call rfs_cache_publish.  Returns NULL
 * on out-of-memory (nothing to release then).
 */
rfs_centry *rfs_cache_acquire(rfs_cache *c, uint64_t unit, size_t size, int *owner);

/*
 * For prefetch: create the entry of unit only when it is absent, reserved
 * for decoding but not claimed: whoever claims it first (rfs_cache_claim;
 * the prefetcher when it starts, or a reader that got there before) decodes
 * and publishes it.  Returns the entry, referenced, or NULL when the unit is
 * present, being decoded, or memory ran out.  The entry is marked
 * prefetched (see stats).
 */
rfs_centry *rfs_cache_reserve(rfs_cache *c, uint64_t unit, size_t size);

/*
 * Take over the decode of an entry that rfs_cache_reserve created and nobody
 * has started decoding: returns 1 when the caller now decodes it (it must
 * then publish it, exactly once, before it waits on any other entry), 0 when
 * it is decoded, failed, or claimed already.  The prefetcher claims each
 * entry it reserved just before decoding it and skips those a reader took
 * first, so a reader never waits behind queued prefetch work for a unit
 * that no thread is decoding yet.  Entries made by rfs_cache_acquire are
 * claimed by their owner from the start.  The caller holds a reference.
 */
int rfs_cache_claim(rfs_cache *c, rfs_centry *e);

/*
 * End the decode of an owned entry: err = RFS_OK makes the bytes visible,
 * any other value is kept and returned to waiters (a corrupt unit stays
 * failed until evicted).  RFS_E_NOMEM means "not decoded" (no memory,
 * shutting down): waiters get it, and the entry leaves the cache so that the
 * next acquire tries again.  The caller keeps its reference.
 */
void rfs_cache_publish(rfs_cache *c, rfs_centry *e, rfs_err err);

/* Block until e is published; returns its error (RFS_OK when decoded). */
rfs_err rfs_cache_wait(rfs_cache *c, rfs_centry *e);

/* Drop a reference taken by acquire or reserve. */
void rfs_cache_release(rfs_cache *c, rfs_centry *e);

/* The entry's buffer (writable by the owner before publish) and its size. */
void *rfs_centry_data(const rfs_centry *e);
size_t rfs_centry_size(const rfs_centry *e);
uint64_t rfs_centry_unit(const rfs_centry *e);

/* A snapshot of the counters. */
void rfs_cache_get_stats(rfs_cache *c, rfs_cache_stats *st);

/* Bytes charged for a buffer of size bytes (its size class). */
size_t rfs_cache_charge(size_t size);

#endif
