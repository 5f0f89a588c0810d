/*
 * rfs_prefetch.h - sequential-read detection for one open file, several
 * streams at once.
 *
 * Real loaders read one file as several sequential streams that interleave:
 * torch copies a mmap-backed tensor with several threads, each through its
 * own share, so the faults of 4-8 streams reach the file in turn.  The
 * detector keeps a small table of streams (RFS_PREFETCH_STREAMS, the least
 * recently used gives way) and files each read under the stream it
 * continues: one whose end is within that stream's window (behind or
 * ahead: the kernel's readahead and mmap read-around deliver neighbouring
 * requests out of order; at most 8 MiB), the nearest when several are.  An
 * established stream (two sequential reads or more) also continues across
 * a forward skip of up to
 * RFS_PREFETCH_SKIP bytes (loaders skip headers and tensors they do not want;
 * hf-mount counts such skips as sequential): the skip starts a new stream
 * that inherits the window, and the old one stays for its reader, if any.
 * Each stream asks for the next bytes to be decoded ahead with its own
 * window, doubling on every sequential read from min_window up to its share
 * of max_window (max_window split over the streams read lately, so several
 * readers together never ask for more than one reader would), and never
 * beyond where another stream of the table began (those bytes are that
 * stream's reader's).  A stream that began inside a tensor is taken for one
 * thread's share of a parallel copy: once prefetched to its share's end it
 * also asks for the same share of the next tensor (rfs_prefetch_note_tensor).
 *
 * Contract:
 *  - Pure bookkeeping: no I/O, no allocation, no FUSE.  Not thread-safe: the
 *    caller serialises calls on one state (one mutex per open file).
 *  - Errors: none.
 */
#ifndef RFS_PREFETCH_H
#define RFS_PREFETCH_H

#include <stdint.h>

#define RFS_PREFETCH_STREAMS 8
#define RFS_PREFETCH_SKIP (16u << 20)

typedef struct rfs_pf_stream {
    uint64_t first;    /* where it began */
    uint64_t next;     /* end of the furthest read of this stream */
    uint64_t ahead;    /* prefetch has been issued up to here */
    uint64_t window;   /* current window */
    uint64_t last_use; /* tick of its last read; 0 = free slot */
    unsigned streak;   /* consecutive sequential reads */
    int predicted;     /* its next share has been asked for (predict_next_share) */
} rfs_pf_stream;

typedef struct rfs_prefetch {
    rfs_pf_stream s[RFS_PREFETCH_STREAMS];
    uint64_t tick;     /* reads noted so far */
    uint64_t min_window;
    uint64_t max_window;
    uint64_t resets;   /* reads but the first that continued no stream (stats) */
} rfs_prefetch;

/* Start a detector; max_window = 0 disables prefetch. */
void rfs_prefetch_init(rfs_prefetch *pf, uint64_t min_window, uint64_t max_window);

/*
 * Note a read of [off, off+len) of a file of file_size bytes.  Returns 1 and
 * the range [*start, *end) to prefetch, or 0 when nothing should be.
 */
int rfs_prefetch_note(rfs_prefetch *pf, uint64_t off, uint64_t len, uint64_t file_size,
                      uint64_t *start, uint64_t *end);

/*
 * The same for a read that starts inside a coded tensor spanning
 * [t_start, t_end) of the file (weight-aware prefetch; t_end <= t_start for
 * none).  The image knows each tensor's bytes, so from a stream's second
 * read on (one read earlier than without; reads of 128 KiB or more, so
 * random small reads never trigger it) it asks at once for the rest of
 * the tensor up to the stream's share of max_window, rather than a window
 * grown from min_window; past the tensor's end it goes only as far as the
 * sequential window does (a sequential trend runs into the next tensor).
 * [n_start, n_end) is the coded tensor that follows (n_end <= n_start for
 * none): a stream that began inside its tensor (one thread's share of a
 * parallel copy) and has prefetched up to its share's end then asks, once,
 * for a window at the same fraction of the next tensor, where that thread
 * goes next.
 */
int rfs_prefetch_note_tensor(rfs_prefetch *pf, uint64_t off, uint64_t len, uint64_t file_size,
                             uint64_t t_start, uint64_t t_end, uint64_t n_start, uint64_t n_end,
                             uint64_t *start, uint64_t *end);

#endif
