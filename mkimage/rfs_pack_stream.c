/*
 * rfs_pack_stream.c - read, analyse, encode and write every chunk of the
 * plan, in chunk order, with each source byte read once.
 *
 * Design note.  Chunks are cut into groups of whole tensors (and blob
 * blocks) of at least PK_GROUP_MIN bytes.  Three stages run at once on a
 * ring of PK_SLOTS group slots:
 *   reader thread: pread the group's bytes into the slot's buffer (large
 *     sequential reads; the source is never mapped); phase A of a group
 *     starts as soon as its reading does, each chunk as it arrives;
 *   main thread (+ the pool's workers, rfs_pool_for; phase B of a group
 *   runs in one loop with phase A of the next, encode_run):
 *     A. per chunk, in parallel: blob blocks are zstd-compressed; tensor
 *        tiles get an XXH3-128 and a "pair histogram" (below); the worker
 *        that finishes a tensor's last tile gives it its hash (of its tile
 *        hashes), transform and shared tables;
 *     F. per tensor, in order: the identical-tensor check against earlier
 *        tensors (the earliest copy is kept);
 *     B. per tile, in parallel: rfs_tile_encode (given the tile's plane
 *        counts, from its pair histogram) and the unit's XXH3-64;
 *   writer thread: the group's output in chunk order, with writev.
 * The first group's read has nothing to overlap but its own phase A, so the
 * pool loop of that phase A begins with blob blocks of later groups,
 * compressed early (see "early blob blocks" below).
 * The image depends only on the chunks and their order, never on timing,
 * grouping or the thread count.
 *
 * Pair histogram (rfs_pair_histogram, codec): for plane p of W-byte
 * elements the count of (byte p, top bit of byte p-1 mod W).  Both the
 * plain byte histogram and the ROT1 one follow from it, so one pass gives
 * the transform choice (rfs_transform_choose_pairs, on the first
 * RFS_XF_SAMPLE elements) and the shared tables for either transform.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <zstd.h>

#include "rfs_image.h"
#include "rfs_pack_internal.h"

#define PK_GROUP_MIN (8u << 20)
/* A group this big (one huge tensor) is read only when no other group is
 * still being read or encoded and at most one is still being written, so
 * that one such group at a time is in work while the one before is written
 * (the overlap is 9% of a pack of the 5 GiB issue-11 shard).  Its slot takes
 * over the buffer of a slot that is done, and the big buffers of the other
 * idle slots are given back (slot_take_big): the packer holds at most two
 * buffers of the largest group's size, not one per slot (a 1 GiB embedding
 * made it 3 GiB). */
#define PK_GROUP_BIG ((uint64_t)256 << 20)
#define PK_SLOTS 3

/* A slot is READING from when its layout is made until its last chunk is
 * read; phase A may start on it then (chunk_wait). */
enum { SLOT_FREE, SLOT_READING, SLOT_READ, SLOT_ENCODED };

/* Source bytes read at most in one pread, so that a long run of blob blocks
 * reaches phase A piece by piece (tiles are read one by one). */
#define PK_READ_RUN ((uint64_t)2 << 20)

typedef struct pk_hist {
    uint32_t head[RFS_MAX_WIDTH][512]; /* elements below RFS_XF_SAMPLE */
    uint32_t tail[RFS_MAX_WIDTH][512]; /* the rest */
} pk_hist;

typedef struct pk_group {
    uint64_t c0, c1, bytes;
} pk_group;

/* A slot's buffer (slot_layout): the group's source bytes, chunk k's at
 * buf + in_off[k], then room for the encoded chunks that are not encoded in
 * place; chunk k's encoded bytes are at buf + out_off[k]. */
typedef struct pk_slot {
    int state;
    size_t g;
    uint8_t *buf;              /* in and out: one buffer, fewer fresh pages */
    size_t buf_cap;
    size_t want;               /* bytes the slot's later groups need (slot_want) */
    atomic_size_t n_read;      /* chunks [0, n_read) are read (SLOT_READING on) */
    uint64_t *in_off;          /* per chunk: its source bytes in buf */
    uint64_t *out_off;         /* per chunk: room for its worst case in buf */
    pk_hist *hist;             /* per chunk */
    XXH128_hash_t *th;         /* per chunk: tile hash */
    uint64_t *uh;              /* per chunk: unit XXH3-64 */
    atomic_uint *pend;         /* at a tensor's first chunk: tiles not analysed */
    size_t n_cap;              /* chunks the arrays hold */
    int failed;
    char err[512];
} pk_slot;

typedef struct pk_worker {
    rfs_enc *enc;
    ZSTD_CCtx *zc;
    uint64_t head[RFS_MAX_WIDTH][512], all[RFS_MAX_WIDTH][512]; /* tensor_finish */
    uint32_t counts[RFS_MAX_WIDTH][256];                        /* phase B: one tile's */
    uint32_t *pair_ws;         /* phase A: rfs_pair_histogram's scratch */
    uint8_t *early_src;        /* early blob blocks: the block's source bytes */
} pk_worker;

/* A blob block compressed early (early_job), for phase A of its group. */
typedef struct pk_early {
    uint64_t chunk;
    uint64_t off;              /* its room in early_buf: ZSTD_compressBound(len) */
    uint64_t src_h;            /* XXH3-64 of the source bytes it was made from */
    uint64_t out_h;            /* XXH3-64 of the compressed bytes */
    size_t n;                  /* compressed size */
    int raw;                   /* incompressible: stored as its source bytes */
    int done;                  /* 0: not made (a read failed): phase A does it */
} pk_early;

typedef struct pk_stream {
    pk_plan *p;
    pk_out *o;
    pk_group *groups;
    size_t n_groups;
    pk_slot slot[PK_SLOTS];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    pk_worker *w;
    int64_t *dedup;            /* open addressing on the tensor hash */
    size_t dedup_mask;
    pk_slot *cur_a, *cur_b;    /* slots of the running phases A and B */
    size_t n_e;                /* early blob blocks in the running pool loop (the first) */
    size_t n_b;                /* items of phase B in the running pool loop */
    pk_early *early;           /* by chunk index */
    size_t n_early;
    uint32_t early_len;        /* the longest early block */
    uint8_t *early_buf;
    atomic_int a_failed, b_failed;
    atomic_int read_waiters;   /* phase A jobs in chunk_wait */
    uint64_t done, total;
    char werr[512];            /* the writer's error */
} pk_stream;

