/*
 * rfs_pack_pool.c - a fixed set of worker threads for the packer's parallel
 * loops.
 *
 * Why not a thread per loop: the stream runs two loops per group (about
 * 3 ms of work each on a small model), and a freshly created thread often
 * starts after the calling thread has taken most of the items, so the
 * second core sat idle (measured on the human32 corpus: the helper did a
 * fifth of phase A's work).  Workers that already exist and wait on a
 * condition variable join within microseconds.  Not fs/rfs_pool.c: mkimage/
 * does not depend on fs/, and the packer's jobs need the worker's index
 * (one encoder context per worker), which its parallel for does not give.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "rfs_pack_internal.h"

struct pk_pool {
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    pthread_t *th;
    unsigned n_threads, started;
    /* the loop being run; gen changes for each one */
    pk_job_fn fn;
    void *ctx;
    size_t n;
    atomic_size_t next;
    unsigned long gen;
    unsigned busy;  /* helpers still in the current loop */
    int quit;
};

typedef struct pk_pool_arg {
    pk_pool *pool;
    unsigned worker;
} pk_pool_arg;

/* Take items of the current loop until none are left. */
static void pool_drain(pk_pool *pl, unsigned worker)
{
    size_t i;
    while ((i = atomic_fetch_add(&pl->next, 1)) < pl->n)
        pl->fn(pl->ctx, worker, i);
}

static void *pool_main(void *arg)
{
    pk_pool_arg *a = arg;
    pk_pool *pl = a->pool;
    unsigned worker = a->worker;
    free(a);
    unsigned long seen = 0;
    pthread_mutex_lock(&pl->mu);
    for (;;) {
        while (!pl->quit && pl->gen == seen)
            pthread_cond_wait(&pl->go, &pl->mu);
        if (pl->quit)
            break;
        seen = pl->gen;
        pthread_mutex_unlock(&pl->mu);
        pool_drain(pl, worker);
        pthread_mutex_lock(&pl->mu);
        if (--pl->busy == 0)
            pthread_cond_signal(&pl->done);
    }
    pthread_mutex_unlock(&pl->mu);
    return NULL;
}

pk_pool *pk_pool_create(unsigned n_threads)
{
    pk_pool *pl = calloc(1, sizeof *pl);
    if (!pl)
        return NULL;
    pl->n_threads = n_threads ? n_threads : 1;
    pl->th = calloc(pl->n_threads, sizeof *pl->th);
    pthread_mutex_init(&pl->mu, NULL);
    pthread_cond_init(&pl->go, NULL);
    pthread_cond_init(&pl->done, NULL);
    atomic_init(&pl->next, 0);
    /* Fewer helpers than asked (no memory, no threads) is still correct:
     * the caller's thread runs whatever they do not take. */
    for (unsigned t = 1; pl->th && t < pl->n_threads; t++) {
        pk_pool_arg *a = malloc(sizeof *a);
        if (!a)
            break;
        *a = (pk_pool_arg){pl, t};
        if (pthread_create(&pl->th[pl->started], NULL, pool_main, a) != 0) {
            free(a);
            break;
        }
        pl->started++;
    }
    return pl;
}

void pk_pool_run(pk_pool *pl, size_t n, pk_job_fn fn, void *ctx)
{
    pthread_mutex_lock(&pl->mu);
    pl->fn = fn;
    pl->ctx = ctx;
    pl->n = n;
    atomic_store(&pl->next, 0);
    pl->busy = pl->started;
    pl->gen++;
    pthread_cond_broadcast(&pl->go);
    pthread_mutex_unlock(&pl->mu);
    pool_drain(pl, 0);
    pthread_mutex_lock(&pl->mu);
    while (pl->busy)
        pthread_cond_wait(&pl->done, &pl->mu);
    pthread_mutex_unlock(&pl->mu);
}

void pk_pool_destroy(pk_pool *pl)
{
    if (!pl)
        return;
    pthread_mutex_lock(&pl->mu);
    pl->quit = 1;
    pthread_cond_broadcast(&pl->go);
    pthread_mutex_unlock(&pl->mu);
    for (unsigned t = 0; t < pl->started; t++)
        pthread_join(pl->th[t], NULL);
    pthread_mutex_destroy(&pl->mu);
    pthread_cond_destroy(&pl->go);
    pthread_cond_destroy(&pl->done);
    free(pl->th);
    free(pl);
}
