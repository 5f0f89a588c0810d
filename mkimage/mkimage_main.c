/*
 * mkimage_main.c - ransfs-mkimage: pack a directory tree into an image.
 *   ransfs-mkimage [options] SOURCE IMAGE
 * Exit status: 0 on success, 1 on any error (one line on stderr naming the
 * file), 2 on a usage error.  No partial image is ever left behind.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rfs_image_format.h"
#include "rfs_pack.h"

static const char usage[] =
    "usage: ransfs-mkimage [options] SOURCE IMAGE\n"
    "  -j, --threads N     encoder threads (default: all cores)\n"
    "  -q, --quiet         no progress bar and no summary\n"
    "      --json          print a JSON summary on stdout instead of the table\n"
    "      --tile-size N   decoded bytes per tile: a power of two, 64K..4M (default 256K)\n"
    "      --codec=rans|raw  raw stores tile planes uncoded (for comparisons)\n"
    "  -h, --help          this text\n";

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

static void summary_print(const rfs_pack_stats *s, const rfs_pack_opts *o)
{
    printf("ransfs-mkimage: %s -> %s\n", o->source, o->image);
    printf("  files %llu (%llu duplicate), directories %llu, symlinks %llu, skipped %llu\n",
           (unsigned long long)s->files, (unsigned long long)s->dup_files,
           (unsigned long long)s->dirs, (unsigned long long)s->symlinks,
           (unsigned long long)s->skipped);
    printf("  tensors %llu coded (%llu duplicate), units %llu, tile size %u\n",
           (unsigned long long)s->tensors, (unsigned long long)s->dup_tensors,
           (unsigned long long)s->units, o->tile_size);
    printf("  %-10s %14s %14s %8s\n", "class", "input bytes", "stored bytes", "ratio");
    for (int c = 1; c <= RFS_PACK_NCLASS; c++) {
        int k = c % RFS_PACK_NCLASS; /* dtypes first, "other" (0) last */
        if (!s->in_by_class[k])
            continue;
        printf("  %-10s %14llu %14llu %8.4f\n", k ? rfs_dtype_name((unsigned)k) : "other",
               (unsigned long long)s->in_by_class[k], (unsigned long long)s->out_by_class[k],
               (double)s->out_by_class[k] / (double)s->in_by_class[k]);
    }
    printf("  %-10s %14s %14llu\n", "metadata", "", (unsigned long long)s->meta_bytes);
    printf("  %-10s %14llu %14llu %8.4f\n", "total", (unsigned long long)s->input_bytes,
           (unsigned long long)s->image_bytes,
           s->input_bytes ? (double)s->image_bytes / (double)s->input_bytes : 0.0);
    printf("  time %.2f s, %.1f MB/s of input, %u threads\n", s->seconds,
           s->seconds > 0 ? s->input_bytes / 1e6 / s->seconds : 0.0, o->n_threads);
}

static void json_print(const rfs_pack_stats *s)
{
    printf("{\"input_bytes\":%llu,\"image_bytes\":%llu,\"ratio\":%.6f,\"files\":%llu,"
           "\"tensors\":%llu,\"seconds\":%.3f,\"duplicate_files\":%llu,"
           "\"duplicate_tensors\":%llu,\"units\":%llu,\"metadata_bytes\":%llu,\"by_dtype\":{",
           (unsigned long long)s->input_bytes, (unsigned long long)s->image_bytes,
           s->input_bytes ? (double)s->image_bytes / (double)s->input_bytes : 0.0,
           (unsigned long long)s->files, (unsigned long long)s->tensors, s->seconds,
           (unsigned long long)s->dup_files, (unsigned long long)s->dup_tensors,
           (unsigned long long)s->units, (unsigned long long)s->meta_bytes);
    const char *sep = "";
    for (int k = 0; k < RFS_PACK_NCLASS; k++) {
        if (!s->in_by_class[k])
            continue;
        printf("%s\"%s\":{\"input_bytes\":%llu,\"stored_bytes\":%llu}", sep,
               k ? rfs_dtype_name((unsigned)k) : "other", (unsigned long long)s->in_by_class[k],
               (unsigned long long)s->out_by_class[k]);
        sep = ",";
    }
    printf("}}\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"threads", required_argument, 0, 'j'}, {"quiet", no_argument, 0, 'q'},
        {"json", no_argument, 0, 'J'},          {"tile-size", required_argument, 0, 'T'},
        {"codec", required_argument, 0, 'C'},   {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    rfs_pack_opts o = {.tile_size = RFS_PACK_DEFAULT_TILE,
                       .n_threads = ncpu > 0 ? (unsigned)ncpu : 1, .zstd_level = 3};
    int quiet = 0, json = 0, c;
    while ((c = getopt_long(argc, argv, "j:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'j': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*end || n < 1 || n > 256) {
                fprintf(stderr, "ransfs-mkimage: -j wants a thread count from 1 to 256\n");
                return 2;
            }
            o.n_threads = (unsigned)n;
            break;
        }
        case 'q': quiet = 1; break;
        case 'J': json = 1; break;
        case 'T':
            if (!(o.tile_size = parse_size(optarg))) {
                fprintf(stderr, "ransfs-mkimage: bad --tile-size '%s'\n", optarg);
                return 2;
            }
            break;
        case 'C':
            if (strcmp(optarg, "raw") && strcmp(optarg, "rans")) {
                fprintf(stderr, "ransfs-mkimage: --codec must be rans or raw\n");
                return 2;
            }
            o.raw_codec = strcmp(optarg, "raw") == 0;
            break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (argc - optind != 2) {
        fputs(usage, stderr);
        return 2;
    }
    o.source = argv[optind];
    o.image = argv[optind + 1];
    ui u = {.bar = !quiet && isatty(2), .t0 = now_s(), .last_pct = -1};
    o.warn = on_warn;
    o.progress = on_progress;
    o.user = &u;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);
    rfs_pack_stats st;
    char err[1024] = "";
    if (rfs_pack(&o, &st, err, sizeof err) != 0) {
        if (u.bar)
            fputs("\r\033[K", stderr);
        fprintf(stderr, "ransfs-mkimage: %s\n", err);
        return 1;
    }
    if (json)
        json_print(&st);
    else if (!quiet)
        summary_print(&st, &o);
    return 0;
}
