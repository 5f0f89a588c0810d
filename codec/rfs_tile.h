/*
 * rfs_tile.h - the ransfs tile codec.
 *
 * A tile is a run of n elements of width W (1, 2 or 4 bytes) from one
 * tensor.  The encoder splits the (optionally transformed) elements into W
 * byte planes and stores each plane RAW, CONST or rANS-coded (32 interleaved
 * 32-bit states, 16-bit renormalisation, 12-bit probabilities): the
 * smallest, except that a plane rANS would shrink by less than 1/128 stays
 * RAW (it would decode far slower for nothing).  docs/format.md is the
 * normative description of the bytes.
 *
 * Contract:
 *  - Memory: contexts (rfs_enc, rfs_dec) are created once, own their scratch
 *    buffers, and are reused for any number of tiles without allocating.
 *    The caller owns every src/dst buffer.  rfs_table objects are owned by
 *    whoever created them and are read-only once built.
 *  - Threads: no global mutable state beyond a once-initialised CPU backend
 *    choice.  A context is used by one thread at a time; use one per thread.
 *    A built rfs_table may be shared by any number of threads.
 *  - Errors: every function returns an rfs_err; RFS_OK is 0.  A decoder given
 *    any byte string returns an error or the exact original bytes: it never
 *    reads or writes out of bounds and always terminates.
 *  - No printing, no FUSE, no CUDA here.
 */
#ifndef RFS_TILE_H
#define RFS_TILE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* rANS parameters fixed by tile format 1 (docs/format.md 1.5, "Lane order"). */
#define RFS_LANES 32u               /* interleaved states per plane */
#define RFS_PROB_BITS 12u           /* probabilities sum to 2^12 */
#define RFS_PROB_SCALE (1u << RFS_PROB_BITS)
#define RFS_RANS_L (1u << 15)       /* state range is [L, 2^31) */
#define RFS_RANS_HI (1u << 31)
#define RFS_TILE_HDR_SIZE 8u        /* fixed part of a tile header */
#define RFS_PLANE_DESC_SIZE 8u      /* one per plane, after the header */
#define RFS_STATES_SIZE (RFS_LANES * 4u)
#define RFS_MAX_WIDTH 4u

/*
 * Stable error codes: values are never renumbered, only appended (a code
 * retired keeps its number reserved).
 *
 * RFS_E_ARG and RFS_E_INVAL are different things.  RFS_E_ARG: the caller
 * broke the function's contract (a NULL pointer, a width other than 1, 2,
 * 4, a size that is not a multiple of it, an unknown backend name): a bug
 * in the calling program, whatever the image holds.  RFS_E_INVAL: a
 * well-formed request that the image's inode cannot satisfy (readlink of a
 * file, a mapping of a directory entry that is no regular file or of an
 * offset past the end): it depends on the image, and FUSE answers EINVAL.
 */
typedef enum rfs_err {
    RFS_OK = 0,
    RFS_E_NOMEM = 1,       /* allocation failed */
    RFS_E_ARG = 2,         /* the caller broke the function's contract */
    RFS_E_TRUNCATED = 3,   /* input ends before its header says it does */
    RFS_E_HEADER = 4,      /* bad tile header: width, transform, mode, reserved */
    RFS_E_TABLE = 5,       /* frequency table malformed or does not sum to 2^12 */
    RFS_E_STATE = 6,       /* an initial rANS state outside [2^15, 2^31) */
    RFS_E_OVERRUN = 7,     /* rANS stream needs more words than it has */
    RFS_E_TRAILING = 8,    /* bytes left after the last plane or stream */
    RFS_E_FINAL_STATE = 9, /* a stream did not end in the state it began */
    RFS_E_DST_SMALL = 10,  /* destination buffer too small */
    RFS_E_NO_SHARED = 11,  /* tile needs a shared table that was not given */
    RFS_E_TOO_BIG = 12,    /* tile larger than the context was made for */
    /* image-level errors (rfs_image.h) */
    RFS_E_IO = 20,         /* read/open/mmap of the image failed (errno kept) */
    RFS_E_MAGIC = 21,      /* not a ransfs image */
    RFS_E_VERSION = 22,    /* unsupported format version or feature flag */
    RFS_E_CORRUPT = 23,    /* an offset, length or field is inconsistent */
    RFS_E_CHECKSUM = 24,   /* XXH3 of a section or tile does not match */
    RFS_E_NOENT = 25,      /* no such path / inode */
    RFS_E_NOTDIR = 26,     /* not a directory */
    RFS_E_ISDIR = 27,      /* is a directory */
    RFS_E_INVAL = 28,      /* does not apply to this inode (e.g. readlink of a file) */
    RFS_E_ZSTD = 29,       /* zstd block failed to decode */
    RFS_E_GPU = 30,        /* no usable GPU, or a CUDA call failed */
} rfs_err;