/* --------------------------------------------------------------- groups */

static int groups_plan(pk_stream *s)
{
    pk_plan *p = s->p;
    size_t cap = 0;
    uint64_t total = 0;
    for (uint64_t i = 0; i < p->n_chunks; i++)
        total += p->chunks[i].len;
    /* Big enough that the barriers of phases A and B cost little, small
     * enough that a small input still makes a pipeline of many groups (the
     * first read and the last write overlap nothing) and touches little
     * fresh memory.  The floor is a tile per thread: at four, the 4 MB
     * tests/data model made two groups (no pipeline), whose slots and
     * per-chunk histograms touched 8 MiB of fresh memory. */
    uint64_t min = total / 16;
    if (min > PK_GROUP_MIN)
        min = PK_GROUP_MIN;
    if (min < (uint64_t)p->o->n_threads * p->o->tile_size)
        min = (uint64_t)p->o->n_threads * p->o->tile_size;
    for (uint64_t i = 0; i < p->n_chunks; i++) {
        const pk_chunk *c = &p->chunks[i];
        int starts = c->tensor < 0 || p->tensors[c->tensor].first_chunk == i;
        pk_group *g = s->n_groups ? &s->groups[s->n_groups - 1] : NULL;
        if (!g || (starts && g->bytes >= min)) {
            if (rfs_array_reserve(&s->groups, &cap, s->n_groups + 1, sizeof *s->groups))
                return pk_fail(p, "out of memory");
            g = &s->groups[s->n_groups++];
            *g = (pk_group){.c0 = i, .c1 = i};
        }
        g->c1 = i + 1;
        g->bytes += c->len;
        s->total += c->len;
    }
    return 0;
}

/* Room for need bytes in *b; a buffer far too big (after a huge tensor) is
 * given back.  Buffers are in 2 MiB pages where the kernel allows: on the
 * human32 corpus that cut the packer's CPU time from 97 to 84 ms (fewer
 * first-touch faults).  Only the whole 2 MiB pages of the buffer, though:
 * a 2 MiB page is cleared whole at its first touch, and rounding each
 * buffer up to one cleared memory that was never used (tests/data's
 * human32-mini: 8 MiB of slot pages for 4.5 MiB of slots). */
static int grow_bytes(uint8_t **b, size_t *cap, size_t need)
{
    const size_t huge = (size_t)2 << 20, page = 4096;
    if (need <= *cap && !(*cap > ((size_t)64 << 20) && *cap > 4 * need))
        return 0;
    free(*b);
    *b = NULL;
    *cap = 0;
    size_t sz = need ? (need + page - 1) / page * page : page;
    void *m = NULL;
    if (posix_memalign(&m, huge, sz) != 0)
        return -1;
#ifdef MADV_HUGEPAGE
    if (sz >= huge)
        madvise(m, sz / huge * huge, MADV_HUGEPAGE); /* a hint: failure is harmless */
#endif
    *b = m;
    *cap = sz;
    return 0;
}

/* Whether chunk c is encoded in place, over its own source bytes: the
 * tiles of 2- and 4-byte tensors (rfs_tile_encode reads those whole before
 * it writes).  Why: a separate output buffer for every tile doubled the
 * fresh memory the kernel must zero (all-MiniLM-L6-v2 in bf16: page
 * clearing was 17% of the packer's CPU time). */
static int chunk_in_place(const pk_plan *p, const pk_chunk *c)
{
    return c->tensor >= 0 && p->tensors[c->tensor].width >= 2;
}

/* Room for chunk c's encoded bytes. */
static size_t chunk_bound(const pk_plan *p, const pk_chunk *c)
{
    return c->tensor < 0 ? ZSTD_compressBound(c->len)
                         : rfs_tile_bound(c->len, p->tensors[c->tensor].width);
}

static uint64_t align64(uint64_t x)
{
    return (x + 63) & ~(uint64_t)63;
}

/* The buffer layout of group g: chunk k's source bytes at in_off[k], its
 * encoded bytes at out_off[k] (both may be NULL: only the size is wanted).
 * In-place chunks get their worst case at their own source bytes; other
 * chunks' source bytes follow each other (so that a run of blob blocks is
 * one read), their worst cases come after all source bytes.  Returns the
 * bytes the buffer needs. */
static uint64_t slot_layout(const pk_plan *p, const pk_group *g, uint64_t *in_off,
                            uint64_t *out_off)
{
    uint64_t in = 0, out;
    for (uint64_t i = g->c0; i < g->c1; i++) {
        const pk_chunk *c = &p->chunks[i];
        int place = chunk_in_place(p, c);
        if (place)
            in = align64(in);
        if (in_off)
            in_off[i - g->c0] = in;
        if (place && out_off)
            out_off[i - g->c0] = in;
        in += place ? chunk_bound(p, c) : c->len;
    }
    out = align64(in);
    for (uint64_t i = g->c0; i < g->c1; i++) {
        const pk_chunk *c = &p->chunks[i];
        if (chunk_in_place(p, c))
            continue;
        if (out_off)
            out_off[i - g->c0] = out;
        out += align64(chunk_bound(p, c));
    }
    return out;
}

/* Per slot, the most bytes any of its groups needs, huge groups aside: the
 * buffer is made that big at once, not grown group after group (each
 * growth is a fresh allocation, zeroed again by the kernel). */
static void slot_want(pk_stream *s)
{
    for (size_t g = 0; g < s->n_groups; g++) {
        pk_slot *sl = &s->slot[g % PK_SLOTS];
        if (s->groups[g].bytes >= PK_GROUP_BIG)
            continue;
        uint64_t need = slot_layout(s->p, &s->groups[g], NULL, NULL);
        if (need > sl->want)
            sl->want = (size_t)need;
    }
}

