/*
 * test_fs_core.c - unit tests of the daemon's FUSE-free parts: the decoded
 * unit cache (budget, single flight, references, eviction) and the
 * sequential-prefetch detector with its streams (the worker pool: tests/util).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "rfs_cache.h"
#include "rfs_hist.h"
#include "rfs_prefetch.h"
#include "testseed.h"

/* ------------------------------------------------------------ cache */

static void fill_unit(void *dst, size_t size, uint64_t unit)
{
    uint8_t *p = dst;
    for (size_t i = 0; i < size; i++)
        p[i] = (uint8_t)(unit * 131 + i * 7);
}

static int check_unit(const void *src, size_t size, uint64_t unit)
{
    const uint8_t *p = src;
    for (size_t i = 0; i < size; i++)
        if (p[i] != (uint8_t)(unit * 131 + i * 7))
            return 0;
    return 1;
}

/* Acquire, fill if owner, check, release. */
static void use_unit(rfs_cache *c, uint64_t unit, size_t size)
{
    int owner;
    rfs_centry *e = rfs_cache_acquire(c, unit, size, &owner);
    assert_non_null(e);
    if (owner) {
        fill_unit(rfs_centry_data(e), size, unit);
        rfs_cache_publish(c, e, RFS_OK);
    } else {
        assert_int_equal(rfs_cache_wait(c, e), RFS_OK);
    }
    assert_int_equal(rfs_centry_size(e), size);
    assert_true(check_unit(rfs_centry_data(e), size, unit));
    rfs_cache_release(c, e);
}

static void test_cache_hit_miss(void **state)
{
    rfs_cache *c = rfs_cache_create(8u << 20);
    rfs_cache_stats st;
    use_unit(c, 1, 256 * 1024);
    use_unit(c, 1, 256 * 1024);
    use_unit(c, 2, 100);
    use_unit(c, 2, 100);
    rfs_cache_get_stats(c, &st);
    assert_int_equal(st.misses, 2);
    assert_int_equal(st.hits, 2);
    assert_int_equal(st.entries, 2);
    rfs_cache_destroy(c);
}

static void test_cache_budget(void **state)
{
    const size_t budget = 4u << 20, unit = 256 * 1024;
    rfs_cache *c = rfs_cache_create(budget);
    rfs_cache_stats st;
    /* 64 MiB through a 4 MiB cache, mixed sizes. */
#define SIZE_OF(u) ((u) % 5 == 0 ? 1000 + (u) : unit - ((u) % 3) * 4096)
    for (uint64_t u = 0; u < 256; u++)
        use_unit(c, u, SIZE_OF(u));
    rfs_cache_get_stats(c, &st);
    assert_true(st.bytes <= budget);
    assert_true(st.bytes_peak <= budget);
    assert_int_equal(st.over_budget, 0);
    assert_true(st.evictions > 200);
    /* Re-reading the last few units hits. */
    use_unit(c, 254, SIZE_OF(254));
    rfs_cache_get_stats(c, &st);
    assert_true(st.hits >= 1);
    rfs_cache_destroy(c);
}

/* 256 KiB buffers come eight to a 2 MiB chunk while the budget has room:
 * held all at once they must not overlap, and another size class must be
 * able to take their memory back piece by piece. */
static void test_cache_chunk_buffers(void **state)
{
    const size_t budget = 8u << 20, unit = 256 * 1024;
    rfs_cache *c = rfs_cache_create(budget);
    rfs_centry *held[24];
    rfs_cache_stats st;
    int owner;
    for (int i = 0; i < 24; i++) {
        held[i] = rfs_cache_acquire(c, (uint64_t)i, unit, &owner);
        assert_non_null(held[i]);
        assert_true(owner);
        fill_unit(rfs_centry_data(held[i]), unit, (uint64_t)i);
    }
    for (int i = 0; i < 24; i++) {
        assert_true(check_unit(rfs_centry_data(held[i]), unit, (uint64_t)i));
        rfs_cache_publish(c, held[i], RFS_OK);
        rfs_cache_release(c, held[i]);
    }
    /* 320 KiB units (a class that does not divide 2 MiB) then 256 KiB again */
    for (uint64_t u = 100; u < 164; u++)
        use_unit(c, u, (u < 132 ? 320 : 256) * 1024);
    rfs_cache_get_stats(c, &st);
    assert_true(st.bytes <= budget);
    assert_true(st.bytes_peak <= budget);
    assert_int_equal(st.over_budget, 0);
    for (uint64_t u = 160; u < 164; u++)
        use_unit(c, u, unit); /* still there, still right */
    rfs_cache_destroy(c);
}

