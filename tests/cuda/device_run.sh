#!/bin/bash
# tests/cuda/device_run.sh LOGDIR - the GPU run in one call (issue 14 section
# 4; docs/gpu.md "Running on a GPU machine").
#
# On a machine with an NVIDIA GPU and the CUDA toolkit it
#  1. unpacks the Debian packages carried in .devdeps/ (tests/cuda/
#     device_deps.sh fetched them) into a private prefix under /tmp (never
#     into /) and points pkg-config and the compiler at it;
#  2. configures a Release build for the GPU it finds (sm_XY from
#     nvidia-smi's compute capability) in build-devrun/ and builds it;
#  3. runs every CUDA test (ctest -R cuda);
#  4. makes real f32 / bf16 / fp16 models from tests/data/human32-mini
#     (every tensor repeated with a rotation: real values, no repeated tile)
#     and a synthetic bf16 model of >= 4 GiB, and images of them;
#  5. measures kernel decode GB/s for batches from 16 MiB to the whole
#     model, the load of a whole safetensors file into device memory
#     (rfs_gpu_read_to_device, the image in the page cache) against the
#     baseline (read the original into pinned memory + cudaMemcpy), and a
#     mount with -o gpu=on against -o gpu=off, every file compared with cmp;
#  6. prints one summary (device, driver, figures, CPU fallbacks) and writes
#     it, the whole log and the benchmark's JSON lines into LOGDIR.
# Without an NVIDIA device it does steps 1-3 (the emulator tests) and says
# "GPU part skipped: no NVIDIA device".
#
# Exit: 0 when every step that ran passed (a skipped part is not a failure),
# 1 when one failed (the summary names it), 2 usage.
#
# Environment (defaults in brackets): RFS_DEVRUN_JOBS [nproc],
# RFS_DEVRUN_BUILD [REPO/build-devrun], RFS_DEVRUN_WORK [/tmp/ransfs-devrun],
# RFS_DEVDEPS [REPO/.devdeps], RFS_DEVDEPS_PREFIX [/tmp/ransfs-devdeps],
# RFS_DEVRUN_SYNTH_GIB [4], RFS_DEVRUN_SYNTH_HIDDEN [4096],
# RFS_DEVRUN_REAL_REPEAT [128],
# RFS_DEVRUN_BUDGET_S [390: no new measuring step starts after this],
# RFS_DEVRUN_DRY=1: on a machine without a GPU, run the GPU part's plumbing
# anyway over the CPU emulator (bench_gpu_emu; mounts with gpu=auto), to
# check this script; its figures are not measurements.  Use small sizes.
set -uo pipefail # not -e: each step records its own failure and the run goes on

