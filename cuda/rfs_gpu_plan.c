/*
 * rfs_gpu_plan.c - see rfs_gpu_plan.h.
 *
 * Tile headers, plane descriptors and per-tile tables are parsed and
 * checked by the codec's own parser (rfs_tile_parse, rfs_plane_parse_rans),
 * the one rfs_tile_decode uses, so a tile is planned for the GPU exactly
 * when the CPU decoder would get past those checks too; the stream checks
 * are the kernel's (rfs_gpu_kernels.cu).
 */
#include <stdlib.h>
#include <string.h>

#include "rfs_gpu_plan.h"

#include "rfs_array.h"

static size_t align_up(size_t v)
{
    return (v + RFS_GPU_ALIGN - 1) & ~(size_t)(RFS_GPU_ALIGN - 1);
}

void rfs_gpu_plan_init(rfs_gpu_plan *p, uint8_t *in, size_t in_cap, size_t scratch_cap,
                       size_t out_cap, size_t max_tiles)
{
    memset(p, 0, sizeof(*p));
    p->in = in;
    p->in_cap = in_cap;
    p->scratch_cap = scratch_cap;
    p->out_cap = out_cap;
    p->max_tiles = max_tiles;
}

void rfs_gpu_plan_free(rfs_gpu_plan *p)
{
    free(p->tiles);
    free(p->tasks);
    free(p->task_table);
    free(p->jobs);
    free(p->chunks);
    free(p->tables);
    free(p->ctx_jobs);
    free(p->shared_key);
    free(p->shared_idx);
    free(p->sort_count);
    free(p->sort_tmp);
    memset(p, 0, sizeof(*p));
}

void rfs_gpu_plan_reset(rfs_gpu_plan *p)
{
    p->in_used = p->scratch_used = p->out_used = 0;
    p->n_tiles = p->n_tasks = p->n_jobs = p->n_chunks = p->n_tables = p->n_ctx_jobs = 0;
    if (p->n_shared)
        memset(p->shared_key, 0, p->shared_cap * sizeof(*p->shared_key));
    p->n_shared = 0;
}

/* The table record of a checked table's frequencies (they sum to 2^12). */
static void freq_record(uint32_t rec[RFS_GPU_TABLE_WORDS], const uint16_t freq[256])
{
    uint32_t start = 0;
    for (unsigned s = 0; s < 256; s++) {
        rec[s] = freq[s] | (freq[s] ? start : 0) << 16;
        start += freq[s];
    }
}

/* Record of a built shared table; RFS_E_TABLE when it is not normalised. */
static rfs_err shared_record(uint32_t rec[RFS_GPU_TABLE_WORDS], const rfs_table *t)
{
    uint32_t sum = 0;
    for (unsigned s = 0; s < 256; s++) {
        uint32_t f = t->freq[s];
        if (f && t->start[s] != sum)
            return RFS_E_TABLE;
        rec[s] = f | (f ? sum : 0) << 16;
        sum += f;
        if (sum > RFS_PROB_SCALE)
            return RFS_E_TABLE;
    }
    return sum == RFS_PROB_SCALE ? RFS_OK : RFS_E_TABLE;
}

static size_t shared_slot(const rfs_gpu_plan *p, const rfs_table *t)
{
    size_t h = (size_t)(((uintptr_t)t >> 4) * 0x9E3779B97F4A7C15ull);
    size_t i = h & (p->shared_cap - 1);
    while (p->shared_key[i] && p->shared_key[i] != t)
        i = (i + 1) & (p->shared_cap - 1);
    return i;
}

/* Index of shared table t among the batch's tables, UINT32_MAX if absent. */
static uint32_t shared_find(const rfs_gpu_plan *p, const rfs_table *t)
{
    if (!p->shared_cap)
        return UINT32_MAX;
    size_t i = shared_slot(p, t);
    return p->shared_key[i] ? p->shared_idx[i] : UINT32_MAX;
}