/* Room in slot for group g's chunks. */
static int slot_fit(pk_stream *s, pk_slot *sl, const pk_group *g)
{
    size_t n = (size_t)(g->c1 - g->c0);
    if (n > sl->n_cap) {
        free(sl->hist);
        free(sl->th);
        free(sl->uh);
        free(sl->in_off);
        free(sl->out_off);
        free(sl->pend);
        sl->pend = malloc(n * sizeof *sl->pend);
        sl->hist = malloc(n * sizeof *sl->hist);
        sl->th = malloc(n * sizeof *sl->th);
        sl->uh = malloc(n * sizeof *sl->uh);
        sl->in_off = malloc(n * sizeof *sl->in_off);
        sl->out_off = malloc(n * sizeof *sl->out_off);
        sl->n_cap = n;
        if (!sl->hist || !sl->th || !sl->uh || !sl->in_off || !sl->out_off || !sl->pend) {
            sl->n_cap = 0;
            return -1;
        }
    }
    size_t need = (size_t)slot_layout(s->p, g, sl->in_off, sl->out_off);
    return grow_bytes(&sl->buf, &sl->buf_cap, need > sl->want ? need : sl->want);
}

/* --------------------------------------------------------------- reader */

typedef struct pk_reader {
    pk_stream *s;
    int64_t file;  /* open file, or -1 */
    int fd;
} pk_reader;

static int reader_run(pk_reader *r, pk_slot *sl, uint64_t c0, uint64_t c1, uint64_t pos)
{
    pk_plan *p = r->s->p;
    const pk_chunk *c = &p->chunks[c0];
    const pk_chunk *last = &p->chunks[c1 - 1];
    const pk_file *f = &p->files[c->file];
    if (r->file != (int64_t)c->file) {
        if (r->fd >= 0)
            close(r->fd);
        r->file = -1;
        if (pk_src_open(p, f, &r->fd, sl->err, sizeof sl->err))
            return -1;
        r->file = c->file;
    }
    return pk_src_read(p, f, r->fd, sl->buf + pos, c->file_off,
                       last->file_off + last->len - c->file_off, sl->err, sizeof sl->err);
}

/* Whether chunk i follows chunk i - 1 both in its file and in the buffer. */
static int reader_follows(const pk_plan *p, const pk_slot *sl, const pk_group *g, uint64_t i)
{
    const pk_chunk *b = &p->chunks[i - 1], *c = &p->chunks[i];
    return b->file == c->file && b->file_off + b->len == c->file_off &&
           sl->in_off[i - 1 - g->c0] + b->len == sl->in_off[i - g->c0];
}

static void slot_set(pk_stream *s, pk_slot *sl, int state, int stop);

