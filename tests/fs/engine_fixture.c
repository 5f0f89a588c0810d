/*
 * engine_fixture.c - shared fixture of the read engine tests
 * (engine_fixture.h).
 */
#include "engine_fixture.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

static void count_log(void *ctx, const char *line)
{
    fixture *f = ctx;
    f->log_lines++;
    if (strstr(line, "gpu"))
        f->gpu_lines++;
    printf("engine log: %s\n", line);
}

/* Collect regular files (depth-first) with their reference bytes. */
static void collect(fixture *f, rfs_rctx *ctx, uint64_t dir, int strict)
{
    uint64_t count = 0;
    assert_int_equal(rfs_image_dir_count(f->img, dir, &count), RFS_OK);
    for (uint64_t i = 0; i < count; i++) {
        uint64_t child;
        const char *name;
        rfs_stat st;
        assert_int_equal(rfs_image_dir_entry(f->img, dir, i, &child, &name), RFS_OK);
        assert_int_equal(rfs_image_stat(f->img, child, &st), RFS_OK);
        if (S_ISDIR(st.mode)) {
            collect(f, ctx, child, strict);
        } else if (S_ISREG(st.mode)) {
            file_ref r = {child, st.size, malloc(st.size ? st.size : 1)};
            size_t got = 0;
            assert_non_null(r.bytes);
            rfs_err err = rfs_image_read(f->img, ctx, child, 0, st.size, r.bytes, &got);
            if (strict) {
                assert_int_equal(err, RFS_OK);
                assert_int_equal(got, st.size);
            } else if (err != RFS_OK) {
                free(r.bytes);
                continue;
            }
            f->files = realloc(f->files, (f->n_files + 1) * sizeof(*f->files));
            assert_non_null(f->files);
            f->files[f->n_files++] = r;
        }
    }
}

fixture *fx_open_image(const char *path, int strict)
{
    fixture *f = calloc(1, sizeof(*f));
    char why[256] = "";
    assert_non_null(f);
    if (rfs_image_open(&f->img, path, why, sizeof(why)) != RFS_OK)
        fail_msg("%s: %s", path, why);
    rfs_rctx *ctx = rfs_rctx_create(f->img);
    assert_non_null(ctx);
    collect(f, ctx, RFS_ROOT_INO, strict);
    rfs_rctx_destroy(ctx);
    return f;
}

rfs_err fx_start_engine(fixture *f, rfs_gpu_mode gpu, size_t cache, uint64_t prefetch,
                        unsigned threads, char *why, size_t why_cap)
{
    rfs_engine_opts o = {cache, threads, prefetch, gpu, count_log, f, 1};
    return rfs_engine_create(&f->eng, f->img, &o, why, why_cap);
}

fixture *fx_open(const char *path, rfs_gpu_mode gpu, size_t cache, uint64_t prefetch,
                 unsigned threads)
{
    fixture *f = fx_open_image(path, 1);
    char why[256] = "";
    if (fx_start_engine(f, gpu, cache, prefetch, threads, why, sizeof(why)) != RFS_OK)
        fail_msg("engine: %s", why);
    return f;
}

void fx_close(fixture *f)
{
    rfs_engine_destroy(f->eng);
    for (size_t i = 0; i < f->n_files; i++)
        free(f->files[i].bytes);
    free(f->files);
    rfs_image_close(f->img);
    free(f);
}

rfs_err fx_read(fixture *f, uint64_t ino, uint64_t off, size_t len, uint8_t *out)
{
    rfs_readv rv;
    size_t pos = 0;
    rfs_readv_init(&rv);
    rfs_err err = rfs_engine_read(f->eng, ino, off, len, &rv);
    if (err != RFS_OK)
        return err;
    for (size_t i = 0; i < rv.n_pieces; i++) {
        const rfs_piece *p = &rv.pieces[i];
        if (p->mem)
            memcpy(out + pos, p->mem, p->len);
        else if (pread(rfs_image_fd(f->img), out + pos, p->len, (off_t)p->raw_off) !=
                 (ssize_t)p->len)
            err = RFS_E_IO;
        pos += p->len;
    }
    rfs_readv_release(f->eng, &rv);
    return err == RFS_OK && pos != len ? RFS_E_CORRUPT : err;
}

