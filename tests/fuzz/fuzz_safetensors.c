/*
 * fuzz_safetensors.c - the safetensors header parser of ransfs-mkimage on
 * any byte string (taken as a whole file): a tensor list or a one-line
 * error, never a crash; every accepted tensor lies inside the file.
 */
#include <stdint.h>
#include <stdlib.h>

#include "rfs_safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rfs_st_header h;
    char why[256];
    if (rfs_st_parse(&h, data, size, why, sizeof(why)) != 0)
        return 0;
    for (size_t i = 0; i < h.n; i++)
        if (h.t[i].begin > h.t[i].end || h.t[i].end > size || h.t[i].begin < h.data_start)
            abort();
    rfs_st_free(&h);
    return 0;
}