static void test_cache_pinned_not_evicted(void **state)
{
    const size_t unit = 1u << 20;
    rfs_cache *c = rfs_cache_create(4u << 20);
    rfs_centry *pinned[6];
    rfs_cache_stats st;
    int owner;
    /* Pin more than the budget: the cache must go over rather than evict. */
    for (int i = 0; i < 6; i++) {
        pinned[i] = rfs_cache_acquire(c, (uint64_t)i, unit, &owner);
        assert_non_null(pinned[i]);
        assert_true(owner);
        fill_unit(rfs_centry_data(pinned[i]), unit, (uint64_t)i);
        rfs_cache_publish(c, pinned[i], RFS_OK);
    }
    rfs_cache_get_stats(c, &st);
    assert_true(st.over_budget > 0);
    for (int i = 0; i < 6; i++)
        assert_true(check_unit(rfs_centry_data(pinned[i]), unit, (uint64_t)i));
    for (int i = 0; i < 6; i++)
        rfs_cache_release(c, pinned[i]);
    /* Released: back within budget at once. */
    rfs_cache_get_stats(c, &st);
    assert_true(st.bytes <= (4u << 20));
    rfs_cache_destroy(c);
}

static void test_cache_failed_unit(void **state)
{
    rfs_cache *c = rfs_cache_create(4u << 20);
    int owner;
    rfs_centry *e = rfs_cache_acquire(c, 7, 4096, &owner);
    assert_true(owner);
    rfs_cache_publish(c, e, RFS_E_CHECKSUM);
    rfs_cache_release(c, e);
    /* A corrupt unit stays failed: no second decode. */
    e = rfs_cache_acquire(c, 7, 4096, &owner);
    assert_false(owner);
    assert_int_equal(rfs_cache_wait(c, e), RFS_E_CHECKSUM);
    rfs_cache_release(c, e);
    /* "Not decoded" (NOMEM) is forgotten: the next acquire owns it again. */
    e = rfs_cache_acquire(c, 8, 4096, &owner);
    assert_true(owner);
    rfs_cache_publish(c, e, RFS_E_NOMEM);
    rfs_cache_release(c, e);
    e = rfs_cache_acquire(c, 8, 4096, &owner);
    assert_true(owner);
    rfs_cache_publish(c, e, RFS_OK);
    rfs_cache_release(c, e);
    /* So is a fetch that failed (RFS_E_IO: a remote server down): a waiter
     * of that decode gets the error, the next acquire decodes again. */
    e = rfs_cache_acquire(c, 9, 4096, &owner);
    assert_true(owner);
    int o2;
    rfs_centry *w = rfs_cache_acquire(c, 9, 4096, &o2);
    assert_false(o2);
    rfs_cache_publish(c, e, RFS_E_IO);
    assert_int_equal(rfs_cache_wait(c, w), RFS_E_IO);
    rfs_cache_release(c, w);
    rfs_cache_release(c, e);
    e = rfs_cache_acquire(c, 9, 4096, &owner);
    assert_true(owner);
    rfs_cache_publish(c, e, RFS_OK);
    rfs_cache_release(c, e);
    rfs_cache_destroy(c);
}

static void test_cache_reserve_prefetch(void **state)
{
    rfs_cache *c = rfs_cache_create(4u << 20);
    rfs_cache_stats st;
    int owner;
    rfs_centry *e = rfs_cache_reserve(c, 3, 65536), *d;
    assert_non_null(e);
    assert_null(rfs_cache_reserve(c, 3, 65536)); /* already there */
    d = rfs_cache_acquire(c, 3, 65536, &owner);
    assert_false(owner);
    assert_true(rfs_cache_claim(c, e)); /* the prefetcher starts it */
    assert_false(rfs_cache_claim(c, d)); /* so the reader waits */
    fill_unit(rfs_centry_data(e), 65536, 3);
    rfs_cache_publish(c, e, RFS_OK);
    rfs_cache_release(c, e);
    assert_int_equal(rfs_cache_wait(c, d), RFS_OK);
    assert_true(check_unit(rfs_centry_data(d), 65536, 3));
    rfs_cache_release(c, d);
    rfs_cache_get_stats(c, &st);
    assert_int_equal(st.prefetch_hits, 1);
    assert_int_equal(st.prefetched, 1);
    assert_int_equal(st.prefetch_late, 1); /* acquired while still decoding */
    assert_int_equal(st.prefetch_unused, 0);
    rfs_cache_destroy(c);
}

