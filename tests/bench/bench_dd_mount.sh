#!/usr/bin/env bash
# bench_dd_mount.sh - `dd bs=1M` of one shard through a fresh mount, image
# in the page cache, with and without touching free memory first, in
# alternation (docs/benchmarks.md, "Free-page reporting on this VM").
#
#   tests/bench/bench_dd_mount.sh BIN_DIR DIR [PRETOUCH_MB]
#
# DIR is a bench_loader.py directory (DIR/model/<shard>, DIR/model.rfs;
# DIR/mnt is made).  For ROUNDS rounds (default 3) it mounts the image,
# drops the page cache, reads the image into it, then (every second run,
# when PRETOUCH_MB > 0, default 12000) fills and frees PRETOUCH_MB MiB of
# anonymous memory, and copies the shard to /dev/null.  One line per run:
# dd's wall and system seconds, the daemon's user and system seconds.
# SETTLE=S sleeps S seconds before each run without the pretouch, so that
# the memory freed by the run before is reported to the host again.
#
# Why the pretouch: a KVM guest with free-page reporting (virtio_balloon)
# hands free memory back to the host; the first write to such a page then
# faults on the host as well.  The page cache that a read through the
# mount fills is such memory, and the daemon's reply copy is what first
# writes it.  Memory touched and freed just before is still backed.
set -euo pipefail
bin=${1:?BIN_DIR}
dir=${2:?DIR}
pretouch=${3:-12000}
rounds=${ROUNDS:-3}
mnt=$dir/mnt
shard=$(ls "$dir/model" | head -1)
mkdir -p "$mnt"

ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

one_run() { # $1 = MiB to touch first (0: none)
    "$bin/ransfs" "$dir/model.rfs" "$mnt"
    local pid
    pid=$(pgrep -n -x ransfs)
    sync
    echo 1 > /proc/sys/vm/drop_caches
    cat "$dir/model.rfs" > /dev/null
    if [ "$1" -gt 0 ]; then
        /usr/bin/python3 -c "b = b'\\1' * ($1 << 20)"
    fi
    local t0 t1 tf
    tf=$(mktemp)
    t0=$(ticks "$pid")
    /usr/bin/time -o "$tf" -f '%e %S' dd if="$mnt/$shard" of=/dev/null bs=1M 2>/dev/null
    t1=$(ticks "$pid")
    umount "$mnt"
    read -r u0 s0 <<< "$t0"
    read -r u1 s1 <<< "$t1"
    read -r wall sys < "$tf"
    rm -f "$tf"
    echo "$1 $wall $sys $(echo "scale=2; ($u1 - $u0) / $hz" | bc) $(echo "scale=2; ($s1 - $s0) / $hz" | bc)"
}

echo "# $(date -u '+%F %T') $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); shard $shard"
echo "pretouch_mib dd_wall_s dd_sys_s daemon_user_s daemon_sys_s"
for _ in $(seq "$rounds"); do
    sleep "${SETTLE:-0}"
    one_run 0
    if [ "$pretouch" -gt 0 ]; then one_run "$pretouch"; fi
done
