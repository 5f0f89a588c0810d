/*
 * rfs_table.c - normalised order-0 frequency tables: build from counts,
 * serialise, parse (untrusted), build the decode lookup and the VBMI
 * permute-lookup plans (rfs_backend.h).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rfs_backend.h"
#include "rfs_internal.h"
#include "rfs_tile.h"

void rfs_table_build_lookup(rfs_table *t)
{
    uint32_t start = 0;
    for (unsigned s = 0; s < 256; s++) {
        uint32_t f = t->freq[s];
        t->start[s] = (uint16_t)start;
        uint32_t entry = s | (f - 1u) << 8 | start << 20;
        for (uint32_t k = 0; k < f; k++)
            t->dec[start + k] = entry;
        start += f;
    }
    t->plan = NULL;
}

/* Index of the largest value in f[] among symbols with f > floor_. */
static int table_largest(const uint16_t *f, const uint64_t *counts, unsigned floor_)
{
    int best = -1;
    for (unsigned s = 0; s < 256; s++) {
        if (f[s] <= floor_)
            continue;
        if (best < 0 || counts[s] > counts[best])
            best = (int)s;
    }
    return best;
}

rfs_err rfs_table_from_counts(rfs_table *t, const uint64_t counts[256])
{
    uint64_t total = 0;
    for (unsigned s = 0; s < 256; s++)
        total += counts[s];
    if (total == 0)
        return RFS_E_ARG;

    /* Scale with rounding, keep every present symbol >= 1, then move the
     * rounding error onto the most frequent symbols, where a change of one
     * costs the fewest bits.  Integer-only, so output is deterministic. */
    int32_t sum = 0;
    for (unsigned s = 0; s < 256; s++) {
        uint64_t f = 0;
        if (counts[s]) {
            f = (counts[s] * RFS_PROB_SCALE + total / 2) / total;
            if (f == 0)
                f = 1;
        }
        t->freq[s] = (uint16_t)f;
        sum += (int32_t)f;
    }
    while (sum > (int32_t)RFS_PROB_SCALE) {
        int s = table_largest(t->freq, counts, 1);
        t->freq[s]--;
        sum--;
    }
    if (sum < (int32_t)RFS_PROB_SCALE) {
        int s = table_largest(t->freq, counts, 0);
        t->freq[s] = (uint16_t)(t->freq[s] + (RFS_PROB_SCALE - (uint32_t)sum));
    }
    rfs_table_build_lookup(t);
    return RFS_OK;
}

rfs_err rfs_table_write(uint8_t *dst, size_t dst_cap, size_t *written, const rfs_table *t)
{
    uint8_t buf[RFS_TABLE_MAX_SIZE];
    size_t k = 32;
    memset(buf, 0, 32);
    for (unsigned s = 0; s < 256; s++) {
        uint16_t f = t->freq[s];
        if (!f)
            continue;
        buf[s >> 3] |= (uint8_t)(1u << (s & 7));
        if (f < 128) {
            buf[k++] = (uint8_t)f;
        } else {
            buf[k++] = (uint8_t)(0x80 | (f >> 8));
            buf[k++] = (uint8_t)f;
        }
    }
    if (k > dst_cap)
        return RFS_E_DST_SMALL;
    memcpy(dst, buf, k);
    *written = k;
    return RFS_OK;
}

rfs_err rfs_table_parse_freq(uint16_t freq[256], const uint8_t *src, size_t src_size,
                            size_t *used)
{
    if (src_size < 32)
        return RFS_E_TRUNCATED;
    size_t k = 32;
    uint32_t sum = 0;
    for (unsigned s = 0; s < 256; s++) {
        uint32_t f = 0;
        if (src[s >> 3] >> (s & 7) & 1) {
            if (k >= src_size)
                return RFS_E_TRUNCATED;
            f = src[k++];
            if (f & 0x80) {
                if (k >= src_size)
                    return RFS_E_TRUNCATED;
                f = (f & 0x7f) << 8 | src[k++];
                if (f < 128)
                    return RFS_E_TABLE; /* non-canonical two-byte form */
            }
            if (f == 0 || f > RFS_PROB_SCALE)
                return RFS_E_TABLE;
        }
        freq[s] = (uint16_t)f;
        sum += f;
    }
    if (sum != RFS_PROB_SCALE)
        return RFS_E_TABLE;
    *used = k;
    return RFS_OK;
}

