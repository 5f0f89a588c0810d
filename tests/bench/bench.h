/*
 * bench.h - ransfs-bench subcommands.  Each takes (argc, argv) with argv[0]
 * the subcommand name, prints its results to stdout and errors (one line
 * each) to stderr, and returns the process exit status.
 */
#ifndef RFS_BENCH_H
#define RFS_BENCH_H

int rfs_bench_codec(int argc, char **argv);
#ifdef RFS_BENCH_HAVE_GPU
int rfs_bench_gpu(int argc, char **argv);
#endif
#ifdef RFS_BENCH_HAVE_LIB
int rfs_bench_lib(int argc, char **argv);
#endif

#endif
