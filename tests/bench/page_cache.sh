# shellcheck shell=bash
# page_cache.sh - sourced by the packing benchmarks (bench_pack.sh,
# pack_profile.sh, pack_ab.py): their one cold-cache rule.

# rfs_page_out DIR: drop DIR's regular files from the page cache
# (posix_fadvise DONTNEED on each; symlinks are left alone, they point
# elsewhere), so that the next pack reads them from the disk.  Only these
# files, unlike drop_caches: no root, and the rest of a shared machine
# keeps its cache.
rfs_page_out() {
    /usr/bin/python3 - "$1" <<'PY'
import os, sys
for d, _, fs in os.walk(sys.argv[1]):
    for n in fs:
        q = os.path.join(d, n)
        if os.path.isfile(q) and not os.path.islink(q):
            fd = os.open(q, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
PY
}
