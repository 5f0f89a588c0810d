#!/bin/sh
# lib_exports.sh SO HEADER: the dynamic symbols libransfs.so defines are
# exactly the RANSFS_API functions ransfs.h declares (nothing from codec/,
# util/, cuda/ or the CUDA runtime leaks out, and nothing declared is
# missing).  The version node (RANSFS_0, an absolute symbol) is not a
# function and is left out.
set -eu
so=$1
header=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
nm -D --defined-only "$so" | awk '$2 != "A" { sub(/@.*/, "", $3); print $3 }' | sort -u > "$tmp/got"
grep -v '^#' "$header" | tr '\n' ' ' | grep -o 'RANSFS_API[^(;]*(' | sed -E 's/.*[ *]([a-z_0-9]+)\($/\1/' \
    | sort -u > "$tmp/want"
if [ ! -s "$tmp/want" ]; then
    echo "lib_exports: no RANSFS_API declaration found in $header" >&2
    exit 1
fi
if ! diff -u "$tmp/want" "$tmp/got"; then
    echo "lib_exports: $so exports differ from $header (- declared, + exported)" >&2
    exit 1
fi
echo "lib_exports: $(wc -l < "$tmp/got") symbols, exactly those of ransfs.h"
