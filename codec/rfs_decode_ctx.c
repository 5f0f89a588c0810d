/*
 * rfs_decode_ctx.c - the scalar RANS_CTX plane decoder, its checked tail
 * (shared with the SIMD path) and the choice of path (rfs_decode_ctx.h).
 */
#include "rfs_decode_ctx.h"
#include "rfs_internal.h"
#include "rfs_rans_lane.h"

void rfs_ctx_build_dec(uint32_t dec[RFS_CTX_DEC_ENTRIES], const uint16_t freq0[256],
                       const uint16_t freq1[256])
{
    const uint16_t *freq[2] = {freq0, freq1};
    for (unsigned c = 0; c < 2; c++) {
        uint32_t *d = dec + c * RFS_PROB_SCALE, start = 0;
        for (unsigned s = 0; s < 256; s++) {
            uint32_t f = freq[c][s], entry = s | (f - 1u) << 8 | start << 20;
            for (uint32_t k = 0; k < f; k++)
                d[start + k] = entry;
            start += f;
        }
    }
}

/* The table of symbol i. */
static inline const uint32_t *ctx_table(const rfs_ctx_job *jb, size_t i)
{
    return jb->dec + ((size_t)(jb->ctx[i] >= jb->threshold) << RFS_PROB_BITS);
}

rfs_err rfs_ctx_tail(uint32_t x[RFS_LANES], const rfs_ctx_job *jb, size_t i, size_t n,
                     size_t wpos)
{
    const uint8_t *words = jb->stream + RFS_STATES_SIZE;
    const size_t nwords = (jb->stream_size - RFS_STATES_SIZE) / 2;
    for (; i < n; i += RFS_LANES) {
        unsigned m = n - i < RFS_LANES ? (unsigned)(n - i) : RFS_LANES;
        uint32_t need = 0;
        for (unsigned j = 0; j < m; j++) {
            x[j] = rfs_lane_decode(x[j], ctx_table(jb, i + j), &jb->out[i + j]);
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

/* The scalar path is the checked loop from the start (it is the reference;
 * speed is the SIMD path's job). */
static rfs_err ctx_plane_scalar(const rfs_ctx_job *jb, size_t n)
{
    uint32_t x[RFS_LANES];
    rfs_err err = rfs_rans_load_states(x, jb->stream, jb->stream_size);
    if (err != RFS_OK)
        return err;
    return rfs_ctx_tail(x, jb, 0, n, 0);
}

const rfs_ctx_paths rfs_ctx_paths_scalar = {ctx_plane_scalar, NULL};

const rfs_ctx_paths *rfs_ctx_paths_for(const rfs_backend *b)
{
    return b == &rfs_backend_scalar ? &rfs_ctx_paths_scalar : &rfs_ctx_paths_avx2;
}