/* Room in the shared-table map for extra more entries (load <= 1/2). */
static int shared_reserve(rfs_gpu_plan *p, size_t extra)
{
    if (2 * (p->n_shared + extra) <= p->shared_cap)
        return 0;
    size_t old_cap = p->shared_cap, cap = old_cap ? old_cap : 64;
    while (2 * (p->n_shared + extra) > cap)
        cap *= 2;
    const rfs_table **nk = calloc(cap, sizeof(*nk));
    uint32_t *ni = calloc(cap, sizeof(*ni));
    if (!nk || !ni) {
        free(nk);
        free(ni);
        return -1;
    }
    const rfs_table **ok = p->shared_key;
    uint32_t *oi = p->shared_idx;
    p->shared_key = nk;
    p->shared_idx = ni;
    p->shared_cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (ok[i]) {
            size_t j = shared_slot(p, ok[i]);
            p->shared_key[j] = ok[i];
            p->shared_idx[j] = oi[i];
        }
    free(ok);
    free(oi);
    return 0;
}

/* Insert t (absent, room reserved). */
static void shared_insert(rfs_gpu_plan *p, const rfs_table *t, uint32_t idx)
{
    size_t i = shared_slot(p, t);
    p->shared_key[i] = t;
    p->shared_idx[i] = idx;
    p->n_shared++;
}

/* A tile's parsed planes, before it is committed to the plan. */
typedef struct parsed_tile {
    unsigned width, xf;
    uint32_t n;
    rfs_gpu_plane_desc plane[RFS_MAX_WIDTH];   /* off: relative to the tile */
    uint32_t rec[RFS_MAX_WIDTH][RFS_GPU_TABLE_WORDS];
    const rfs_table *shared[RFS_MAX_WIDTH];   /* RANS_SHARED: its table */
    uint32_t ctx_rec[2][RFS_GPU_TABLE_WORDS]; /* RANS_CTX: its two tables */
    int has_ctx;                              /* plane W-2 is RANS_CTX */
    unsigned n_rans;
    size_t scratch;                           /* scratch bytes needed */
} parsed_tile;

/* The rANS stream of plane p (rfs_plane_parse_rans): its bounds, and the
 * table record of a RANS_TILE plane or the shared table of a RANS_SHARED one. */
static rfs_err parse_stream(parsed_tile *pt, unsigned p, const uint8_t *src,
                            const rfs_plane_layout *pl, const rfs_table_set *shared)
{
    const rfs_table *t = shared ? shared->plane[p] : NULL;
    uint16_t freq[256];
    size_t off = 0, size = 0;
    rfs_err err = rfs_plane_parse_rans(src, pl, t != NULL, freq, &off, &size);
    if (err != RFS_OK)
        return err;
    pt->shared[p] = pl->mode == RFS_PM_RANS_SHARED ? t : NULL;
    if (pl->mode == RFS_PM_RANS_TILE)
        freq_record(pt->rec[p], freq);
    pt->plane[p].off = off;
    pt->plane[p].size = (uint32_t)size;
    pt->n_rans++;
    pt->scratch += align_up(pt->n);
    return RFS_OK;
}

/* The payload of RANS_CTX plane p (rfs_plane_parse_ctx): its stream, its
 * threshold (in the descriptor's value) and its two table records. */
static rfs_err parse_ctx_stream(parsed_tile *pt, unsigned p, const uint8_t *src,
                                const rfs_plane_layout *pl)
{
    uint16_t freq[2][256];
    size_t off = 0, size = 0;
    rfs_err err = rfs_plane_parse_ctx(src, pl, &pt->plane[p].value, freq[0], freq[1], &off, &size);
    if (err != RFS_OK)
        return err;
    freq_record(pt->ctx_rec[0], freq[0]);
    freq_record(pt->ctx_rec[1], freq[1]);
    pt->plane[p].off = off;
    pt->plane[p].size = (uint32_t)size;
    pt->has_ctx = 1;
    pt->n_rans++;
    pt->scratch += align_up(pt->n);
    return RFS_OK;
}

/* Header, plane descriptors and tables of one tile (format.md 1.3, 1.4),
 * for a unit that must decode to decoded_size bytes. */
