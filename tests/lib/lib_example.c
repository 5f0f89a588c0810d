/*
 * lib_example.c - a program a user would write against the installed
 * libransfs (ransfs.h only, built with pkg-config by lib_install.sh):
 * lib_example IMAGE SRC walks every entry of IMAGE and compares it with the
 * tree SRC it was packed from: each regular file read with ransfs_read in
 * odd-sized chunks, each symlink's target, and for every *.safetensors file
 * every tensor decoded with ransfs_read_tensors on 2 threads, byte for byte
 * against the source file.  Prints one line per entry ("f PATH", "l PATH",
 * "d PATH"; lib_install.sh compares them with the source tree) and exits
 * non-zero with one line naming the file at the first difference.
 */
#define _POSIX_C_SOURCE 200809L /* readlink, with -std=c11 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ransfs.h>

static const char *g_src;

static int fail(const char *path, const char *what, int err)
{
    fprintf(stderr, "lib_example: %s: %s%s%s\n", path, what, err ? ": " : "",
            err ? ransfs_strerror(err) : "");
    return 1;
}

static unsigned char *source_read(const char *rel, size_t *size)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", g_src, rel);
    FILE *f = fopen(p, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*size ? *size : 1);
    if (b && fread(b, 1, *size, f) != *size) {
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

static int tensors_check(ransfs *img, const char *path, const unsigned char *src)
{
    ransfs_tensor *t;
    size_t n;
    int err = ransfs_tensors(img, path, &t, &n);
    if (err)
        return fail(path, "ransfs_tensors", err);
    void **dst = calloc(n ? n : 1, sizeof *dst);
    for (size_t i = 0; i < n; i++)
        dst[i] = malloc(t[i].size ? t[i].size : 1);
    err = ransfs_read_tensors(img, path, t, n, dst, 2);
    int rc = err ? fail(path, "ransfs_read_tensors", err) : 0;
    for (size_t i = 0; !rc && i < n; i++)
        if (memcmp(dst[i], src + t[i].offset, t[i].size) != 0)
            rc = fail(path, t[i].name, 0);
    printf("t %s %zu\n", path, n);
    for (size_t i = 0; i < n; i++)
        free(dst[i]);
    free(dst);
    ransfs_tensors_free(t, n);
    return rc;
}

static int file_check(ransfs *img, const char *path, const struct ransfs_stat *st)
{
    size_t size;
    unsigned char *src = source_read(path + 1, &size);
    if (!src)
        return fail(path, "cannot read the source file", 0);
    unsigned char *buf = malloc(size + 4099);
    int rc = 0;
    uint64_t off = 0;
    size_t got;
    for (size_t chunk = 4099; !rc; chunk = chunk * 3 + 1) { /* odd sizes, growing */
        int err = ransfs_read(img, path, off, buf + off, chunk, &got);
        if (err)
            rc = fail(path, "ransfs_read", err);
        off += got;
        if (got < chunk)
            break;
    }
    if (!rc && (off != size || st->size != size || memcmp(buf, src, size) != 0))
        rc = fail(path, "differs from the source", 0);
    size_t len = strlen(path);
    if (!rc && len > 12 && strcmp(path + len - 12, ".safetensors") == 0)
        rc = tensors_check(img, path, src);
    free(buf);
    free(src);
    return rc;
}

static int link_check(ransfs *img, const char *path)
{
    char p[4096], target[4096];
    const char *t;
    snprintf(p, sizeof p, "%s%s", g_src, path);
    ssize_t n = readlink(p, target, sizeof target - 1);
    int err = ransfs_readlink(img, path, &t);
    if (err)
        return fail(path, "ransfs_readlink", err);
    if (n < 0 || (target[n] = '\0', strcmp(t, target) != 0))
        return fail(path, "link target differs", 0);
    return 0;
}

static int walk(ransfs *img, const char *dir)
{
    uint64_t n;
    int err = ransfs_dir_count(img, dir, &n);
    if (err)
        return fail(dir, "ransfs_dir_count", err);
    for (uint64_t i = 0; i < n; i++) {
        const char *name;
        struct ransfs_stat st;
        char path[4096];
        if ((err = ransfs_dir_entry(img, dir, i, &name, &st)))
            return fail(dir, "ransfs_dir_entry", err);
        snprintf(path, sizeof path, "%s/%s", strcmp(dir, "/") ? dir : "", name);
        int rc = 0;
        if (S_ISDIR(st.mode)) {
            printf("d %s\n", path);
            rc = walk(img, path);
        } else if (S_ISLNK(st.mode)) {
            printf("l %s\n", path);
            rc = link_check(img, path);
        } else if (S_ISREG(st.mode)) {
            printf("f %s\n", path);
            rc = file_check(img, path, &st);
        }
        if (rc)
            return rc;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: lib_example IMAGE SRC\n");
        return 2;
    }
    g_src = argv[2];
    char why[512];
    ransfs *img;
    int err = ransfs_open(&img, argv[1], why, sizeof why);
    if (err) {
        fprintf(stderr, "lib_example: %s\n", why);
        return 1;
    }
    printf("# libransfs %s (%s)\n", ransfs_version(), ransfs_features());
    int rc = walk(img, "/");
    ransfs_close(img);
    return rc;
}
