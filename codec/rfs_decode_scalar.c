/*
 * rfs_decode_scalar.c - the scalar decode backend, and the bounds-checked
 * pieces every backend shares (a stream's start, the tail loop of order-0 and
 * RANS_CTX planes, interleave).
 *
 * The step is rfs_lane_decode from rfs_rans_lane.h: x = D(x), then a lane
 * below L takes the next word.  Taking words one lane at a time in
 * ascending lane order is the same as the ballot/popcount rule of
 * docs/format.md 1.5.
 */
#include <string.h>

#include "rfs_backend.h"
#include "rfs_decode_ctx.h"
#include "rfs_internal.h"
#include "rfs_rans_lane.h"

rfs_err rfs_rans_begin(uint32_t x[RFS_LANES], const uint8_t **words, size_t *nwords,
                       const uint8_t *stream, size_t stream_size)
{
    if (stream_size < RFS_STATES_SIZE)
        return RFS_E_TRUNCATED;
    for (unsigned j = 0; j < RFS_LANES; j++) {
        x[j] = rfs_ld32(stream + 4 * j);
        if (x[j] < RFS_RANS_L || x[j] >= RFS_RANS_HI)
            return RFS_E_STATE;
    }
    *words = stream + RFS_STATES_SIZE;
    *nwords = (stream_size - RFS_STATES_SIZE) / 2;
    return RFS_OK;
}

/*
 * The checked loop and end-of-stream checks of both plane decoders: symbol
 * i takes its slot from dec, or, with a context plane (RANS_CTX: has_ctx),
 * from the one of the two back-to-back tables in dec that ctx[i] >=
 * threshold picks.  Inlined into each with has_ctx a constant, so neither
 * tests it per symbol (the scalar RANS_CTX path runs this loop throughout).
 */
static inline rfs_err rans_tail(uint32_t x[RFS_LANES], uint8_t *out, size_t i, size_t n,
                                const uint8_t *words, size_t wpos, size_t nwords,
                                const uint32_t *dec, int has_ctx, const uint8_t *ctx,
                                uint8_t threshold)
{
    for (; i < n; i += RFS_LANES) {
        unsigned m = n - i < RFS_LANES ? (unsigned)(n - i) : RFS_LANES;
        uint32_t need = 0;
        for (unsigned j = 0; j < m; j++) {
            const uint32_t *t =
                has_ctx ? dec + ((size_t)(ctx[i + j] >= threshold) << RFS_PROB_BITS) : dec;
            x[j] = rfs_lane_decode(x[j], t, &out[i + j]);
            need |= (uint32_t)rfs_lane_needs_word(x[j]) << j;
        }
        unsigned cnt = rfs_lane_popc(need);
        if (nwords - wpos < cnt)
            return RFS_E_OVERRUN;
        for (unsigned j = 0; j < m; j++)
            if (need >> j & 1)
                x[j] = rfs_lane_refill(
                    x[j], rfs_ld16(words + 2 * (wpos + rfs_lane_word_index(need, j))));
        wpos += cnt;
    }
    if (wpos != nwords)
        return RFS_E_TRAILING;
    for (unsigned j = 0; j < RFS_LANES; j++)
        if (x[j] != RFS_RANS_L)
            return RFS_E_FINAL_STATE;
    return RFS_OK;
}

rfs_err rfs_rans_tail(uint32_t x[RFS_LANES], uint8_t *out, size_t i, size_t n,
                      const uint8_t *words, size_t wpos, size_t nwords, const uint32_t *dec)
{
    return rans_tail(x, out, i, n, words, wpos, nwords, dec, 0, NULL, 0);
}

rfs_err rfs_ctx_tail(uint32_t x[RFS_LANES], const rfs_ctx_job *jb, size_t i, size_t n,
                     const uint8_t *words, size_t wpos, size_t nwords)
{
    return rans_tail(x, jb->out, i, n, words, wpos, nwords, jb->dec, 1, jb->ctx, jb->threshold);
}

/* Fast loop: whole steps while a full step's worth of words (32) remains,
 * so no lane can run past the end; the checked tail does the rest. */
static rfs_err rans_plane_scalar(uint8_t *out, size_t n, const uint8_t *stream,
                                 size_t stream_size, const uint32_t *dec)
{
    uint32_t x[RFS_LANES];
    const uint8_t *w;
    size_t nw;
    rfs_err err = rfs_rans_begin(x, &w, &nw, stream, stream_size);
    if (err != RFS_OK)
        return err;
    /* Copies whose address is not taken, so the loop keeps them in
     * registers (w and nw escaped into rfs_rans_begin). */
    const uint8_t *const words = w;
    const size_t nwords = nw;
    size_t wpos = 0, i = 0;
    for (; i + RFS_LANES <= n && nwords - wpos >= RFS_LANES; i += RFS_LANES) {
        for (unsigned j = 0; j < RFS_LANES; j++) {
            uint32_t xj = rfs_lane_decode(x[j], dec, &out[i + j]);
            if (rfs_lane_needs_word(xj))
                xj = rfs_lane_refill(xj, rfs_ld16(words + 2 * wpos++));
            x[j] = xj;
        }
    }
    return rfs_rans_tail(x, out, i, n, words, wpos, nwords, dec);
}

void rfs_interleave_scalar(uint8_t *dst, const uint8_t *const planes[RFS_MAX_WIDTH], size_t n,
                           unsigned width, rfs_transform xf)
{
    if (width == 1) {
        memcpy(dst, planes[0], n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t t = 0;
        for (unsigned p = 0; p < width; p++)
            t |= (uint32_t)planes[p][i] << (8 * p);
        uint32_t v = rfs_xf_undo(t, width, xf);
        for (unsigned p = 0; p < width; p++)
            dst[i * width + p] = (uint8_t)(v >> (8 * p));
    }
}

/* The plain forms of the fused calls: the planes one after another, then
 * interleave. */
static void rans_planes_scalar(rfs_plane_job *jobs, unsigned k, size_t n)
{
    for (unsigned p = 0; p < k; p++)
        jobs[p].err =
            rans_plane_scalar(jobs[p].out, n, jobs[p].stream, jobs[p].stream_size, jobs[p].dec);
}

static int jobs_ok(const rfs_plane_job *jobs, unsigned k)
{
    for (unsigned j = 0; j < k; j++)
        if (jobs[j].err != RFS_OK)
            return 0;
    return 1;
}

static void rans_w2_scalar(uint8_t *dst, size_t n, rfs_plane_job *jobs, unsigned k, unsigned plane,
                           const uint8_t *other, rfs_transform xf)
{
    rans_planes_scalar(jobs, k, n);
    if (!jobs_ok(jobs, k))
        return;
    const uint8_t *planes[RFS_MAX_WIDTH] = {0};
    if (k == 2) {
        planes[0] = jobs[0].out;
        planes[1] = jobs[1].out;
    } else {
        planes[plane] = jobs[0].out;
        planes[plane ^ 1u] = other;
    }
    rfs_interleave_scalar(dst, planes, n, 2, xf);
}

static void rans_w4_scalar(uint8_t *dst, size_t n, rfs_plane_job *jobs, unsigned k,
                           const unsigned *jplane, const uint8_t *const planes[RFS_MAX_WIDTH],
                           rfs_transform xf)
{
    (void)jplane;
    rans_planes_scalar(jobs, k, n);
    if (jobs_ok(jobs, k))
        rfs_interleave_scalar(dst, planes, n, 4, xf);
}

const rfs_backend rfs_backend_scalar = {"scalar", rfs_interleave_scalar, rans_planes_scalar,
                                        rans_w2_scalar, rans_w4_scalar, NULL};