/* Chunks [0, n) of sl are read: wake the phase A jobs waiting for them. */
static void reader_progress(pk_stream *s, pk_slot *sl, size_t n)
{
    atomic_store(&sl->n_read, n);
    if (atomic_load(&s->read_waiters)) { /* seq_cst both sides: see chunk_wait */
        pthread_mutex_lock(&s->mu);
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
}

/* Read group g into sl: runs of chunks contiguous in one file and in the
 * buffer, one read each (of at most about PK_READ_RUN bytes); phase A
 * analyses the chunks read while the reader reads the rest. */
static int reader_group(pk_reader *r, pk_slot *sl, const pk_group *g)
{
    pk_stream *s = r->s;
    pk_plan *p = s->p;
    if (slot_fit(s, sl, g)) {
        snprintf(sl->err, sizeof sl->err, "out of memory");
        return -1;
    }
    atomic_store(&sl->n_read, 0);
    slot_set(s, sl, SLOT_READING, 0);
    uint64_t run = g->c0, bytes = p->chunks[g->c0].len;
    for (uint64_t i = g->c0 + 1; i <= g->c1; i++) {
        if (i < g->c1 && bytes < PK_READ_RUN && reader_follows(p, sl, g, i)) {
            bytes += p->chunks[i].len;
            continue;
        }
        if (reader_run(r, sl, run, i, sl->in_off[run - g->c0]))
            return -1;
        reader_progress(s, sl, (size_t)(i - g->c0));
        run = i;
        bytes = i < g->c1 ? p->chunks[i].len : 0;
    }
    return 0;
}

/* Wait until slot sl reaches state (or the run stops); 1 when stopped. */
static int slot_wait(pk_stream *s, pk_slot *sl, int state)
{
    pthread_mutex_lock(&s->mu);
    while (sl->state != state && !s->stop)
        pthread_cond_wait(&s->cv, &s->mu);
    int stop = s->stop;
    pthread_mutex_unlock(&s->mu);
    return stop;
}

/* Hand slot sl on in state; stop the whole run too when stop is set. */
static void slot_set(pk_stream *s, pk_slot *sl, int state, int stop)
{
    pthread_mutex_lock(&s->mu);
    sl->state = state;
    if (stop)
        s->stop = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* 1 when the reader may read group g into its slot sl (s->mu held): sl is
 * free and, for a big group, at most one other slot is busy, and only with
 * its write (its group needs no more CPU time). */
static int slot_may_read(const pk_stream *s, const pk_slot *sl, size_t g)
{
    unsigned writing = 0;
    if (sl->state != SLOT_FREE)
        return 0;
    if (s->groups[g].bytes < PK_GROUP_BIG)
        return 1;
    for (unsigned k = 0; k < PK_SLOTS; k++) {
        int st = s->slot[k].state;
        if (&s->slot[k] == sl || st == SLOT_FREE)
            continue;
        if (st != SLOT_ENCODED || ++writing > 1)
            return 0;
    }
    return 1;
}

/* Before big group g is read into sl (slot_may_read holds; s->mu held: the
 * states are read under it, and the idle slots' buffers are the reader's
 * alone): sl takes the largest buffer of the idle slots, and the other idle
 * slots give back any buffer bigger than their own small groups want.  With
 * the one slot that may still be writing, at most two big buffers exist; the
 * next big group takes over this one's or the writer's. */
static void slot_take_big(pk_stream *s, pk_slot *sl)
{
    for (unsigned k = 0; k < PK_SLOTS; k++) {
        pk_slot *o = &s->slot[k];
        if (o == sl || o->state != SLOT_FREE || o->buf_cap <= sl->buf_cap)
            continue;
        uint8_t *b = sl->buf;
        size_t cap = sl->buf_cap;
        sl->buf = o->buf;
        sl->buf_cap = o->buf_cap;
        o->buf = b;
        o->buf_cap = cap;
    }
    for (unsigned k = 0; k < PK_SLOTS; k++) {
        pk_slot *o = &s->slot[k];
        if (o != sl && o->state == SLOT_FREE && o->buf_cap > o->want) {
            free(o->buf);
            o->buf = NULL;
            o->buf_cap = 0;
        }
    }
}

static void *reader_main(void *arg)
{
    pk_stream *s = arg;
    pk_reader r = {.s = s, .file = -1, .fd = -1};
    for (size_t g = 0; g < s->n_groups; g++) {
        pk_slot *sl = &s->slot[g % PK_SLOTS];
        pthread_mutex_lock(&s->mu);
        while (!s->stop && !slot_may_read(s, sl, g))
            pthread_cond_wait(&s->cv, &s->mu);
        int stop = s->stop;
        if (!stop && s->groups[g].bytes >= PK_GROUP_BIG)
            slot_take_big(s, sl);
        pthread_mutex_unlock(&s->mu);
        if (stop)
            break;
        sl->g = g;
        sl->failed = reader_group(&r, sl, &s->groups[g]) != 0;
        slot_set(s, sl, SLOT_READ, 0);
        if (sl->failed)
            break;
    }
    if (r.fd >= 0)
        close(r.fd);
    return NULL;
}

/* ------------------------------------------------------ phase A: analyse */

static int tensor_shared(const pk_plan *p, const pk_tensor *t)
{
    return t->n_tiles >= 2 && !p->o->raw_codec;
}

/* Elements of chunk c (of tensor t) in its pair histogram's head part. */
static uint64_t tile_head(const pk_tensor *t, const pk_chunk *c)
{
    unsigned w = t->width;
    uint64_t e0 = (c->file_off - t->off) / w, n = c->len / w;
    uint64_t head = w >= 2 && e0 < RFS_XF_SAMPLE ? RFS_XF_SAMPLE - e0 : 0;
    return head > n ? n : head;
}

/* 1 when chunk c's pair histogram covers all its elements. */
static int tile_hist_whole(const pk_plan *p, const pk_tensor *t, const pk_chunk *c)
{
    return tensor_shared(p, t) || tile_head(t, c) == c->len / t->width;
}

static void tile_analyse(pk_stream *s, pk_worker *wk, pk_slot *sl, size_t k, const pk_chunk *c,
                         const uint8_t *src)
{
    const pk_tensor *t = &s->p->tensors[c->tensor];
    unsigned w = t->width;
    sl->th[k] = XXH3_128bits(src, c->len);
    uint64_t n = c->len / w, head = tile_head(t, c);
    pk_hist *h = &sl->hist[k];
    if (head)
        rfs_pair_histogram(h->head, src, head, w, wk->pair_ws);
    if (tensor_shared(s->p, t) && n > head)
        rfs_pair_histogram(h->tail, src + head * w, n - head, w, wk->pair_ws);
}

/* The tile's byte counts per plane under transform xf, from its pair
 * histograms (which tile_hist_whole says cover it), for the encoder. */
static void tile_counts(uint32_t out[RFS_MAX_WIDTH][256], const pk_hist *h, int has_head,
                        int has_tail, unsigned w, rfs_transform xf)
{
    for (unsigned p = 0; p < w; p++) {
        uint64_t pairs[512], bytes[256];
        for (unsigned x = 0; x < 512; x++)
            pairs[x] = (uint64_t)(has_head ? h->head[p][x] : 0) + (has_tail ? h->tail[p][x] : 0);
        rfs_pair_to_bytes(bytes, pairs, xf);
        for (unsigned b = 0; b < 256; b++)
            out[p][b] = (uint32_t)bytes[b]; /* one tile's: below 2^32 */
    }
}

/* zstd of a blob block's len bytes into out (ZSTD_compressBound(len) of
 * room): its compressed size, or 0 when it is stored raw (incompressible). */
static size_t blob_zstd(pk_stream *s, pk_worker *w, uint8_t *out, const uint8_t *src,
                        size_t len)
{
    size_t n = ZSTD_compressCCtx(w->zc, out, ZSTD_compressBound(len), src, len,
                                 s->p->o->zstd_level);
    return ZSTD_isError(n) || n >= len ? 0 : n;
}

static int early_take(pk_stream *s, pk_slot *sl, size_t k, pk_chunk *c, const uint8_t *src);

static void blob_compress(pk_stream *s, pk_worker *w, pk_slot *sl, size_t k, pk_chunk *c,
                          const uint8_t *src)
{
    if (early_take(s, sl, k, c, src))
        return;
    uint8_t *out = sl->buf + sl->out_off[k];
    size_t n = blob_zstd(s, w, out, src, c->len);
    c->raw = n == 0;
    c->out_len = c->raw ? c->len : (uint32_t)n;
    if (c->raw)
        c->raw_xxh3 = XXH3_64bits(src, c->len);
    else
        sl->uh[k] = XXH3_64bits(out, n);
}

/* ---------------------------------------------------- early blob blocks */

/*
 * Blob blocks compressed early.  While the first group is read (on
 * all-MiniLM-L6-v2 as bf16, its 24 MB embedding: ~20 ms cold) the cores
 * wait on the disk; the blob blocks of later groups (tokenizer and
 * vocabulary files, which sort after the weights) need nothing from any
 * other chunk, and zstd at level 3 makes ~140 MB/s of such text.  So the
 * first pool loop begins with them: each is pread on its own and
 * compressed into early_buf, and phase A of its group takes the result
 * where the group's bytes hash the same (the file changed in between:
 * compressed again, as if never made early; the end-of-pack check of the
 * files reports the change).  The image is the same bytes either way.
 * At most PK_EARLY_MAX source bytes, and at most an eighth of the first
 * group's (compressed on two cores, that still ends well within its read);
 * only blocks of PK_EARLY_MIN_LEN or more, where compressing costs more
 * than the extra open and pread, and only of files whose bytes the
 * readahead thread asks for whole (pk_readahead_whole): a block inside
 * a big file (the corpus's integer tensors) would be a read from the disk
 * away from the stream's, which it slowed.
 */
#define PK_EARLY_MAX ((uint64_t)8 << 20)
#define PK_EARLY_MIN_LEN (16u << 10)

static int early_plan(pk_stream *s)
{
    pk_plan *p = s->p;
    if (s->n_groups < 2)
        return 0;
    uint64_t budget = s->groups[0].bytes / 8, bytes = 0, room = 0;
    if (budget > PK_EARLY_MAX)
        budget = PK_EARLY_MAX;
    size_t cap = 0;
    for (uint64_t i = s->groups[1].c0; i < p->n_chunks; i++) {
        const pk_chunk *c = &p->chunks[i];
        if (c->tensor >= 0 || c->len < PK_EARLY_MIN_LEN || bytes + c->len > budget ||
            !pk_readahead_whole(&p->files[c->file]))
            continue;
        if (rfs_array_reserve(&s->early, &cap, s->n_early + 1, sizeof *s->early))
            return pk_fail(p, "out of memory");
        s->early[s->n_early++] = (pk_early){.chunk = i, .off = room};
        bytes += c->len;
        room += ZSTD_compressBound(c->len);
        if (c->len > s->early_len)
            s->early_len = c->len;
    }
    if (s->n_early && !(s->early_buf = malloc(room)))
        return pk_fail(p, "out of memory");
    return 0;
}

/* Early item k: read and compress its block; on any failure leave it to
 * phase A, which reads the block again and reports what fails. */
static void early_job(pk_stream *s, unsigned worker, size_t k)
{
    pk_plan *p = s->p;
    pk_early *e = &s->early[k];
    pk_worker *w = &s->w[worker];
    const pk_chunk *c = &p->chunks[e->chunk];
    const pk_file *f = &p->files[c->file];
    char err[256];
    int fd = -1;
    if (!w->early_src && !(w->early_src = malloc(s->early_len)))
        return;
    if (pk_src_open(p, f, &fd, err, sizeof err))
        return;
    int rc = pk_src_read(p, f, fd, w->early_src, c->file_off, c->len, err, sizeof err);
    close(fd);
    if (rc)
        return;
    uint8_t *out = s->early_buf + e->off;
    e->n = blob_zstd(s, w, out, w->early_src, c->len);
    e->raw = e->n == 0;
    e->src_h = XXH3_64bits(w->early_src, c->len);
    e->out_h = e->raw ? e->src_h : XXH3_64bits(out, e->n);
    e->done = 1;
}

/* Phase A of blob chunk c (slot index k, source bytes src): take its early
 * result if it was made from these bytes; 1 when taken. */
static int early_take(pk_stream *s, pk_slot *sl, size_t k, pk_chunk *c, const uint8_t *src)
{
    size_t lo = 0, hi = s->n_early;
    uint64_t i = (uint64_t)(c - s->p->chunks);
    while (lo < hi) { /* early is sorted by chunk */
        size_t mid = lo + (hi - lo) / 2;
        if (s->early[mid].chunk < i)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == s->n_early || s->early[lo].chunk != i || !s->early[lo].done)
        return 0;
    const pk_early *e = &s->early[lo];
    if (XXH3_64bits(src, c->len) != e->src_h)
        return 0;
    c->raw = e->raw;
    c->out_len = e->raw ? c->len : (uint32_t)e->n;
    if (e->raw) {
        c->raw_xxh3 = e->src_h;
    } else {
        memcpy(sl->buf + sl->out_off[k], s->early_buf + e->off, e->n);
        sl->uh[k] = e->out_h;
    }
    return 1;
}

static int tensor_finish(pk_stream *s, pk_worker *w, pk_slot *sl, uint64_t i);

/* Wait until chunk k of slot sl is read; -1 when it never will be (the read
 * failed: encode_run reports it; or the run stops).  The reader stores
 * n_read, then loads read_waiters; a waiter adds itself, then loads n_read
 * (all seq_cst, the waiter under mu): either the reader sees the waiter and
 * broadcasts under mu, or the waiter sees the chunk read. */
static int chunk_wait(pk_stream *s, pk_slot *sl, size_t k)
{
    if (atomic_load(&sl->n_read) > k)
        return 0;
    pthread_mutex_lock(&s->mu);
    atomic_fetch_add(&s->read_waiters, 1);
    while (atomic_load(&sl->n_read) <= k && sl->state == SLOT_READING && !s->stop)
        pthread_cond_wait(&s->cv, &s->mu);
    atomic_fetch_sub(&s->read_waiters, 1);
    int ok = atomic_load(&sl->n_read) > k;
    pthread_mutex_unlock(&s->mu);
    return ok ? 0 : -1;
}

static void phase_a_job(pk_stream *s, unsigned worker, size_t k)
{
    pk_slot *sl = s->cur_a;
    pk_chunk *c = &s->p->chunks[s->groups[sl->g].c0 + k];
    if (chunk_wait(s, sl, k))
        return;
    const uint8_t *src = sl->buf + sl->in_off[k];
    if (c->tensor < 0) {
        blob_compress(s, &s->w[worker], sl, k, c, src);
        return;
    }
    tile_analyse(s, &s->w[worker], sl, k, c, src);
    uint64_t first = s->p->tensors[c->tensor].first_chunk;
    if (atomic_fetch_sub(&sl->pend[first - s->groups[sl->g].c0], 1) == 1 &&
        tensor_finish(s, &s->w[worker], sl, first))
        atomic_store(&s->a_failed, 1); /* out of memory */
}

/* ----------------------------------------------------- phase F: tensors */

static int hash_eq(XXH128_hash_t a, XXH128_hash_t b)
{
    return a.high64 == b.high64 && a.low64 == b.low64;
}

/* Are the bytes of tensor t (its tiles in slot sl, the first at slot
 * index k0) those of the earlier tensor o, of the same length?  Re-read o,
 * a tile's length at a time (t's tiles are not contiguous in sl: see
 * chunk_in_place). */
static int tensor_same(pk_stream *s, const pk_tensor *o, const pk_tensor *t, const pk_slot *sl,
                       size_t k0, int *same)
{
    pk_plan *p = s->p;
    const pk_file *f = &p->files[o->file];
    uint32_t ts = p->o->tile_size;
    uint8_t *buf = malloc(ts);
    int fd = -1, rc = -1;
    *same = 0;
    if (!buf) {
        pk_fail(p, "out of memory");
        goto done;
    }
    if (pk_src_open(p, f, &fd, p->err, p->err_cap))
        goto done;
    rc = 0;
    *same = 1;
    for (uint32_t k = 0; k < t->n_tiles && *same; k++) {
        const pk_chunk *c = &p->chunks[t->first_chunk + k];
        if (pk_src_read(p, f, fd, buf, o->off + (c->file_off - t->off), c->len, p->err,
                        p->err_cap)) {
            rc = -1;
            break;
        }
        *same = memcmp(buf, sl->buf + sl->in_off[k0 + k], c->len) == 0;
    }
done:
    if (fd >= 0)
        close(fd);
    free(buf);
    return rc;
}

/* The earliest tensor identical to tensor ti (its first tile at slot index
 * k0 of sl), else record it; -1 on error. */
static int tensor_dedup(pk_stream *s, size_t ti, const pk_slot *sl, size_t k0)
{
    pk_plan *p = s->p;
    pk_tensor *t = &p->tensors[ti];
    size_t h = (size_t)t->hash.low64 & s->dedup_mask;
    for (; s->dedup[h] >= 0; h = (h + 1) & s->dedup_mask) {
        pk_tensor *o = &p->tensors[s->dedup[h]];
        int same = 0;
        if (!hash_eq(o->hash, t->hash) || o->len != t->len || o->dtype != t->dtype)
            continue;
        if (tensor_same(s, o, t, sl, k0, &same))
            return -1;
        if (same) {
            t->alias_of = s->dedup[h];
            p->st->dup_tensors++;
            for (uint32_t k = 0; k < t->n_tiles; k++)
                p->chunks[t->first_chunk + k].skip = 1;
            return 0;
        }
    }
    s->dedup[h] = (int64_t)ti;
    return 0;
}

static int tensor_tables(pk_tensor *t, uint64_t (*all)[512])
{
    for (unsigned pl = 0; pl < t->width; pl++) {
        uint64_t counts[256];
        rfs_pair_to_bytes(counts, all[pl], t->xf);
        rfs_table *tab = malloc(sizeof *tab);
        if (!tab)
            return -1;
        if (rfs_table_from_counts(tab, counts) != RFS_OK) {
            free(tab);
            continue;
        }
        t->tab[pl] = tab;
        t->set.plane[pl] = tab;
    }
    return 0;
}

/* Tensor of chunk i (its first chunk, in slot sl), once all its tiles are
 * analysed, on the worker that analysed the last: hash, transform, shared
 * tables.  -1 when out of memory. */
static int tensor_finish(pk_stream *s, pk_worker *w, pk_slot *sl, uint64_t i)
{
    pk_plan *p = s->p;
    pk_tensor *t = &p->tensors[p->chunks[i].tensor];
    size_t k0 = (size_t)(i - s->groups[sl->g].c0);
    uint64_t (*head)[512] = w->head, (*all)[512] = w->all;
    memset(w->head, 0, t->width * sizeof w->head[0]); /* the planes read below */
    memset(w->all, 0, t->width * sizeof w->all[0]);
    int shared = tensor_shared(p, t);
    for (size_t k = k0; k < k0 + t->n_tiles; k++) {
        const pk_chunk *c = &p->chunks[i + (k - k0)];
        uint64_t n = c->len / t->width, hn = tile_head(t, c);
        for (unsigned pl = 0; pl < t->width; pl++)
            for (unsigned x = 0; x < 512; x++) {
                uint64_t a = hn ? sl->hist[k].head[pl][x] : 0;
                head[pl][x] += a;
                all[pl][x] += a + (n > hn && shared ? sl->hist[k].tail[pl][x] : 0);
            }
    }
    t->hash = XXH3_128bits(&sl->th[k0], t->n_tiles * sizeof *sl->th);
    t->xf = rfs_transform_choose_pairs((const uint64_t (*)[512])head, t->width, t->n_elems);
    return tensor_shared(p, t) ? tensor_tables(t, all) : 0;
}

/* ------------------------------------------------------- phase B: encode */

static void phase_b_job(pk_stream *s, unsigned worker, size_t k)
{
    pk_slot *sl = s->cur_b;
    pk_plan *p = s->p;
    pk_chunk *c = &p->chunks[s->groups[sl->g].c0 + k];
    if (c->tensor < 0 || c->skip)
        return;
    const pk_tensor *t = &p->tensors[c->tensor];
    pk_worker *wk = &s->w[worker];
    rfs_tile_params tp = {.width = t->width, .transform = t->xf,
                          .shared = t->n_tiles >= 2 ? &t->set : NULL,
                          .raw_only = p->o->raw_codec, .ctx = !p->o->no_ctx};
    if (!p->o->raw_codec && tile_hist_whole(p, t, c)) { /* spare the encoder its count */
        uint64_t head = tile_head(t, c);
        tile_counts(wk->counts, &sl->hist[k], head > 0, head < c->len / t->width, t->width,
                    t->xf);
        tp.counts = (const uint32_t (*)[256])wk->counts;
    }
    uint8_t *out = sl->buf + sl->out_off[k]; /* in place: sl->buf + sl->in_off[k] */
    size_t n = 0;
    if (rfs_tile_encode(wk->enc, out, rfs_tile_bound(c->len, t->width), &n,
                        sl->buf + sl->in_off[k], c->len, &tp) != RFS_OK)
        atomic_store(&s->b_failed, 1);
    c->out_len = (uint32_t)n;
    c->raw = 0;
    sl->uh[k] = XXH3_64bits(out, n);
}

/* One pool loop: the early blob blocks (first loop only), then phase B of
 * cur_b's items, then phase A of cur_a's. */
static void phase_ba_job(void *ctx, unsigned worker, size_t k)
{
    pk_stream *s = ctx;
    if (k < s->n_e)
        early_job(s, worker, k);
    else if (k - s->n_e < s->n_b)
        phase_b_job(s, worker, k - s->n_e);
    else
        phase_a_job(s, worker, k - s->n_e - s->n_b);
}

static size_t slot_items(const pk_stream *s, const pk_slot *sl)
{
    return sl ? (size_t)(s->groups[sl->g].c1 - s->groups[sl->g].c0) : 0;
}

/* Count down to each tensor's last analysed tile (phase A). */
static void group_start(pk_stream *s, pk_slot *sl)
{
    pk_plan *p = s->p;
    const pk_group *g = &s->groups[sl->g];
    for (uint64_t i = g->c0; i < g->c1; i++) {
        const pk_chunk *c = &p->chunks[i];
        if (c->tensor >= 0 && p->tensors[c->tensor].first_chunk == i)
            atomic_init(&sl->pend[i - g->c0], p->tensors[c->tensor].n_tiles);
    }
}

/* Phase F: the identical-tensor check, in order (the earliest copy is kept). */
static int group_dedup(pk_stream *s, pk_slot *sl)
{
    pk_plan *p = s->p;
    const pk_group *g = &s->groups[sl->g];
    for (uint64_t i = g->c0; i < g->c1; i++) {
        const pk_chunk *c = &p->chunks[i];
        if (c->tensor >= 0 && p->tensors[c->tensor].first_chunk == i &&
            tensor_dedup(s, (size_t)c->tensor, sl, (size_t)(i - g->c0)))
            return -1;
    }
    return 0;
}

/*
 * Phase B of slot b (analysed and checked) and phase A of slot a (read),
 * either may be NULL, in one pool loop; then b goes to the writer and a
 * through phase F.  Why one loop: each loop ends waiting for its slowest
 * item, and on a small model (a group of about ten 256 KiB tiles on two
 * threads) those tails left a core idle for a good part of the run;
 * B of one group and A of the next are independent, so their items share
 * the tail.
 */
static int encode_run(pk_stream *s, pk_slot *b, pk_slot *a)
{
    s->cur_b = b;
    s->cur_a = a;
    s->n_b = slot_items(s, b);
    rfs_pool_for(s->p->pool, RFS_PRIO_HIGH, s->n_e + s->n_b + slot_items(s, a), phase_ba_job, s);
    s->n_e = 0;
    if (b && atomic_load(&s->b_failed))
        return pk_fail(s->p, "internal error: tile encoder failed");
    if (b)
        slot_set(s, b, SLOT_ENCODED, 0);
    /* Every chunk of a is read, or its read failed: wait for the reader's
     * verdict. */
    if (a && slot_wait(s, a, SLOT_READ))
        return -1; /* the writer failed: its message is in werr */
    if (a && a->failed)
        return pk_fail(s->p, "%s", a->err);
    if (a && atomic_load(&s->a_failed))
        return pk_fail(s->p, "out of memory building frequency tables");
    return a ? group_dedup(s, a) : 0;
}

/* --------------------------------------------------------------- writer */

/* Which planes of an encoded tile use the tensor's shared table.  The tile
 * is the encoder's own output, so it parses; were it not to, every plane
 * keeps its table (bytes wasted, never a tile left without its table). */
static uint8_t tile_shared_planes(const uint8_t *tile, size_t size)
{
    rfs_tile_layout lay;
    uint8_t m = 0;
    if (rfs_tile_parse(&lay, tile, size) != RFS_OK)
        return (uint8_t)((1u << RFS_MAX_WIDTH) - 1);
    for (unsigned pl = 0; pl < lay.width; pl++)
        if (lay.plane[pl].mode == RFS_PM_RANS_SHARED)
            m |= (uint8_t)(1u << pl);
    return m;
}

static int chunk_record(pk_stream *s, pk_slot *sl, uint64_t i)
{
    pk_plan *p = s->p;
    pk_out *o = s->o;
    pk_chunk *c = &p->chunks[i];
    size_t k = (size_t)(i - s->groups[sl->g].c0);
    c->img_off = o->pos;
    o->pos += c->out_len;
    int cls = c->tensor >= 0 ? p->tensors[c->tensor].dtype : 0;
    p->st->in_by_class[cls] += c->len;
    p->st->out_by_class[cls] += c->out_len;
    if (c->raw)
        return 0;
    if (rfs_array_reserve(&o->units, &o->cap_units, o->n_units + 1, sizeof *o->units))
        return -1;
    c->unit = o->n_units;
    o->units[o->n_units++] = (rfs_unit_rec){
        .off = c->img_off, .size = c->out_len, .decoded_size = c->len, .xxh3 = sl->uh[k],
        .kind = c->tensor >= 0 ? RFS_UNIT_TILE : RFS_UNIT_ZSTD, .tensor = RFS_IMG_NO_TENSOR};
    if (c->len > o->unit_max)
        o->unit_max = c->len;
    if (c->tensor >= 0) {
        pk_tensor *t = &p->tensors[c->tensor];
        if (i == t->first_chunk)
            t->first_unit = c->unit;
        t->used_mask |= tile_shared_planes(sl->buf + sl->out_off[k], c->out_len);
        p->n_ctx_tiles += (uint64_t)rfs_tile_uses_ctx(sl->buf + sl->out_off[k], c->out_len);
    }
    return 0;
}

static int writev_all(pk_stream *s, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(s->o->fd, iov, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            snprintf(s->werr, sizeof s->werr, "%s: write failed: %s", s->p->o->image,
                     w < 0 ? strerror(errno) : "no progress");
            return -1;
        }
        for (size_t left = (size_t)w; left;) { /* drop what was written */
            size_t d = left < iov->iov_len ? left : iov->iov_len;
            iov->iov_base = (uint8_t *)iov->iov_base + d;
            iov->iov_len -= d;
            left -= d;
            if (iov->iov_len == 0)
                iov++, n--;
        }
        while (n > 0 && iov->iov_len == 0)
            iov++, n--;
    }
    return 0;
}

static int group_write(pk_stream *s, pk_slot *sl)
{
    enum { NIOV = 1024 };
    struct iovec iov[NIOV];
    int n = 0;
    const pk_group *g = &s->groups[sl->g];
    for (uint64_t i = g->c0; i < g->c1; i++) {
        pk_chunk *c = &s->p->chunks[i];
        size_t k = (size_t)(i - g->c0);
        if (c->skip)
            continue;
        if (chunk_record(s, sl, i)) {
            snprintf(s->werr, sizeof s->werr, "out of memory");
            return -1;
        }
        iov[n++] = (struct iovec){sl->buf + (c->raw ? sl->in_off[k] : sl->out_off[k]),
                                  c->out_len};
        if (n == NIOV) {
            if (writev_all(s, iov, n))
                return -1;
            n = 0;
        }
    }
    s->done += g->bytes;
    if (s->p->o->progress)
        s->p->o->progress(s->p->o->user, s->done, s->total);
    return writev_all(s, iov, n);
}

static void *writer_main(void *arg)
{
    pk_stream *s = arg;
    for (size_t g = 0; g < s->n_groups; g++) {
        pk_slot *sl = &s->slot[g % PK_SLOTS];
        if (slot_wait(s, sl, SLOT_ENCODED))
            break;
        int rc = group_write(s, sl);
        slot_set(s, sl, SLOT_FREE, rc != 0);
        if (rc)
            break;
    }
    return NULL;
}

/* ----------------------------------------------------------------- main */

static int stream_init(pk_stream *s)
{
    pk_plan *p = s->p;
    unsigned nt = p->o->n_threads;
    size_t dn = 16;
    while (dn < 2 * p->n_tensors + 2)
        dn *= 2;
    s->dedup_mask = dn - 1;
    s->dedup = malloc(dn * sizeof *s->dedup);
    s->w = calloc(nt, sizeof *s->w);
    if (!s->dedup || !s->w)
        return pk_fail(p, "out of memory");
    memset(s->dedup, 0xff, dn * sizeof *s->dedup);
    for (unsigned w = 0; w < nt; w++) {
        s->w[w].enc = rfs_enc_create(p->o->tile_size);
        s->w[w].zc = ZSTD_createCCtx();
        s->w[w].pair_ws = malloc(RFS_PAIR_WS * sizeof *s->w[w].pair_ws);
        if (!s->w[w].enc || !s->w[w].zc || !s->w[w].pair_ws)
            return pk_fail(p, "out of memory");
    }
    if (groups_plan(s) || early_plan(s))
        return -1;
    s->n_e = s->n_early; /* the first pool loop is phase A of the first group */
    slot_want(s);
    return 0;
}

static void stream_free(pk_stream *s)
{
    for (unsigned w = 0; s->w && w < s->p->o->n_threads; w++) {
        rfs_enc_destroy(s->w[w].enc);
        ZSTD_freeCCtx(s->w[w].zc);
        free(s->w[w].pair_ws);
        free(s->w[w].early_src);
    }
    for (unsigned i = 0; i < PK_SLOTS; i++) {
        pk_slot *sl = &s->slot[i];
        free(sl->buf);
        free(sl->hist);
        free(sl->th);
        free(sl->uh);
        free(sl->in_off);
        free(sl->out_off);
        free(sl->pend);
    }
    free(s->w);
    free(s->dedup);
    free(s->groups);
    free(s->early);
    free(s->early_buf);
}

/* 1 when the reader has begun (or finished) slot sl's group (without
 * waiting): phase A can start on it. */
static int slot_ready(pk_stream *s, pk_slot *sl)
{
    pthread_mutex_lock(&s->mu);
    int ready = sl->state == SLOT_READING || sl->state == SLOT_READ;
    pthread_mutex_unlock(&s->mu);
    return ready;
}

/* Wait until slot_ready(sl), or the run stops; 1 when stopped. */
static int slot_wait_ready(pk_stream *s, pk_slot *sl)
{
    pthread_mutex_lock(&s->mu);
    while (sl->state != SLOT_READING && sl->state != SLOT_READ && !s->stop)
        pthread_cond_wait(&s->cv, &s->mu);
    int stop = s->stop;
    pthread_mutex_unlock(&s->mu);
    return stop;
}

/* The main thread's part: analyse each group as the reader delivers it,
 * and encode it together with the analysis of the next. */
static int stream_encode(pk_stream *s)
{
    pk_slot *pend = NULL; /* analysed, not yet encoded */
    for (size_t g = 0; g < s->n_groups; g++) {
        pk_slot *sl = &s->slot[g % PK_SLOTS];
        /* Never wait for the reader while holding an analysed group: the
         * reader of a big group waits for every other slot to be encoded. */
        if (pend && !slot_ready(s, sl)) {
            if (encode_run(s, pend, NULL))
                return -1;
            pend = NULL;
        }
        if (slot_wait_ready(s, sl))
            return -1; /* the writer failed: its message is in werr */
        group_start(s, sl);
        if (encode_run(s, pend, sl))
            return -1;
        pend = sl;
    }
    return pend ? encode_run(s, pend, NULL) : 0;
}

int pk_stream_all(pk_plan *p, pk_out *o)
{
    pk_stream s = {.p = p, .o = o};
    pthread_t rt, wt;
    int rc = stream_init(&s), have_r = 0, have_w = 0;
    atomic_init(&s.a_failed, 0);
    atomic_init(&s.b_failed, 0);
    atomic_init(&s.read_waiters, 0);
    for (unsigned i = 0; i < PK_SLOTS; i++)
        atomic_init(&s.slot[i].n_read, 0);
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    if (rc == 0) {
        have_r = pthread_create(&rt, NULL, reader_main, &s) == 0;
        have_w = have_r && pthread_create(&wt, NULL, writer_main, &s) == 0;
        rc = have_w ? stream_encode(&s) : pk_fail(p, "cannot start threads");
        pthread_mutex_lock(&s.mu);
        if (rc)
            s.stop = 1;
        pthread_cond_broadcast(&s.cv);
        pthread_mutex_unlock(&s.mu);
    }
    if (have_r)
        pthread_join(rt, NULL);
    if (have_w)
        pthread_join(wt, NULL);
    if (s.werr[0]) /* a write error stopped everything: it is the cause */
        rc = pk_fail(p, "%s", s.werr);
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.cv);
    stream_free(&s);
    return rc;
}