rfs_err rfs_table_parse(rfs_table *t, const uint8_t *src, size_t src_size, size_t *used)
{
    rfs_err err = rfs_table_parse_freq(t->freq, src, src_size, used);
    if (err == RFS_OK)
        rfs_table_build_lookup(t);
    return err;
}

/* ------------------------------------------------ the permute-lookup plan */

/* Boundaries (symbol starts) strictly inside the 32-slot bucket b. */
static unsigned small_inner(const rfs_small_plan *p, unsigned b)
{
    unsigned c = 0;
    for (unsigned r = 1; r < p->nsym; r++)
        c += p->start[r] > 32 * b && p->start[r] < 32 * b + 32;
    return c;
}

/* The rank of every slot of [w, w + 128) into fine (an exact window). */
static void small_window(const rfs_small_plan *p, uint8_t fine[128], uint32_t w)
{
    unsigned r = 0;
    for (uint32_t j = 0; j < 128; j++) {
        while (r + 1 < p->nsym && p->start[r + 1] <= w + j)
            r++;
        fine[j] = (uint8_t)r;
    }
}

int rfs_small_plan_build(rfs_small_plan *p, const uint32_t *dec)
{
    /* walk the runs of dec: one entry per symbol present, in symbol order */
    unsigned r = 0;
    for (uint32_t slot = 0; slot < RFS_PROB_SCALE; r++) {
        uint32_t e = dec[slot];
        if (r == RFS_SMALL_MAX_SYMS)
            return 0;
        p->entry[r] = e;
        p->start[r] = (uint16_t)slot;
        slot += (e >> 8 & 0xfffu) + 1u;
    }
    p->nsym = r;
    for (unsigned k = 0; k < RFS_SMALL_MAX_SYMS; k++) {
        p->next[k] = (uint16_t)(k + 1 < r ? p->start[k + 1] : RFS_PROB_SCALE);
        if (k >= r)
            p->entry[k] = 0, p->start[k] = 0;
    }
    unsigned rank = 0;
    for (unsigned b = 0; b < 128; b++) {
        while (rank + 1 < r && p->start[rank + 1] <= 32 * b)
            rank++;
        p->r0[b] = (uint8_t)rank;
    }
    /* buckets with two or more boundaries inside take an exact window */
    p->nwin = 0;
    uint32_t covered = 0; /* slots below this lie in a window already */
    for (unsigned b = 0; b < 128; b++) {
        if (32 * b + 32 <= covered || small_inner(p, b) < 2)
            continue;
        if (p->nwin == RFS_SMALL_MAX_WIN)
            return 0;
        uint32_t w = 32 * b < RFS_PROB_SCALE - 128 ? 32 * b : RFS_PROB_SCALE - 128;
        p->win[p->nwin] = w;
        small_window(p, p->fine[p->nwin++], w);
        covered = w + 128;
    }
    return 1;
}

rfs_small_plan *rfs_tables_plan(rfs_table *tabs, size_t n)
{
    if (!n || n > SIZE_MAX / sizeof(rfs_small_plan) || !rfs_cpu_supports("avx512vbmi"))
        return NULL;
    /* aligned as the plan's type asks (malloc gives 16 bytes) */
    rfs_small_plan *plans = aligned_alloc(_Alignof(rfs_small_plan), n * sizeof *plans);
    for (size_t i = 0; plans && i < n; i++)
        if (rfs_small_plan_build(&plans[i], tabs[i].dec))
            tabs[i].plan = &plans[i];
    return plans;
}
