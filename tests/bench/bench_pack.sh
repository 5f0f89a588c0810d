#!/bin/bash
# bench_pack.sh - packing benchmark: ransfs-mkimage against mksquashfs (zstd).
#
#   tests/bench/bench_pack.sh SOURCE_DIR [BIN_DIR] [TILE_SIZES...]
#
# Packs SOURCE_DIR with ransfs-mkimage (all cores, default tile size) and
# with mksquashfs -comp zstd at the same block size, at its default level
# (15) and at -Xcompression-level 3, all cores; prints input MB/s and image
# size for each.  Then, for each TILE_SIZE given (bytes, e.g. 65536), a
# tile-size sweep: image ratio, pack MB/s, and full-decode MB/s (ransfs-fsck,
# which verifies and decodes every unit, one thread).  Best of 3 runs.
# Needs squashfs-tools.  Not run by CTest.
set -euo pipefail
src=${1:?usage: bench_pack.sh SOURCE_DIR [BIN_DIR] [TILE_SIZES...]}
bin=${2:-build/bin}
shift $(( $# >= 2 ? 2 : 1 ))
sweep=("$@")
tile=262144
work=$(mktemp -d /tmp/rfs-bench-pack-XXXXXX)
trap 'rm -rf "$work"' EXIT
input=$(find "$src" -type f -printf "%s\n" | awk "{s+=\$1} END {print s}")

best() { # best wall time of 3 runs of "$@", in seconds
    local b=""
    for _ in 1 2 3; do
        local t0 t1 d
        t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N)
        d=$(echo "$t1 - $t0" | bc -l)
        if [ -z "$b" ] || [ "$(echo "$d < $b" | bc -l)" = 1 ]; then b=$d; fi
    done
    echo "$b"
}

row() { # name seconds image
    local sz; sz=$(stat -c %s "$3")
    printf '%-34s %10.1f %14d %8.4f\n' "$1" "$(echo "$input / $2 / 1000000" | bc -l)" "$sz" \
        "$(echo "$sz / $input" | bc -l)"
}

echo "source: $src ($input bytes), $(nproc) cores, tile/block $tile"
printf '%-34s %10s %14s %8s\n' tool "input MB/s" "image bytes" ratio
t=$(best "$bin/ransfs-mkimage" -q "$src" "$work/r.img"); row "ransfs-mkimage -j$(nproc)" "$t" "$work/r.img"
t=$(best mksquashfs "$src" "$work/s15.img" -noappend -quiet -no-progress -comp zstd -b "$tile")
row "mksquashfs -comp zstd (level 15)" "$t" "$work/s15.img"
t=$(best mksquashfs "$src" "$work/s3.img" -noappend -quiet -no-progress -comp zstd -b "$tile" -Xcompression-level 3)
row "mksquashfs -comp zstd level 3" "$t" "$work/s3.img"

if [ ${#sweep[@]} -gt 0 ]; then
    echo
    printf '%-10s %8s %12s %14s\n' tile ratio "pack MB/s" "decode MB/s"
    for ts in "${sweep[@]}"; do
        tp=$(best "$bin/ransfs-mkimage" -q --tile-size "$ts" "$src" "$work/t.img")
        td=$(best "$bin/ransfs-fsck" -q "$work/t.img")
        sz=$(stat -c %s "$work/t.img")
        printf '%-10s %8.4f %12.1f %14.1f\n' "$ts" "$(echo "$sz / $input" | bc -l)" \
            "$(echo "$input / $tp / 1000000" | bc -l)" "$(echo "$input / $td / 1000000" | bc -l)"
    done
fi
