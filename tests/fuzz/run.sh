#!/usr/bin/env bash
# Fuzz every target with libFuzzer (clang, ASan+UBSan) for SECONDS each
# (default 60); exits non-zero when any target finds a crash.  libFuzzer
# writes the crashing input to BUILD_DIR/crash-<target>-*: once fixed, add it
# to tests/fuzz/corpus/<target>/ as a regression file.
# Usage: tests/fuzz/run.sh [SECONDS] [BUILD_DIR]
set -uo pipefail
secs=${1:-60}
top=$(cd "$(dirname "$0")/../.." && pwd)
build=$top/${2:-build-fuzz}
mkdir -p "$build"
CC=clang cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DRFS_FUZZ=ON \
    -DRFS_CUDA=OFF -DRFS_SANITIZE=address,undefined > "$build/configure.log" || exit 1
fail=0
for src in "$top"/tests/fuzz/fuzz_*.c; do
  t=$(basename "$src" .c)
  [ "$t" = fuzz_replay ] && continue
  if ! cmake --build "$build" --target "$t" -j 2 > "$build/$t.build.log" 2>&1; then
    echo "$t: build failed (see $build/$t.build.log)"; fail=1; continue
  fi
  work=$(mktemp -d)
  cp -r "$top/tests/fuzz/corpus/${t#fuzz_}/." "$work/" 2>/dev/null || true
  if "$build/bin/$t" -max_total_time="$secs" -max_len=300000 -rss_limit_mb=2048 \
       -artifact_prefix="$build/crash-$t-" "$work" > "$build/$t.log" 2>&1; then
    echo "$t: $(grep -o 'Done [0-9]* runs in [0-9]* second' "$build/$t.log"), no crash"
  else
    echo "$t: CRASH (log $build/$t.log)"; tail -30 "$build/$t.log"; fail=1
  fi
  rm -rf "$work"
done
exit $fail