/* A short constant English description of an error code. */
const char *rfs_strerror(rfs_err err);

/* Element transforms, recorded per tile. */
typedef enum rfs_transform {
    RFS_XF_NONE = 0,
    /* Rotate each W-byte element left by 1 bit.  For bf16 and fp32 the top
     * byte becomes the pure 8-bit exponent; the sign moves to bit 0. */
    RFS_XF_ROT1 = 1,
    RFS_XF_COUNT = 2,
} rfs_transform;

/* Plane storage modes, recorded per plane. */
typedef enum rfs_plane_mode {
    RFS_PM_RAW = 0,         /* n bytes stored */
    RFS_PM_CONST = 1,       /* one byte repeated n times, no payload */
    RFS_PM_RANS_TILE = 2,   /* rANS with a frequency table in the payload */
    RFS_PM_RANS_SHARED = 3, /* rANS with the tensor's shared table for this plane */
    /* rANS with two tables in the payload, chosen per element by its byte in
     * plane W-1 (the exponent): only plane W-2 of a W = 2 or 4 tile
     * (docs/format.md 1.2, 1.4.1).  Tile format 2. */
    RFS_PM_RANS_CTX = 4,
    RFS_PM_COUNT = 5,
} rfs_plane_mode;

/* RANS_CTX: the plane it is allowed for, and the plane holding the context
 * byte, for a tile of width w (2 or 4). */
#define RFS_CTX_PLANE(w) ((w) - 2u)
#define RFS_CTX_SRC_PLANE(w) ((w) - 1u)

struct rfs_small_plan; /* rfs_backend.h */

/*
 * A normalised order-0 frequency table (sum exactly 2^12, every present
 * symbol >= 1) with its decode lookup.  dec[slot] packs
 *   bits 0..7 symbol, bits 8..19 freq-1, bits 20..31 cumulative start.
 */
typedef struct rfs_table {
    uint16_t freq[256];
    uint16_t start[256];
    uint32_t dec[RFS_PROB_SCALE];
    /* dec's permute-lookup plan (rfs_small_plan_build) where it was built
     * once for many tiles (an image's shared tables), else NULL and built
     * per tile; rfs_table_build_lookup sets NULL */
    const struct rfs_small_plan *plan;
} rfs_table;

/* Shared tables of one tensor: plane[p] is NULL where none exists. */
typedef struct rfs_table_set {
    const rfs_table *plane[RFS_MAX_WIDTH];
} rfs_table_set;

/*
 * Build a normalised table from a histogram of counts (total > 0).
 * Returns RFS_E_ARG when all counts are zero.
 */
rfs_err rfs_table_from_counts(rfs_table *t, const uint64_t counts[256]);

/*
 * Parse a serialised table (docs/format.md "Frequency table") from src and
 * build its decode lookup.  *used receives the bytes consumed.
 * Errors: RFS_E_TRUNCATED, RFS_E_TABLE.
 */
rfs_err rfs_table_parse(rfs_table *t, const uint8_t *src, size_t src_size, size_t *used);

