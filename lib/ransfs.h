/*
 * ransfs.h - libransfs: read ransfs images from your own program, without a
 * mount.  The one public header of libransfs.so.0 / libransfs.a
 * (pkg-config: ransfs).  docs/library.md has an overview and an example.
 *
 * Contract (every call):
 *  - Threads: an open image (ransfs *) may be used by any number of threads
 *    at once, for every call below except ransfs_close, which must be the
 *    last call on it.  No call keeps global state: two images are
 *    independent, and the library starts threads only inside
 *    ransfs_read_tensors (they have ended when it returns).
 *  - Memory: the caller owns every buffer it passes.  Strings the library
 *    returns (names, link targets) belong to the image and live until
 *    ransfs_close; ransfs_tensors' list belongs to the caller
 *    (ransfs_tensors_free).
 *  - Errors: every call that can fail returns a ransfs_err; its values are
 *    never renumbered.  Out-parameters are written only on RANSFS_OK unless
 *    the call says otherwise.  The library never prints.
 *  - Bytes: what a read returns is byte for byte what was packed.  Every
 *    coded unit is checksummed (XXH3) each time it is decoded and every
 *    stored extent once per open image, so a corrupt image gives
 *    RANSFS_E_CORRUPT, never wrong bytes.  The image file must not be
 *    modified or truncated while open (images are immutable once built;
 *    it is mapped read-only).
 *  - Paths name entries inside the image: '/'-separated, from its root; a
 *    leading '/' is optional and "" or "/" is the root.  Symlinks inside the
 *    image are not followed (ransfs_stat is lstat-like; reading a symlink is
 *    RANSFS_E_INVAL).
 *  - Exported symbols: exactly the ransfs_* functions declared here
 *    (CTest lib_exports checks `nm -D`).
 */
#ifndef RANSFS_H
#define RANSFS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(RANSFS_BUILDING) && defined(__GNUC__)
#define RANSFS_API __attribute__((visibility("default")))
#else
#define RANSFS_API
#endif

/* An open image. */
typedef struct ransfs ransfs;

typedef enum ransfs_err {
    RANSFS_OK = 0,
    RANSFS_E_NOMEM = 1,           /* out of memory */
    RANSFS_E_IO = 2,              /* the image file could not be opened, read or mapped */
    RANSFS_E_CORRUPT = 3,         /* not a ransfs image, or damaged: checksum or decode error */
    RANSFS_E_NOENT = 4,           /* no such path in the image */
    RANSFS_E_NOTDIR = 5,          /* a path component, or the listed path, is not a directory */
    RANSFS_E_ISDIR = 6,           /* a file operation on a directory */
    RANSFS_E_INVAL = 7,           /* a bad argument, or the call does not apply to that entry */
    RANSFS_E_NOT_SAFETENSORS = 8, /* the file is not a valid safetensors file */
    RANSFS_E_RANGE = 9,           /* an index or a byte range outside the file / directory */
    RANSFS_E_NOCUDA = 10,         /* built without CUDA, or no such CUDA device */
    RANSFS_E_CUDA = 11,           /* a CUDA call failed */
    RANSFS_E_UNSUPPORTED = 12     /* an image feature or a tensor this library cannot handle */
} ransfs_err;

/* A static English description of err ("unknown error" for values outside
 * the enum).  Thread-safe; never NULL. */
RANSFS_API const char *ransfs_strerror(int err);

/* The library's version, "MAJOR.MINOR.PATCH" (the project version; the
 * soname's number is the major of the ABI, 0).  A static string. */
RANSFS_API const char *ransfs_version(void);

/* The optional features built in, space-separated, from "cuda", "avx2",
 * "avx512" (the CPU paths are chosen at run time by cpuid); "" when none.
 * A static string. */
RANSFS_API const char *ransfs_features(void);