static rfs_err parse_tile(parsed_tile *pt, const uint8_t *src, size_t src_size,
                          size_t decoded_size, const rfs_table_set *shared)
{
    rfs_tile_layout lay;
    rfs_err err = rfs_tile_parse(&lay, src, src_size);
    if (err != RFS_OK)
        return err;
    pt->width = lay.width;
    pt->xf = lay.xf;
    pt->n = lay.n;
    uint64_t bytes = (uint64_t)pt->n * pt->width;
    if (bytes > decoded_size)
        return RFS_E_DST_SMALL;
    if (bytes != decoded_size)
        return RFS_E_CORRUPT;
    pt->n_rans = 0;
    pt->scratch = 0;
    pt->has_ctx = 0;
    for (unsigned p = 0; p < pt->width; p++) {
        const rfs_plane_layout *pl = &lay.plane[p];
        rfs_gpu_plane_desc *pd = &pt->plane[p];
        memset(pd, 0, sizeof(*pd));
        pd->mode = (uint8_t)pl->mode;
        pd->value = pl->value;
        pd->off = pl->off;
        pd->size = pl->size;
        if (pl->mode == RFS_PM_RANS_TILE || pl->mode == RFS_PM_RANS_SHARED)
            err = parse_stream(pt, p, src, pl, shared);
        else if (pl->mode == RFS_PM_RANS_CTX)
            err = parse_ctx_stream(pt, p, src, pl);
        if (err != RFS_OK)
            return err;
    }
    return RFS_OK;
}

/* Append a table record (room reserved); its index. */
static uint32_t add_table(rfs_gpu_plan *p, const uint32_t rec[RFS_GPU_TABLE_WORDS])
{
    memcpy(p->tables + p->n_tables * RFS_GPU_TABLE_WORDS, rec,
           RFS_GPU_TABLE_WORDS * sizeof(uint32_t));
    return (uint32_t)p->n_tables++;
}

/* Check the shared tables of pt that this batch has not seen yet (their
 * records go to pt->rec).  Errors: RFS_E_TABLE. */
static rfs_err check_shared(const rfs_gpu_plan *p, parsed_tile *pt)
{
    for (unsigned q = 0; q < pt->width; q++) {
        if (pt->plane[q].mode != RFS_PM_RANS_SHARED || shared_find(p, pt->shared[q]) != UINT32_MAX)
            continue;
        rfs_err err = shared_record(pt->rec[q], pt->shared[q]);
        if (err != RFS_OK)
            return err;
    }
    return RFS_OK;
}

/* Tasks and tables of a parsed tile (room reserved: cannot fail). */
static void commit_rans(rfs_gpu_plan *p, parsed_tile *pt, rfs_gpu_tile_desc *td, uint32_t tile)
{
    size_t scratch = p->scratch_used;
    for (unsigned q = 0; q < pt->width; q++) {
        rfs_gpu_plane_desc *pd = &td->plane[q];
        if (pd->mode == RFS_PM_RANS_CTX) { /* a kernel 1b job, its tables side by side */
            pd->scratch = scratch;
            scratch += align_up(pt->n);
            rfs_gpu_ctx_job *cj = &p->ctx_jobs[p->n_ctx_jobs++];
            cj->tile = tile;
            cj->plane = q;
            cj->table = add_table(p, pt->ctx_rec[0]);
            add_table(p, pt->ctx_rec[1]);
            cj->pad = 0;
            continue;
        }
        if (pd->mode != RFS_PM_RANS_TILE && pd->mode != RFS_PM_RANS_SHARED)
            continue;
        const rfs_table *t = pt->shared[q];
        uint32_t idx = t ? shared_find(p, t) : UINT32_MAX;
        if (idx == UINT32_MAX) {
            idx = add_table(p, pt->rec[q]);
            if (t)
                shared_insert(p, t, idx);
        }
        pd->scratch = scratch;
        scratch += align_up(pt->n);
        p->tasks[p->n_tasks].tile = tile;
        p->tasks[p->n_tasks].plane = q;
        p->task_table[p->n_tasks++] = idx;
    }
}

/* Groups [*g0, *g1) holding window bytes [lo, hi) of a tile of width w. */
static size_t chunk_count(unsigned w, uint32_t lo, uint32_t hi, uint64_t *g0, uint64_t *g1)
{
    if (lo >= hi)
        return 0;
    *g0 = lo / w / 4;
    *g1 = (((uint64_t)hi + w - 1) / w + 3) / 4;
    return (size_t)((*g1 - *g0 + RFS_GPU_IL_GROUPS - 1) / RFS_GPU_IL_GROUPS);
}

