/*
 * rfs_array.c - growable arrays (see rfs_array.h).
 */
#include "rfs_array.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int rfs_array_reserve(void *arrp, size_t *cap, size_t need, size_t elem)
{
    void *old, *grown;
    size_t n = *cap ? *cap : 16;
    if (need <= *cap)
        return 0;
    while (n < need) {
        if (n > SIZE_MAX / 2)
            return -1;
        n *= 2;
    }
    if (elem && n > SIZE_MAX / elem)
        return -1;
    /* arrp is a T **: read and write the pointer as bytes, which is valid
     * for every object pointer type on the platforms we build for. */
    memcpy(&old, arrp, sizeof old);
    grown = realloc(old, n * elem);
    if (!grown)
        return -1;
    memset((char *)grown + *cap * elem, 0, (n - *cap) * elem);
    memcpy(arrp, &grown, sizeof grown);
    *cap = n;
    return 0;
}
