/*
 * rfs_prefetch.h - sequential-read detection for one open file.
 *
 * The caller reports each read; when the reads advance (forward gaps up to
 * the current window are allowed, since safetensors loaders skip headers and
 * tensors they do not want, and the kernel's async readahead may deliver
 * neighbouring requests out of order), the detector asks for the next bytes
 * to be decoded ahead, with a window that doubles on every sequential read
 * from min_window up to max_window.  A jump elsewhere resets it.
 *
 * Contract:
 *  - Pure bookkeeping: no I/O, no allocation, no FUSE.  Not thread-safe: the
 *    caller serialises calls on one state (one mutex per open file).
 *  - Errors: none.
 */
#ifndef RFS_PREFETCH_H
#define RFS_PREFETCH_H

#include <stdint.h>

typedef struct rfs_prefetch {
    uint64_t next;       /* end of the furthest read so far */
    uint64_t ahead;      /* prefetch has been issued up to here */
    uint64_t window;     /* current window */
    uint64_t min_window;
    uint64_t max_window;
    unsigned streak;     /* consecutive sequential reads */
    uint64_t resets;     /* reads taken as a jump elsewhere (stats) */
} rfs_prefetch;

/* Start a detector; max_window = 0 disables prefetch. */
void rfs_prefetch_init(rfs_prefetch *pf, uint64_t min_window, uint64_t max_window);

/*
 * Note a read of [off, off+len) of a file of file_size bytes.  Returns 1 and
 * the range [*start, *end) to prefetch, or 0 when nothing should be.
 */
int rfs_prefetch_note(rfs_prefetch *pf, uint64_t off, uint64_t len, uint64_t file_size,
                      uint64_t *start, uint64_t *end);

#endif
