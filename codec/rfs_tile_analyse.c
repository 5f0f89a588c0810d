/*
 * rfs_tile_analyse.c - the encoder's analysis of its input: plane and pair
 * histograms, and the transform choice made from them.  The packer and
 * rfs_transform_choose decide from the same histograms with the same rule,
 * here, so an image's transforms follow one definition.
 */
#include <math.h>
#include <string.h>

#include "rfs_internal.h"
#include "rfs_tile.h"

void rfs_plane_histogram(uint64_t counts[256], const void *src, size_t n, unsigned width,
                         rfs_transform xf, unsigned plane)
{
    const uint8_t *s = src;
    if (xf == RFS_XF_NONE) {
        for (size_t i = 0; i < n; i++)
            counts[s[i * width + plane]]++;
        return;
    }
    for (size_t i = 0; i < n; i++)
        counts[(rfs_xf_apply(rfs_ld_elem(s, i, width), width, xf) >> (8 * plane)) & 0xff]++;
}

/* Width 2, the rows (high bytes) an element can have: those between the
 * smallest and the largest high byte without its sign bit, in both signs,
 * [r0, r0 + rows) and [128 + r0, 128 + r0 + rows). */
static unsigned pair16_rows(const uint8_t *src, size_t n, unsigned *r0)
{
    int16_t lo = 0x7fff, hi = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t u;
        memcpy(&u, src + 2 * i, 2);
        int16_t r = (int16_t)(u & 0x7f00); /* positive: a signed min and max vectorise */
        lo = r < lo ? r : lo;
        hi = r > hi ? r : hi;
    }
    *r0 = (unsigned)lo >> 8;
    return ((unsigned)hi >> 8) - *r0 + 1;
}

/* h's two pair histograms from the 16-bit histogram ws (rows as
 * pair16_rows gave).  Plane 0's pair is (low byte, sign): 2 * low +
 * (row >= 128); plane 1's is element >> 7: each half of a row. */
static void pair16_sum(uint32_t h[RFS_MAX_WIDTH][512], const uint32_t *ws, unsigned r0,
                       unsigned rows)
{
    uint32_t low[2][256] = {{0}};
    memset(h[1], 0, sizeof h[1]);
    for (unsigned s = 0; s < 2; s++)
        for (unsigned r = 128 * s + r0; r < 128 * s + r0 + rows; r++) {
            const uint32_t *row = ws + (r << 8);
            uint32_t a = 0, b = 0;
            for (unsigned x = 0; x < 128; x++) {
                low[s][x] += row[x];
                a += row[x];
            }
            for (unsigned x = 128; x < 256; x++) {
                low[s][x] += row[x];
                b += row[x];
            }
            h[1][2 * r] = a;
            h[1][2 * r + 1] = b;
        }
    for (unsigned x = 0; x < 256; x++) {
        h[0][2 * x] = low[0][x];
        h[0][2 * x + 1] = low[1][x];
    }
}

/*
 * Width 2 through a 16-bit histogram of whole elements (ws, RFS_PAIR_WS
 * counters): the 16 bits of an element hold both of its pair indices, so
 * this counts once per element where the loop below counts once per plane,
 * and the pairs are summed from it afterwards (measured twice as fast on
 * tiles of real bf16 weights).  Only the rows of pair16_rows can be
 * non-zero: those alone are cleared and summed, a few dozen of the 256 for
 * weights, whose exponents are few.  Returns 0, leaving h alone, where
 * those rows are too many for n elements to pay for summing them (small
 * tiles of noise-like data).
 */
