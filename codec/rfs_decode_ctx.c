/*
 * rfs_decode_ctx.c - the scalar RANS_CTX plane decoder and the choice of
 * path (rfs_decode_ctx.h).  Its checked tail, rfs_ctx_tail, shares the
 * order-0 one's loop in rfs_decode_scalar.c.
 */
#include "rfs_decode_ctx.h"
#include "rfs_internal.h"

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

/* The scalar path is the checked loop from the start (it is the reference;
 * speed is the SIMD path's job). */
static rfs_err ctx_plane_scalar(const rfs_ctx_job *jb, size_t n)
{
    uint32_t x[RFS_LANES];
    const uint8_t *words;
    size_t nwords;
    rfs_err err = rfs_rans_begin(x, &words, &nwords, jb->stream, jb->stream_size);
    if (err != RFS_OK)
        return err;
    return rfs_ctx_tail(x, jb, 0, n, words, 0, nwords);
}

const rfs_ctx_paths rfs_ctx_paths_scalar = {ctx_plane_scalar, NULL};

const rfs_ctx_paths *rfs_ctx_paths_for(const rfs_backend *b)
{
    if (b == &rfs_backend_scalar)
        return &rfs_ctx_paths_scalar;
    return b == &rfs_backend_avx2_loads ? &rfs_ctx_paths_avx2_loads : &rfs_ctx_paths_avx2;
}