/* A unit prefetch reserved but has not started goes to the first claimer:
 * a reader that gets there first decodes it, and the prefetcher skips it. */
static void test_cache_claim(void **state)
{
    rfs_cache *c = rfs_cache_create(4u << 20);
    rfs_cache_stats st;
    int owner;
    rfs_centry *p = rfs_cache_reserve(c, 5, 65536), *r;
    assert_non_null(p);
    r = rfs_cache_acquire(c, 5, 65536, &owner);
    assert_ptr_equal(r, p);
    assert_false(owner);
    assert_true(rfs_cache_claim(c, r));  /* the reader takes it */
    assert_false(rfs_cache_claim(c, p)); /* the prefetcher skips it */
    fill_unit(rfs_centry_data(r), 65536, 5);
    rfs_cache_publish(c, r, RFS_OK);
    rfs_cache_release(c, p);
    assert_false(rfs_cache_claim(c, r)); /* decoded: nothing to claim */
    assert_true(check_unit(rfs_centry_data(r), 65536, 5));
    rfs_cache_release(c, r);
    /* An entry a read created is its owner's from the start. */
    r = rfs_cache_acquire(c, 6, 65536, &owner);
    assert_true(owner);
    assert_false(rfs_cache_claim(c, r));
    rfs_cache_publish(c, r, RFS_OK);
    rfs_cache_release(c, r);
    rfs_cache_get_stats(c, &st);
    assert_int_equal(st.prefetched, 1);
    assert_int_equal(st.prefetch_hits, 1);
    assert_int_equal(st.misses, 1);
    rfs_cache_destroy(c);
}

/* Evict behind the reader: a unit a read has consumed goes before a
 * prefetched unit no read has reached yet. */
static void test_cache_evict_behind(void **state)
{
    rfs_cache *c = rfs_cache_create(2 * rfs_cache_charge(65536) + 100);
    rfs_cache_stats st;
    rfs_centry *e;
    int owner;
    for (uint64_t u = 0; u < 2; u++) { /* prefetch units 0 and 1 */
        e = rfs_cache_reserve(c, u, 65536);
        assert_non_null(e);
        assert_true(rfs_cache_claim(c, e));
        rfs_cache_publish(c, e, RFS_OK);
        rfs_cache_release(c, e);
    }
    e = rfs_cache_acquire(c, 0, 65536, &owner); /* the reader consumes 0 */
    assert_false(owner);
    rfs_cache_release(c, e);
    e = rfs_cache_acquire(c, 2, 65536, &owner); /* a miss: room is needed */
    assert_true(owner);
    rfs_cache_publish(c, e, RFS_OK);
    rfs_cache_release(c, e);
    assert_null(rfs_cache_reserve(c, 1, 65536)); /* 1 is still there */
    e = rfs_cache_acquire(c, 0, 65536, &owner);  /* 0 was evicted */
    assert_true(owner);
    rfs_cache_publish(c, e, RFS_OK);
    rfs_cache_release(c, e);
    rfs_cache_get_stats(c, &st);
    assert_int_equal(st.prefetch_unused, 0);
    rfs_cache_destroy(c);
}

/* A prefetched unit evicted before any read used it counts as unused. */
static void test_cache_prefetch_unused(void **state)
{
    rfs_cache *c = rfs_cache_create(3u * 65536 + 3 * rfs_cache_charge(65536));
    rfs_cache_stats st;
    for (uint64_t u = 0; u < 8; u++) {
        rfs_centry *e = rfs_cache_reserve(c, u, 65536);
        assert_non_null(e);
        assert_true(rfs_cache_claim(c, e));
        rfs_cache_publish(c, e, RFS_OK);
        rfs_cache_release(c, e);
    }
    rfs_cache_get_stats(c, &st);
    assert_int_equal(st.prefetched, 8);
    assert_true(st.evictions > 0);
    assert_int_equal(st.prefetch_unused, st.evictions);
    assert_int_equal(st.prefetch_hits, 0);
    rfs_cache_destroy(c);
}