if [ $# -ne 1 ] || [ "${1:0:1}" = "-" ]; then
    echo "usage: $0 LOGDIR" >&2
    exit 2
fi
LOGDIR=$1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
JOBS=${RFS_DEVRUN_JOBS:-$(nproc)}
BUILD=${RFS_DEVRUN_BUILD:-$ROOT/build-devrun}
WORK=${RFS_DEVRUN_WORK:-/tmp/ransfs-devrun}
DEVDEPS=${RFS_DEVDEPS:-$ROOT/.devdeps}
PREFIX=${RFS_DEVDEPS_PREFIX:-/tmp/ransfs-devdeps}
SYNTH_GIB=${RFS_DEVRUN_SYNTH_GIB:-4}
SYNTH_HIDDEN=${RFS_DEVRUN_SYNTH_HIDDEN:-4096}
REAL_REPEAT=${RFS_DEVRUN_REAL_REPEAT:-128}
BUDGET=${RFS_DEVRUN_BUDGET_S:-390}
MULTIARCH=x86_64-linux-gnu

mkdir -p "$LOGDIR" || exit 2
LOGDIR=$(cd "$LOGDIR" && pwd)
LOG=$LOGDIR/device_run.log
SUMMARY=$LOGDIR/summary.txt
JSONL=$LOGDIR/bench.jsonl
T0=$SECONDS
FAILS=0
MOUNTS=()
: >"$SUMMARY.part"
: >"$JSONL"

# ------------------------------------------------------------------ helpers

phase() { printf '\n=== [%4ds] %s\n' $((SECONDS - T0)) "$*"; }
note() { echo "$*" | tee -a "$SUMMARY.part"; }
fail() { FAILS=$((FAILS + 1)); note "FAIL: $*"; }
over_budget() { [ $((SECONDS - T0)) -ge "$BUDGET" ]; }
# Run "$@", echoing it first; its status is the return value.
run() { echo "+ $*"; "$@"; }

# A python3 with numpy: the model generator needs it.
find_python() {
    local p
    for p in python3 /usr/bin/python3 /opt/torch/.venv/bin/python3; do
        if command -v "$p" >/dev/null && "$p" -c 'import numpy' 2>/dev/null; then
            command -v "$p"
            return 0
        fi
    done
    return 1
}

# The GPU's compute capability as CMake wants it ("90"), or nothing.
gpu_arch() {
    local cc
    cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
    if ! [[ $cc =~ ^[0-9]+$ ]] && [ -x "${NVCC%/*}/__nvcc_device_query" ]; then
        cc=$("${NVCC%/*}/__nvcc_device_query" 2>/dev/null | tr ',' '\n' | head -1)
    fi
    [[ $cc =~ ^[0-9]+$ ]] && echo "$cc"
}

unmount_all() {
    local m
    for m in "${MOUNTS[@]}"; do
        if grep -qs " $m fuse" /proc/mounts; then
            fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
        fi
    done
    MOUNTS=()
}

# ------------------------------------------------------------------ 1. deps

# Point every symlink of the prefix that names an absolute path into it
# (Debian's libfuse3.so -> /lib/.../libfuse3.so.3).
relink_prefix() {
    local l t
    while IFS= read -r l; do
        t=$(readlink "$l")
        [ "${t:0:1}" = / ] && ln -sfn "$PREFIX$t" "$l"
    done < <(find "$PREFIX" -type l)
}

# LD_LIBRARY_PATH gets only the libraries the system lacks, so system
# programs (the compiler, cmake, nvcc) keep their own libzstd.
private_libs() {
    local f so have
    have=$({ ldconfig -p || /sbin/ldconfig -p; } 2>/dev/null | awk '{print $1}')
    mkdir -p "$PREFIX/rt"
    for f in "$PREFIX/usr/lib/$MULTIARCH"/lib*.so.* "$PREFIX/lib/$MULTIARCH"/lib*.so.*; do
        [ -e "$f" ] || continue
        so=${f##*/}
        [[ $so =~ \.so\.[0-9]+$ ]] || continue # the soname links only
        if [ -n "${RFS_DEVDEPS_ALL_LIBS:-}" ] || ! grep -qxF "$so" <<<"$have"; then
            ln -sfn "$f" "$PREFIX/rt/$so"
        fi
    done
}

unpack_deps() {
    local d
    rm -rf "$PREFIX" && mkdir -p "$PREFIX/bin" || return 1
    for d in "$DEVDEPS"/*.deb; do
        dpkg-deb -x "$d" "$PREFIX" || return 1
    done
    relink_prefix
    # .pc files say prefix=/usr (cmocka.pc writes -L/usr/... and -I/usr/...
    # outright): every absolute variable and -L/-I path moves into the prefix.
    sed -i -E "s#(^[A-Za-z_]+=|-[LI])/#\1$PREFIX/#g" \
        "$PREFIX"/usr/lib/$MULTIARCH/pkgconfig/*.pc "$PREFIX"/usr/share/pkgconfig/*.pc 2>/dev/null
    private_libs
    cat >"$PREFIX/bin/pkg-config" <<EOF
#!/bin/sh
LD_LIBRARY_PATH=$PREFIX/usr/lib/$MULTIARCH exec $PREFIX/usr/bin/pkgconf "\$@"
EOF
    chmod +x "$PREFIX/bin/pkg-config"
    export PKG_CONFIG_LIBDIR=$PREFIX/usr/lib/$MULTIARCH/pkgconfig:$PREFIX/usr/share/pkgconfig
    export PKG_CONFIG_PATH=$PKG_CONFIG_LIBDIR
    export CPATH=$PREFIX/usr/include${CPATH:+:$CPATH}
    export LIBRARY_PATH=$PREFIX/usr/lib/$MULTIARCH:$PREFIX/lib/$MULTIARCH${LIBRARY_PATH:+:$LIBRARY_PATH}
    export LD_LIBRARY_PATH=$PREFIX/rt${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    export PATH=$PATH:$PREFIX/bin:$PREFIX/usr/bin # last: the system's tools win
    PKGCONF=$PREFIX/bin/pkg-config
    echo "private prefix $PREFIX: $(ls "$DEVDEPS"/*.deb | wc -l) packages;" \
        "LD_LIBRARY_PATH holds: $(ls "$PREFIX/rt" | tr '\n' ' ')"
    "$PKGCONF" --modversion libzstd libxxhash libcjson fuse3 cmocka | paste -sd' ' |
        sed 's/^/pkg-config (private): libzstd libxxhash libcjson fuse3 cmocka = /'
}

step_deps() {
    phase "build dependencies"
    PKGCONF=
    if compgen -G "$DEVDEPS/*.deb" >/dev/null; then
        unpack_deps || { fail "unpacking $DEVDEPS into $PREFIX"; return 1; }
    elif pkg-config --exists libzstd libxxhash libcjson cmocka 2>/dev/null; then
        echo "no $DEVDEPS: using the system's packages"
    else
        fail "no build dependencies: run tests/cuda/device_deps.sh where apt works and carry .devdeps"
        return 1
    fi
}

# ------------------------------------------------------------------ 2-3. build, tests

step_build() {
    phase "configure and build ($BUILD, -j$JOBS)"
    local args=(-DCMAKE_BUILD_TYPE=Release -DRFS_PYTHON="$PY")
    # The prefix is searched first: libzstd.pc says libdir=/usr/lib, so
    # find_library must find $PREFIX/usr/lib/<multiarch>/libzstd.so itself.
    [ -n "$PKGCONF" ] && args+=(-DPKG_CONFIG_EXECUTABLE="$PKGCONF" -DCMAKE_PREFIX_PATH="$PREFIX/usr")
    if [ -n "$ARCH" ]; then
        args+=(-DRFS_CUDA_ARCHS="$ARCH" -DCMAKE_CUDA_ARCHITECTURES="$ARCH")
    fi
    run cmake -S "$ROOT" -B "$BUILD" "${args[@]}" || { fail "cmake configure"; return 1; }
    local t=$SECONDS
    run timeout 360 cmake --build "$BUILD" -j"$JOBS" >"$WORK/build.out" 2>&1
    local rc=$?
    grep -E 'warning|error' "$WORK/build.out" | head -40
    tail -3 "$WORK/build.out"
    [ $rc -eq 0 ] || { tail -60 "$WORK/build.out"; fail "build (see log)"; return 1; }
    note "build: Release, CUDA archs ${ARCH:-project default}, $((SECONDS - t)) s with -j$JOBS"
    "$BUILD/bin/ransfs" --version 2>&1 | grep -i gpu | sed 's/^/ransfs --version: /' | tee -a "$SUMMARY.part"
    echo "libraries of test_warp_emu:"
    ldd "$BUILD/bin/test_warp_emu" | grep -E 'cmocka|cjson|zstd|xxhash|fuse'
}

step_tests() {
    phase "CUDA tests (ctest -R cuda)"
    local out=$WORK/ctest.out
    # A hung GPU test must not eat the run: ctest as a whole gets 4 minutes.
    timeout 240 ctest --test-dir "$BUILD" -R cuda -j"$JOBS" --output-on-failure --timeout 200 \
        >"$out" 2>&1
    local rc=$?
    [ $rc = 124 ] && echo "ctest stopped after 240 s" >>"$out"
    cat "$out"
    note "ctest -R cuda: $(grep -E 'tests passed|tests failed' "$out" | tail -1)"
    grep -E 'Passed|\*\*\*|Failed|Not Run' "$out" | sed -E 's/^ *[0-9]+\/[0-9]+ Test +#[0-9]+: /  /' |
        tee -a "$SUMMARY.part" >/dev/null
    [ $rc -eq 0 ] || fail "CUDA tests (ctest -R cuda)"
    if [ "$GPU" = 1 ]; then # its output (device, counts, GPU stats), without a rerun
        echo "--- cuda_gpu_decode output:"
        awk '/Testing: cuda_gpu_decode$/,/<end of output>/' \
            "$BUILD/Testing/Temporary/LastTest.log" | tail -40
    fi
}

# ------------------------------------------------------------------ 4. data

# make_image NAME SRC [mkimage options]: $WORK/img/NAME.rfs
make_image() {
    local name=$1 src=$2 t=$SECONDS
    shift 2
    run "$BUILD/bin/ransfs-mkimage" -q -j "$JOBS" "$@" "$src" "$WORK/img/$name.rfs" ||
        { fail "mkimage $name"; return 1; }
    local a b
    a=$(du -sb --apparent-size "$src" | cut -f1)
    b=$(stat -c %s "$WORK/img/$name.rfs")
    note "$(awk -v n="$name" -v a="$a" -v b="$b" -v t=$((SECONDS - t)) 'BEGIN {
        printf "image %-16s %9.1f MiB -> %9.1f MiB  ratio %.4f  (%d s)", n, a / 1048576,
               b / 1048576, b / a, t }')"
    IMAGES+=("$name")
    SRC_OF[$name]=$src
}

step_data() {
    phase "models and images ($WORK)"
    rm -rf "$WORK/src" "$WORK/img" && mkdir -p "$WORK/src" "$WORK/img"
    local gen=$ROOT/tests/cuda/make_synth_model.py dt
    for dt in bf16 fp16 f32; do
        run "$PY" "$gen" derive "$ROOT/tests/data/human32-mini/model.safetensors" \
            "$WORK/src/real-$dt" --dtype $dt --repeat "$REAL_REPEAT" || { fail "derive real-$dt"; continue; }
        make_image "real-$dt" "$WORK/src/real-$dt"
    done
    local t=$SECONDS
    run "$PY" "$gen" synth "$WORK/src/synth-bf16" --gib "$SYNTH_GIB" --hidden "$SYNTH_HIDDEN" \
        --jobs "$JOBS" ||
        { fail "synthetic model"; return 1; }
    note "synthetic bf16 model: $((SECONDS - t)) s to generate"
    make_image synth-bf16 "$WORK/src/synth-bf16"
    make_image synth-bf16-64k "$WORK/src/synth-bf16" --tile-size 64K
}

# ------------------------------------------------------------------ 5. measure

# bench NAME ARGS...: one ransfs-bench gpu run, its JSON lines tagged with
# the image name into $JSONL.
bench() {
    local name=$1 out
    shift
    out=$(run timeout 180 "${BENCH[@]}" "$WORK/img/$name.rfs" --json "$@" 2>&1)
    local rc=$?
    echo "$out"
    grep '^{' <<<"$out" | sed "s/^{/{\"image\":\"$name\",/" >>"$JSONL"
    return $rc
}

decoded_mib() {
    "$PY" - "$1" <<'EOF'
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
print(-(-sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in h.items()
             if k != "__metadata__") // (1 << 20)))
EOF
}

step_kernel() {
    phase "kernel decode GB/s by batch size"
    local name whole m iters
    for name in "${IMAGES[@]}"; do
        whole=$(decoded_mib "${SRC_OF[$name]}/model.safetensors")
        for m in 16 64 256 1024 "$whole"; do
            [ "$m" -ge "$whole" ] && m=$whole
            over_budget && { note "kernel sweep: stopped before $name at $m MiB (time budget ${BUDGET}s)"; return; }
            iters=20
            [ "$m" -gt 1024 ] && iters=5
            bench "$name" --batch-mib "$m" --paths kernel --iters $iters ||
                fail "kernel bench $name batch ${m} MiB"
            [ "$m" -ge "$whole" ] && break
        done
    done
}

step_e2e() {
    phase "whole file into device memory: load (ransfs) vs baseline (pinned read + cudaMemcpy)"
    local name b
    for name in "${IMAGES[@]}"; do
        [ "$name" = synth-bf16-64k ] && continue
        for b in 64 1024; do
            over_budget && { note "load: stopped before $name (time budget ${BUDGET}s)"; return; }
            [ "$b" = 1024 ] && [ "$name" != synth-bf16 ] && continue
            bench "$name" --batch-mib $b --paths to-device,host2host,cpu,load \
                --file model.safetensors --source "${SRC_OF[$name]}/model.safetensors" ||
                fail "load bench $name batch $b MiB (a failed load or differing bytes)"
        done
    done
}

# mount_read NAME MODE: mount with gpu=MODE, read every file once (timed),
# cmp each against the source, record the stats; unmount.
mount_read() {
    local name=$1 mode=$2 mnt=$WORK/mnt-$1-$2 src=${SRC_OF[$1]}
    mkdir -p "$mnt"
    local err
    if ! err=$("$BUILD/bin/ransfs" "$WORK/img/$name.rfs" "$mnt" -o gpu="$mode" 2>&1); then
        echo "$err"
        MOUNT_ERR=$(head -1 <<<"$err")
        return 2
    fi
    MOUNTS+=("$mnt")
    local t=$SECONDS bytes ns0 ns1 f bad=0
    bytes=$(find "$mnt" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
    ns0=$(date +%s%N)
    find "$mnt" -type f -exec cat {} + >/dev/null || bad=1
    ns1=$(date +%s%N)
    local stats
    stats=$("$PY" -c 'import os,sys; print(os.getxattr(sys.argv[1], "user.ransfs.stats").decode())' "$mnt")
    while IFS= read -r f; do
        cmp -s "$src/$f" "$mnt/$f" || { echo "differs: $f"; bad=1; }
    done < <(cd "$src" && find . -type f)
    [ "$(cd "$src" && find . -type f | wc -l)" = "$(find "$mnt" -type f | wc -l)" ] || bad=1
    fusermount3 -u "$mnt" 2>/dev/null || umount "$mnt"
    MOUNTS=()
    echo "{\"image\":\"$name\",\"bench\":\"mount\",\"path\":\"gpu=$mode\",\"decoded_bytes\":$bytes,\"seconds\":$(awk -v d=$((ns1 - ns0)) 'BEGIN {printf "%.6f", d / 1e9}'),\"equal\":$([ $bad = 0 ] && echo true || echo false),\"stats\":$stats}" >>"$JSONL"
    echo "gpu=$mode: $bytes bytes in $(( (ns1 - ns0) / 1000000 )) ms; every file equal: $([ $bad = 0 ] && echo yes || echo NO); $((SECONDS - t)) s"
    echo "stats: $stats"
    return $bad
}

step_mount() {
    phase "mount: -o gpu=on against -o gpu=off, every file compared"
    if [ ! -c /dev/fuse ]; then
        note "mount part skipped: /dev/fuse is missing"
        return
    fi
    if ! command -v fusermount3 >/dev/null && [ "$(id -u)" != 0 ]; then
        note "mount part skipped: no fusermount3 and not root"
        return
    fi
    local name mode rc
    for name in real-bf16 synth-bf16; do
        [ -n "${SRC_OF[$name]:-}" ] || continue
        for mode in off "$GPU_MODE"; do
            over_budget && { note "mount: stopped before $name gpu=$mode (time budget ${BUDGET}s)"; return; }
            MOUNT_ERR=
            mount_read "$name" "$mode"
            rc=$?
            if [ $rc = 2 ] && [ "$mode" = off ]; then
                note "mount part skipped: cannot mount here: $MOUNT_ERR"
                return
            fi
            [ $rc = 0 ] || fail "mount $name gpu=$mode: ${MOUNT_ERR:-a file differs from its source}"
        done
    done
}

# ------------------------------------------------------------------ 6. summary

summarize() {
    [ -s "$JSONL" ] || return 0
    "$PY" - "$JSONL" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def table(title, rs, key):
    if rs:
        print(title)
        for r in rs:
            print("  " + key(r))
kern = [r for r in rows if r.get("path") == "kernel"]
table("kernel decode, GB/s of decoded bytes (one batch resident, CUDA events):", kern,
      lambda r: "%-16s batch %6d MiB  %8.1f GB/s" % (r["image"], r["batch_mib"], r["gbps"]))
by = {}
for r in rows:
    if r.get("bench") == "gpu" and r.get("path") not in ("kernel", "stats", "load_verify"):
        by.setdefault((r["image"], r["batch_mib"]), {})[r["path"]] = r["gbps"]
if by:
    print("whole model, GB/s of decoded bytes (image and original in the page cache):")
    print("  %-16s %6s %9s %9s %9s %9s %9s %7s" % ("image", "batch", "load", "baseline",
          "to-device", "host2host", "cpu", "load/bl"))
    for (img, b), p in sorted(by.items()):
        cpu = next((v for k, v in p.items() if k.startswith("cpu")), 0)
        bl = p.get("baseline", 0)
        print("  %-16s %6d %9.2f %9.2f %9.2f %9.2f %9.2f %7s" % (
            img, b, p.get("load", 0), bl, p.get("to-device", 0), p.get("host2host", 0), cpu,
            "%.2fx" % (p.get("load", 0) / bl) if bl else "-"))
st = [r for r in rows if r.get("path") == "stats"]
if st:
    print("device: %s" % st[0]["device"])
    print("bench CPU fallbacks: %d units decoded on the CPU, %d on the GPU, %d CUDA errors"
          % (sum(r["units_cpu"] for r in st), sum(r["units_gpu"] for r in st),
             sum(r["cuda_errors"] for r in st)))
mnt = [r for r in rows if r.get("bench") == "mount"]
if mnt:
    print("mount, one sequential cat of every file, GB/s:")
    off = {r["image"]: r for r in mnt if r["path"] == "gpu=off"}
    for r in mnt:
        s, g = r["stats"], r["decoded_bytes"] / r["seconds"] / 1e9 if r["seconds"] else 0
        base = off.get(r["image"])
        rel = ""
        if base and r is not base and base["seconds"]:
            rel = "  %.2fx gpu=off" % (base["seconds"] / r["seconds"])
        print("  %-16s %-8s %7.2f GB/s  equal %-5s gpu_tiles %s fallback %s errors %s%s" % (
            r["image"], r["path"], g, r["equal"], s.get("gpu_tiles", "-"),
            s.get("gpu_fallback_tiles", "-"), s.get("gpu_errors", "-"), rel))
EOF
}

main() {
    phase "ransfs GPU run: $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -srm), $(nproc) CPUs"
    trap unmount_all EXIT
    mkdir -p "$WORK"
    NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
    [ -x "$NVCC" ] || NVCC=
    GPU=0
    if command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
        GPU=1
        nvidia-smi
        note "device: $(nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap \
            --format=csv,noheader | head -1) (name, driver, memory, compute capability)"
    fi
    note "host: $(nproc) CPUs, $(awk '/^MemTotal/ {printf "%d", $2 / 1048576}' /proc/meminfo) GiB; nvcc: ${NVCC:-none}" \
        "$([ -n "$NVCC" ] && "$NVCC" --version | grep -o 'release [0-9.]*')"
    ARCH=
    [ "$GPU" = 1 ] && ARCH=$(gpu_arch)
    PY=$(find_python) || { fail "no python3 with numpy"; PY=python3; }
    echo "python: $PY; cmake: $(cmake --version | head -1)"
    declare -gA SRC_OF=()
    IMAGES=()
    BENCH=("$BUILD/bin/ransfs-bench" gpu)
    GPU_MODE=on
    if step_deps && step_build; then
        step_tests
        if [ "$GPU" != 1 ] && [ -n "${RFS_DEVRUN_DRY:-}" ]; then
            note "GPU part skipped: no NVIDIA device; DRY RUN of its plumbing over the CPU emulator" \
                "(bench_gpu_emu, mounts with gpu=auto): the figures below are not measurements"
            BENCH=("$BUILD/bin/bench_gpu_emu")
            GPU_MODE=auto
            step_data
            step_kernel
            step_e2e
            step_mount
        elif [ "$GPU" != 1 ]; then
            note "GPU part skipped: no NVIDIA device"
        elif ! "$BUILD/bin/ransfs" --version 2>&1 | grep -q 'GPU decode: cuda'; then
            note "GPU part skipped: the build has no CUDA decoder (no nvcc?)"
        else
            step_data
            step_kernel
            step_e2e
            step_mount
        fi
    fi
    unmount_all
    phase "summary"
    {
        echo "ransfs GPU run, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
        cat "$SUMMARY.part"
        summarize
        echo "total $((SECONDS - T0)) s; $FAILS failure(s); log: $LOG"
    } >"$SUMMARY"
    rm -f "$SUMMARY.part"
    cat "$SUMMARY"
    [ "$FAILS" = 0 ]
}

main 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
