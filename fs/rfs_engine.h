/*
 * rfs_engine.h - the daemon's read path without FUSE: map a file range to
 * RAW extents and cached decoded units, decode the misses in parallel
 * (single flight), prefetch ahead, and keep the statistics.
 *
 * A read produces an rfs_readv: an ordered list of pieces, each either bytes
 * in memory (inside a cached unit, referenced until rfs_readv_release) or a
 * range of the image file (RAW extent, to be served from the image fd).  The
 * FUSE layer turns it into one reply without copying.
 *
 * Contract:
 *  - Threads: every function is thread-safe; an rfs_readv belongs to one
 *    thread.  The engine starts the worker pool itself; create it after any
 *    fork().
 *  - Memory: the engine does not own the image (it must outlive the engine).
 *    Memory pieces stay valid until rfs_readv_release.
 *  - Errors: rfs_err values.  A unit that fails to verify or decode makes
 *    the reads that touch it fail (the FUSE layer answers EIO); it is
 *    reported once through the log callback, and nothing else is affected.
 *  - No FUSE, no printing except through the log callback.
 */
#ifndef RFS_ENGINE_H
#define RFS_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "rfs_batch.h"
#include "rfs_cache.h"
#include "rfs_image.h"
#include "rfs_prefetch.h"

typedef struct rfs_engine rfs_engine;

typedef enum rfs_gpu_mode { RFS_GPU_AUTO = 0, RFS_GPU_ON = 1, RFS_GPU_OFF = 2 } rfs_gpu_mode;

typedef struct rfs_engine_opts {
    size_t cache_bytes;     /* decoded-unit cache budget */
    unsigned threads;       /* decode workers; 0 = number of CPUs */
    uint64_t prefetch_max;  /* largest prefetch window; 0 disables prefetch */
    rfs_gpu_mode gpu;
    /* Called with one line (no newline) for each unit that fails, once, and
     * once if the GPU fails (decoding then goes on on the CPU). */
    void (*log)(void *log_ctx, const char *line);
    void *log_ctx;
    /* Smallest batch (decoded bytes) sent to the GPU; 0 = RFS_GPU_BATCH_MIN.
     * Smaller batches decode on the CPU. */
    size_t gpu_min_bytes;
} rfs_engine_opts;

/* One piece of a read: mem != NULL for decoded bytes, else image bytes. */
typedef struct rfs_piece {
    const void *mem;
    uint64_t raw_off; /* image offset when mem == NULL */
    size_t len;
    long ref;         /* internal: index in refs, -1 for image bytes */
} rfs_piece;

typedef struct rfs_readv_ref {
    rfs_centry *e;
    int owned;        /* this read decodes it */
} rfs_readv_ref;

#define RFS_READV_INLINE 32

typedef struct rfs_readv {
    rfs_piece *pieces;
    size_t n_pieces, cap_pieces;
    rfs_readv_ref *refs;
    size_t n_refs, cap_refs;
    size_t bytes;
    int has_raw;
    rfs_piece inline_pieces[RFS_READV_INLINE];
    rfs_readv_ref inline_refs[RFS_READV_INLINE];
} rfs_readv;

/*
 * Create the engine: cache, worker pool, CPU backend and, per opts->gpu,
 * the GPU backend.  On failure returns an error and a one-line reason in
 * why (e.g. "gpu=on but this build has no GPU support").
 */
rfs_err rfs_engine_create(rfs_engine **eng, const rfs_image *img, const rfs_engine_opts *opts,
                          char *why, size_t why_cap);

/* Stop prefetch, finish queued work, free everything. */
void rfs_engine_destroy(rfs_engine *eng);

const rfs_image *rfs_engine_image(const rfs_engine *eng);

void rfs_readv_init(rfs_readv *rv);

/*
 * Fill rv with the pieces of [off, off+len) of regular file ino; the range
 * must lie inside the file.  On error rv holds nothing (all released).
 */
rfs_err rfs_engine_read(rfs_engine *eng, uint64_t ino, uint64_t off, size_t len, rfs_readv *rv);

/* Release the cache references of rv and free its arrays; rv can be reused. */
void rfs_readv_release(rfs_engine *eng, rfs_readv *rv);

/* Count bytes handed to a reader (stats). */
void rfs_engine_note_served(rfs_engine *eng, size_t bytes);

/*
 * Count one FUSE read request that reached rfs_engine_read, answered or
 * failed: ns from its arrival to its reply (stats: read_us_*), cpu_ns of
 * it the serving thread spent on a CPU, and reply_ns of it spent in the
 * reply call (the copy into the kernel).  Thread-safe, lock-free.
 */
void rfs_engine_note_request(rfs_engine *eng, uint64_t ns, uint64_t cpu_ns, uint64_t reply_ns);

/* Count a read the prefetch detector did not take as sequential (its
 * window was reset).  Thread-safe, lock-free. */
void rfs_engine_note_prefetch_reset(rfs_engine *eng);

/*
 * Queue the background decode of the units of [start, end) of file ino that
 * are not cached yet.  Returns at once; does nothing while too much prefetch
 * is in flight.
 */
void rfs_engine_prefetch(rfs_engine *eng, uint64_t ino, uint64_t start, uint64_t end);

/*
 * The coded tensor holding offset off of file ino (a UNITS extent of two
 * tiles or more), as the file range [*start, *end): returns 1, or 0 when
 * off lies in none (RAW or zstd-block bytes, a one-tile tensor, an error).
 * For weight-aware prefetch (rfs_prefetch_note_tensor).  Thread-safe.
 */
int rfs_engine_tensor_at(rfs_engine *eng, uint64_t ino, uint64_t off, uint64_t *start,
                         uint64_t *end);

/* Initial prefetch window and the configured maximum (0 = disabled). */
uint64_t rfs_engine_prefetch_min(const rfs_engine *eng);
uint64_t rfs_engine_prefetch_max(const rfs_engine *eng);

/*
 * Write the statistics as one JSON object (NUL-terminated) into buf.
 * Returns the length it needed (snprintf semantics).
 */
size_t rfs_engine_stats_json(rfs_engine *eng, char *buf, size_t cap);

#endif