/* Grow every array for one more tile with n_rans tasks (a RANS_CTX plane
 * among them takes one table more) and n_chunks chunks. */
static int reserve(rfs_gpu_plan *p, unsigned n_rans, size_t n_chunks)
{
    if (rfs_array_reserve(&p->ctx_jobs, &p->cap_ctx_jobs, p->n_ctx_jobs + 1,
                          sizeof(*p->ctx_jobs)))
        return -1;
    return rfs_array_reserve(&p->tiles, &p->cap_tiles, p->n_tiles + 1, sizeof(*p->tiles)) ||
           rfs_array_reserve(&p->tasks, &p->cap_tasks, p->n_tasks + n_rans, sizeof(*p->tasks)) ||
           rfs_array_reserve(&p->task_table, &p->cap_task_table, p->n_tasks + n_rans,
                             sizeof(*p->task_table)) ||
           rfs_array_reserve(&p->tables, &p->cap_tables,
                             (p->n_tables + n_rans + 1) * RFS_GPU_TABLE_WORDS, sizeof(uint32_t)) ||
           rfs_array_reserve(&p->chunks, &p->cap_chunks, p->n_chunks + n_chunks,
                             sizeof(*p->chunks)) ||
           shared_reserve(p, n_rans);
}

/* Interleave chunks of groups [g0, g1) (room reserved). */
static void add_chunks(rfs_gpu_plan *p, uint32_t tile, uint64_t g0, uint64_t g1)
{
    for (uint64_t g = g0; g < g1; g += RFS_GPU_IL_GROUPS) {
        rfs_gpu_chunk *c = &p->chunks[p->n_chunks++];
        c->tile = tile;
        c->first = (uint32_t)g;
        c->count = (uint32_t)(g1 - g < RFS_GPU_IL_GROUPS ? g1 - g : RFS_GPU_IL_GROUPS);
        c->pad = 0;
    }
}

/* Room for a tile needing in_need input, scratch and out bytes and chunks? */
static int fits(const rfs_gpu_plan *p, size_t in_need, size_t scratch, size_t out, size_t chunks)
{
    if (p->max_tiles && p->n_tiles >= p->max_tiles)
        return 0;
    if (p->max_chunks && (chunks > p->max_chunks || p->n_chunks > p->max_chunks - chunks))
        return 0;
    if (in_need > p->in_cap || align_up(p->in_used) > p->in_cap - in_need)
        return 0;
    if (scratch > p->scratch_cap || p->scratch_used > p->scratch_cap - scratch)
        return 0;
    return out <= p->out_cap && align_up(p->out_used) <= p->out_cap - out;
}

/* Window and output place of a tile; 0 when the window is invalid. */
static int place_output(const rfs_gpu_plan *p, uint64_t bytes, uint64_t *out, uint32_t *lo,
                        uint32_t *hi)
{
    if (*out == RFS_GPU_OUT_AUTO) {
        *lo = 0;
        *hi = (uint32_t)bytes;
        *out = align_up(p->out_used);
        return 1;
    }
    return *lo <= *hi && *hi <= bytes;
}

