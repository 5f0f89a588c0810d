/*
 * rfs_tool_guard.c - SIGBUS from a shrunken image ends a tool with a
 * message (rfs_tool_guard.h).
 *
 * The handler may use only async-signal-safe calls: stat, write, _exit,
 * pause, signal, raise, and lock-free atomics.  Numbers are formatted by
 * hand for that reason.
 */
#include "rfs_tool_guard.h"

#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *g_prog, *g_image;
static off_t g_size;

static void put(const char *s)
{
    size_t n = strlen(s);
    while (n) {
        ssize_t w = write(2, s, n);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

static void put_num(unsigned long long v)
{
    char buf[24], *p = buf + sizeof buf;
    *--p = '\0';
    do
        *--p = (char)('0' + v % 10);
    while ((v /= 10) && p > buf);
    put(p);
}

static atomic_flag g_reporting = ATOMIC_FLAG_INIT;

static void on_sigbus(int sig)
{
    struct stat st;
    if (stat(g_image, &st) == 0 && st.st_size < g_size) {
        /* Threads that fault together: one reports and ends the process,
         * the others wait for that (_exit ends them all). */
        while (atomic_flag_test_and_set(&g_reporting))
            pause();
        put(g_prog);
        put(": ");
        put(g_image);
        put(": the image file was truncated while being read (");
        put_num((unsigned long long)g_size);
        put(" bytes, now ");
        put_num((unsigned long long)st.st_size);
        put(")\n");
        _exit(1);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

void rfs_tool_guard_arm(const char *prog, const char *image)
{
    struct stat st;
    struct sigaction sa;
    g_prog = prog;
    g_image = image;
    g_size = stat(image, &st) == 0 ? st.st_size : 0;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigbus;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
}
