#!/bin/bash
# check_device_scripts.sh - the CTest cuda_device_run_syntax: the GPU-machine
# scripts parse (bash -n), pass shellcheck at warning level where shellcheck
# is installed (said when it is not), and device_run.sh without its LOGDIR
# exits 2 with a usage line.  Nothing is built or run.
set -u
here=$(cd "$(dirname "$0")" && pwd)
scripts=("$here/device_run.sh" "$here/device_deps.sh" "$here/check_device_scripts.sh")
rc=0
for f in "${scripts[@]}"; do
    bash -n "$f" || { echo "syntax error: $f"; rc=1; }
done
if command -v shellcheck >/dev/null; then
    shellcheck -S warning "${scripts[@]}" || rc=1
else
    echo "shellcheck not installed: bash -n only"
fi
out=$(bash "$here/device_run.sh" 2>&1)
st=$?
if [ $st -ne 2 ] || ! grep -q '^usage: .*device_run.sh LOGDIR' <<<"$out"; then
    echo "device_run.sh without LOGDIR: exit $st, said: $out"
    rc=1
fi
[ $rc = 0 ] && echo "device scripts: ok"
exit $rc
