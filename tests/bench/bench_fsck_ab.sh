#!/usr/bin/env bash
# bench_fsck_ab.sh - two builds' `ransfs-fsck -q` (verify and decode every
# unit) side by side in one run, alternating, so that a change of load hits
# both (docs/benchmarks.md "Decode without gathers", in the product).
#
#   tests/bench/bench_fsck_ab.sh BIN_A BIN_B IMAGE...
#
# For ROUNDS rounds (default 3), for each IMAGE and each of -j1 and -j2
# (JOBS="1 2"), runs BIN_A/ransfs-fsck and BIN_B/ransfs-fsck (A first in
# odd rounds, B first in even ones) REPS times each
# (default 20) under /usr/bin/time, after reading each image once (page
# cache).  Prints one line per measurement: user s, system s, wall s for
# the REPS runs, and MB/s = 10^6 content bytes (ransfs-dump's summary) x
# REPS / wall s.  Decode backend: as the binaries pick it (cpuid,
# RANSFS_CPU overrides); printed once.
set -euo pipefail
a=${1:?BIN_A}
b=${2:?BIN_B}
shift 2
rounds=${ROUNDS:-3}
reps=${REPS:-20}
jobs=${JOBS:-1 2}

content_bytes() { "$b/ransfs-dump" --json "$1" | /usr/bin/python3 -c \
    'import json,sys; print(json.load(sys.stdin)["totals"]["content_bytes"])'; }

echo "# $(date -u '+%F %T') $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg);" \
    "rounds $rounds, $reps runs per measurement"
echo "# $("$b/ransfs-fsck" --version | tail -1)"
echo "# cpu backend: ${RANSFS_CPU:-auto (cpuid)}; cpu flags:" \
    "$(grep -o -m1 -w 'avx512vbmi\|avx512bw\|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ')"
declare -A cb
for img in "$@"; do
    cat "$img" > /dev/null
    cb[$img]=$(content_bytes "$img")
done
echo "round image jobs build user_s sys_s wall_s MB/s"
for r in $(seq "$rounds"); do
    for img in "$@"; do
        for j in $jobs; do
            order="$a $b"
            [ $((r % 2)) -eq 1 ] || order="$b $a"
            for bin in $order; do
                t=$( { /usr/bin/time -f "%U %S %e" bash -c \
                    'for _ in $(seq "$1"); do "$2" -q -j "$3" "$4"; done' _ \
                    "$reps" "$bin/ransfs-fsck" "$j" "$img" > /dev/null; } 2>&1 )
                mbs=$(echo "$t" | awk -v c="${cb[$img]}" -v n="$reps" '{printf "%.0f", c * n / $3 / 1e6}')
                echo "$r $(basename "$img") -j$j $bin $t $mbs"
            done
        done
    done
done
echo "# load at the end $(cut -d' ' -f1-3 /proc/loadavg)"