/* Single flight under contention: many threads, few units, count decodes. */
typedef struct sf_ctx {
    rfs_cache *c;
    atomic_uint decodes[16];
    atomic_uint seed;
    atomic_uint bad; /* cmocka asserts only on the main thread */
} sf_ctx;

static void *sf_thread(void *arg)
{
    sf_ctx *x = arg;
    unsigned seed = atomic_fetch_add(&x->seed, 1);
    for (int i = 0; i < 1500; i++) {
        uint64_t u = (uint64_t)(rand_r(&seed) % 16);
        size_t size = 70000 + (size_t)u * 1000;
        int owner;
        rfs_centry *e = rfs_cache_acquire(x->c, u, size, &owner);
        if (!e) {
            atomic_fetch_add(&x->bad, 1);
            continue;
        }
        if (owner) {
            atomic_fetch_add(&x->decodes[u], 1);
            fill_unit(rfs_centry_data(e), size, u);
            rfs_cache_publish(x->c, e, RFS_OK);
        } else if (rfs_cache_wait(x->c, e) != RFS_OK) {
            atomic_fetch_add(&x->bad, 1);
        }
        if (!check_unit(rfs_centry_data(e), size, u))
            atomic_fetch_add(&x->bad, 1);
        rfs_cache_release(x->c, e);
    }
    return NULL;
}

static void run_single_flight(size_t budget, int expect_once)
{
    sf_ctx x;
    pthread_t t[8];
    unsigned seed = tu_seed_clock("single flight");
    memset(&x, 0, sizeof(x));
    x.c = rfs_cache_create(budget);
    atomic_init(&x.seed, seed);
    printf("single flight: budget %zu\n", budget);
    for (int i = 0; i < 8; i++)
        pthread_create(&t[i], NULL, sf_thread, &x);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&x.bad), 0);
    for (int u = 0; u < 16; u++) {
        if (expect_once)
            assert_int_equal(atomic_load(&x.decodes[u]), 1);
        else
            assert_true(atomic_load(&x.decodes[u]) >= 1);
    }
    rfs_cache_destroy(x.c);
}

static void test_cache_single_flight(void **state)
{
    run_single_flight(64u << 20, 1); /* everything fits: each unit decoded once */
    run_single_flight(1u << 20, 0);  /* constant eviction: still never wrong */
}

static void test_cache_charge_classes(void **state)
{
    /* Large buffers are rounded to at most 25% over. */
    for (size_t s = 65537; s < (64u << 20); s = s * 5 / 4 + 4097) {
        size_t ch = rfs_cache_charge(s);
        assert_true(ch >= s);
        assert_true(ch <= s + s / 4 + 4096 + 256);
    }
    assert_true(rfs_cache_charge(1) < 256);
}

/* ------------------------------------------------------------ prefetch */

/* The stream the latest read was filed under. */
static const rfs_pf_stream *last_stream(const rfs_prefetch *pf)
{
    for (int i = 0; i < RFS_PREFETCH_STREAMS; i++)
        if (pf->s[i].last_use == pf->tick)
            return &pf->s[i];
    return NULL;
}

static void test_prefetch_sequential(void **state)
{
    rfs_prefetch pf;
    uint64_t s, e, off = 0, issued_to = 0;
    const uint64_t size = 1ull << 30, req = 128 * 1024;
    int issues = 0;
    rfs_prefetch_init(&pf, 1u << 20, 32u << 20);
    for (; off < (256u << 20); off += req) {
        if (rfs_prefetch_note(&pf, off, req, size, &s, &e)) {
            assert_true(s >= off + req);
            assert_true(e > s);
            assert_true(e - (off + req) <= (32u << 20));
            assert_true(s >= issued_to); /* never the same bytes twice */
            issued_to = e;
            issues++;
        }
    }
    assert_true(issues > 5);
    assert_int_equal(last_stream(&pf)->window, 32u << 20);
    assert_int_equal(pf.resets, 0); /* one stream from offset 0 */
    /* Always ahead of the reader. */
    assert_true(issued_to > off);
}