rfs_gpu_plan_res rfs_gpu_plan_add(rfs_gpu_plan *p, const uint8_t *src, size_t src_size,
                                  size_t decoded_size, const rfs_table_set *shared, uint64_t out,
                                  uint32_t win_lo, uint32_t win_hi, uint32_t *tile_idx,
                                  uint64_t *out_off, rfs_err *why)
{
    parsed_tile pt;
    *why = src ? parse_tile(&pt, src, src_size, decoded_size, shared) : RFS_E_ARG;
    if (*why != RFS_OK)
        return RFS_GPU_CPU;
    uint64_t bytes = (uint64_t)pt.n * pt.width;
    int auto_out = out == RFS_GPU_OUT_AUTO;
    if (!place_output(p, bytes, &out, &win_lo, &win_hi)) {
        *why = RFS_E_ARG;
        return RFS_GPU_CPU;
    }
    size_t in_need = src_size + RFS_GPU_ALIGN;
    size_t out_need = auto_out ? (size_t)bytes : 0;
    uint64_t g0 = 0, g1 = 0;
    size_t n_chunks = chunk_count(pt.width, win_lo, win_hi, &g0, &g1);
    if (!fits(p, in_need, pt.scratch, out_need, n_chunks)) {
        rfs_gpu_plan empty = *p;
        empty.in_used = empty.scratch_used = empty.out_used = empty.n_tiles = empty.n_chunks = 0;
        *why = RFS_E_TOO_BIG;
        return fits(&empty, in_need, pt.scratch, out_need, n_chunks) ? RFS_GPU_FULL : RFS_GPU_CPU;
    }
    *why = check_shared(p, &pt);
    if (*why != RFS_OK)
        return RFS_GPU_CPU;
    if (reserve(p, pt.n_rans, n_chunks)) {
        *why = RFS_E_NOMEM;
        return RFS_GPU_CPU;
    }
    uint32_t tile = (uint32_t)p->n_tiles++;
    size_t in_off = align_up(p->in_used);
    rfs_gpu_tile_desc *td = &p->tiles[tile];
    memset(td, 0, sizeof(*td));
    td->n = pt.n;
    td->width = (uint8_t)pt.width;
    td->xf = (uint8_t)pt.xf;
    td->win_lo = win_lo;
    td->win_hi = win_hi;
    td->out = out;
    for (unsigned q = 0; q < pt.width; q++) {
        td->plane[q] = pt.plane[q];
        td->plane[q].off += in_off;
    }
    commit_rans(p, &pt, td, tile);
    add_chunks(p, tile, g0, g1);
    memcpy(p->in + in_off, src, src_size);
    p->in_used = in_off + src_size;
    p->scratch_used += pt.scratch;
    if (auto_out)
        p->out_used = (size_t)out + (size_t)bytes;
    *tile_idx = tile;
    *out_off = out;
    return RFS_GPU_PLANNED;
}

rfs_err rfs_gpu_plan_finish(rfs_gpu_plan *p)
{
    /* counting sort of the tasks by table, stable (tile order kept) */
    size_t nt = p->n_tables;
    if (rfs_array_reserve(&p->sort_count, &p->cap_sort_count, nt + 1, sizeof(uint32_t)) ||
        rfs_array_reserve(&p->sort_tmp, &p->cap_sort_tmp, p->n_tasks + 1, sizeof(rfs_gpu_task)))
        return RFS_E_NOMEM;
    memset(p->sort_count, 0, (nt + 1) * sizeof(uint32_t));
    for (size_t i = 0; i < p->n_tasks; i++)
        p->sort_count[p->task_table[i] + 1]++;
    /* jobs: each table's run cut into pieces of at most RFS_GPU_WARPS */
    size_t n_jobs = 0;
    for (size_t t = 0; t < nt; t++)
        n_jobs += (p->sort_count[t + 1] + RFS_GPU_WARPS - 1) / RFS_GPU_WARPS;
    if (rfs_array_reserve(&p->jobs, &p->cap_jobs, n_jobs + 1, sizeof(*p->jobs)))
        return RFS_E_NOMEM;
    p->n_jobs = 0;
    uint32_t first = 0;
    for (size_t t = 0; t < nt; t++) {
        uint32_t c = p->sort_count[t + 1];
        for (uint32_t k = 0; k < c; k += RFS_GPU_WARPS) {
            rfs_gpu_job *j = &p->jobs[p->n_jobs++];
            j->table = (uint32_t)t;
            j->first = first + k;
            j->count = c - k < RFS_GPU_WARPS ? c - k : RFS_GPU_WARPS;
            j->pad = 0;
        }
        p->sort_count[t + 1] = first; /* becomes the run's next free slot */
        first += c;
    }
    for (size_t i = 0; i < p->n_tasks; i++)
        p->sort_tmp[p->sort_count[p->task_table[i] + 1]++] = p->tasks[i];
    if (p->n_tasks)
        memcpy(p->tasks, p->sort_tmp, p->n_tasks * sizeof(*p->tasks));
    return RFS_OK;
}
