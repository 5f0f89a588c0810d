/*
 * rfs_pool.c - worker pool (see rfs_pool.h).
 *
 * Design note.  One mutex guards two FIFO queues (HIGH, LOW).  Decode tasks
 * take tens to hundreds of microseconds, so a single lock is not contended.
 * The threads are made once and wait on a condition variable: the packer
 * runs two short loops per group (about 3 ms of work each on a small
 * model), and a thread created per loop often started after the caller had
 * taken most of the items (measured on the human32 corpus: the helper did a
 * fifth of phase A's work); a waiting worker joins within microseconds.
 * rfs_pool_for() keeps its shared state in a small reference-counted job: the
 * caller and each helper task take indices from an atomic counter, so the
 * caller can return as soon as all items are done, even while helper tasks
 * that found nothing left are still queued behind other work (they then run,
 * see no index left, drop their reference and exit).
 */
#include "rfs_pool.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>

struct rfs_for_job;

/* A queued task: fn(arg), or, for a helper of rfs_pool_for, job. */
typedef struct rfs_task {
    struct rfs_task *next;
    rfs_task_fn fn;
    void *arg;
    struct rfs_for_job *job;
} rfs_task;

/* What a worker thread knows of itself: its pool and its index (1..n). */
typedef struct rfs_worker {
    struct rfs_pool *pool;
    unsigned index;
} rfs_worker;

typedef struct rfs_queue {
    rfs_task *head;
    rfs_task *tail;
} rfs_queue;

struct rfs_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    rfs_queue q[2];
    int stopping;
    unsigned n_threads;
    pthread_t *threads;
    rfs_worker *workers;
};

static void job_helper(struct rfs_for_job *job, unsigned worker);

static void queue_push(rfs_queue *q, rfs_task *t)
{
    t->next = NULL;
    if (q->tail)
        q->tail->next = t;
    else
        q->head = t;
    q->tail = t;
}

static rfs_task *queue_pop(rfs_queue *q)
{
    rfs_task *t = q->head;
    if (t) {
        q->head = t->next;
        if (!q->head)
            q->tail = NULL;
    }
    return t;
}

