/*
 * rfs_build.h - what this build of ransfs is: the version and the optional
 * features compiled in.  The one place that knows them: the values come
 * from CMake (util/rfs_build.c.in, configured at the end of the top-level
 * CMakeLists.txt, after every directory has said what it found), and every
 * tool's --version and libransfs's ransfs_version / ransfs_features read
 * them from here.
 *
 * Contract:
 *  - Constant data, no state: every call is thread-safe and returns a
 *    static string the caller never frees.
 *  - rfs_build_version and rfs_build_features print nothing (a library may
 *    call them); rfs_build_print (its own object file, so a library that
 *    does not call it does not link it) writes to the stream it is given.
 */
#ifndef RFS_BUILD_H
#define RFS_BUILD_H

#include <stdio.h>

/* The project version, e.g. "0.1.0" (CMake's PROJECT_VERSION). */
const char *rfs_build_version(void);

/* The optional features built in, as names separated by one space, in the
 * fixed order "cuda avx2 avx512 remote"; "" when none is:
 *   cuda    the CUDA decoder (cuda/; linked statically, no libcudart.so);
 *   avx2    the AVX2 decode and encode paths (picked at run time by cpuid);
 *   avx512  the AVX-512 decode path (likewise);
 *   remote  images over HTTP(S) and S3 (remote/). */
const char *rfs_build_features(void);

/* rfs_build_features with every known feature, each as name=yes|no in the
 * same order: "cuda=no avx2=yes avx512=yes remote=no". */
const char *rfs_build_features_all(void);

/*
 * The --version text of a tool, two lines on f:
 *   TOOL VERSION[ (EXTRA)]
 *   features: cuda=no avx2=yes avx512=yes remote=no
 * extra (may be NULL) is what only this tool knows (the daemon: its libfuse
 * and GPU decoder).  Returns 0, or -1 when f could not be written.
 */
int rfs_build_print(FILE *f, const char *tool, const char *extra);

#endif