static void test_prefetch_gaps_and_jumps(void **state)
{
    rfs_prefetch pf;
    uint64_t s, e;
    const uint64_t size = 1ull << 30;
    rfs_prefetch_init(&pf, 1u << 20, 16u << 20);
    /* A safetensors loader: header, then tensors with small gaps. */
    assert_false(rfs_prefetch_note(&pf, 0, 4096, size, &s, &e));
    assert_true(rfs_prefetch_note(&pf, 8192, 1 << 20, size, &s, &e));
    assert_true(last_stream(&pf)->streak >= 2);
    /* Slightly out of order (async readahead): still sequential. */
    rfs_prefetch_note(&pf, 4096, 4096, size, &s, &e);
    assert_true(last_stream(&pf)->streak >= 3);
    /* A far jump opens a new stream. */
    assert_false(rfs_prefetch_note(&pf, 900u << 20, 4096, size, &s, &e));
    assert_int_equal(last_stream(&pf)->streak, 0);
    assert_int_equal(last_stream(&pf)->window, 1u << 20);
    assert_int_equal(pf.resets, 1);
    /* Random 4 KiB reads never prefetch. */
    unsigned seed = 12345;
    int got = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t off = ((uint64_t)rand_r(&seed) * 4096) % size;
        got += rfs_prefetch_note(&pf, off, 4096, size, &s, &e);
    }
    assert_true(got < 10);
    /* Near the end of file: clamp. */
    rfs_prefetch_init(&pf, 1u << 20, 16u << 20);
    rfs_prefetch_note(&pf, 0, 1 << 20, 3u << 20, &s, &e);
    assert_true(rfs_prefetch_note(&pf, 1 << 20, 1 << 20, 3u << 20, &s, &e));
    assert_true(e <= (3u << 20));
    /* Disabled. */
    rfs_prefetch_init(&pf, 1u << 20, 0);
    for (int i = 0; i < 10; i++)
        assert_false(rfs_prefetch_note(&pf, (uint64_t)i << 20, 1 << 20, size, &s, &e));
}

/*
 * torch's pattern: 4 threads copy their quarter of a 128 MiB tensor, 1 MiB
 * faults arriving in turn.  Each quarter becomes its own stream, each
 * prefetches ahead of itself only (never into another's bytes twice), the
 * four share max_window, and after the first read of each quarter nothing
 * counts as a jump.
 */
static void test_prefetch_interleaved_streams(void **state)
{
    rfs_prefetch pf;
    uint64_t s, e, ahead[4] = {0}, issued = 0;
    const uint64_t q = 32u << 20, size = 1ull << 30, req = 1u << 20;
    int issues[4] = {0};
    rfs_prefetch_init(&pf, 1u << 20, 32u << 20);
    for (uint64_t step = 0; step < q / req; step++) {
        for (int k = 0; k < 4; k++) {
            uint64_t off = (uint64_t)k * q + step * req;
            if (!rfs_prefetch_note(&pf, off, req, size, &s, &e))
                continue;
            assert_true(s >= off + req);         /* ahead of this reader */
            assert_true(s >= ahead[k]);          /* not the same bytes twice */
            assert_true(e - (off + req) <= q / 4 + (1u << 20)); /* its share */
            ahead[k] = e;
            issued += e - s;
            issues[k]++;
        }
    }
    assert_int_equal(pf.resets, 3); /* quarters 1-3 open; quarter 0 starts at 0 */
    for (int k = 0; k < 4; k++) {
        assert_true(issues[k] > 3);
        assert_true(ahead[k] > (uint64_t)k * q + q - req); /* kept ahead to the end */
    }
    /* Each stream issued about its own quarter (plus a window past it). */
    assert_true(issued >= 4 * (q - 3 * req));
    assert_true(issued <= 4 * (q + q / 4));
}

/*
 * A far jump opens a new stream and leaves the others alone; a forward
 * skip of up to 16 MiB on an established stream keeps its momentum (the
 * skipping loader prefetches at once); the ninth stream replaces the least
 * recently used one, whose reader then starts over.
 */
