/*
 * rfs_xxhash.h - libxxhash, through its run-time x86 dispatch where the
 * installed library has one (RFS_HAVE_XXH_DISPATCH, found by CMake).
 *
 * Design note: the values are XXH3's, bit for bit; only the code that
 * computes them changes.  Debian's plain entry points (XXH3_64bits, ...) are
 * built for SSE2, while the *_dispatch ones pick AVX2 or AVX-512 by cpuid:
 * 16 against 41 GB/s on the 2-core AMD EPYC development host, and the daemon
 * hashes every unit it decodes (XXH3 was 6% of its CPU on a sequential
 * read).  xxh_x86dispatch.h redefines XXH3_64bits, XXH3_128bits and their
 * _update forms to the dispatching functions, so callers keep the usual
 * names.  Product code includes this header, not <xxhash.h>; tests keep the
 * plain library, so they check the two against each other.
 */
#ifndef RFS_XXHASH_H
#define RFS_XXHASH_H

#include <xxhash.h>

#ifdef RFS_HAVE_XXH_DISPATCH
#include <xxh_x86dispatch.h>
#endif

#endif