static int pair_histogram16(uint32_t h[RFS_MAX_WIDTH][512], const uint8_t *src, size_t n,
                            uint32_t *ws)
{
    unsigned r0, rows;
    if (n == 0)
        return 0;
    rows = pair16_rows(src, n, &r0);
    if (n < (size_t)rows * 256) /* 2 x rows x 256 counters to sum: pays at n / 2 */
        return 0;
    for (unsigned s = 0; s < 2; s++)
        memset(ws + ((128 * s + r0) << 8), 0, (size_t)rows * 256 * sizeof *ws);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        uint64_t v;
        memcpy(&v, src + 2 * i, 8);
        ws[v & 0xffff]++;
        ws[(v >> 16) & 0xffff]++;
        ws[(v >> 32) & 0xffff]++;
        ws[v >> 48]++;
    }
    for (; i < n; i++) {
        uint16_t u;
        memcpy(&u, src + 2 * i, 2);
        ws[u]++;
    }
    pair16_sum(h, ws, r0, rows);
    return 1;
}

/* For an element v, pair index of plane p is (v >> (8p - 1)) & 0x1ff, and
 * for p = 0 rot1(v) & 0x1ff.  Four copies of the counters cut the stalls on
 * a repeated symbol (the exponent byte of weights takes few values). */
void rfs_pair_histogram(uint32_t h[RFS_MAX_WIDTH][512], const void *src_, size_t n, unsigned w,
                        uint32_t *ws)
{
    const uint8_t *src = src_;
    if (w == 2 && ws && pair_histogram16(h, src, n, ws))
        return;
    uint32_t c[4][RFS_MAX_WIDTH][512];
    for (unsigned j = 0; j < 4; j++)
        memset(c[j], 0, w * sizeof c[j][0]);
    size_t i = 0;
    if (w == 1) {
        for (; i < n; i++)
            c[i & 3][0][src[i] << 1]++;
    } else if (w == 2) {
#define RFS_H2(j, v)                                                                               \
    do {                                                                                           \
        uint32_t e_ = (uint32_t)(v) & 0xffff;                                                      \
        c[j][0][((e_ << 1) | (e_ >> 15)) & 0x1ff]++;                                              \
        c[j][1][e_ >> 7]++;                                                                        \
    } while (0)
        for (; i + 4 <= n; i += 4) {
            uint64_t v;
            memcpy(&v, src + 2 * i, 8);
            RFS_H2(0, v);
            RFS_H2(1, v >> 16);
            RFS_H2(2, v >> 32);
            RFS_H2(3, v >> 48);
        }
        for (; i < n; i++) {
            uint16_t u;
            memcpy(&u, src + 2 * i, 2);
            RFS_H2(0, u);
        }
#undef RFS_H2
    } else {
#define RFS_H4(j, v)                                                                               \
    do {                                                                                           \
        uint32_t e_ = (v);                                                                         \
        c[j][0][((e_ << 1) | (e_ >> 31)) & 0x1ff]++;                                              \
        c[j][1][(e_ >> 7) & 0x1ff]++;                                                              \
        c[j][2][(e_ >> 15) & 0x1ff]++;                                                             \
        c[j][3][e_ >> 23]++;                                                                       \
    } while (0)
        for (; i + 2 <= n; i += 2) {
            uint64_t v;
            memcpy(&v, src + 4 * i, 8);
            RFS_H4(0, (uint32_t)v);
            RFS_H4(1, (uint32_t)(v >> 32));
        }
        for (; i < n; i++) {
            uint32_t v;
            memcpy(&v, src + 4 * i, 4);
            RFS_H4(2, v);
        }
#undef RFS_H4
    }
    for (unsigned p = 0; p < w; p++)
        for (unsigned x = 0; x < 512; x++)
            h[p][x] = c[0][p][x] + c[1][p][x] + c[2][p][x] + c[3][p][x];
}

void rfs_pair_to_bytes(uint64_t out[256], const uint64_t h[512], rfs_transform xf)
{
    /* Pair x = 2b + t (byte b, bit t from the byte below).  Plain: byte b
     * sums pairs 2b and 2b + 1.  ROT1 shifts the byte left and brings in
     * the bit below, so byte y = x & 0xff sums pairs y and y + 256.  Two
     * straight loops (the compiler vectorises them) rather than one
     * scatter: this runs several times per tensor, and most tensors of real
     * model folders are small. */
    if (xf == RFS_XF_ROT1)
        for (unsigned y = 0; y < 256; y++)
            out[y] = h[y] + h[y + 256];
    else
        for (unsigned b = 0; b < 256; b++)
            out[b] = h[2 * b] + h[2 * b + 1];
}