static void test_prefetch_jumps_and_replacement(void **state)
{
    rfs_prefetch pf;
    uint64_t s, e;
    const uint64_t size = 4ull << 30, req = 1u << 20;
    /* A 4 MiB window, so that the skip lands beyond what was issued. */
    rfs_prefetch_init(&pf, 1u << 20, 4u << 20);
    for (uint64_t off = 0; off < 8 * req; off += req)
        rfs_prefetch_note(&pf, off, req, size, &s, &e);
    assert_int_equal(last_stream(&pf)->streak, 8);
    /* A jump elsewhere: a new stream, then back to the first: it goes on. */
    assert_false(rfs_prefetch_note(&pf, 3ull << 30, req, size, &s, &e));
    assert_int_equal(pf.resets, 1);
    rfs_prefetch_note(&pf, 8 * req, req, size, &s, &e);
    assert_int_equal(last_stream(&pf)->streak, 9);
    assert_int_equal(pf.resets, 1);
    /* Forward skip of 12 MiB (a tensor the loader does not want). */
    assert_true(rfs_prefetch_note(&pf, 21 * req, req, size, &s, &e));
    assert_true(s >= 22 * req);
    assert_true(last_stream(&pf)->streak >= 10);
    assert_int_equal(pf.resets, 1);
    /* ... but a skip of 40 MiB is a jump. */
    rfs_prefetch_note(&pf, 62 * req, req, size, &s, &e);
    assert_int_equal(pf.resets, 2);
    /* Fill the table with streams far apart, then read on in all but the
     * first (at 256 MiB): it was used longest ago and gives way to the ninth. */
    rfs_prefetch_init(&pf, 1u << 20, 32u << 20);
    for (uint64_t k = 0; k < RFS_PREFETCH_STREAMS; k++)
        rfs_prefetch_note(&pf, (k + 1) * (256u << 20), req, size, &s, &e);
    assert_int_equal(pf.resets, RFS_PREFETCH_STREAMS - 1); /* the first is none */
    for (uint64_t k = 1; k < RFS_PREFETCH_STREAMS; k++) /* all but the first again */
        rfs_prefetch_note(&pf, (k + 1) * (256u << 20) + req, req, size, &s, &e);
    assert_int_equal(pf.resets, RFS_PREFETCH_STREAMS - 1);
    rfs_prefetch_note(&pf, 3ull << 30, req, size, &s, &e); /* the ninth */
    assert_int_equal(pf.resets, RFS_PREFETCH_STREAMS);
    rfs_prefetch_note(&pf, (256u << 20) + req, req, size, &s, &e); /* the first's reader */
    assert_int_equal(pf.resets, RFS_PREFETCH_STREAMS + 1);
    /* It replaced the next least recently used (at 512 MiB); the newest kept. */
    rfs_prefetch_note(&pf, RFS_PREFETCH_STREAMS * (256u << 20) + 2 * req, req, size, &s, &e);
    assert_int_equal(pf.resets, RFS_PREFETCH_STREAMS + 1);
    assert_int_equal(last_stream(&pf)->streak, 2);
}

/*
 * Python's mmap copy of 16 MiB chunks (glibc memcpy): the first fault of a
 * chunk is at its last page, then the copy runs from the chunk's start, or
 * downwards in half-MiB faults.  A fault inside what a stream has
 * prefetched counts for it without moving its end, and a read that ends
 * where a stream begins continues it: no stream is lost, nothing resets.
 */
static void test_prefetch_memcpy_order(void **state)
{
    rfs_prefetch pf;
    uint64_t s, e, off;
    const uint64_t size = 1ull << 30, mib = 1u << 20, half = 516u << 10;
    rfs_prefetch_init(&pf, 1u << 20, 32u << 20);
    for (off = 0; off < 8 * mib; off += mib)
        rfs_prefetch_note(&pf, off, mib, size, &s, &e);
    const rfs_pf_stream *st = last_stream(&pf);
    uint64_t next = st->next, ahead = st->ahead;
    assert_true(ahead > next + 4 * mib);
    rfs_prefetch_note(&pf, ahead - mib, mib, size, &s, &e); /* the tail first */
    assert_int_equal(pf.resets, 0);
    assert_int_equal(last_stream(&pf)->next, next);
    for (off = next; off < next + 4 * mib; off += mib) /* then from the start */
        rfs_prefetch_note(&pf, off, mib, size, &s, &e);
    assert_int_equal(pf.resets, 0);
    assert_int_equal(last_stream(&pf)->next, next + 4 * mib);
    /* Downwards: each fault ends where the previous one began. */
    rfs_prefetch_init(&pf, 1u << 20, 32u << 20);
    rfs_prefetch_note(&pf, 0, mib, size, &s, &e);
    off = 15 * mib + mib / 2;
    rfs_prefetch_note(&pf, off, mib, size, &s, &e);
    assert_int_equal(pf.resets, 1);
    int issued = 0;
    while (off >= mib + half) {
        off -= half;
        issued += rfs_prefetch_note(&pf, off, half, size, &s, &e);
    }
    assert_int_equal(pf.resets, 1);
    assert_true(issued >= 1); /* and it prefetches the next chunk */
    assert_true(e > 16 * mib);
}