/*
 * Open and validate the image file at path (every metadata section is
 * checked here; coded data is checked when decoded).  On success *img is
 * the open image.  On failure *img is NULL and, when why is non-NULL and
 * why_cap > 0, a one-line NUL-terminated reason naming the path and the
 * failed check goes to why (truncated to why_cap).
 * Errors: RANSFS_E_INVAL (img or path NULL), RANSFS_E_IO (cannot open or
 * map it), RANSFS_E_CORRUPT (not an image, or damaged metadata),
 * RANSFS_E_UNSUPPORTED (a newer format version or feature), RANSFS_E_NOMEM.
 */
RANSFS_API ransfs_err ransfs_open(ransfs **img, const char *path, char *why, size_t why_cap);

/* Close an image and free everything it owns (names, link targets).  NULL is
 * allowed.  No other call may be running on img, or start after. */
RANSFS_API void ransfs_close(ransfs *img);

/* The type is struct ransfs_stat, with no typedef: the name ransfs_stat is
 * the function below (as with POSIX's struct stat and stat()). */
struct ransfs_stat {
    uint64_t ino;        /* inode number inside the image (1 = root); hard links share it */
    uint32_t mode;       /* st_mode: file type bits and permissions */
    uint32_t nlink;
    uint64_t size;       /* file: bytes; symlink: target length; directory: entry count */
    int64_t mtime_sec;
    uint32_t mtime_nsec;
};

/*
 * Describe the entry at path without following a final symlink (lstat).
 * Errors: RANSFS_E_INVAL (NULL argument), RANSFS_E_NOENT, RANSFS_E_NOTDIR
 * (a component before the last is not a directory).
 */
RANSFS_API ransfs_err ransfs_stat(ransfs *img, const char *path, struct ransfs_stat *st);

/*
 * Number of entries of directory path (without "." and "..").
 * Errors: RANSFS_E_INVAL, RANSFS_E_NOENT, RANSFS_E_NOTDIR.
 */
RANSFS_API ransfs_err ransfs_dir_count(ransfs *img, const char *path, uint64_t *n);

/*
 * Entry idx (0-based; entries are sorted by name, bytewise) of directory
 * path: its name (*name, NUL-terminated, owned by the image, valid until
 * ransfs_close) and, when st is non-NULL, its lstat-like description.
 * Errors: RANSFS_E_INVAL, RANSFS_E_NOENT, RANSFS_E_NOTDIR, RANSFS_E_RANGE
 * (idx >= ransfs_dir_count).
 */
RANSFS_API ransfs_err ransfs_dir_entry(ransfs *img, const char *path, uint64_t idx,
                                       const char **name, struct ransfs_stat *st);

/*
 * Target of symlink path (*target NUL-terminated, owned by the image, valid
 * until ransfs_close).  Errors: RANSFS_E_INVAL (NULL argument, or path is
 * not a symlink), RANSFS_E_NOENT, RANSFS_E_NOTDIR.
 */
RANSFS_API ransfs_err ransfs_readlink(ransfs *img, const char *path, const char **target);

/*
 * Read up to len bytes of regular file path from byte off into buf (len
 * bytes the caller owns), decoding only the tiles the range touches.
 * *got receives the bytes read: less than len only at end of file (0 when
 * off >= the file size, with RANSFS_OK).  On an error *got is 0 and buf's
 * contents are undefined (never partly wrong data presented as read).
 * Runs on the calling thread; many threads may read at once.
 * Errors: RANSFS_E_INVAL (NULL argument, or path is a symlink or special
 * file), RANSFS_E_NOENT, RANSFS_E_NOTDIR, RANSFS_E_ISDIR, RANSFS_E_CORRUPT,
 * RANSFS_E_NOMEM.
 */
RANSFS_API ransfs_err ransfs_read(ransfs *img, const char *path, uint64_t off, void *buf,
                                  size_t len, size_t *got);

typedef struct ransfs_tensor {
    const char *name;  /* the safetensors key (owned by the list) */
    char dtype[8];     /* NUL-terminated: "BF16", "F16", "F32", "I64", "F8_E4M3", ... */
    uint32_t ndim;     /* 0..8 */
    uint64_t shape[8]; /* shape[0..ndim), outermost first; the rest 0 */
    uint64_t offset;   /* offset in the file of its first byte (8 + header + begin) */
    uint64_t size;     /* its bytes */
} ransfs_tensor;