/* Next task, HIGH first; NULL once stopping and both queues are empty. */
static rfs_task *pool_next(rfs_pool *p)
{
    rfs_task *t;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        t = queue_pop(&p->q[RFS_PRIO_HIGH]);
        if (!t)
            t = queue_pop(&p->q[RFS_PRIO_LOW]);
        if (t || p->stopping)
            break;
        pthread_cond_wait(&p->cv, &p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return t;
}

static void *pool_worker(void *arg)
{
    rfs_worker *w = arg;
    rfs_task *t;
    while ((t = pool_next(w->pool)) != NULL) {
        if (t->job)
            job_helper(t->job, w->index);
        else
            t->fn(t->arg);
        free(t);
    }
    return NULL;
}

rfs_pool *rfs_pool_create(unsigned n_threads)
{
    rfs_pool *p = calloc(1, sizeof(*p));
    sigset_t all, old;
    if (!p)
        return NULL;
    if (n_threads < 1)
        n_threads = 1;
    p->threads = calloc(n_threads, sizeof(*p->threads));
    p->workers = calloc(n_threads, sizeof(*p->workers));
    if (!p->threads || !p->workers)
        goto fail;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    /* Workers inherit a mask that blocks every asynchronous signal, so
     * those go to the program's own threads (the FUSE loop, mkimage's
     * clean-up).  Faults stay unblocked: a blocked SIGBUS or SIGSEGV from a
     * load kills the process without running its handler (the tools'
     * truncated-image guard, the daemon's, a sanitizer's report). */
    sigfillset(&all);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (unsigned i = 0; i < n_threads; i++) {
        rfs_worker *w = &p->workers[p->n_threads];
        *w = (rfs_worker){p, p->n_threads + 1};
        if (pthread_create(&p->threads[p->n_threads], NULL, pool_worker, w) != 0)
            break;
        p->n_threads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (p->n_threads == 0) {
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
        goto fail;
    }
    return p;
fail:
    free(p->threads);
    free(p->workers);
    free(p);
    return NULL;
}

void rfs_pool_destroy(rfs_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (unsigned i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    assert(!p->q[0].head && !p->q[1].head);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->threads);
    free(p->workers);
    free(p);
}

unsigned rfs_pool_threads(const rfs_pool *p)
{
    return p ? p->n_threads : 0;
}

size_t rfs_pool_pairs(size_t n, unsigned workers)
{
    size_t p = n > workers ? n - workers : 0;
    return p < n / 2 ? p : n / 2;
}

size_t rfs_pool_pair_item(size_t pairs, size_t i, size_t *count)
{
    *count = i < pairs ? 2 : 1;
    return i < pairs ? 2 * i : i + pairs;
}

/* Queue a task: fn(arg) or a helper of job.  0, ENOMEM or ESHUTDOWN. */
static int task_submit(rfs_pool *p, rfs_prio prio, rfs_task_fn fn, void *arg,
                       struct rfs_for_job *job)
{
    rfs_task *t = malloc(sizeof(*t));
    if (!t)
        return ENOMEM;
    t->fn = fn;
    t->arg = arg;
    t->job = job;
    pthread_mutex_lock(&p->mu);
    if (p->stopping) {
        pthread_mutex_unlock(&p->mu);
        free(t);
        return ESHUTDOWN;
    }
    queue_push(&p->q[prio == RFS_PRIO_LOW ? RFS_PRIO_LOW : RFS_PRIO_HIGH], t);
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

int rfs_pool_submit(rfs_pool *p, rfs_prio prio, rfs_task_fn fn, void *arg)
{
    return task_submit(p, prio, fn, arg, NULL);
}

/* ------------------------------------------------------------ parallel for */

typedef struct rfs_for_job {
    atomic_size_t next;  /* next index to hand out */
    atomic_uint refs;    /* caller + helper tasks not yet finished */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t done;         /* items finished, under mu */
    size_t n;
    rfs_for_fn fn;
    void *arg;
} rfs_for_job;

static void job_unref(rfs_for_job *job)
{
    if (atomic_fetch_sub(&job->refs, 1) == 1) {
        pthread_cond_destroy(&job->cv);
        pthread_mutex_destroy(&job->mu);
        free(job);
    }
}

/* Take indices until none are left; returns how many items this thread ran. */
static size_t job_drain(rfs_for_job *job, unsigned worker)
{
    size_t ran = 0, i;
    while ((i = atomic_fetch_add(&job->next, 1)) < job->n) {
        job->fn(job->arg, worker, i);
        ran++;
    }
    return ran;
}

static void job_finish(rfs_for_job *job, size_t ran)
{
    if (ran == 0)
        return;
    pthread_mutex_lock(&job->mu);
    job->done += ran;
    if (job->done == job->n)
        pthread_cond_broadcast(&job->cv);
    pthread_mutex_unlock(&job->mu);
}

static void job_helper(rfs_for_job *job, unsigned worker)
{
    job_finish(job, job_drain(job, worker));
    job_unref(job);
}

void rfs_pool_for(rfs_pool *p, rfs_prio prio, size_t n, rfs_for_fn fn, void *arg)
{
    rfs_for_job *job;
    size_t helpers;
    if (n == 0)
        return;
    job = n > 1 && p ? malloc(sizeof(*job)) : NULL;
    if (!job) {
        for (size_t i = 0; i < n; i++)
            fn(arg, 0, i);
        return;
    }
    atomic_init(&job->next, 0);
    atomic_init(&job->refs, 1);
    pthread_mutex_init(&job->mu, NULL);
    pthread_cond_init(&job->cv, NULL);
    job->done = 0;
    job->n = n;
    job->fn = fn;
    job->arg = arg;
    helpers = n - 1 < p->n_threads ? n - 1 : p->n_threads;
    for (size_t h = 0; h < helpers; h++) {
        atomic_fetch_add(&job->refs, 1);
        if (task_submit(p, prio, NULL, NULL, job) != 0) {
            atomic_fetch_sub(&job->refs, 1);
            break;
        }
    }
    job_finish(job, job_drain(job, 0));
    pthread_mutex_lock(&job->mu);
    while (job->done < job->n)
        pthread_cond_wait(&job->cv, &job->mu);
    pthread_mutex_unlock(&job->mu);
    job_unref(job);
}
