/*
 * rfs_pool.h - a fixed pool of worker threads with two priorities: the one
 * thread pool of the tree (the daemon's decodes and prefetch, the packer's
 * parallel loops, fsck's unit check).
 *
 * Contract:
 *  - Tasks are plain function pointers with one argument.  HIGH tasks (the
 *    decodes a reader is waiting for) always run before LOW tasks
 *    (prefetch); tasks of one priority run in submission order.
 *  - rfs_pool_for() is a parallel for in which the calling thread takes part:
 *    it grabs indices itself, so it never waits on a queue that is busy with
 *    other work, and it may be called from a pool worker without deadlock.
 *    Each call of its function gets a worker index, 0 for the calling
 *    thread and k for pool worker k (1 <= k <= rfs_pool_threads()): calls
 *    that may overlap in time within one rfs_pool_for have different
 *    indices, so per-worker scratch (an encoder or decoder context) is an
 *    array of rfs_pool_threads() + 1 entries.  Indices are per call: two
 *    threads calling rfs_pool_for at once both run as worker 0.
 *  - A NULL pool is valid for rfs_pool_for (everything runs on the caller,
 *    as worker 0) and rfs_pool_threads (0): -j1 needs no threads.
 *  - Threads: every function may be called from any thread.  The workers
 *    block every asynchronous signal, so those reach the program's own
 *    threads (the FUSE loop, mkimage's clean-up handler); faults (SIGBUS,
 *    SIGSEGV, SIGFPE, SIGILL) stay unblocked so their handlers run.
 *  - Memory: the pool owns its threads and queue nodes; the caller owns the
 *    task arguments and must keep them alive until the task has run.
 *  - Errors: rfs_pool_create returns NULL when no thread could start;
 *    rfs_pool_submit returns an errno value.
 *  - Dependencies: libc and pthreads only; no FUSE, no printing.  codec/
 *    never uses it (codec/ has no threads).
 */
#ifndef RFS_POOL_H
#define RFS_POOL_H

#include <stddef.h>

typedef struct rfs_pool rfs_pool;

typedef enum rfs_prio { RFS_PRIO_HIGH = 0, RFS_PRIO_LOW = 1 } rfs_prio;

typedef void (*rfs_task_fn)(void *arg);
/* One item of rfs_pool_for: item i, run by worker (see the contract). */
typedef void (*rfs_for_fn)(void *arg, unsigned worker, size_t i);

/*
 * Start n_threads workers (at least 1).  Returns NULL on failure (no
 * memory, or not even one thread could start).
 */
rfs_pool *rfs_pool_create(unsigned n_threads);

/*
 * Run every task still queued, then stop and join the workers and free the
 * pool.  No task may be submitted once this has begun.
 */
void rfs_pool_destroy(rfs_pool *pool);

/* Number of worker threads (that started); 0 for a NULL pool. */
unsigned rfs_pool_threads(const rfs_pool *pool);

/*
 * Queue fn(arg) to run on a worker.  Returns 0, ENOMEM, or ESHUTDOWN when
 * the pool is being destroyed (the task then does not run).
 */
int rfs_pool_submit(rfs_pool *pool, rfs_prio prio, rfs_task_fn fn, void *arg);

/*
 * Call fn(arg, worker, i) for every i in [0, n), spread over the calling
 * thread (worker 0) and up to n-1 pool workers (worker k = pool worker k);
 * returns when all n calls have returned.  Calls for different i may run at
 * the same time in any order.  Never fails: without memory or workers (or
 * with a NULL pool) the caller does all the work itself.
 */
void rfs_pool_for(rfs_pool *pool, rfs_prio prio, size_t n, rfs_for_fn fn, void *arg);

/*
 * Items that run faster two at a time on one thread (two tiles decoded in
 * lockstep) but slower than one: how many of n items to pair for workers
 * threads, so that pairs only replace a thread's second round, never leave
 * a thread idle: min(n / 2, n - workers), 0 when n <= workers.  The
 * n - pairs work items are then mapped by rfs_pool_pair_item.
 */
size_t rfs_pool_pairs(size_t n, unsigned workers);
/* Work item i of n - pairs: items 2i and 2i+1 when i < pairs, else item
 * i + pairs.  Returns its first item; *count receives 1 or 2. */
size_t rfs_pool_pair_item(size_t pairs, size_t i, size_t *count);

#endif