/*
 * Weight-aware: inside a coded tensor, a stream's second read asks for the
 * rest of the tensor up to the stream's share at once; a stream with no
 * sequential trend stops at the tensor's end, one with a trend runs on into
 * the next; small random reads never trigger it; outside tensors it is the
 * plain detector.
 */
static void test_prefetch_tensor(void **state)
{
    rfs_prefetch pf, plain;
    uint64_t s, e, s2, e2;
    const uint64_t t0 = (8u << 20) + 4096, t1 = t0 + (128u << 20), size = 1ull << 30;
    const uint64_t req = 1u << 20;
    rfs_prefetch_init(&pf, 1u << 20, 32u << 20);
    assert_false(rfs_prefetch_note_tensor(&pf, t0, req, size, t0, t1, 0, 0, &s, &e));
    assert_true(rfs_prefetch_note_tensor(&pf, t0 + req, req, size, t0, t1, 0, 0, &s, &e));
    assert_int_equal(s, t0 + 2 * req);
    assert_int_equal(e, t0 + 2 * req + (32u << 20)); /* the whole share */
    /* The plain detector waits one read more and starts small. */
    rfs_prefetch_init(&plain, 1u << 20, 32u << 20);
    assert_false(rfs_prefetch_note(&plain, t0, req, size, &s2, &e2));
    assert_false(rfs_prefetch_note(&plain, t0 + req, req, size, &s2, &e2));
    assert_true(rfs_prefetch_note(&plain, t0 + 2 * req, req, size, &s2, &e2));
    assert_true(e2 - s2 <= 2 * req);
    /* A new stream near the tensor's end: up to the end, not beyond. */
    rfs_prefetch_init(&pf, 1u << 20, 32u << 20);
    rfs_prefetch_note_tensor(&pf, t1 - 6 * req, req, size, t0, t1, 0, 0, &s, &e);
    assert_true(rfs_prefetch_note_tensor(&pf, t1 - 5 * req, req, size, t0, t1, 0, 0, &s, &e));
    assert_int_equal(e, t1);
    /* Sequential on: into the next tensor, as far as the window reaches. */
    rfs_prefetch_note_tensor(&pf, t1 - 4 * req, req, size, t0, t1, 0, 0, &s, &e);
    for (uint64_t off = t1 - 3 * req; off < t1; off += req)
        if (rfs_prefetch_note_tensor(&pf, off, req, size, t0, t1, 0, 0, &s, &e))
            assert_true(e > t1);
    assert_true(last_stream(&pf)->ahead > t1);
    /* Random 4 KiB reads inside one big tensor never prefetch. */
    rfs_prefetch_init(&pf, 1u << 20, 32u << 20);
    unsigned seed = 777;
    int got = 0;
    for (int i = 0; i < 2000; i++) {
        uint64_t off = ((uint64_t)rand_r(&seed) * 4096) % size;
        got += rfs_prefetch_note_tensor(&pf, off, 4096, size, 0, size, 0, 0, &s, &e);
    }
    assert_true(got < 10);
}

/*
 * torch's two threads copy every tensor in halves, so each tensor's second
 * half starts cold.  The stream of the second half asks, when its own
 * prefetch is done, for the second half of the next tensor, before that
 * thread gets there; a reader of the whole file from its start never asks
 * ahead of its own window.
 */
