/*
 * rfs_safetensors.h - parse and check the header of a safetensors file.
 *
 * Layout: an 8-byte little-endian header length N, N bytes of JSON (an
 * object: tensor name -> {"dtype", "shape", "data_offsets": [begin, end]},
 * plus an optional "__metadata__" object), then the data; offsets are
 * relative to the start of the data (8 + N).
 *
 * The parser (cJSON) rejects: a file shorter than 8 bytes, a header length
 * past the end of the file, bad JSON, a tensor entry without a string dtype,
 * an integer shape and two integer data_offsets, end < begin, an end past
 * the end of the file, a byte size that does not match shape x dtype (for
 * dtypes whose width is known), and tensors whose bytes overlap.  The result
 * owns its memory; rfs_st_free releases it.  No printing.
 */
#ifndef RFS_SAFETENSORS_H
#define RFS_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

typedef struct rfs_st_tensor {
    char *name;
    char *dtype;       /* as written, e.g. "BF16" */
    unsigned ndim;
    uint64_t *dims;
    uint64_t n_elems;
    uint64_t begin;    /* absolute file offsets of the tensor's bytes */
    uint64_t end;
} rfs_st_tensor;

typedef struct rfs_st_header {
    uint64_t data_start; /* 8 + N */
    size_t n;
    rfs_st_tensor *t;    /* sorted by begin (then by name) */
} rfs_st_header;

/*
 * Parse the header of a safetensors file of file_size bytes whose first
 * head_size bytes are in head (head_size >= min(file_size, 8 + N) is needed;
 * pass the whole mapped file).  Returns 0, or -1 with a one-line reason in
 * why (without the file name); on failure h holds nothing to free.
 */
int rfs_st_parse(rfs_st_header *h, const uint8_t *head, uint64_t file_size, char *why,
                 size_t why_cap);
void rfs_st_free(rfs_st_header *h);

/* How many leading bytes of a file of file_size bytes rfs_st_parse needs,
 * given its first min(8, file_size) bytes in head: 8 + N when the header
 * fits in the file, else just those (the parser then says what is wrong). */
uint64_t rfs_st_head_size(const uint8_t *head, uint64_t file_size);

/* The longest header a sniffed file may announce: the safetensors format's
 * own limit (100 MB). */
#define RFS_ST_SNIFF_MAX (100u * 1000 * 1000)

/*
 * Whether a file of file_size bytes that starts with the head_len bytes in
 * head (at least 9, or the whole file) may be a safetensors file: a header
 * length from 2 to RFS_ST_SNIFF_MAX that fits the file, and a header that
 * opens a JSON object.  A cheap hint for files whose name says nothing;
 * rfs_st_parse decides.  Returns 1 or 0.
 */
int rfs_st_sniff(const uint8_t *head, size_t head_len, uint64_t file_size);

/* Width in bytes of a safetensors dtype name, 0 when unknown. */
unsigned rfs_st_dtype_width(const char *dtype);

#endif
