/*
 * rfs_guard.c - SIGBUS on the image mapping as an error (rfs_guard.h).
 *
 * Design note.  Each guarded call records a sigjmp_buf in a thread-local
 * pointer; the handler, which runs on the faulting thread (SIGBUS from a
 * load is synchronous), jumps back to it.  sigsetjmp saves the signal mask
 * (with SIGBUS unblocked) so the jump also unblocks SIGBUS again, which the
 * kernel blocks while the handler runs.  Outside a guarded call the
 * handler puts the previous action back and returns: the load runs again
 * and faults into that action (a sanitizer's report, or the default core
 * dump), so a real bug is not hidden.
 */
#include "rfs_guard.h"

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>

static _Thread_local sigjmp_buf *volatile t_jump;
static struct sigaction g_previous;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static atomic_uint_least64_t g_faults;

static void on_sigbus(int sig, siginfo_t *info, void *uctx)
{
    (void)sig;
    (void)info;
    (void)uctx;
    sigjmp_buf *jb = t_jump;
    if (jb)
        siglongjmp(*jb, 1);
    sigaction(SIGBUS, &g_previous, NULL);
}

static void install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &g_previous);
}

/* Threads that block every signal (libfuse's session workers, our pool's)
 * block SIGBUS too, and a blocked SIGBUS from a load kills the process
 * whatever the handler: unblock it once per thread. */
static void unblock_sigbus(void)
{
    static _Thread_local int done;
    if (done)
        return;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGBUS);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    done = 1;
}

rfs_err rfs_guard_call(rfs_guard_fn fn, void *arg)
{
    pthread_once(&g_once, install);
    unblock_sigbus();
    sigjmp_buf jb;
    sigjmp_buf *volatile outer = t_jump;
    if (sigsetjmp(jb, 1) != 0) {
        t_jump = outer;
        atomic_fetch_add(&g_faults, 1);
        return RFS_E_IO;
    }
    t_jump = &jb;
    rfs_err err = fn(arg);
    t_jump = outer;
    return err;
}

uint64_t rfs_guard_faults(void)
{
    return atomic_load(&g_faults);
}