/*
 * The terms c * log2(c / total) of one estimate (every plane histogram of
 * it has the same total), memoised by c for small c.  Why: a packer
 * chooses the transform of every tensor, and on real model folders most
 * tensors are small (the human32 corpus: 1,303 F32 tensors of 33 KB on
 * average), whose 2 x W x 256 counts take a few dozen distinct values;
 * log2 was 7% of the packer's user time.  Each term is the same
 * expression on the same inputs, so every sum, and so the choice, is
 * bit-identical to computing it afresh.
 */
#define ENT_MEMO 4096u
typedef struct ent_memo {
    uint64_t total;
    uint64_t have[ENT_MEMO / 64]; /* bit c: term[c] is set */
    double term[ENT_MEMO];
} ent_memo;

static double ent_term(ent_memo *m, uint64_t c)
{
    if (c >= ENT_MEMO)
        return (double)c * log2((double)c / (double)m->total);
    uint64_t bit = (uint64_t)1 << (c % 64);
    if (!(m->have[c / 64] & bit)) {
        m->term[c] = (double)c * log2((double)c / (double)m->total);
        m->have[c / 64] |= bit;
    }
    return m->term[c];
}

/* Order-0 entropy of a histogram, in bytes. */
static double hist_entropy_bytes(ent_memo *m, const uint64_t counts[256])
{
    uint64_t total = 0;
    double bits = 0;
    for (unsigned s = 0; s < 256; s++)
        total += counts[s];
    if (total != m->total) { /* a new total: the terms so far do not apply */
        m->total = total;
        memset(m->have, 0, sizeof m->have);
    }
    for (unsigned s = 0; s < 256; s++)
        if (counts[s])
            bits -= ent_term(m, counts[s]);
    return bits / 8;
}

/* Estimated coded size of n elements from their plane pair histograms
 * under xf: each plane costs the smaller of its entropy and storing it raw. */
static double planes_estimate(ent_memo *m, const uint64_t (*h)[512], unsigned width, size_t n,
                              rfs_transform xf)
{
    double total = 0;
    for (unsigned p = 0; p < width; p++) {
        uint64_t counts[256];
        rfs_pair_to_bytes(counts, h[p], xf);
        double e = hist_entropy_bytes(m, counts);
        total += e < (double)n ? e : (double)n;
    }
    return total;
}

rfs_transform rfs_transform_choose_pairs(const uint64_t (*h)[512], unsigned width, size_t n)
{
    if (width < 2 || n == 0)
        return RFS_XF_NONE;
    size_t m = n < RFS_XF_SAMPLE ? n : RFS_XF_SAMPLE;
    ent_memo memo;
    memo.total = 0;
    memset(memo.have, 0, sizeof memo.have);
    /* Ties go to NONE. */
    double rot = planes_estimate(&memo, h, width, m, RFS_XF_ROT1);
    return rot < planes_estimate(&memo, h, width, m, RFS_XF_NONE) ? RFS_XF_ROT1 : RFS_XF_NONE;
}

rfs_transform rfs_transform_choose(const void *src, size_t n, unsigned width)
{
    if (width < 2 || n == 0)
        return RFS_XF_NONE;
    size_t m = n < RFS_XF_SAMPLE ? n : RFS_XF_SAMPLE;
    uint32_t h32[RFS_MAX_WIDTH][512];
    uint64_t h[RFS_MAX_WIDTH][512];
    rfs_pair_histogram(h32, src, m, width, NULL);
    for (unsigned p = 0; p < width; p++)
        for (unsigned x = 0; x < 512; x++)
            h[p][x] = h32[p][x];
    return rfs_transform_choose_pairs((const uint64_t (*)[512])h, width, n);
}
