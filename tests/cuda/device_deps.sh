#!/bin/bash
# tests/cuda/device_deps.sh [DIR] - fetch, HERE, the Debian packages that the
# GPU machine lacks, for tests/cuda/device_run.sh (docs/gpu.md "Running on a
# GPU machine").
#
# The GPU machine has the CUDA toolkit, a compiler, CMake and numpy, but no
# network and none of the -dev packages the build needs.  This downloads
# their .deb files (apt-get download: no install, nothing changes here) into
# DIR (default: .devdeps at the repository root, ignored by git), where the
# device tool's `carry` takes them along; device_run.sh unpacks them with
# dpkg -x into a private prefix under /tmp, never into /.
#
# Exit: 0 done, 1 a package could not be fetched, 2 usage.
set -euo pipefail

# The build's pkg-config modules (CMakeLists.txt: libzstd libxxhash libcjson
# fuse3 cmocka) with their run-time libraries, pkg-config itself, and fuse3
# for fusermount3 (the mount part).  htscodecs (a benchmark peer) is left out.
PKGS=(libzstd-dev libzstd1 libxxhash-dev libxxhash0 libcjson-dev libcjson1
      libfuse3-dev libfuse3-3 fuse3 libcmocka-dev libcmocka0
      pkgconf pkgconf-bin libpkgconf3)

if [ $# -gt 1 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    echo "usage: $0 [DIR]   (default: REPO/.devdeps)" >&2
    exit 2
fi
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-$root/.devdeps}
arch=$(dpkg --print-architecture)
if [ "$arch" != amd64 ]; then
    echo "$0: this machine is $arch; the GPU machine is amd64: fetch there-compatible packages elsewhere" >&2
    exit 1
fi

mkdir -p "$dir"
rm -f "$dir"/*.deb "$dir"/MANIFEST
fetch() { (cd "$dir" && apt-get download -q "${PKGS[@]/%/:amd64}" 2>&1 >/dev/null | grep -v unsandboxed >&2; exit "${PIPESTATUS[0]}"); }
if ! fetch; then
    echo "$0: apt-get download failed; updating the package lists once" >&2
    if ! apt-get update -qq || ! fetch; then
        echo "$0: cannot download: ${PKGS[*]}" >&2
        exit 1
    fi
fi
for f in "$dir"/*.deb; do
    printf '%s %s %s\n' "$(dpkg-deb -f "$f" Package)" "$(dpkg-deb -f "$f" Version)" \
        "$(sha256sum "$f" | cut -c1-16)"
done >"$dir/MANIFEST"
n=$(ls "$dir"/*.deb | wc -l)
if [ "$n" -ne "${#PKGS[@]}" ]; then
    echo "$0: $dir holds $n packages, expected ${#PKGS[@]}" >&2
    exit 1
fi
echo "$dir: $n packages, $(du -sh "$dir" | cut -f1) (carry: [\"$(realpath --relative-to="$root" "$dir")\"])"
