/*
 * Real weights: the F32 tensors of a real model round-trip through the tile
 * codec as f32 and as fp16 and bf16 derived from them (round to nearest
 * even), in 256 KiB tiles, on every CPU backend.
 *
 *   test_tile_corpus          the committed subset in tests/data: it must load
 *   test_tile_corpus shared   the full ../shared/corpus; exit 77 (skipped)
 *                             when it is not beside the checkout
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#define TILE (256u * 1024u)

/* Round-trip a buffer in tiles; returns the encoded size. */
static size_t roundtrip_tiles(const uint8_t *buf, size_t size, unsigned w)
{
    rfs_transform xf = rfs_transform_choose(buf, size / w, w);
    size_t total = 0;
    for (size_t off = 0; off < size; off += TILE) {
        size_t len = size - off < TILE ? size - off : TILE;
        total += tu_roundtrip(buf + off, len, w, xf, NULL);
    }
    return total;
}

static void run_model(const char *path)
{
    size_t n = 0;
    float *f = tu_load_safetensors_f32(path, &n);
    if (!f)
        fail_msg("%s: cannot load its F32 tensors", path);
    uint16_t *h = malloc(n * 2), *b = malloc(n * 2);
    for (size_t i = 0; i < n; i++) {
        h[i] = tu_f32_to_fp16(f[i]);
        b[i] = tu_f32_to_bf16(f[i]);
    }
    size_t cf = roundtrip_tiles((const uint8_t *)f, n * 4, 4);
    size_t ch = roundtrip_tiles((const uint8_t *)h, n * 2, 2);
    size_t cb = roundtrip_tiles((const uint8_t *)b, n * 2, 2);
    printf("%s: %zu values; ratio f32 %.4f fp16 %.4f bf16 %.4f\n", path, n,
           (double)cf / (double)(n * 4), (double)ch / (double)(n * 2),
           (double)cb / (double)(n * 2));
    free(f);
    free(h);
    free(b);
}

static void test_subset(void **state)
{
    (void)state;
    run_model(RFS_TEST_DATA "/human32-mini/model.safetensors");
}

#define SHARED_MODEL RFS_SHARED_CORPUS "/human32-st/model.safetensors"

static void test_shared_corpus(void **state)
{
    (void)state;
    run_model(SHARED_MODEL);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest subset[] = {cmocka_unit_test(test_subset)};
    const struct CMUnitTest shared[] = {cmocka_unit_test(test_shared_corpus)};
    if (argc < 2)
        return cmocka_run_group_tests(subset, NULL, NULL);
    if (argc != 2 || strcmp(argv[1], "shared") != 0) {
        fprintf(stderr, "usage: %s [shared]\n", argv[0]);
        return 2;
    }
    /* Only an absent corpus is a skip; one that is there but fails to load
     * fails the test. */
    if (access(SHARED_MODEL, F_OK) != 0) {
        printf("skipped: full corpus %s absent (../shared not beside the checkout)\n",
               SHARED_MODEL);
        return 77;
    }
    return cmocka_run_group_tests(shared, NULL, NULL);
}
