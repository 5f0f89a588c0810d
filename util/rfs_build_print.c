/*
 * rfs_build_print.c - the --version text every tool prints (rfs_build.h).
 * Its own file so that libransfs, which prints nothing, links the getters
 * without it.
 */
#include "rfs_build.h"

int rfs_build_print(FILE *f, const char *tool, const char *extra)
{
    int n;
    if (extra && *extra)
        n = fprintf(f, "%s %s (%s)\n", tool, rfs_build_version(), extra);
    else
        n = fprintf(f, "%s %s\n", tool, rfs_build_version());
    if (n < 0 || fprintf(f, "features: %s\n", rfs_build_features_all()) < 0)
        return -1;
    return fflush(f) == 0 ? 0 : -1;
}
