/*
 * fuzz_tile_decode.c - any byte string given to the tile decoder, on every
 * CPU path this machine has: no crash, no out-of-bounds access, and all
 * paths agree on the error code and, on success, on the bytes.
 *
 * Two consumers of the format must agree, too: the same input goes through
 * the GPU path, the host planner (cuda/rfs_gpu_plan.c) and the kernels run
 * on the CPU warp emulator (tests/cuda/warp_emu.c).  The planner must
 * accept exactly the tiles whose header, descriptors and tables the CPU
 * decoder accepts, with the same error code (unless the CPU stopped
 * earlier, at a stream or the size limit), lay the planes out as the codec
 * parser does, and the emulated kernels must decode exactly the tiles the
 * CPU decodes, to the same bytes.
 *
 * Input: the shared-table prefix of fuzz_shared.h (plane 1 only); the rest
 * is the tile.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_shared.h"
#include "rfs_gpu_plan.h"
#include "rfs_tile.h"
#include "warp_emu.h"

#define MAX_TILE (1u << 18) /* fuzz builds cap sizes */

#define MAX_PATHS 8 /* at least rfs_dec_backend_names()'s count */

/* Errors the CPU decoder finds only while decoding a stream, which the
 * planner leaves to the kernels. */
static int stream_error(rfs_err e)
{
    return e == RFS_E_STATE || e == RFS_E_OVERRUN || e == RFS_E_TRAILING ||
           e == RFS_E_FINAL_STATE;
}

/* The planner's plane descriptors are the codec parser's layout. */
static void layout_agrees(const rfs_gpu_tile_desc *td, const uint8_t *tile, size_t size,
                          const rfs_table_set *set)
{
    rfs_tile_layout lay;
    if (rfs_tile_parse(&lay, tile, size) != RFS_OK || td->n != lay.n ||
        td->width != lay.width || td->xf != lay.xf)
        abort(); /* planned a tile the codec parser rejects, or read its header otherwise */
    for (unsigned p = 0; p < lay.width; p++) {
        const rfs_plane_layout *pl = &lay.plane[p];
        const rfs_gpu_plane_desc *pd = &td->plane[p];
        size_t off = pl->off, len = pl->size;
        uint16_t freq[256], freq1[256];
        uint8_t value = pl->value; /* RANS_CTX: the threshold */
        if ((pl->mode == RFS_PM_RANS_TILE || pl->mode == RFS_PM_RANS_SHARED) &&
            rfs_plane_parse_rans(tile, pl, set->plane[p] != NULL, freq, &off, &len) != RFS_OK)
            abort();
        if (pl->mode == RFS_PM_RANS_CTX &&
            rfs_plane_parse_ctx(tile, pl, &value, freq, freq1, &off, &len) != RFS_OK)
            abort();
        if (pd->mode != pl->mode || pd->value != value || pd->off != off || pd->size != len)
            abort(); /* the planner's plane layout differs from the codec's */
    }
}

/* Plan the tile alone and run the emulated kernels; the CPU decoder gave
 * cpu and, on success, the len bytes at ref. */
static void gpu_agrees(const uint8_t *tile, size_t size, const rfs_table_set *set, rfs_err cpu,
                       const uint8_t *ref, size_t len)
{
    unsigned w = 0;
    uint32_t n = 0;
    rfs_transform xf;
    size_t decoded = rfs_tile_info(tile, size, &w, &n, &xf) == RFS_OK ? (size_t)n * w : 0;
    uint8_t *in = malloc(size + RFS_GPU_ALIGN + RFS_GPU_SLACK);
    if (!in)
        return;
    rfs_gpu_plan plan;
    /* Room for exactly the tiles the CPU context takes: MAX_TILE decoded
     * bytes (the output area decides; scratch and input never fall short). */
    rfs_gpu_plan_init(&plan, in, size + RFS_GPU_ALIGN, RFS_MAX_WIDTH * (MAX_TILE + RFS_GPU_ALIGN),
                      MAX_TILE, 1);
    uint32_t idx = 0;
    uint64_t out_off = 0;
    rfs_err why = RFS_OK;
    rfs_gpu_plan_res r = rfs_gpu_plan_add(&plan, tile, size, decoded, set, RFS_GPU_OUT_AUTO, 0, 0,
                                          &idx, &out_off, &why);
    if (r == RFS_GPU_FULL)
        abort(); /* an empty plan never is */
    if (r == RFS_GPU_CPU) {
        if (cpu == RFS_OK || why == RFS_OK)
            abort(); /* the planner refuses a tile the CPU decodes */
        if (why != cpu && cpu != RFS_E_TOO_BIG && !stream_error(cpu))
            abort(); /* both refuse the header or a table, for different reasons */
        goto done;
    }
    layout_agrees(&plan.tiles[idx], tile, size, set);
    if (rfs_gpu_plan_finish(&plan) != RFS_OK)
        goto done;
    uint8_t *scratch = calloc(1, plan.scratch_used + RFS_GPU_SLACK);
    uint8_t *out = malloc(plan.out_used + 1);
    uint32_t err[2] = {0, 0};
    if (scratch && out) {
        rfs_gpu_view v = {in, plan.tiles, plan.tasks, plan.jobs, plan.chunks, plan.tables,
                          scratch, out, err, (uint32_t)plan.n_jobs, (uint32_t)plan.n_chunks,
                          plan.ctx_jobs, (uint32_t)plan.n_ctx_jobs};
        emu_decode_kernel(&v);
        emu_ctx_kernel(&v);
        emu_interleave_kernel(&v);
        if ((err[idx] == 0) != (cpu == RFS_OK))
            abort(); /* the emulated GPU and the CPU decoder disagree on the verdict */
        if (cpu == RFS_OK && (len != decoded || memcmp(out + out_off, ref, len)))
            abort(); /* ... or on the bytes */
    }
    free(scratch);
    free(out);
done:
    rfs_gpu_plan_free(&plan);
    free(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static rfs_dec *dec;
    static rfs_table shared;
    static uint8_t out[MAX_PATHS][MAX_TILE];
    if (!dec)
        dec = rfs_dec_create(MAX_TILE);
    if (size < 1 || !dec)
        return 0;
    rfs_table_set set = {{NULL, NULL, NULL, NULL}};
    fuzz_take_shared(&data, &size, 1, &shared, &set);
    rfs_err first = RFS_OK;
    size_t first_len = 0;
    const char *const *paths = rfs_dec_backend_names();
    for (unsigned k = 0; k < MAX_PATHS && paths[k]; k++) {
        if (!rfs_cpu_supports(paths[k]))
            continue;
        rfs_dec_set_backend(dec, paths[k]);
        size_t len = 0;
        rfs_err err = rfs_tile_decode(dec, out[k], MAX_TILE, &len, data, size, &set);
        if (k == 0) {
            first = err;
            first_len = len;
        } else if (err != first || (err == RFS_OK && (len != first_len ||
                                                      memcmp(out[k], out[0], len)))) {
            abort(); /* a SIMD path disagrees with scalar */
        }
    }
    gpu_agrees(data, size, &set, first, out[0], first_len);
    return 0;
}
