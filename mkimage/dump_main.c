/*
 * dump_main.c - ransfs-dump: describe an image.
 *   ransfs-dump [--json] IMAGE
 * Lists files (type, mode, size, stored bytes, path), tensors (name, dtype,
 * shape, tiles, ratio, plane modes) and totals.  Exit: 0, 1 when the image
 * cannot be opened, 2 on a usage error.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "rfs_image.h"
#include "rfs_image_info.h"
#include "rfs_tool_tree.h"

typedef struct dump {
    rfs_image *img;
    int json;
    cJSON *files;
    char **ino_path;
    uint64_t n_files, n_dirs, n_links;
} dump;

static const char *mode_names[RFS_PM_COUNT] = {"raw", "const", "tile", "shared"};

/* Encoded bytes that hold the extents of a file. */
static uint64_t file_stored(const rfs_image *img, uint64_t ino)
{
    uint64_t n = 0, total = 0;
    rfs_image_extent_count(img, ino, &n);
    for (uint64_t e = 0; e < n; e++) {
        rfs_extent_info ei;
        rfs_image_extent_info(img, ino, e, &ei);
        if (ei.is_raw) {
            total += ei.length;
            continue;
        }
        for (uint64_t k = 0; k * ei.stride < ei.length; k++) {
            rfs_unit_src src;
            if (rfs_image_unit_source(img, ei.src + k, &src) == RFS_OK)
                total += src.size;
        }
    }
    return total;
}

static void mode_string(char *s, uint32_t mode)
{
    s[0] = S_ISDIR(mode) ? 'd' : S_ISLNK(mode) ? 'l' : '-';
    const char *rwx = "rwxrwxrwx";
    for (int i = 0; i < 9; i++)
        s[1 + i] = (mode >> (8 - i) & 1) ? rwx[i] : '-';
    s[10] = '\0';
}

static int file_one(void *user, uint64_t ino, const char *path, const rfs_stat *st, int post)
{
    dump *d = user;
    if (post)
        return 0;
    d->ino_path[ino - 1] = strdup(path[0] ? path : "/");
    uint64_t stored = S_ISREG(st->mode) ? file_stored(d->img, ino) : 0;
    const char *target = NULL;
    if (S_ISLNK(st->mode))
        rfs_image_readlink(d->img, ino, &target);
    d->n_files += S_ISREG(st->mode) != 0;
    d->n_dirs += S_ISDIR(st->mode) != 0;
    d->n_links += S_ISLNK(st->mode) != 0;
    if (d->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "path", path[0] ? path : "/");
        cJSON_AddStringToObject(o, "type", S_ISDIR(st->mode) ? "dir"
                                           : S_ISLNK(st->mode) ? "symlink" : "file");
        cJSON_AddNumberToObject(o, "ino", (double)ino);
        cJSON_AddNumberToObject(o, "mode", st->mode & 07777);
        cJSON_AddNumberToObject(o, "size", (double)st->size);
        cJSON_AddNumberToObject(o, "mtime", (double)st->mtime_sec + st->mtime_nsec * 1e-9);
        if (S_ISREG(st->mode))
            cJSON_AddNumberToObject(o, "stored", (double)stored);
        if (target)
            cJSON_AddStringToObject(o, "target", target);
        cJSON_AddItemToArray(d->files, o);
        return 0;
    }
    char ms[11];
    mode_string(ms, st->mode);
    printf("  %s %14llu %14llu  %s%s%s\n", ms, (unsigned long long)st->size,
           (unsigned long long)stored, path[0] ? path : "/", target ? " -> " : "",
           target ? target : "");
    return 0;
}

