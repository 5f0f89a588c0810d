/*
 * mkimage_main.c - ransfs-mkimage: pack a directory tree into an image.
 *   ransfs-mkimage [options] SOURCE IMAGE
 * Exit status: 0 on success, 1 on any error (one line on stderr naming the
 * file), 2 on a usage error.  No partial image is ever left behind, and an
 * existing IMAGE is replaced only as --force allows (docs/mkimage.md).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rfs_array.h"
#include "rfs_build.h"
#include "rfs_image_format.h"
#include "rfs_pack.h"

static const char usage[] =
    "usage: ransfs-mkimage [options] SOURCE IMAGE\n"
    "  IMAGE - writes the image to standard output (the summary then goes to stderr)\n"
    "  -f, --force         replace an existing IMAGE that is a ransfs image or empty;\n"
    "                      twice (-ff): replace any regular file\n"
    "  -L, --dereference   pack what symlinks leaving SOURCE point to (as tar -h, cp -L)\n"
    "      --exclude PATTERN  leave out entries matching the glob (repeatable; no '/':\n"
    "                      matched against names; with '/': against paths relative to\n"
    "                      SOURCE); a matching directory is left out with its contents\n"
    "      --exclude-from FILE  patterns from FILE, one a line ('#' comments)\n"
    "      --mtime SECONDS mtimes later than this are stored as this (default:\n"
    "                      $SOURCE_DATE_EPOCH when set)\n"
    "      --strict        a malformed tensor file fails the pack (default: a warning,\n"
    "                      and the file is stored as other bytes)\n"
    "  -j, --threads N     encoder threads (default: all cores)\n"
    "  -q, --quiet         no progress bar and no summary\n"
    "      --json          print a JSON summary on stdout instead of the table\n"
    "      --tile-size N   decoded bytes per tile: a power of two, 64K..4M (default 256K)\n"
    "      --codec=rans|raw  raw stores tile planes uncoded (for comparisons)\n"
    "      --no-ctx        no context-coded planes (tile format 1 only: feature CTX\n"
    "                      never set, so readers from before it can read the image)\n"
    "  -h, --help          this text\n"
    "      --version       print the version and the features built in\n"
    "Exit status: 0 done, 1 failure (nothing written), 2 usage error.\n";

typedef struct ui {
    int bar;
    double t0;
    int last_pct;
} ui;

static void on_warn(void *user, const char *msg)
{
    ui *u = user;
    if (u->bar)
        fputs("\r\033[K", stderr);
    fprintf(stderr, "ransfs-mkimage: warning: %s\n", msg);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void on_progress(void *user, uint64_t done, uint64_t total)
{
    ui *u = user;
    if (!u->bar || total == 0)
        return;
    int pct = (int)(done * 100 / total);
    if (pct == u->last_pct && done != total)
        return;
    u->last_pct = pct;
    char bar[41];
    int fill = pct * 40 / 100;
    memset(bar, '=', (size_t)fill);
    memset(bar + fill, ' ', (size_t)(40 - fill));
    bar[40] = '\0';
    double dt = now_s() - u->t0;
    fprintf(stderr, "\r[%s] %3d%% %8.1f MB %7.1f MB/s", bar, pct, done / 1e6,
            dt > 0 ? done / 1e6 / dt : 0.0);
    if (done == total)
        fputs("\r\033[K", stderr);
    fflush(stderr);
}

static void on_signal(int sig)
{
    rfs_pack_cleanup_signal();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* "262144", "256K", "1M" -> bytes; 0 when malformed. */
static uint32_t parse_size(const char *s)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s)
        return 0;
    if (*end == 'k' || *end == 'K')
        v <<= 10, end++;
    else if (*end == 'm' || *end == 'M')
        v <<= 20, end++;
    if (*end == 'i' && end[1] == 'B')
        end += 2;
    return *end || v > UINT32_MAX ? 0 : (uint32_t)v;
}

