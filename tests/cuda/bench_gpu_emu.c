/*
 * bench_gpu_emu.c - ransfs-bench's gpu subcommand (tests/bench/bench_gpu.c)
 * as a program of its own over the fake CUDA runtime (fake_cuda/), for the
 * CTest cuda_bench_emu: every path of the benchmark runs on a machine without
 * a GPU, and the bytes that its load path puts in "device" memory must equal
 * the original file.  Its times are the emulator's: not a measurement.
 */
#include "bench.h"

int main(int argc, char **argv)
{
    return rfs_bench_gpu(argc, argv);
}
