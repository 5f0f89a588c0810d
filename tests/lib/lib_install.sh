#!/bin/sh
# lib_install.sh BUILD SRC_TREE: libransfs as a user gets it.
#  1. cmake --install BUILD --prefix TMP;
#  2. compile tests/lib/lib_example.c with
#     `cc $(PKG_CONFIG_PATH=TMP/lib/pkgconfig pkg-config --cflags --libs ransfs)`
#     against the installed header and libransfs.so, and once more against
#     libransfs.a with pkg-config --static's Libs.private;
#  3. pack SRC_TREE with ransfs-mkimage and run both programs over the
#     image: every file byte-exact through ransfs_read, every link target,
#     every tensor of the safetensors files through ransfs_read_tensors on
#     2 threads; the entries they list must be exactly the source tree's.
set -eu
build=$1
src=$2
here=$(dirname "$0")
tmp=$(mktemp -d /tmp/rfs-lib-install-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

cmake --install "$build" --prefix "$tmp/p" > "$tmp/install.log"
pc=$(find "$tmp/p" -name ransfs.pc)
[ -n "$pc" ] || { echo "lib_install: no ransfs.pc installed" >&2; exit 1; }
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$pc")
libdir=$(pkg-config --variable=libdir ransfs)
[ "$(cd "$libdir" && pwd -P)" = "$(cd "$(dirname "$pc")/.." && pwd -P)" ] ||
    { echo "lib_install: ransfs.pc's libdir $libdir is not where it was installed" >&2; exit 1; }
for f in "$libdir/libransfs.so.0" "$libdir/libransfs.a" \
         "$(pkg-config --variable=includedir ransfs)/ransfs.h"; do
    [ -e "$f" ] || { echo "lib_install: $f not installed" >&2; exit 1; }
done

cc=${CC:-cc}
# In a sanitizer build the library needs the sanitizer runtime in the
# program too (tests/lib/CMakeLists.txt passes the flags).
extra=${RFS_EXAMPLE_CFLAGS:-}
# shellcheck disable=SC2046,SC2086 # the flags are meant to split
$cc -std=c11 -Wall -Wextra -Werror $extra -o "$tmp/example" "$here/lib_example.c" \
    $(pkg-config --cflags --libs ransfs)
static_libs=$(pkg-config --static --libs ransfs | sed 's/-lransfs//')
# shellcheck disable=SC2046,SC2086
$cc -std=c11 -Wall -Wextra -Werror $extra -o "$tmp/example-static" "$here/lib_example.c" \
    $(pkg-config --cflags ransfs) "$libdir/libransfs.a" $static_libs
if ldd "$tmp/example-static" | grep -q libransfs; then
    echo "lib_install: the static example links libransfs.so" >&2; exit 1
fi

"$build/bin/ransfs-mkimage" "$src" "$tmp/t.rfs" > "$tmp/mkimage.log"
(cd "$src" && find . -mindepth 1 \( -type d -printf 'd /%P\n' \) -o \( -type l -printf 'l /%P\n' \) \
    -o \( -type f -printf 'f /%P\n' \)) | sort > "$tmp/want"
for prog in example example-static; do
    LD_LIBRARY_PATH=$libdir "$tmp/$prog" "$tmp/t.rfs" "$src" > "$tmp/$prog.out"
    head -1 "$tmp/$prog.out"
    grep '^[dlf] ' "$tmp/$prog.out" | sort > "$tmp/got"
    diff -u "$tmp/want" "$tmp/got" ||
        { echo "lib_install: $prog lists other entries than $src" >&2; exit 1; }
    grep '^t ' "$tmp/$prog.out" | sed "s/^/$prog: tensors /"
    if ! grep -q '^t .* [1-9]' "$tmp/$prog.out"; then
        echo "lib_install: $prog decoded no tensors" >&2; exit 1
    fi
    echo "$prog: $(wc -l < "$tmp/got") entries byte-exact"
done