static void summary_print(FILE *out, const rfs_pack_stats *s, const rfs_pack_opts *o)
{
    fprintf(out, "ransfs-mkimage: %s -> %s\n", o->source,
            strcmp(o->image, "-") ? o->image : "standard output");
    fprintf(out, "  files %llu (%llu duplicate, %llu malformed stored opaque), directories %llu, "
            "symlinks %llu, skipped %llu, excluded %llu\n",
            (unsigned long long)s->files, (unsigned long long)s->dup_files,
            (unsigned long long)s->opaque, (unsigned long long)s->dirs,
            (unsigned long long)s->symlinks, (unsigned long long)s->skipped,
            (unsigned long long)s->excluded);
    fprintf(out, "  tensors %llu coded (%llu duplicate), units %llu, tile size %u\n",
            (unsigned long long)s->tensors, (unsigned long long)s->dup_tensors,
            (unsigned long long)s->units, o->tile_size);
    fprintf(out, "  %-10s %14s %14s %8s\n", "class", "input bytes", "stored bytes", "ratio");
    for (int c = 1; c <= RFS_PACK_NCLASS; c++) {
        int k = c % RFS_PACK_NCLASS; /* dtypes first, "other" (0) last */
        if (!s->in_by_class[k])
            continue;
        fprintf(out, "  %-10s %14llu %14llu %8.4f\n", k ? rfs_dtype_name((unsigned)k) : "other",
                (unsigned long long)s->in_by_class[k], (unsigned long long)s->out_by_class[k],
                (double)s->out_by_class[k] / (double)s->in_by_class[k]);
    }
    fprintf(out, "  %-10s %14s %14llu\n", "metadata", "", (unsigned long long)s->meta_bytes);
    fprintf(out, "  %-10s %14llu %14llu %8.4f\n", "total", (unsigned long long)s->input_bytes,
            (unsigned long long)s->image_bytes,
            s->input_bytes ? (double)s->image_bytes / (double)s->input_bytes : 0.0);
    fprintf(out, "  time %.2f s, %.1f MB/s of input, %u threads\n", s->seconds,
            s->seconds > 0 ? s->input_bytes / 1e6 / s->seconds : 0.0, o->n_threads);
}

static void json_print(FILE *out, const rfs_pack_stats *s)
{
    fprintf(out, "{\"input_bytes\":%llu,\"image_bytes\":%llu,\"ratio\":%.6f,\"files\":%llu,"
            "\"tensors\":%llu,\"seconds\":%.3f,\"duplicate_files\":%llu,"
            "\"duplicate_tensors\":%llu,\"units\":%llu,\"metadata_bytes\":%llu,"
            "\"malformed_opaque\":%llu,\"excluded\":%llu,\"skipped\":%llu,\"symlinks\":%llu,"
            "\"xattr_files\":%llu,\"by_dtype\":{",
            (unsigned long long)s->input_bytes, (unsigned long long)s->image_bytes,
            s->input_bytes ? (double)s->image_bytes / (double)s->input_bytes : 0.0,
            (unsigned long long)s->files, (unsigned long long)s->tensors, s->seconds,
            (unsigned long long)s->dup_files, (unsigned long long)s->dup_tensors,
            (unsigned long long)s->units, (unsigned long long)s->meta_bytes,
            (unsigned long long)s->opaque, (unsigned long long)s->excluded,
            (unsigned long long)s->skipped, (unsigned long long)s->symlinks,
            (unsigned long long)s->xattr_files);
    const char *sep = "";
    for (int k = 0; k < RFS_PACK_NCLASS; k++) {
        if (!s->in_by_class[k])
            continue;
        fprintf(out, "%s\"%s\":{\"input_bytes\":%llu,\"stored_bytes\":%llu}", sep,
                k ? rfs_dtype_name((unsigned)k) : "other", (unsigned long long)s->in_by_class[k],
                (unsigned long long)s->out_by_class[k]);
        sep = ",";
    }
    fprintf(out, "}}\n");
}

