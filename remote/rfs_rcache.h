/*
 * rfs_rcache.h - the persistent local cache dir of remote images.
 *
 * Design note.  DIR/v1/<id>/ holds one remote object, id = XXH3-128 (hex)
 * of its identity (display URL, size, ETag, Last-Modified, chunk size):
 *   data  a sparse file of the object's size; chunk i is bytes
 *         [i*chunk, (i+1)*chunk) of the object once present;
 *   map   one byte per chunk: 1 = present.  A fetcher pwrites the chunk
 *         into data first and its map byte after, so a process killed
 *         mid-write leaves the chunk absent (refetched later); the per-tile
 *         XXH3 and the metadata checksums stay the final check.
 * Several processes may share a dir (the same identity means the same
 * bytes, so racing writers write the same data).  Locks (flock): DIR/v1/
 * .lock exclusive while an object is created or objects are evicted; each
 * open object's map shared while open ("in use"), so eviction, which
 * needs that lock exclusive (non-blocking), never removes an object in
 * use.  LRU: an object directory's mtime is its last use (touched at open
 * and close); eviction removes whole objects, oldest first, until the
 * allocated bytes of all data files are within the limit.
 *
 * Threads: rfs_rcache_present and rfs_rcache_put are thread-safe (one
 * object shared by many fetch threads); open/close are not.
 */
#ifndef RFS_RCACHE_H
#define RFS_RCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "rfs_tile.h"

typedef struct rfs_rcache rfs_rcache;

typedef struct rfs_rcache_info {
    uint64_t dir_bytes;     /* allocated bytes of every object in the dir (at open) */
    uint64_t evicted;       /* objects removed by this open */
} rfs_rcache_info;

/*
 * Open (creating as needed) the object `identity` of size bytes cut into
 * chunk-byte chunks in cache dir dir (created 0700 when missing), then evict
 * least-recently used objects not in use until the dir is within limit
 * bytes.  Errors: RFS_E_IO with why naming the path and errno, RFS_E_NOMEM.
 */
rfs_err rfs_rcache_open(rfs_rcache **c, const char *dir, uint64_t limit, const char *identity,
                        uint64_t size, uint64_t chunk, rfs_rcache_info *info, char *why,
                        size_t why_cap);
void rfs_rcache_close(rfs_rcache *c);

/* The data file mapped read-only (size bytes) and its descriptor. */
const uint8_t *rfs_rcache_base(const rfs_rcache *c);
int rfs_rcache_fd(const rfs_rcache *c);
uint64_t rfs_rcache_chunks(const rfs_rcache *c);
/* 1 when chunk i is present (written by this or any other process). */
int rfs_rcache_present(const rfs_rcache *c, uint64_t i);
/*
 * Store len bytes at object offset off (chunk-aligned; len a whole number
 * of chunks, or reaching the object's end) and mark their chunks present.
 * Errors: RFS_E_IO (disk full, ...): nothing is marked.
 */
rfs_err rfs_rcache_put(rfs_rcache *c, uint64_t off, const void *buf, size_t len);
/* Write without marking (a body arriving piecewise), then mark. */
rfs_err rfs_rcache_write(rfs_rcache *c, uint64_t off, const void *buf, size_t len);
rfs_err rfs_rcache_mark(rfs_rcache *c, uint64_t off, uint64_t len);
/* Allocated bytes of this object's data file now. */
uint64_t rfs_rcache_bytes(const rfs_rcache *c);
/* Path of the object's directory (for messages and tests). */
const char *rfs_rcache_path(const rfs_rcache *c);

/* The default cache dir: $XDG_CACHE_HOME/ransfs, ~/.cache/ransfs, or
 * /var/cache/ransfs for root.  Writes into buf; 0, or -1 if no home. */
int rfs_rcache_default_dir(char *buf, size_t cap);

#endif
