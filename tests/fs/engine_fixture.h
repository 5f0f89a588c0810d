/*
 * engine_fixture.h - an image opened with every regular file's reference
 * bytes, and a read engine on it, for the cmocka tests of the read engine
 * (tests/fs/test_fs_engine.c on the CPU, tests/cuda/test_engine_emu.c on the
 * emulated GPU).  Failures are cmocka assertions.
 */
#ifndef ENGINE_FIXTURE_H
#define ENGINE_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "rfs_engine.h"

typedef struct file_ref {
    uint64_t ino, size;
    uint8_t *bytes; /* reference contents (rfs_image_read) */
} file_ref;

typedef struct fixture {
    rfs_image *img;
    rfs_engine *eng;         /* NULL until fx_start_engine */
    file_ref *files;
    size_t n_files;
    int log_lines, gpu_lines; /* engine log lines; those that mention the GPU */
} fixture;

/* Open path and read every regular file through rfs_image_read.  strict:
 * every file must read; otherwise files that do not (a deliberately
 * corrupt image) are left out. */
fixture *fx_open_image(const char *path, int strict);
/* Start the engine (every batch goes to the GPU when there is one). */
rfs_err fx_start_engine(fixture *f, rfs_gpu_mode gpu, size_t cache, uint64_t prefetch,
                        unsigned threads, char *why, size_t why_cap);
/* Both, strict; the engine must start. */
fixture *fx_open(const char *path, rfs_gpu_mode gpu, size_t cache, uint64_t prefetch,
                 unsigned threads);
void fx_close(fixture *f);

/* Read [off, off+len) of ino through the engine into out (RAW pieces by
 * pread from the image). */
rfs_err fx_read(fixture *f, uint64_t ino, uint64_t off, size_t len, uint8_t *out);
/* 0 when [off, off+len) of r reads back equal to its reference bytes. */
int fx_check(fixture *f, const file_ref *r, uint64_t off, size_t len);
/* Every file in 1 MiB reads with prefetch 4 MiB ahead; the mismatches. */
int fx_read_all(fixture *f);

/* n_threads readers of `reads` random ranges each (half of them across a
 * 256 KiB boundary, up to max_len bytes), prefetching every prefetch_every
 * reads; seeds seed, seed+1, ...  The mismatches. */
int fx_concurrent(fixture *f, unsigned seed, int n_threads, int reads, size_t max_len,
                  int prefetch_every);

/* A number from the engine's stats JSON (true = 1); fails when absent. */
unsigned long long fx_stat(fixture *f, const char *key);
void fx_print_stats(fixture *f);

#endif
