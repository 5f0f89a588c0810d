/*
 * rfs_hist.h - a lock-free latency histogram (log scale, 4 steps per power
 * of two, so a reported percentile is within 12.5% of the true value).
 *
 * Contract: rfs_hist_add may be called by any number of threads at once;
 * rfs_hist_quantile reads a racy but consistent-enough snapshot.  A zeroed
 * rfs_hist is empty.  No allocation, no errors.
 */
#ifndef RFS_HIST_H
#define RFS_HIST_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#define RFS_HIST_BUCKETS 160

typedef struct rfs_hist {
    atomic_uint_least64_t b[RFS_HIST_BUCKETS];
} rfs_hist;

static inline unsigned rfs_hist_bucket(uint64_t v)
{
    unsigned lg, idx;
    if (v < 4)
        return (unsigned)v;
    lg = 63u - (unsigned)__builtin_clzll(v);
    idx = lg * 4u + (unsigned)((v >> (lg - 2)) & 3u);
    return idx < RFS_HIST_BUCKETS ? idx : RFS_HIST_BUCKETS - 1;
}

/* Middle of bucket idx. */
static inline uint64_t rfs_hist_value(unsigned idx)
{
    unsigned lg = idx / 4u, sub = idx % 4u;
    if (idx < 4)
        return idx;
    uint64_t lo = (uint64_t)(4u + sub) << (lg - 2);
    return lo + ((uint64_t)1 << (lg - 2)) / 2;
}

/* Monotonic clock in nanoseconds: what the histograms time with. */
static inline uint64_t rfs_hist_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CPU time of the calling thread in nanoseconds (on-CPU time, so that a
 * request's wall time splits into running and waiting for a core or a lock). */
static inline uint64_t rfs_hist_thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void rfs_hist_add(rfs_hist *h, uint64_t v)
{
    atomic_fetch_add_explicit(&h->b[rfs_hist_bucket(v)], 1, memory_order_relaxed);
}

/* Value at quantile q (0..1); 0 when empty. */
static inline uint64_t rfs_hist_quantile(rfs_hist *h, double q)
{
    uint64_t n = 0, seen = 0, rank;
    uint64_t c[RFS_HIST_BUCKETS];
    for (unsigned i = 0; i < RFS_HIST_BUCKETS; i++) {
        c[i] = atomic_load_explicit(&h->b[i], memory_order_relaxed);
        n += c[i];
    }
    if (n == 0)
        return 0;
    rank = (uint64_t)(q * (double)(n - 1)) + 1;
    for (unsigned i = 0; i < RFS_HIST_BUCKETS; i++) {
        seen += c[i];
        if (seen >= rank)
            return rfs_hist_value(i);
    }
    return rfs_hist_value(RFS_HIST_BUCKETS - 1);
}

static inline uint64_t rfs_hist_count(rfs_hist *h)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < RFS_HIST_BUCKETS; i++)
        n += atomic_load_explicit(&h->b[i], memory_order_relaxed);
    return n;
}

/*
 * Fold the histogram into power-of-two bins: out[k] counts values in
 * [2^k, 2^(k+1)) (out[0] also counts 0).  Returns the number of bins up to
 * the last non-empty one (0 when empty); at most n are written.
 */
static inline unsigned rfs_hist_pow2(rfs_hist *h, uint64_t *out, unsigned n)
{
    unsigned used = 0;
    for (unsigned k = 0; k < n; k++)
        out[k] = 0;
    for (unsigned i = 0; i < RFS_HIST_BUCKETS; i++) {
        uint64_t c = atomic_load_explicit(&h->b[i], memory_order_relaxed);
        /* Buckets below 4 hold the values themselves; above, 4 per power. */
        unsigned k = i < 4 ? i / 2u : i / 4u;
        if (c == 0 || k >= n)
            continue;
        out[k] += c;
        if (k + 1 > used)
            used = k + 1;
    }
    return used;
}

#endif