/* The parse and checks of rfs_table_parse (which calls this), frequencies
 * only: no 4096-entry lookup is built.  Errors: RFS_E_TRUNCATED, RFS_E_TABLE. */
rfs_err rfs_table_parse_freq(uint16_t freq[256], const uint8_t *src, size_t src_size,
                            size_t *used);

/*
 * Serialise t into dst.  *written receives the bytes produced (at most
 * RFS_TABLE_MAX_SIZE).  Errors: RFS_E_DST_SMALL.
 */
#define RFS_TABLE_MAX_SIZE (32u + 2u * 256u)
rfs_err rfs_table_write(uint8_t *dst, size_t dst_cap, size_t *written, const rfs_table *t);

/* Histogram of byte plane p of n transformed elements (counts are added). */
void rfs_plane_histogram(uint64_t counts[256], const void *src, size_t n, unsigned width,
                         rfs_transform xf, unsigned plane);

/* The transform of a tensor is chosen from its first RFS_XF_SAMPLE elements. */
#define RFS_XF_SAMPLE (1u << 20)

/*
 * Pair histogram of n elements of the given width (h is overwritten):
 * h[p][2 * b + t] counts the elements whose byte p is b and whose byte
 * p - 1 (mod width) has top bit t.  Both the plain byte histogram of plane
 * p (the sum over t) and its ROT1 histogram (byte (b << 1 | t) & 0xff)
 * follow from it (rfs_pair_to_bytes), so one pass over a tensor gives the
 * transform choice and the tables for either transform.  Counts are 32-bit:
 * n < 2^32.  ws is NULL or RFS_PAIR_WS counters of scratch (any contents,
 * left undefined), which width 2 uses to count each element once: pass it
 * where the histogram is the caller's hot loop.
 */
#define RFS_PAIR_WS 65536u
void rfs_pair_histogram(uint32_t h[RFS_MAX_WIDTH][512], const void *src, size_t n,
                        unsigned width, uint32_t *ws);

/* Byte histogram (out is overwritten) of one plane under transform xf, from
 * that plane's pair histogram h. */
void rfs_pair_to_bytes(uint64_t out[256], const uint64_t h[512], rfs_transform xf);

/*
 * Pick the transform that minimises the estimated order-0 coded size of
 * the first min(n, RFS_XF_SAMPLE) of n elements of the given width (ROT1 is
 * only considered for W = 2, 4).
 */
rfs_transform rfs_transform_choose(const void *src, size_t n, unsigned width);

/*
 * The same choice for a tensor of n elements from the pair histograms h of
 * its first min(n, RFS_XF_SAMPLE) elements (summed over its tiles by a
 * caller that has them already): rfs_transform_choose's result.
 */
rfs_transform rfs_transform_choose_pairs(const uint64_t (*h)[512], unsigned width, size_t n);

/* ---------------------------------------------------------------- encode */

typedef struct rfs_enc rfs_enc;

typedef struct rfs_tile_params {
    unsigned width;              /* 1, 2 or 4 */
    rfs_transform transform;     /* applied before planes are split */
    const rfs_table_set *shared; /* optional: tensor tables usable per plane */
    int raw_only;                /* store every plane RAW (for comparisons) */
    /* Optional: counts[p][b] = occurrences of byte b in plane p of src after
     * the transform, exactly as the encoder would count them.  A caller that
     * has already made a histogram pass (the packer does, for the shared
     * tables) saves the encoder its own.  NULL: the encoder counts.  They
     * must be exact: counts that do not sum to the plane length are ignored,
     * but counts that do and are wrong code a tile that does not decode to
     * src (Debug builds assert against the encoder's own count). */
    const uint32_t (*counts)[256];
    /* Non-zero: plane W-2 of a W = 2 or 4 tile may be coded RANS_CTX where
     * that is smaller after its tables (tile format 2; an image holding such
     * a tile needs feature CTX).  Zero: the tile is tile format 1. */
    int ctx;
} rfs_tile_params;

