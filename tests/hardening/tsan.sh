#!/usr/bin/env bash
# ThreadSanitizer on the concurrent read path.  Configures BUILD_DIR
# (default build-tsan) with -DRFS_SANITIZE=thread (Debug, clang, no CUDA:
# nvcc objects are not instrumented), builds only what the chosen tests
# need, runs them, and fails on any test failure or any TSan report.
#
# The tests: util_pool (the worker pool: parallel fors, worker indices,
# nested calls), fs_core (cache, prefetch detection: many threads on one
# cache), fs_engine (the FUSE-free read path: concurrent readers,
# shared decodes, prefetch, eviction, corrupt units), and real mounts whose
# daemon is the TSan build (concurrent readers, a corrupt unit, the cache
# budget, unmount/SIGTERM with readers active, the image file cut short
# under the mount (SIGBUS turned into EIO), the load test for a short
# time; fs_mount_cache_budget is left out: TSan shadow memory defeats its
# RSS check), and the remote source (remote_fetch: concurrent readers
# fetching from a real nginx, single flight, server down and back) and two
# real remote mounts (remote_mount_cache_dir_shared: two daemons with
# read-ahead threads on one cache dir; remote_mount_faults_recovery: outages
# through the fault proxy, then recovery).  The mount tests route the daemons' reports to files
# (TSAN_OPTIONS=log_path) and fail on any; they skip (77) without /dev/fuse.
# Usage: tests/hardening/tsan.sh [BUILD_DIR]     (RFS_TSAN_JOBS, default 2)
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=$top/${1:-build-tsan}
jobs=${RFS_TSAN_JOBS:-2}
mkdir -p "$build"
echo "tsan.sh: configuring $build"
CC=${CC:-clang} cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DRFS_SANITIZE=thread \
    -DRFS_CUDA=OFF > "$build/configure.log" 2>&1 || { tail -20 "$build/configure.log"; exit 1; }
targets="test_util_pool test_fs_core test_fs_engine ransfs-mkimage ransfs-fsck ransfs fs_unit_locate hd_reseal test_remote_fetch"
echo "tsan.sh: building $targets"
cmake --build "$build" -j "$jobs" --target $targets > "$build/build.log" 2>&1 ||
    { tail -30 "$build/build.log"; exit 1; }
# halt_on_error: the first race fails the test that hit it; second_deadlock_stack
# for readable lock-order reports; tsan.supp documents each suppression.  The load test runs 20 s (TSan is ~5-15x slower).
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$top/tests/hardening/tsan.supp${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
export RFS_LOAD_SECONDS=${RFS_LOAD_SECONDS:-20}
tests='^(util_pool|fs_core|fs_engine_image|fs_engine|fs_mount_concurrent|fs_mount_corrupt|fs_mount_unmount_busy|fs_mount_image_changed|hardening_load|remote_fetch|remote_mount_cache_dir_shared|remote_mount_faults_recovery)$'
cd "$build" || exit 1
ctest --output-on-failure -R "$tests" --timeout 1200 2>&1 | tee "$build/tsan-ctest.log"
rc=${PIPESTATUS[0]}
if grep -q "WARNING: ThreadSanitizer" "$build/tsan-ctest.log"; then
  echo "tsan.sh: ThreadSanitizer reported a problem (see above)"; rc=1
fi
[ "$rc" -eq 0 ] && echo "tsan.sh: no ThreadSanitizer reports"
exit "$rc"
