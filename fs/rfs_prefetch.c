/*
 * rfs_prefetch.c - sequential detection (see rfs_prefetch.h).
 *
 * A read is "sequential" when it starts within one window behind or ahead
 * of the end of the furthest read so far.  The first read at offset 0 counts
 * as the start of a streak (cat, cp, numpy.fromfile all begin there).  From
 * the second sequential read on, the window doubles per read and prefetch
 * is issued in chunks of at least half a window, so each issue is a batch
 * worth spreading over the workers (or a GPU).
 */
#include "rfs_prefetch.h"

void rfs_prefetch_init(rfs_prefetch *pf, uint64_t min_window, uint64_t max_window)
{
    if (min_window > max_window)
        min_window = max_window;
    pf->next = 0;
    pf->ahead = 0;
    pf->window = min_window;
    pf->min_window = min_window;
    pf->max_window = max_window;
    pf->streak = 0;
    pf->resets = 0;
}

static int is_sequential(const rfs_prefetch *pf, uint64_t off)
{
    uint64_t slack = pf->window > pf->min_window ? pf->window : pf->min_window;
    if (pf->streak == 0 && pf->next == 0)
        return off == 0;
    if (off >= pf->next)
        return off - pf->next <= slack;
    return pf->next - off <= slack;
}

int rfs_prefetch_note(rfs_prefetch *pf, uint64_t off, uint64_t len, uint64_t file_size,
                      uint64_t *start, uint64_t *end)
{
    uint64_t target, from;
    if (pf->max_window == 0)
        return 0;
    if (is_sequential(pf, off)) {
        pf->streak++;
    } else {
        pf->resets++;
        pf->streak = 0;
        pf->window = pf->min_window;
        pf->ahead = 0;
    }
    if (off + len > pf->next || pf->streak == 0)
        pf->next = off + len;
    if (pf->streak < 2)
        return 0;
    if (pf->window < pf->max_window)
        pf->window = pf->window * 2 < pf->max_window ? pf->window * 2 : pf->max_window;
    target = pf->next + pf->window;
    if (target > file_size)
        target = file_size;
    from = pf->ahead > pf->next ? pf->ahead : pf->next;
    if (from >= target)
        return 0;
    /* Batch: wait until half a window is due, unless the file ends first. */
    if (target - from < pf->window / 2 && target < file_size)
        return 0;
    pf->ahead = target;
    *start = from;
    *end = target;
    return 1;
}