/* Create an encoder for tiles of up to max_tile_bytes decoded bytes. */
rfs_enc *rfs_enc_create(size_t max_tile_bytes);
void rfs_enc_destroy(rfs_enc *enc);

/*
 * Force the CPU path of this encoder: "scalar", "avx2" or "auto".  Returns
 * RFS_E_ARG when the name is unknown or the CPU lacks the path.  Without a
 * call the path is chosen once per process by cpuid, overridden by the
 * environment variable RANSFS_CPU=scalar|avx2|avx512 (avx512: AVX2, the
 * encoder's widest).  Every path gives the same bytes.
 */
rfs_err rfs_enc_set_backend(rfs_enc *enc, const char *name);
const char *rfs_enc_backend(const rfs_enc *enc);

/* Worst-case encoded size of a tile of src_size bytes. */
size_t rfs_tile_bound(size_t src_size, unsigned width);

/*
 * Encode src_size bytes (a multiple of p->width) into dst.
 * Errors: RFS_E_ARG, RFS_E_TOO_BIG, RFS_E_DST_SMALL.
 * Output is a deterministic function of (src, params, shared tables).
 * For width 2 and 4, dst may be src itself (encoding in place, dst_cap up
 * to rfs_tile_bound); otherwise, and for width 1, they must not overlap.
 */
rfs_err rfs_tile_encode(rfs_enc *enc, uint8_t *dst, size_t dst_cap, size_t *dst_size,
                        const void *src, size_t src_size, const rfs_tile_params *p);

/* ---------------------------------------------------------------- decode */

typedef struct rfs_dec rfs_dec;

/* Create a decoder for tiles of up to max_tile_bytes decoded bytes. */
rfs_dec *rfs_dec_create(size_t max_tile_bytes);
void rfs_dec_destroy(rfs_dec *dec);

/*
 * Force the CPU path of this context: one of rfs_dec_backend_names() or
 * "auto".  Returns RFS_E_ARG when the name is unknown or the CPU lacks the
 * path.  Without a call the path is chosen once per process by cpuid,
 * overridden by the environment variable RANSFS_CPU (the same names).
 */
rfs_err rfs_dec_set_backend(rfs_dec *dec, const char *name);

/* Every CPU decode path's name, NULL-terminated ("scalar", "avx2",
 * "avx2-loads", "avx512", "avx512vbmi"), whether or not this CPU has it
 * (rfs_cpu_supports says). */
const char *const *rfs_dec_backend_names(void);
const char *rfs_dec_backend(const rfs_dec *dec);

/* 1 when this CPU (and build) can run the named backend. */
int rfs_cpu_supports(const char *name);

/*
 * Read a tile's header: width, element count and transform, without
 * decoding.  Errors: RFS_E_TRUNCATED, RFS_E_HEADER.
 */
rfs_err rfs_tile_info(const uint8_t *src, size_t src_size, unsigned *width, uint32_t *n_elems,
                      rfs_transform *xf);

/* One plane of a tile, as its descriptor gives it (docs/format.md 1.3). */
typedef struct rfs_plane_layout {
    rfs_plane_mode mode;
    uint8_t value; /* CONST: the byte repeated n times; 0 otherwise */
    size_t off;    /* the payload: offset from the start of the tile ... */
    uint32_t size; /* ... and its bytes (RAW: n; CONST: 0) */
} rfs_plane_layout;

/* A tile's header and the place of each plane's payload. */
typedef struct rfs_tile_layout {
    unsigned width;
    rfs_transform xf;
    uint32_t n; /* elements */
    rfs_plane_layout plane[RFS_MAX_WIDTH];
} rfs_tile_layout;

/*
 * Parse and check a tile's header and plane descriptors: the header as
 * rfs_tile_info, then per plane its mode, reserved bytes and payload size,
 * and that the payloads fill src exactly.  No payload byte is read (the
 * rANS ones are rfs_plane_parse_rans's).  The one parser of tile headers:
 * the CPU decoder, the GPU planner and the tools all call it.
 * Errors: RFS_E_TRUNCATED, RFS_E_HEADER, RFS_E_TRAILING.
 */
