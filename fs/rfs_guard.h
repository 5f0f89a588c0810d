/*
 * rfs_guard.h - read the image mapping so that a shrunken image file fails
 * one call with RFS_E_IO instead of killing the daemon.
 *
 * The image is mapped (codec/rfs_image.c).  When the file is truncated
 * while mounted (`cp new.img old.img` truncates, then writes), a load from
 * a page past the new end raises SIGBUS, whose default action ends the
 * daemon and leaves every reader with "transport endpoint is not
 * connected".  Content that changes without shrinking is caught by the
 * unit checksums; this covers the rest.
 *
 * Contract:
 *  - rfs_guard_call(fn, arg) returns fn(arg), or RFS_E_IO when fn loaded
 *    from a page of a file mapping that no longer exists (SIGBUS).
 *  - fn is abandoned at the faulting load: it must not take locks,
 *    allocate, or change shared state that a jump out of it would leave
 *    half-changed.  Verifying and decoding a unit into a caller's buffer
 *    qualifies; the caller then treats the unit as failed.
 *  - Any thread, nestable.  The SIGBUS handler is installed on the first
 *    call; a SIGBUS outside a guarded call gets the previous action.
 *  - rfs_guard_faults() counts the faults turned into errors.
 */
#ifndef RFS_GUARD_H
#define RFS_GUARD_H

#include <stdint.h>

#include "rfs_tile.h"

typedef rfs_err (*rfs_guard_fn)(void *arg);

rfs_err rfs_guard_call(rfs_guard_fn fn, void *arg);
uint64_t rfs_guard_faults(void);

#endif