/* Count the plane modes of a tensor's tiles; returns its encoded bytes. */
static uint64_t tensor_planes(const rfs_image *img, const rfs_tensor_info *ti,
                              uint64_t counts[RFS_MAX_WIDTH][RFS_PM_COUNT])
{
    uint64_t stored = 0;
    memset(counts, 0, sizeof(uint64_t) * RFS_MAX_WIDTH * RFS_PM_COUNT);
    for (uint32_t k = 0; k < ti->n_units; k++) {
        rfs_unit_src src;
        if (rfs_image_unit_source(img, ti->first_unit + k, &src) != RFS_OK)
            continue;
        stored += src.size;
        for (unsigned p = 0; p < ti->width; p++) {
            size_t at = RFS_TILE_HDR_SIZE + p * RFS_PLANE_DESC_SIZE;
            if (at < src.size && src.data[at] < RFS_PM_COUNT)
                counts[p][src.data[at]]++;
        }
    }
    return stored;
}

static void tensor_one(dump *d, uint64_t t, cJSON *arr, uint64_t *in, uint64_t *out)
{
    rfs_tensor_info ti;
    uint64_t counts[RFS_MAX_WIDTH][RFS_PM_COUNT];
    rfs_image_tensor_info(d->img, t, &ti);
    uint64_t stored = tensor_planes(d->img, &ti, counts);
    uint64_t bytes = ti.n_elems * ti.width;
    if (ti.alias_of < 0) {
        *in += bytes;
        *out += stored;
    }
    char shape[256] = "", planes[256] = "";
    size_t sl = 0, pl = 0;
    for (unsigned k = 0; k < ti.ndim && sl < sizeof shape - 24; k++)
        sl += (size_t)snprintf(shape + sl, sizeof shape - sl, "%s%llu", k ? "x" : "",
                               (unsigned long long)ti.dims[k]);
    for (unsigned p = 0; p < ti.width; p++) {
        pl += (size_t)snprintf(planes + pl, sizeof planes - pl, "%sp%u=", p ? " " : "", p);
        const char *sep = "";
        for (int m = 0; m < RFS_PM_COUNT; m++)
            if (counts[p][m]) {
                pl += (size_t)snprintf(planes + pl, sizeof planes - pl, "%s%s*%llu", sep,
                                       mode_names[m], (unsigned long long)counts[p][m]);
                sep = "+";
            }
    }
    double ratio = bytes ? (double)stored / (double)bytes : 0;
    const char *file = d->ino_path[ti.ino - 1] ? d->ino_path[ti.ino - 1] : "?";
    if (!d->json) {
        printf("  %-6s %-16s %6u %7.4f %-4s %s  %s:%s%s\n", ti.dtype, shape, ti.n_units, ratio,
               ti.transform == RFS_XF_ROT1 ? "rot1" : "none", planes, file, ti.name,
               ti.alias_of >= 0 ? " (duplicate)" : "");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", ti.name);
    cJSON_AddStringToObject(o, "file", file);
    cJSON_AddStringToObject(o, "dtype", ti.dtype);
    cJSON *sh = cJSON_AddArrayToObject(o, "shape");
    for (unsigned k = 0; k < ti.ndim; k++)
        cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)ti.dims[k]));
    cJSON_AddNumberToObject(o, "tiles", ti.n_units);
    cJSON_AddNumberToObject(o, "bytes", (double)bytes);
    cJSON_AddNumberToObject(o, "stored", (double)stored);
    cJSON_AddNumberToObject(o, "ratio", ratio);
    cJSON_AddStringToObject(o, "transform", ti.transform == RFS_XF_ROT1 ? "rot1" : "none");
    cJSON_AddNumberToObject(o, "shared_tables", ti.shared_mask);
    cJSON_AddNumberToObject(o, "alias_of", (double)ti.alias_of);
    cJSON *pa = cJSON_AddArrayToObject(o, "planes");
    for (unsigned p = 0; p < ti.width; p++) {
        cJSON *po = cJSON_CreateObject();
        for (int m = 0; m < RFS_PM_COUNT; m++)
            cJSON_AddNumberToObject(po, mode_names[m], (double)counts[p][m]);
        cJSON_AddItemToArray(pa, po);
    }
    cJSON_AddItemToArray(arr, o);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"json", no_argument, 0, 'J'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    dump d = {0};
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == 'J')
            d.json = 1;
        else {
            fputs("usage: ransfs-dump [--json] IMAGE\n", c == 'h' ? stdout : stderr);
            return c == 'h' ? 0 : 2;
        }
    }
    if (argc - optind != 1) {
        fputs("usage: ransfs-dump [--json] IMAGE\n", stderr);
        return 2;
    }
    const char *image = argv[optind];
    char why[512];
    if (rfs_image_open(&d.img, image, why, sizeof why)) {
        fprintf(stderr, "ransfs-dump: %s: %s\n", image, why);
        return 1;
    }
    rfs_image_summary sum;
    rfs_image_layout lay;
    rfs_image_get_summary(d.img, &sum);
    rfs_image_get_layout(d.img, &lay);
    d.ino_path = calloc(sum.n_inodes, sizeof *d.ino_path);
    cJSON *root = d.json ? cJSON_CreateObject() : NULL;
    if (d.json)
        d.files = cJSON_AddArrayToObject(root, "files");
    else
        printf("files (mode, size, stored bytes, path):\n");
    rfs_tree_walk(d.img, file_one, &d);
    cJSON *tarr = d.json ? cJSON_AddArrayToObject(root, "tensors") : NULL;
    if (!d.json)
        printf("tensors (dtype, shape, tiles, ratio, transform, plane modes, file:name):\n");
    uint64_t tin = 0, tout = 0, nt = rfs_image_tensor_count(d.img);
    for (uint64_t t = 0; t < nt; t++)
        tensor_one(&d, t, tarr, &tin, &tout);
    double ratio = sum.content_bytes ? (double)sum.image_bytes / (double)sum.content_bytes : 0;
    if (d.json) {
        cJSON *tot = cJSON_AddObjectToObject(root, "totals");
        cJSON_AddNumberToObject(tot, "files", (double)d.n_files);
        cJSON_AddNumberToObject(tot, "directories", (double)d.n_dirs);
        cJSON_AddNumberToObject(tot, "symlinks", (double)d.n_links);
        cJSON_AddNumberToObject(tot, "tensors", (double)nt);
        cJSON_AddNumberToObject(tot, "units", (double)sum.n_units);
        cJSON_AddNumberToObject(tot, "tile_size", sum.tile_size);
        cJSON_AddNumberToObject(tot, "content_bytes", (double)sum.content_bytes);
        cJSON_AddNumberToObject(tot, "image_bytes", (double)sum.image_bytes);
        cJSON_AddNumberToObject(tot, "metadata_bytes", (double)(lay.meta_len + lay.data_off));
        cJSON_AddNumberToObject(tot, "tensor_bytes", (double)tin);
        cJSON_AddNumberToObject(tot, "tensor_stored", (double)tout);
        cJSON_AddNumberToObject(tot, "ratio", ratio);
        char *s = cJSON_PrintUnformatted(root);
        if (s)
            puts(s);
        free(s);
        cJSON_Delete(root);
    } else {
        printf("totals: %llu files, %llu directories, %llu symlinks, %llu tensors, %llu units, "
               "tile size %u\n", (unsigned long long)d.n_files, (unsigned long long)d.n_dirs,
               (unsigned long long)d.n_links, (unsigned long long)nt,
               (unsigned long long)sum.n_units, sum.tile_size);
        printf("  content %llu bytes, image %llu bytes (ratio %.4f), metadata %llu bytes\n",
               (unsigned long long)sum.content_bytes, (unsigned long long)sum.image_bytes, ratio,
               (unsigned long long)(lay.meta_len + lay.data_off));
        if (tin)
            printf("  tensors %llu bytes stored in %llu (ratio %.4f)\n", (unsigned long long)tin,
                   (unsigned long long)tout, (double)tout / (double)tin);
    }
    for (uint64_t i = 0; i < sum.n_inodes; i++)
        free(d.ino_path[i]);
    free(d.ino_path);
    rfs_image_close(d.img);
    return 0;
}