rfs_err rfs_tile_parse(rfs_tile_layout *lay, const uint8_t *src, size_t src_size);

/*
 * The payload of a rANS plane pl of tile src (laid out by rfs_tile_parse):
 * for RFS_PM_RANS_TILE its leading frequency table is parsed and checked
 * into freq (as rfs_table_parse_freq); for RFS_PM_RANS_SHARED have_shared
 * says whether the tensor's table for the plane is at hand (freq is left
 * alone).  The rest is the stream, which must hold the 32 initial states
 * and then whole 16-bit words: *stream_off (from the start of the tile)
 * and *stream_size receive it.
 * Errors: RFS_E_TRUNCATED, RFS_E_TABLE, RFS_E_NO_SHARED, RFS_E_TRAILING,
 * RFS_E_ARG when pl is not a rANS plane.
 */
rfs_err rfs_plane_parse_rans(const uint8_t *src, const rfs_plane_layout *pl, int have_shared,
                             uint16_t freq[256], size_t *stream_off, size_t *stream_size);

/*
 * The payload of a RANS_CTX plane pl of tile src (docs/format.md 1.4.1):
 * *threshold receives the context threshold, freq0 and freq1 the two
 * tables (parsed and checked as rfs_table_parse_freq), *stream_off and
 * *stream_size the stream, checked as for rfs_plane_parse_rans.
 * Errors: RFS_E_TRUNCATED, RFS_E_HEADER (threshold 0), RFS_E_TABLE,
 * RFS_E_TRAILING, RFS_E_ARG when pl is not a RANS_CTX plane.
 */
rfs_err rfs_plane_parse_ctx(const uint8_t *src, const rfs_plane_layout *pl, uint8_t *threshold,
                            uint16_t freq0[256], uint16_t freq1[256], size_t *stream_off,
                            size_t *stream_size);

/* 1 when the tile src (already checked by rfs_tile_parse or a decode) has
 * a RANS_CTX plane, so an image holding it needs feature CTX. */
int rfs_tile_uses_ctx(const uint8_t *src, size_t src_size);

/*
 * Decode one tile into dst (the original bytes).  *dst_size receives n*W.
 * shared may be NULL when the tile uses no shared table.
 * Errors: any of RFS_E_TRUNCATED .. RFS_E_TOO_BIG.
 */
rfs_err rfs_tile_decode(rfs_dec *dec, void *dst, size_t dst_cap, size_t *dst_size,
                        const uint8_t *src, size_t src_size, const rfs_table_set *shared);

/* One tile of rfs_tile_decode2: the arguments of rfs_tile_decode, and its
 * results (dst_size, err). */
typedef struct rfs_tile_io {
    void *dst;
    size_t dst_cap;
    const uint8_t *src;
    size_t src_size;
    const rfs_table_set *shared;
    size_t dst_size; /* out */
    rfs_err err;     /* out: what rfs_tile_decode would return for it */
} rfs_tile_io;

/*
 * Decode two tiles with one decoder: each gets the bytes and error
 * rfs_tile_decode would give it, but where the backend can (the AVX-512
 * VBMI one, with two tiles of the same width whose only rANS plane is the
 * top one: bf16 with a RAW low byte, f32 with only the exponent coded) the
 * two planes are decoded in lockstep, which hides the latency a single
 * tile's decode chain is bound by.  Returns RFS_OK when both are OK, else
 * the first tile's error, else the second's (RFS_E_ARG for a NULL dec or
 * io).  dec's scratch grows by one tile on the first call; without that
 * memory the tiles are decoded one after the other.  Not thread-safe for
 * one dec (as rfs_tile_decode).
 */
rfs_err rfs_tile_decode2(rfs_dec *dec, rfs_tile_io io[2]);

#ifdef __cplusplus
}
#endif
#endif
