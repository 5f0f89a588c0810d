/*
 * rfs_tool_guard.h - a tool reading an image that shrinks under it ends
 * with one line naming the file and exit status 1, not a SIGBUS death.
 *
 * The image reader maps the file (codec/rfs_image.c); a load from a page
 * past a new, shorter end raises SIGBUS.  The daemon recovers from it per
 * call (fs/rfs_guard.h) because it must keep serving; a tool has nothing
 * to go on with, so this guard ends the process instead, from any thread
 * and any load (the reader's own checks at open included), with no
 * guarded-call discipline in the tools' code.
 *
 * Contract:
 *  - rfs_tool_guard_arm(prog, image) notes the size of the file at path
 *    image and installs the SIGBUS handler: call it once, before
 *    rfs_image_open, so that the reader's loads at open are covered too.
 *  - On SIGBUS, when the file at image is now shorter than at arm time, the
 *    handler writes "PROG: IMAGE: the image file was truncated while being
 *    read (N bytes, now M)" to stderr and calls _exit(1).  Any other
 *    SIGBUS (a bug) gets the default action, so it is not hidden.  Threads
 *    that fault at once print one line between them.
 *  - prog and image must live until exit (argv strings do).
 */
#ifndef RFS_TOOL_GUARD_H
#define RFS_TOOL_GUARD_H

void rfs_tool_guard_arm(const char *prog, const char *image);

#endif
