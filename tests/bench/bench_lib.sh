#!/usr/bin/env bash
# bench_lib.sh - libransfs's ransfs_read_tensors against ransfs-fsck -q's
# full decode, side by side in one run (docs/benchmarks.md "libransfs").
#
#   tests/bench/bench_lib.sh [BUILD_DIR] [CORPUS_DIR] [WORK_DIR]
#
# Makes a real bf16 model from CORPUS_DIR (default ../shared/corpus/
# human32-st): its model.safetensors with every F32 tensor rounded to BF16
# (round to nearest even; the I32 tensors kept), and the 256 MiB synthetic
# model of bench_pack.sh --make-data; packs each with ransfs-mkimage and
# reads each image once (page cache).  Then for 1 and 2 threads, ROUNDS
# times (default 5), alternating: `ransfs-bench lib IMAGE model.safetensors
# --threads T` (best round of one call decoding every tensor) and
# `ransfs-fsck -q -jT IMAGE` (open, check and decode every unit).  MB/s =
# 10^6 bytes per second: tensor bytes for the library, the image's content
# bytes for fsck (its summary), best of the rounds.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$top/build}
corpus=${2:-$top/../shared/corpus/human32-st}
work=${3:-$(mktemp -d /tmp/rfs-bench-lib-XXXXXX)}
rounds=${ROUNDS:-5}
bin=$build/bin
[ -f "$corpus/model.safetensors" ] || { echo "bench_lib.sh: no $corpus/model.safetensors" >&2; exit 1; }

if [ ! -d "$work/real" ]; then
    mkdir -p "$work/real"
    /usr/bin/python3 -c 'import sys; sys.path.insert(0, sys.argv[3])
from image_tools import st_to_bf16
st_to_bf16(sys.argv[1], sys.argv[2])' "$corpus/model.safetensors" "$work/real/model.safetensors" \
        "$top/tests/image"
fi
[ -d "$work/syn" ] || "$top/tests/bench/bench_pack.sh" --make-data "$corpus" "$work/gen" > /dev/null
[ -d "$work/syn" ] || mv "$work/gen/syn" "$work/syn"

content_bytes() { "$bin/ransfs-dump" --json "$1" | /usr/bin/python3 -c \
    'import json,sys; d=json.load(sys.stdin); print(d["totals"]["content_bytes"])'; }
secs() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }

echo "# $(date -u +%F) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); rounds $rounds"
echo "| model | tensor bytes | image bytes | threads | ransfs_read_tensors MB/s | ransfs-fsck -q MB/s | ratio |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for m in real syn; do
    img=$work/$m.rfs
    [ -f "$img" ] || "$bin/ransfs-mkimage" "$work/$m" "$img" > /dev/null
    cat "$img" > /dev/null
    cb=$(content_bytes "$img")
    for t in 1 2; do
        best_lib=0 best_fsck=0 tb=0
        for _ in $(seq "$rounds"); do
            j=$("$bin/ransfs-bench" lib "$img" model.safetensors --threads "$t" --rounds 1 --json)
            tb=$(echo "$j" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes"])')
            l=$(echo "$j" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["mb_s"])')
            s=$(secs "$bin/ransfs-fsck" -q -j "$t" "$img")
            f=$(echo "$cb / $s / 1000000" | bc -l)
            best_lib=$(echo "if ($l > $best_lib) $l else $best_lib" | bc -l)
            best_fsck=$(echo "if ($f > $best_fsck) $f else $best_fsck" | bc -l)
        done
        printf '| %s | %s | %s | %s | %.0f | %.0f | %.2fx |\n' "$m" "$tb" "$(stat -c %s "$img")" "$t" \
            "$best_lib" "$best_fsck" "$(echo "$best_lib / $best_fsck" | bc -l)"
    done
done
