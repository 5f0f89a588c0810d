/*
 * bench_main.c - ransfs-bench: one binary, one subcommand per benchmark.
 * Add a subcommand by adding a bench_<name>.c with rfs_bench_<name>() and a
 * row to the table below (guarded by RFS_BENCH_HAVE_<NAME>, which
 * tests/bench/CMakeLists.txt defines when the file exists).
 */
#include <stdio.h>
#include <string.h>

#include "bench.h"

typedef struct bench_cmd {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} bench_cmd;

static const bench_cmd cmds[] = {
    {"codec", rfs_bench_codec, "tile codec vs htscodecs/zstd/memcpy on one file"},
#ifdef RFS_BENCH_HAVE_GPU
    {"gpu", rfs_bench_gpu, "CUDA tile decode"},
#endif
#ifdef RFS_BENCH_HAVE_LIB
    {"lib", rfs_bench_lib, "libransfs: ransfs_read_tensors of a safetensors file"},
#endif
};

static void usage(FILE *f)
{
    fprintf(f, "usage: ransfs-bench COMMAND [ARGS...]\n");
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        fprintf(f, "  %-8s %s\n", cmds[i].name, cmds[i].help);
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (!strcmp(argv[1], cmds[i].name))
            return cmds[i].run(argc - 1, argv + 1);
    fprintf(stderr, "ransfs-bench: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
