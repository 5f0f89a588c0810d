/*
 * rfs_prefetch.c - sequential detection over several streams (see
 * rfs_prefetch.h).
 *
 * A read continues a stream when it starts within one window behind or
 * ahead of that stream's end.  The first read at offset 0 counts as the
 * start of a streak (cat, cp, numpy.fromfile all begin there); a read
 * elsewhere that continues nothing opens a stream with no streak, so random
 * reads, each opening its own, never prefetch.  From a stream's second
 * sequential read on, its window doubles per read and prefetch is issued in
 * chunks of at least half a window, so each issue is a batch worth
 * spreading over the workers (or a GPU).
 */
#include "rfs_prefetch.h"

#include <string.h>

/* A stream read within this many reads of the newest counts as active when
 * max_window is shared out (a table's worth of interleaved readers, twice). */
#define RFS_PREFETCH_RECENT (2u * RFS_PREFETCH_STREAMS)
#define RFS_PREFETCH_NEAR (8u << 20)
/* Weight-aware prefetch starts early only for reads this large: readahead
 * and mmap faults send 128 KiB and more, a random 4 KiB pread 4 KiB. */
#define RFS_PREFETCH_TENSOR_READ (128u << 10)

void rfs_prefetch_init(rfs_prefetch *pf, uint64_t min_window, uint64_t max_window)
{
    if (min_window > max_window)
        min_window = max_window;
    memset(pf, 0, sizeof(*pf));
    pf->min_window = min_window;
    pf->max_window = max_window;
}

/* How far off a read may start from a stream's end and still continue it:
 * its window, but at least min_window (out-of-order readahead) and at most
 * RFS_PREFETCH_NEAR, so that a neighbouring reader's stream (torch's threads
 * start a share apart) is not taken for this one. */
static uint64_t slack_of(const rfs_prefetch *pf, const rfs_pf_stream *s)
{
    uint64_t w = s->window > pf->min_window ? s->window : pf->min_window;
    return w < RFS_PREFETCH_NEAR ? w : RFS_PREFETCH_NEAR;
}

static uint64_t gap(uint64_t a, uint64_t b)
{
    return a > b ? a - b : b - a;
}

/*
 * How far the read [off, off+len) is from s, and whether that is a plain
 * continuation (1), a forward skip an established stream takes (2), a read
 * inside the range s has prefetched (3: it counts for s but does not move
 * its end, so the stream's own next reads still continue it), or neither
 * (0).  The distance is from s's end to the read's start, or from
 * the read's end to s's beginning: a large memcpy out of a mapping may run
 * backwards (glibc does for some sizes), so its faults come in descending
 * order, each ending where the previous one began.
 */
static int relation(const rfs_prefetch *pf, const rfs_pf_stream *s, uint64_t off, uint64_t len,
                    uint64_t *dist)
{
    uint64_t slack = slack_of(pf, s), back;
    if (s->last_use == 0)
        return 0;
    *dist = gap(off, s->next);
    back = gap(off + len, s->first);
    if (back < *dist)
        *dist = back;
    if (*dist <= slack)
        return 1;
    if (off > s->next && off < s->ahead) {
        /* In what its prefetch has asked for: a fault ahead of the stream's
         * own (memcpy touches a large copy's last page first). */
        *dist = off - s->next;
        return 3;
    }
    if (off > s->next && s->streak >= 2 && off - s->next <= RFS_PREFETCH_SKIP) {
        *dist = off - s->next;
        return 2;
    }
    return 0;
}

/* The stream the read continues (nearest first), or -1; *how as in relation. */
static int find_stream(const rfs_prefetch *pf, uint64_t off, uint64_t len, int *how)
{
    int best = -1;
    uint64_t best_dist = UINT64_MAX;
    for (int i = 0; i < RFS_PREFETCH_STREAMS; i++) {
        uint64_t d;
        int r = relation(pf, &pf->s[i], off, len, &d);
        if (r && (d < best_dist || (d == best_dist && r < *how))) {
            best = i;
            best_dist = d;
            *how = r;
        }
    }
    return best;
}

/* A free slot, else the least recently used one other than keep. */
static rfs_pf_stream *victim(rfs_prefetch *pf, int keep)
{
    int v = -1;
    for (int i = 0; i < RFS_PREFETCH_STREAMS; i++) {
        if (i == keep)
            continue;
        if (pf->s[i].last_use == 0)
            return &pf->s[i];
        if (v < 0 || pf->s[i].last_use < pf->s[v].last_use)
            v = i;
    }
    return &pf->s[v];
}

/* max_window split over the streams with a streak read lately (this one too). */
static uint64_t share_of(const rfs_prefetch *pf)
{
    uint64_t active = 0, share;
    for (int i = 0; i < RFS_PREFETCH_STREAMS; i++) {
        const rfs_pf_stream *s = &pf->s[i];
        active += s->last_use != 0 && s->streak >= 1 &&
                  pf->tick - s->last_use < RFS_PREFETCH_RECENT;
    }
    share = pf->max_window / (active ? active : 1);
    return share > pf->min_window ? share : pf->min_window;
}