static void test_prefetch_next_share(void **state)
{
    rfs_prefetch pf;
    uint64_t s, e;
    const uint64_t M = 1u << 20, hdr = 4096, tsz = 64 * M, size = hdr + 4 * tsz;
    int asked = 0;
    rfs_prefetch_init(&pf, M, 32 * M);
    for (uint64_t k = 0; k < 3; k++) {
        uint64_t t = hdr + k * tsz, n = t + tsz;
        /* thread 0 from the start, thread 1 from its half's read-around */
        for (uint64_t i = 0; i < 36; i++) {
            uint64_t offs[2] = {t + i * M, t + 28 * M + i * M};
            for (int j = 0; j < 2; j++) {
                if (j == 0 && i >= 32)
                    continue;
                if (!rfs_prefetch_note_tensor(&pf, offs[j], M, size, t, n, n, n + tsz, &s, &e))
                    continue;
                if (s >= n && s <= n + 32 * M && e > n + 32 * M)
                    asked = 1; /* the next tensor's second half */
            }
        }
        assert_true(asked);
        asked = 0;
    }
    /* One reader from offset 0 through the same tensors: one run of
     * prefetch, each range where the last one ended, never a jump. */
    rfs_prefetch_init(&pf, M, 32 * M);
    uint64_t last = 0;
    for (uint64_t off = 0; off + M <= size; off += M) {
        /* the first read starts in the header: no tensor there */
        uint64_t t = off < hdr ? 0 : hdr + (off - hdr) / tsz * tsz, te = off < hdr ? 0 : t + tsz;
        if (rfs_prefetch_note_tensor(&pf, off, M, size, t, te, te, te + tsz, &s, &e)) {
            assert_true(last == 0 || s == last);
            assert_true(e <= off + M + 32 * M);
            last = e;
        }
    }
}

/* ------------------------------------------------------------ histogram */

static void test_hist(void **state)
{
    static rfs_hist h;
    memset(&h, 0, sizeof(h));
    assert_int_equal(rfs_hist_quantile(&h, 0.5), 0);
    for (uint64_t v = 1; v <= 1000; v++)
        rfs_hist_add(&h, v * 1000);
    uint64_t p50 = rfs_hist_quantile(&h, 0.5), p99 = rfs_hist_quantile(&h, 0.99);
    assert_true(p50 > 500000 * 0.85 && p50 < 500000 * 1.15);
    assert_true(p99 > 990000 * 0.85 && p99 < 990000 * 1.15);
    assert_int_equal(rfs_hist_count(&h), 1000);
}

/* The power-of-two folding keeps every count in the bin of its value. */
static void test_hist_pow2(void **state)
{
    static rfs_hist h;
    uint64_t bins[24], n = 0;
    memset(&h, 0, sizeof(h));
    assert_int_equal(rfs_hist_pow2(&h, bins, 24), 0);
    for (uint64_t v = 0; v < 5000; v++)
        rfs_hist_add(&h, v);
    assert_int_equal(rfs_hist_pow2(&h, bins, 24), 13); /* 4999 < 2^13 */
    assert_int_equal(bins[0], 2);                       /* 0 and 1 */
    assert_int_equal(bins[1], 2);                       /* 2, 3 */
    for (unsigned k = 2; k < 12; k++)
        assert_int_equal(bins[k], 1u << k);
    for (unsigned k = 0; k < 13; k++)
        n += bins[k];
    assert_int_equal(n, 5000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_hit_miss),
        cmocka_unit_test(test_cache_budget),
        cmocka_unit_test(test_cache_chunk_buffers),
        cmocka_unit_test(test_cache_pinned_not_evicted),
        cmocka_unit_test(test_cache_failed_unit),
        cmocka_unit_test(test_cache_reserve_prefetch),
        cmocka_unit_test(test_cache_claim),
        cmocka_unit_test(test_cache_prefetch_unused),
        cmocka_unit_test(test_cache_evict_behind),
        cmocka_unit_test(test_cache_single_flight),
        cmocka_unit_test(test_cache_charge_classes),
        cmocka_unit_test(test_prefetch_sequential),
        cmocka_unit_test(test_prefetch_gaps_and_jumps),
        cmocka_unit_test(test_prefetch_interleaved_streams),
        cmocka_unit_test(test_prefetch_jumps_and_replacement),
        cmocka_unit_test(test_prefetch_memcpy_order),
        cmocka_unit_test(test_prefetch_tensor),
        cmocka_unit_test(test_prefetch_next_share),
        cmocka_unit_test(test_hist),
        cmocka_unit_test(test_hist_pow2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
