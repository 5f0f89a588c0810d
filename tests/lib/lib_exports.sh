#!/bin/sh
# lib_exports.sh SO ARCHIVE HEADER: the dynamic symbols libransfs.so
# defines, and the global symbols libransfs.a defines, are exactly the
# RANSFS_API functions ransfs.h declares (nothing from codec/, util/, cuda/
# or the CUDA runtime leaks out, and nothing declared is missing).  The
# version node (RANSFS_0, an absolute symbol) is not a function and is left
# out.
set -eu
so=$1
archive=$2
header=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
grep -v '^#' "$header" | tr '\n' ' ' | grep -o 'RANSFS_API[^(;]*(' | sed -E 's/.*[ *]([a-z_0-9]+)\($/\1/' \
    | sort -u > "$tmp/want"
if [ ! -s "$tmp/want" ]; then
    echo "lib_exports: no RANSFS_API declaration found in $header" >&2
    exit 1
fi
nm -D --defined-only "$so" | awk '$2 != "A" { sub(/@.*/, "", $3); print $3 }' | sort -u > "$tmp/so"
nm -g --defined-only "$archive" | awk 'NF == 3 { print $3 }' | sort -u > "$tmp/a"
rc=0
for f in so a; do
    if ! diff -u "$tmp/want" "$tmp/$f"; then
        echo "lib_exports: the $f's symbols differ from $header (- declared, + defined)" >&2
        rc=1
    fi
done
[ $rc -ne 0 ] || echo "lib_exports: $(wc -l < "$tmp/want") symbols in .so and .a, exactly those of ransfs.h"
exit $rc