/*
 * The tensors of safetensors file path, in file order (by offset; ties by
 * name).  The header is parsed and checked as ransfs-mkimage does: JSON,
 * dtype and shape present, data_offsets inside the file, sizes that match
 * shape x dtype for known dtypes, no overlaps.  On success *list is an
 * array of *n tensors owned by the caller (free it with ransfs_tensors_free;
 * *list may be NULL when *n is 0).
 * Errors: RANSFS_E_INVAL, RANSFS_E_NOENT, RANSFS_E_NOTDIR, RANSFS_E_ISDIR,
 * RANSFS_E_NOT_SAFETENSORS (bad header), RANSFS_E_UNSUPPORTED (a tensor
 * with more than 8 dimensions or a dtype name longer than 7 characters),
 * RANSFS_E_CORRUPT, RANSFS_E_NOMEM.
 */
RANSFS_API ransfs_err ransfs_tensors(ransfs *img, const char *path, ransfs_tensor **list,
                                     size_t *n);

/* Free a list from ransfs_tensors (NULL allowed); n is its count. */
RANSFS_API void ransfs_tensors_free(ransfs_tensor *list, size_t n);

/*
 * Decode tensors t[0..n) of regular file path into host memory: t[i].size
 * bytes from file offset t[i].offset go to dst[i] (caller-owned, at least
 * t[i].size bytes; NULL only when t[i].size is 0).  Any byte ranges of the
 * file may be given (they need not come from ransfs_tensors and may
 * overlap; the dst buffers must not overlap each other).  The work is cut at
 * tile boundaries and spread over `threads` threads (the caller's thread
 * plus threads - 1 started for this call; threads <= 0: one per online
 * CPU).  A tile that lies wholly inside a tensor is decoded straight into
 * dst; only the tiles at a range's ends go through scratch memory.
 * Byte-exact.  On an error the dst contents are undefined; the first error
 * found is returned and the remaining work is abandoned.
 * Errors: RANSFS_E_INVAL (NULL argument, or path is not a regular file),
 * RANSFS_E_NOENT, RANSFS_E_NOTDIR, RANSFS_E_ISDIR, RANSFS_E_RANGE (a range
 * past the end of the file), RANSFS_E_CORRUPT, RANSFS_E_NOMEM.
 */
RANSFS_API ransfs_err ransfs_read_tensors(ransfs *img, const char *path, const ransfs_tensor *t,
                                          size_t n, void *const *dst, int threads);

/*
 * The same as ransfs_read_tensors, into device memory of CUDA device
 * `device`: dev_dst[i] (from cudaMalloc on that device, at least t[i].size
 * bytes).  Only compressed bytes cross PCIe: tensor tiles are decoded on
 * the GPU, stored bytes and zstd blocks go up as they are.  The call is
 * synchronous: it returns when every byte is in place.  stream (a
 * cudaStream_t, or NULL) is accepted for a later version that queues the
 * work on it; this version runs on the decoder's own streams, so work the
 * caller queued that still uses dev_dst must be finished first (e.g.
 * cudaStreamSynchronize(stream) before the call).  The
 * image keeps one decoder (pinned and device staging buffers) per device
 * it was used with, until ransfs_close; calls on one device are serialised.
 * Errors: those of ransfs_read_tensors, and RANSFS_E_NOCUDA (library built
 * without CUDA, no driver, or no device with that ordinal), RANSFS_E_CUDA
 * (a CUDA call failed; dev_dst contents undefined).
 */
RANSFS_API ransfs_err ransfs_read_tensors_device(ransfs *img, const char *path,
                                                 const ransfs_tensor *t, size_t n,
                                                 void *const *dev_dst, int device, void *stream);

#ifdef __cplusplus
}
#endif
#endif
