/*
 * rfs_array.h - growable arrays: the one way the tree makes room in a
 * realloc'd array (T *items; size_t n, cap).
 *
 * Contract:
 *  - The caller owns the array and its count; this only grows the storage
 *    (capacity doubles, from 16 elements), so n appends cost O(n).
 *  - New slots are zeroed, so a caller may fill a record field by field.
 *  - On failure (no memory, or need * elem overflows size_t) the array and
 *    its capacity are left as they were: the caller still owns and frees it.
 *  - libc only: no threads, no printing, no project headers, so every layer
 *    may use it, codec/ included (util/CMakeLists.txt: rfs_array).  Not
 *    thread-safe for one array; different arrays are independent.
 */
#ifndef RFS_ARRAY_H
#define RFS_ARRAY_H

#include <stddef.h>

/*
 * Make room for need elements of elem bytes in the array whose pointer is
 * at arrp (a T **, passed as void *) and whose capacity, in elements, is
 * *cap.  Nothing happens when need <= *cap.  Returns 0, or -1 (out of
 * memory or overflow; *arrp and *cap unchanged).
 */
int rfs_array_reserve(void *arrp, size_t *cap, size_t need, size_t elem);

#endif