/* The exclude patterns: --exclude arguments and --exclude-from lines. */
typedef struct pattern_list {
    char **v;
    size_t n, cap;
} pattern_list;

static int pattern_add(pattern_list *l, const char *pat, size_t len)
{
    if (rfs_array_reserve(&l->v, &l->cap, l->n + 1, sizeof *l->v) ||
        !(l->v[l->n] = strndup(pat, len)))
        return -1;
    l->n++;
    return 0;
}

/* One pattern a line; empty lines and lines starting with '#' ignored; a
 * trailing '\r' (a file from Windows) is not part of the pattern.  0, or -1
 * with a message printed. */
static int patterns_load(pattern_list *l, const char *file)
{
    FILE *f = strcmp(file, "-") ? fopen(file, "r") : stdin;
    if (!f) {
        fprintf(stderr, "ransfs-mkimage: %s: cannot read the exclude list: %s\n", file,
                strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    while (rc == 0 && (n = getline(&line, &cap, f)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            n--;
        if (n > 0 && line[0] != '#')
            rc = pattern_add(l, line, (size_t)n);
    }
    if (rc == 0 && ferror(f))
        fprintf(stderr, "ransfs-mkimage: %s: cannot read the exclude list: %s\n", file,
                strerror(errno)), rc = -1;
    else if (rc)
        fprintf(stderr, "ransfs-mkimage: out of memory\n");
    free(line);
    if (f != stdin)
        fclose(f);
    return rc;
}

/* "1700000000" -> 1; 0 when not a number of seconds from 0 to 2^62. */
static int parse_seconds(const char *s, int64_t *v)
{
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (end == s || *end || errno || x < 0 || x > (1ll << 62))
        return 0;
    *v = x;
    return 1;
}

enum { OPT_JSON = 256, OPT_NO_CTX, OPT_TILE, OPT_CODEC, OPT_STRICT, OPT_EXCLUDE, OPT_EXCLUDE_FROM,
       OPT_MTIME, OPT_VERSION };

typedef struct cli {
    rfs_pack_opts o;
    pattern_list ex;
    int quiet, json, version;
    const char *mtime;
} cli;

/* Parse argv into c.  0, or the exit status (2 usage, 1 failure) after a
 * message; -1 after --help. */
static int cli_parse(cli *c, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"threads", required_argument, 0, 'j'},   {"quiet", no_argument, 0, 'q'},
        {"json", no_argument, 0, OPT_JSON},       {"tile-size", required_argument, 0, OPT_TILE},
        {"codec", required_argument, 0, OPT_CODEC}, {"help", no_argument, 0, 'h'},
        {"no-ctx", no_argument, 0, OPT_NO_CTX},
        {"force", no_argument, 0, 'f'},           {"dereference", no_argument, 0, 'L'},
        {"strict", no_argument, 0, OPT_STRICT},   {"exclude", required_argument, 0, OPT_EXCLUDE},
        {"exclude-from", required_argument, 0, OPT_EXCLUDE_FROM},
        {"mtime", required_argument, 0, OPT_MTIME}, {"version", no_argument, 0, OPT_VERSION},
        {0, 0, 0, 0}};
    rfs_pack_opts *o = &c->o;
    int ch;
    while ((ch = getopt_long(argc, argv, "j:qhfL", longopts, NULL)) != -1) {
        switch (ch) {
        case 'j': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*end || n < 1 || n > 256) {
                fprintf(stderr, "ransfs-mkimage: -j wants a thread count from 1 to 256\n");
                return 2;
            }
            o->n_threads = (unsigned)n;
            break;
        }
        case 'q': c->quiet = 1; break;
        case OPT_JSON: c->json = 1; break;
        case OPT_TILE:
            if (!(o->tile_size = parse_size(optarg))) {
                fprintf(stderr, "ransfs-mkimage: bad --tile-size '%s'\n", optarg);
                return 2;
            }
            break;
        case OPT_CODEC:
            if (strcmp(optarg, "raw") && strcmp(optarg, "rans")) {
                fprintf(stderr, "ransfs-mkimage: --codec must be rans or raw\n");
                return 2;
            }
            o->raw_codec = strcmp(optarg, "raw") == 0;
            break;
        case OPT_NO_CTX: o->no_ctx = 1; break;
        case 'f': o->force++; break;
        case 'L': o->dereference = 1; break;
        case OPT_STRICT: o->strict = 1; break;
        case OPT_EXCLUDE:
            if (pattern_add(&c->ex, optarg, strlen(optarg))) {
                fprintf(stderr, "ransfs-mkimage: out of memory\n");
                return 1;
            }
            break;
        case OPT_EXCLUDE_FROM:
            if (patterns_load(&c->ex, optarg))
                return 1;
            break;
        case OPT_MTIME: c->mtime = optarg; break;
        case OPT_VERSION: c->version = 1; break;
        case 'h': fputs(usage, stdout); return -1;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (c->version)
        return 0;
    if (argc - optind != 2) {
        fputs(usage, stderr);
        return 2;
    }
    o->source = argv[optind];
    o->image = argv[optind + 1];
    o->exclude = (const char *const *)c->ex.v;
    o->n_exclude = c->ex.n;
    return 0;
}

/* --mtime, else SOURCE_DATE_EPOCH (reproducible-builds.org): 0, or the exit
 * status after a message. */
static int mtime_setup(cli *c)
{
    const char *env = getenv("SOURCE_DATE_EPOCH");
    if (c->mtime) {
        if (!parse_seconds(c->mtime, &c->o.mtime_max)) {
            fprintf(stderr, "ransfs-mkimage: --mtime wants seconds since 1970, not '%s'\n",
                    c->mtime);
            return 2;
        }
    } else if (env && *env) {
        if (!parse_seconds(env, &c->o.mtime_max)) {
            fprintf(stderr, "ransfs-mkimage: SOURCE_DATE_EPOCH is not seconds since 1970: '%s'\n",
                    env);
            return 1;
        }
    } else {
        return 0;
    }
    c->o.clamp_mtime = 1;
    return 0;
}

static void patterns_free(pattern_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

static int pack(cli *c)
{
    ui u = {.bar = !c->quiet && isatty(2), .t0 = now_s(), .last_pct = -1};
    c->o.warn = on_warn;
    c->o.progress = on_progress;
    c->o.user = &u;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);
    rfs_pack_stats st;
    char err[1024] = "";
    if (rfs_pack(&c->o, &st, err, sizeof err) != 0) {
        if (u.bar)
            fputs("\r\033[K", stderr);
        fprintf(stderr, "ransfs-mkimage: %s\n", err);
        return 1;
    }
    /* With the image on standard output, the summary goes to stderr. */
    FILE *out = strcmp(c->o.image, "-") ? stdout : stderr;
    if (c->json)
        json_print(out, &st);
    else if (!c->quiet)
        summary_print(out, &st, &c->o);
    return fflush(out) == 0 ? 0 : 1;
}

/* --version: the build's version and features, and the format it writes. */
static int print_version(void)
{
    char extra[32];
    snprintf(extra, sizeof(extra), "image format %u", RFS_IMG_VERSION);
    return rfs_build_print(stdout, "ransfs-mkimage", extra) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    cli c = {.o = {.tile_size = RFS_PACK_DEFAULT_TILE, .n_threads = ncpu > 0 ? (unsigned)ncpu : 1,
                   .zstd_level = 3}};
    int rc = cli_parse(&c, argc, argv);
    if (rc == 0 && c.version)
        rc = print_version();
    else if (rc == 0)
        rc = mtime_setup(&c);
    if (rc == 0 && !c.version)
        rc = pack(&c);
    patterns_free(&c.ex);
    return rc < 0 ? 0 : rc;
}