int fx_check(fixture *f, const file_ref *r, uint64_t off, size_t len)
{
    uint8_t *tmp = malloc(len ? len : 1);
    assert_non_null(tmp);
    int bad = fx_read(f, r->ino, off, len, tmp) != RFS_OK || memcmp(tmp, r->bytes + off, len);
    free(tmp);
    return bad;
}

int fx_read_all(fixture *f)
{
    int bad = 0;
    for (size_t i = 0; i < f->n_files; i++) {
        const file_ref *r = &f->files[i];
        for (uint64_t off = 0; off < r->size; off += 1u << 20) {
            size_t len = r->size - off < (1u << 20) ? (size_t)(r->size - off) : 1u << 20;
            uint64_t pf_end = off + len + (4u << 20) < r->size ? off + len + (4u << 20) : r->size;
            bad += fx_check(f, r, off, len);
            rfs_engine_prefetch(f->eng, r->ino, off + len, pf_end);
        }
    }
    return bad;
}

typedef struct reader {
    fixture *f;
    unsigned seed;
    int reads, prefetch_every, bad;
    size_t max_len;
} reader;

/* A random range of r: half of them end just past a 256 KiB boundary. */
static uint64_t random_off(reader *w, const file_ref *r)
{
    if (rand_r(&w->seed) % 2 && r->size > 262144) {
        uint64_t b = ((uint64_t)rand_r(&w->seed) % (r->size / 262144) + 1) * 262144;
        return b - 1 - (uint64_t)rand_r(&w->seed) % 5000;
    }
    return (uint64_t)rand_r(&w->seed) % r->size;
}

static void *random_reader(void *arg)
{
    reader *w = arg;
    fixture *f = w->f;
    for (int i = 0; i < w->reads; i++) {
        const file_ref *r = &f->files[(size_t)rand_r(&w->seed) % f->n_files];
        if (r->size == 0)
            continue;
        uint64_t off = random_off(w, r);
        uint64_t len = 1 + (uint64_t)rand_r(&w->seed) % w->max_len;
        if (len > r->size - off)
            len = r->size - off;
        w->bad += fx_check(f, r, off, (size_t)len);
        if (i % w->prefetch_every == 0)
            rfs_engine_prefetch(f->eng, r->ino, off,
                                r->size < off + (2u << 20) ? r->size : off + (2u << 20));
    }
    return NULL;
}

int fx_concurrent(fixture *f, unsigned seed, int n_threads, int reads, size_t max_len,
                  int prefetch_every)
{
    pthread_t t[64];
    reader w[64];
    int bad = 0;
    assert_true(n_threads > 0 && n_threads <= 64 && f->n_files > 0);
    for (int i = 0; i < n_threads; i++) {
        w[i] = (reader){f, seed + (unsigned)i, reads, prefetch_every, 0, max_len};
        assert_int_equal(pthread_create(&t[i], NULL, random_reader, &w[i]), 0);
    }
    for (int i = 0; i < n_threads; i++) {
        pthread_join(t[i], NULL);
        bad += w[i].bad;
    }
    return bad;
}

unsigned long long fx_stat(fixture *f, const char *key)
{
    char json[4096], pat[64];
    assert_true(rfs_engine_stats_json(f->eng, json, sizeof(json)) < sizeof(json));
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(json, pat);
    if (!p)
        fail_msg("stats lack %s: %s", key, json);
    p += strlen(pat);
    return !strncmp(p, "true", 4) ? 1 : strtoull(p, NULL, 10);
}

void fx_print_stats(fixture *f)
{
    char json[4096];
    rfs_engine_stats_json(f->eng, json, sizeof(json));
    printf("%s\n", json);
}