/* File the read under a stream (continued, forked or new); returns it. */
static rfs_pf_stream *file_read(rfs_prefetch *pf, uint64_t off, uint64_t len)
{
    int how = 0, i = find_stream(pf, off, len, &how);
    rfs_pf_stream *s;
    if (i >= 0 && how == 1) {
        s = &pf->s[i];
        s->streak++;
        if (off + len > s->next)
            s->next = off + len;
        if (off < s->first)
            s->first = off;
    } else if (i >= 0 && how == 3) {
        s = &pf->s[i];
        s->streak++;
    } else if (i >= 0) {
        /* Forward skip: a new stream with the old one's momentum. */
        rfs_pf_stream from = pf->s[i];
        s = victim(pf, i);
        *s = from;
        s->predicted = 0;
        s->streak++;
        s->first = off;
        s->next = off + len;
    } else {
        pf->resets += pf->tick != 0; /* the first read is no jump */
        s = victim(pf, -1);
        s->first = off;
        s->next = off + len;
        s->ahead = 0;
        s->predicted = 0;
        s->window = pf->min_window;
        s->streak = off == 0;
    }
    s->last_use = ++pf->tick;
    return s;
}

/*
 * Where s's prefetch should stop short of target: at the start of another
 * stream ahead of it (a neighbouring reader has read, or is reading, from
 * there on; torch's threads each start a share further on).  A single read
 * (streak 0, e.g. a random one) is no stream to stop for.
 */
static uint64_t stop_at_neighbour(const rfs_prefetch *pf, const rfs_pf_stream *s, uint64_t target)
{
    for (int i = 0; i < RFS_PREFETCH_STREAMS; i++) {
        const rfs_pf_stream *o = &pf->s[i];
        if (o != s && o->last_use != 0 && o->streak >= 1 && o->first >= s->next &&
            o->first < target)
            target = o->first;
    }
    return target;
}

int rfs_prefetch_note(rfs_prefetch *pf, uint64_t off, uint64_t len, uint64_t file_size,
                      uint64_t *start, uint64_t *end)
{
    return rfs_prefetch_note_tensor(pf, off, len, file_size, 0, 0, 0, 0, start, end);
}

/*
 * A stream that began inside its tensor is a share of a multi-threaded copy
 * (torch's parallel_for gives thread k the k-th 1/N of every tensor); once
 * its prefetch has reached the end of that share, its reader's next stream
 * starts at the same fraction of the next tensor [n_start, n_end).  Ask for
 * one window there (once per stream), so that the copy of the next tensor
 * does not begin with every thread but the first waiting on demand decodes.
 * The share's first reads are the mmap read-around of its first fault, a
 * few MiB early; the window starts there too (those pages are the previous
 * share's, read soon after).
 */
static int predict_next_share(rfs_pf_stream *s, uint64_t t_start, uint64_t t_end, uint64_t n_start,
                              uint64_t n_end, uint64_t *start, uint64_t *end)
{
    double f;
    uint64_t p;
    if (s->predicted || s->streak < 2 || n_end <= n_start || s->first <= t_start ||
        s->first >= t_end)
        return 0;
    /* the fraction in double: the product of two offsets overflows 64 bits */
    f = (double)(s->first - t_start) / (double)(t_end - t_start);
    p = n_start + (uint64_t)(f * (double)(n_end - n_start));
    if (p >= n_end)
        return 0;
    s->predicted = 1;
    *start = p;
    *end = n_end - p > s->window ? p + s->window : n_end;
    return 1;
}

int rfs_prefetch_note_tensor(rfs_prefetch *pf, uint64_t off, uint64_t len, uint64_t file_size,
                             uint64_t t_start, uint64_t t_end, uint64_t n_start, uint64_t n_end,
                             uint64_t *start, uint64_t *end)
{
    uint64_t target, from, cap, stop;
    rfs_pf_stream *s;
    int in_tensor = t_end > t_start && off >= t_start && off < t_end &&
                    len >= RFS_PREFETCH_TENSOR_READ;
    if (pf->max_window == 0)
        return 0;
    s = file_read(pf, off, len);
    if (s->streak < 2 && !(in_tensor && s->streak == 1))
        return 0;
    cap = share_of(pf);
    if (s->streak < 2)
        ; /* the window grows with the sequential streak only */
    else if (s->window < cap)
        s->window = s->window * 2 < cap ? s->window * 2 : cap;
    else
        s->window = cap;
    target = s->next + s->window;
    if (in_tensor && t_end > target) {
        /* Weight-aware: the rest of the tensor at once, up to the share. */
        uint64_t rest = s->next + cap < t_end ? s->next + cap : t_end;
        if (rest > target)
            target = rest;
    }
    if (target > file_size)
        target = file_size;
    stop = stop_at_neighbour(pf, s, target);
    from = s->ahead > s->next ? s->ahead : s->next;
    /* Nothing due: all asked for, or (batching) less than half a window,
     * unless the file, the tensor or the bytes of this stream end first.
     * Then, once this stream's prefetch has reached its share's end (a
     * neighbour's start, or the tensor's end), the read asks for the next
     * tensor's share instead. */
    if (from >= stop ||
        (stop - from < s->window / 2 && stop < file_size && stop != t_end && stop == target)) {
        int share_end = in_tensor && (stop < target || target >= t_end);
        return share_end && predict_next_share(s, t_start, t_end, n_start, n_end, start, end);
    }
    target = stop;
    s->ahead = target;
    *start = from;
    *end = target;
    return 1;
}
