/*
 * dump_main.c - ransfs-dump: describe an image.
 *   ransfs-dump [--json] IMAGE
 *   ransfs-dump --ls IMAGE [PATH]
 * Lists files (type, mode, size, stored bytes, path), tensors (name, dtype,
 * shape, tiles, ratio, plane modes) and totals; --ls lists one directory
 * (or one entry) as `ls -lgo --time-style=long-iso` does.  Names are bytes:
 * text output prints them as they are, --json escapes them so that every
 * dump is valid JSON and the bytes can be recovered (docs/tools.md).
 * Exit: 0; 1 when the image cannot be opened or read, PATH is not in it, or
 * stdout cannot be written; 2 on a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "rfs_build.h"
#include "rfs_tool_open.h"
#include "rfs_image.h"
#include "rfs_image_info.h"
#include "rfs_tool_guard.h"
#include "rfs_tool_tree.h"

typedef struct dump_opts {
    const char *image;
    const char *ls_path; /* --ls: the directory or entry to list ("" root) */
    int json, ls;
} dump_opts;

typedef struct dump {
    rfs_image *img;
    int json;
    cJSON *files;
    char **ino_path;
    uint64_t n_files, n_dirs, n_links;
} dump;

static const char *mode_names[RFS_PM_COUNT] = {"raw", "const", "tile", "shared", "ctx"};

/* ------------------------------------------------------------ names in JSON */

/* Length of the well-formed UTF-8 sequence at s (1..4), or 0 when the
 * bytes there are not one.  Well-formed as Python's strict decoder has it
 * (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    unsigned lo = 0x80, hi = 0xBF;
    size_t n;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

/*
 * A JSON string literal (quotes included, malloc'd) for the name bytes s:
 * well-formed UTF-8 passes through, '"', '\' and control characters are
 * escaped, and each byte B of anything else becomes \udcBB ("surrogate
 * escape", U+DC80..U+DCFF, as Python's os.fsdecode does), so that
 * os.fsencode(json.loads(...)) gives back the bytes.  docs/tools.md.
 */
static char *json_name_literal(const char *name)
{
    const unsigned char *s = (const unsigned char *)name;
    size_t len = strlen(name);
    char *out = malloc(len * 6 + 3), *o = out;
    if (!out)
        return NULL;
    *o++ = '"';
    while (*s) {
        size_t n = utf8_len(s);
        if (n == 0)
            o += sprintf(o, "\\udc%02x", *s++);
        else if (*s == '"' || *s == '\\')
            *o++ = '\\', *o++ = (char)*s++;
        else if (*s < 0x20)
            o += sprintf(o, "\\u%04x", *s++);
        else
            for (; n; n--)
                *o++ = (char)*s++;
    }
    *o++ = '"';
    *o = '\0';
    return out;
}

/* obj[key] = the name bytes, escaped as json_name_literal says. */
static void json_add_name(cJSON *obj, const char *key, const char *name)
{
    char *lit = json_name_literal(name);
    if (lit)
        cJSON_AddItemToObject(obj, key, cJSON_CreateRaw(lit));
    free(lit);
}

/* ------------------------------------------------------------ files */

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

/* The mode as `ls -l` shows it: type, rwx, and setuid/setgid/sticky as
 * s/S and t/T in the execute places (capital when execute is off). */
static void mode_string(char s[11], uint32_t mode)
{
    static const char rwx[] = "rwxrwxrwx";
    s[0] = S_ISDIR(mode) ? 'd' : S_ISLNK(mode) ? 'l' : S_ISCHR(mode) ? 'c' : S_ISBLK(mode) ? 'b'
         : S_ISFIFO(mode) ? 'p' : S_ISSOCK(mode) ? 's' : '-';
    for (int i = 0; i < 9; i++)
        s[1 + i] = (mode & (0400u >> i)) ? rwx[i] : '-';
    if (mode & S_ISUID)
        s[3] = s[3] == 'x' ? 's' : 'S';
    if (mode & S_ISGID)
        s[6] = s[6] == 'x' ? 's' : 'S';
    if (mode & S_ISVTX)
        s[9] = s[9] == 'x' ? 't' : 'T';
    s[10] = '\0';
}

static void file_json(dump *d, uint64_t ino, const char *path, const rfs_stat *st,
                      uint64_t stored, const char *target)
{
    cJSON *o = cJSON_CreateObject();
    json_add_name(o, "path", path[0] ? path : "/");
    cJSON_AddStringToObject(o, "type", S_ISDIR(st->mode) ? "dir"
                                       : S_ISLNK(st->mode) ? "symlink" : "file");
    cJSON_AddNumberToObject(o, "ino", (double)ino);
    cJSON_AddNumberToObject(o, "mode", st->mode & 07777);
    cJSON_AddNumberToObject(o, "nlink", st->nlink);
    cJSON_AddNumberToObject(o, "size", (double)st->size);
    cJSON_AddNumberToObject(o, "mtime", (double)st->mtime_sec + st->mtime_nsec * 1e-9);
    if (S_ISREG(st->mode))
        cJSON_AddNumberToObject(o, "stored", (double)stored);
    if (target)
        json_add_name(o, "target", target);
    cJSON_AddItemToArray(d->files, o);
}

static int file_one(void *user, uint64_t ino, const char *path, const rfs_stat *st, int post)
{
    dump *d = user;
    if (post)
        return 0;
    if (!d->ino_path[ino - 1] && !(d->ino_path[ino - 1] = strdup(path[0] ? path : "/")))
        return -1;
    uint64_t stored = S_ISREG(st->mode) ? file_stored(d->img, ino) : 0;
    const char *target = NULL;
    if (S_ISLNK(st->mode))
        rfs_image_readlink(d->img, ino, &target);
    d->n_files += S_ISREG(st->mode) != 0;
    d->n_dirs += S_ISDIR(st->mode) != 0;
    d->n_links += S_ISLNK(st->mode) != 0;
    if (d->json) {
        file_json(d, ino, path, st, stored, target);
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
        rfs_tile_layout lay; /* a tile that does not parse counts no plane */
        if (src.kind != RFS_UNIT_TILE || rfs_tile_parse(&lay, src.data, src.size) != RFS_OK)
            continue;
        for (unsigned p = 0; p < lay.width && p < ti->width; p++)
            counts[p][lay.plane[p].mode]++;
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
    json_add_name(o, "name", ti.name);
    json_add_name(o, "file", file);
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

static void totals_json(const dump *d, cJSON *root, uint64_t nt, uint64_t tin, uint64_t tout)
{
    rfs_image_summary sum;
    rfs_image_layout lay;
    rfs_image_get_summary(d->img, &sum);
    rfs_image_get_layout(d->img, &lay);
    double ratio = sum.content_bytes ? (double)sum.image_bytes / (double)sum.content_bytes : 0;
    cJSON *tot = cJSON_AddObjectToObject(root, "totals");
    cJSON_AddNumberToObject(tot, "files", (double)d->n_files);
    cJSON_AddNumberToObject(tot, "directories", (double)d->n_dirs);
    cJSON_AddNumberToObject(tot, "symlinks", (double)d->n_links);
    cJSON_AddNumberToObject(tot, "tensors", (double)nt);
    cJSON_AddNumberToObject(tot, "units", (double)sum.n_units);
    cJSON_AddNumberToObject(tot, "tile_size", sum.tile_size);
    cJSON_AddNumberToObject(tot, "content_bytes", (double)sum.content_bytes);
    cJSON_AddNumberToObject(tot, "image_bytes", (double)sum.image_bytes);
    cJSON_AddNumberToObject(tot, "metadata_bytes", (double)(lay.meta_len + lay.data_off));
    cJSON_AddNumberToObject(tot, "tensor_bytes", (double)tin);
    cJSON_AddNumberToObject(tot, "tensor_stored", (double)tout);
    cJSON_AddNumberToObject(tot, "ratio", ratio);
}

static void totals_text(const dump *d, uint64_t nt, uint64_t tin, uint64_t tout)
{
    rfs_image_summary sum;
    rfs_image_layout lay;
    rfs_image_get_summary(d->img, &sum);
    rfs_image_get_layout(d->img, &lay);
    double ratio = sum.content_bytes ? (double)sum.image_bytes / (double)sum.content_bytes : 0;
    printf("totals: %llu files, %llu directories, %llu symlinks, %llu tensors, %llu units, "
           "tile size %u\n", (unsigned long long)d->n_files, (unsigned long long)d->n_dirs,
           (unsigned long long)d->n_links, (unsigned long long)nt,
           (unsigned long long)sum.n_units, sum.tile_size);
    printf("  content %llu bytes, image %llu bytes (ratio %.4f), metadata %llu bytes\n",
           (unsigned long long)sum.content_bytes, (unsigned long long)sum.image_bytes, ratio,
           (unsigned long long)(lay.meta_len + lay.data_off));
    if (tin)
        printf("  tensors %llu bytes stored in %llu (ratio %.4f)\n", (unsigned long long)tin,
               (unsigned long long)tout, (double)tout / (double)tin);
}

/* The whole description: files, tensors, totals.  0, or -1 (out of memory). */
static int dump_all(dump *d)
{
    rfs_image_summary sum;
    int rc = -1;
    rfs_image_get_summary(d->img, &sum);
    d->ino_path = calloc(sum.n_inodes, sizeof *d->ino_path);
    cJSON *root = d->json ? cJSON_CreateObject() : NULL;
    if (!d->ino_path || (d->json && !root))
        goto fail;
    if (d->json)
        d->files = cJSON_AddArrayToObject(root, "files");
    else
        printf("files (mode, size, stored bytes, path):\n");
    if (rfs_tree_walk(d->img, file_one, d) != 0)
        goto fail;
    cJSON *tarr = d->json ? cJSON_AddArrayToObject(root, "tensors") : NULL;
    if (!d->json)
        printf("tensors (dtype, shape, tiles, ratio, transform, plane modes, file:name):\n");
    uint64_t tin = 0, tout = 0, nt = rfs_image_tensor_count(d->img);
    for (uint64_t t = 0; t < nt; t++)
        tensor_one(d, t, tarr, &tin, &tout);
    if (!d->json)
        totals_text(d, nt, tin, tout);
    else {
        totals_json(d, root, nt, tin, tout);
        char *s = cJSON_PrintUnformatted(root);
        if (!s)
            goto fail;
        puts(s);
        free(s);
    }
    rc = 0;
fail:
    cJSON_Delete(root);
    for (uint64_t i = 0; d->ino_path && i < sum.n_inodes; i++)
        free(d->ino_path[i]);
    free(d->ino_path);
    d->ino_path = NULL;
    return rc;
}

/* ------------------------------------------------------------ --ls */

typedef struct ls_entry {
    const char *name;
    rfs_stat st;
} ls_entry;

static void ls_line(const rfs_image *img, const ls_entry *e, int w_link, int w_size)
{
    char ms[11], when[32];
    struct tm tm;
    time_t t = (time_t)e->st.mtime_sec;
    mode_string(ms, e->st.mode);
    if (!localtime_r(&t, &tm) || !strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm))
        snprintf(when, sizeof when, "%lld", (long long)e->st.mtime_sec);
    const char *target = NULL;
    if (S_ISLNK(e->st.mode))
        rfs_image_readlink(img, e->st.ino, &target);
    printf("%s %*u %*llu %s %s%s%s\n", ms, w_link, e->st.nlink, w_size,
           (unsigned long long)e->st.size, when, e->name, target ? " -> " : "",
           target ? target : "");
}

static int digits(unsigned long long v)
{
    int n = 1;
    while (v >= 10)
        v /= 10, n++;
    return n;
}

/* Print the entries in columns as wide as their widest value (as ls does). */
static void ls_print(const rfs_image *img, const ls_entry *ents, uint64_t n)
{
    int w_link = 1, w_size = 1;
    for (uint64_t i = 0; i < n; i++) {
        int l = digits(ents[i].st.nlink), s = digits(ents[i].st.size);
        w_link = l > w_link ? l : w_link;
        w_size = s > w_size ? s : w_size;
    }
    for (uint64_t i = 0; i < n; i++)
        ls_line(img, &ents[i], w_link, w_size);
}

/* The entries --ls shows for ino: a directory's children, else itself
 * under the name given.  *out is malloc'd; -1 when memory runs out. */
static int ls_collect(const rfs_image *img, uint64_t ino, const char *given, ls_entry **out,
                      uint64_t *n)
{
    rfs_stat st;
    uint64_t count = 1;
    rfs_image_stat(img, ino, &st);
    if (S_ISDIR(st.mode))
        rfs_image_dir_count(img, ino, &count);
    ls_entry *ents = calloc(count ? count : 1, sizeof *ents);
    if (!ents)
        return -1;
    if (!S_ISDIR(st.mode))
        ents[0] = (ls_entry){.name = given, .st = st};
    for (uint64_t i = 0; S_ISDIR(st.mode) && i < count; i++) {
        uint64_t child;
        rfs_image_dir_entry(img, ino, i, &child, &ents[i].name);
        rfs_image_stat(img, child, &ents[i].st);
    }
    *out = ents;
    *n = count;
    return 0;
}

/* ransfs-dump --ls: 0, or 1 after a message. */
static int dump_ls(const rfs_image *img, const dump_opts *o)
{
    char *path = strdup(o->ls_path);
    uint64_t ino, n = 0;
    ls_entry *ents = NULL;
    int rc = 1;
    if (!path) {
        fprintf(stderr, "ransfs-dump: out of memory\n");
        return 1;
    }
    if (rfs_tree_path_norm(path) != 0 || rfs_image_lookup_path(img, path, &ino) != RFS_OK)
        fprintf(stderr, "ransfs-dump: %s: %s: not in the image\n", o->image, o->ls_path);
    else if (ls_collect(img, ino, o->ls_path, &ents, &n) != 0)
        fprintf(stderr, "ransfs-dump: out of memory\n");
    else {
        ls_print(img, ents, n);
        rc = 0;
    }
    free(ents);
    free(path);
    return rc;
}

/* ------------------------------------------------------------ main */

static const char usage_text[] =
    "usage: ransfs-dump [--json] IMAGE\n"
    "       ransfs-dump --ls IMAGE [PATH]\n"
    "       ransfs-dump --version\n"
    "Describe IMAGE: its files, tensors and totals; or list one directory.\n"
    "      --json          the description as one JSON object\n"
    "      --ls            list PATH (default: the root) as ls -lgo does\n"
    "  -h, --help          this text\n"
    "      --version       print the version and the features built in\n"
    "Exit status: 0 done, 1 the image or PATH cannot be read, 2 usage error.\n";

/* Parse the command line into o.  Returns -1 to go on, else the exit
 * status (0 after --help or --version, 2 on a usage error). */
static int parse_args(int argc, char **argv, dump_opts *o)
{
    static const struct option longopts[] = {{"json", no_argument, 0, 'J'},
                                             {"ls", no_argument, 0, 'L'},
                                             {"help", no_argument, 0, 'h'},
                                             {"version", no_argument, 0, 'V'},
                                             {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == 'J')
            o->json = 1;
        else if (c == 'L')
            o->ls = 1;
        else if (c == 'V')
            return rfs_build_print(stdout, "ransfs-dump", NULL) == 0 ? 0 : 1;
        else
            return fputs(usage_text, c == 'h' ? stdout : stderr), c == 'h' ? 0 : 2;
    }
    int npos = argc - optind;
    if (npos < 1 || npos > (o->ls ? 2 : 1) || (o->ls && o->json)) {
        fputs(usage_text, stderr);
        return 2;
    }
    o->image = argv[optind];
    o->ls_path = npos == 2 ? argv[optind + 1] : "";
    return -1;
}

int main(int argc, char **argv)
{
    dump_opts o = {0};
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0)
        return rc;
    dump d = {.json = o.json};
    char why[512];
    rfs_tool_guard_arm("ransfs-dump", o.image);
    void *remote = NULL;
    if (rfs_tool_image_open(&d.img, &remote, o.image, why, sizeof why)) {
        fprintf(stderr, "ransfs-dump: %s: %s\n", o.image, why);
        return 1;
    }
    if (o.ls)
        rc = dump_ls(d.img, &o);
    else if (dump_all(&d) != 0) {
        fprintf(stderr, "ransfs-dump: %s: out of memory\n", o.image);
        rc = 1;
    } else
        rc = 0;
    rfs_tool_image_close(d.img, remote);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "ransfs-dump: cannot write the listing: %s\n", strerror(errno));
        rc = 1;
    }
    return rc;
}
