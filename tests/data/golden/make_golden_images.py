#!/usr/bin/python3
"""Build (or check) the golden images tree_v1.img, tree_hardlinks.img and
tree_stream.img.

usage: make_golden_images.py BINDIR [OUT_DIR]     write images + manifests
       make_golden_images.py --check BINDIR       repack and compare bytes

A small tree is made here from fixed seeds (no timestamps of the machine:
every mode and mtime is set), then packed with BINDIR/ransfs-mkimage -j1:

  tree_v1          a safetensors file (one coded BF16 tensor, one small F32
                   tensor stored as other bytes), an .fp16 tensor file, text
                   (zstd), random bytes (RAW), an empty file, a symlink and
                   nested directories: no hard links, so image format 1 with
                   no feature flag, as every packer since format 1 wrote it.
  tree_hardlinks   the same tree plus hard links (README.txt twice,
                   sub/weights.fp16 three times): feature HARDLINKS.
  tree_stream      tree_v1's tree packed to a pipe (IMAGE "-"): feature
                   TRAILER, a superblock stub at offset 0 and the
                   superblock at the end (docs/format.md 2.1.3).

Each image has a manifest beside it (NAME.manifest), one line per name in
depth-first name order, which test_image_reader.c checks the committed
image against byte for byte (XXH3-64 of the contents):

  d MODE MTIME_SEC MTIME_NSEC NLINK PATH
  f MODE MTIME_SEC MTIME_NSEC NLINK SIZE XXH3 PATH
  l MODE MTIME_SEC MTIME_NSEC NLINK TARGET PATH
  h FIRST_PATH PATH          (PATH is another name of FIRST_PATH's inode)

PATH "." is the root.  --check packs the tree again and requires identical
image bytes: images without hard links stay byte-identical to format 1.
"""
import ctypes
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = ("tree_v1", "tree_hardlinks", "tree_stream")
T0 = 1764000000  # fixed mtimes: T0 + k seconds, k * 1000 ns

_xxh = ctypes.CDLL("libxxhash.so.0")
_xxh.XXH3_64bits.restype = ctypes.c_uint64
_xxh.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def xxh3(data):
    return _xxh.XXH3_64bits(data, len(data))


def bf16_like(rng, n):
    """n 16-bit words shaped like bf16/fp16 weights: few exponents, any mantissa."""
    out = bytearray()
    for _ in range(n):
        v = 0x3C00 + rng.randrange(4) * 0x80 + rng.randrange(0x80) + rng.randrange(2) * 0x8000
        out += struct.pack("<H", v)
    return bytes(out)


def safetensors(rng):
    w = bf16_like(rng, 64 * 64)
    b = bytes(rng.randrange(256) for _ in range(16 * 4))
    hdr = ('{"__metadata__":{"format":"pt"},'
           '"b":{"dtype":"F32","shape":[16],"data_offsets":[0,64]},'
           '"w":{"dtype":"BF16","shape":[64,64],"data_offsets":[64,%d]}}' % (64 + len(w)))
    h = hdr.encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b + w


def text(n):
    words = b"the quick brown fox jumps over the lazy dog 0123456789\n"
    return bytes(words[(i * 7 + i // 55) % len(words)] for i in range(n))


def build_tree(root, hardlinks):
    """Make the golden source tree under root (which must not exist)."""
    rng = random.Random(20261202)
    files = [  # path, mode, bytes
        ("README.txt", 0o644, text(3000)),
        ("model.safetensors", 0o644, safetensors(rng)),
        ("sub/weights.fp16", 0o640, bf16_like(rng, 4096)),
        ("sub/noise.bin", 0o600, bytes(rng.randrange(256) for _ in range(2000))),
        ("sub/deep/run.sh", 0o755, b"#!/bin/sh\necho golden\n"),
        ("empty", 0o644, b""),
    ]
    dirs = [("sub/deep", 0o750), ("sub", 0o755), (".", 0o755)]  # deepest first
    os.makedirs(os.path.join(root, "sub/deep"))
    for k, (path, mode, data) in enumerate(files):
        full = os.path.join(root, path)
        with open(full, "wb") as f:
            f.write(data)
        os.chmod(full, mode)
        os.utime(full, ns=((T0 + k) * 10**9 + k * 1000,) * 2)
    os.symlink("sub/weights.fp16", os.path.join(root, "link"))
    os.utime(os.path.join(root, "link"), ns=((T0 + 20) * 10**9,) * 2, follow_symlinks=False)
    if hardlinks:
        for first, other in (("README.txt", "sub/deep/README.again"),
                             ("sub/weights.fp16", "w2.fp16"),
                             ("sub/weights.fp16", "sub/deep/w3.fp16")):
            os.link(os.path.join(root, first), os.path.join(root, other))
    for k, (path, mode) in enumerate(dirs):
        full = os.path.join(root, path)
        os.chmod(full, mode)
        os.utime(full, ns=((T0 + 30 + k) * 10**9 + 7,) * 2)


def manifest(root):
    """The manifest lines of the tree under root (see the module doc)."""
    lines, first = [], {}

    def walk(rel):
        full = os.path.join(root, rel)
        st = os.lstat(full)
        head = "%o %d %d %d" % (st.st_mode & 0o7777, st.st_mtime_ns // 10**9,
                                st.st_mtime_ns % 10**9, st.st_nlink)
        key = (st.st_dev, st.st_ino)
        if os.path.islink(full):
            lines.append("l %s %s %s" % (head, os.readlink(full), rel))
        elif os.path.isdir(full):
            lines.append("d %s %s" % (head, rel))
            for name in sorted(os.listdir(full), key=os.fsencode):
                walk(name if rel == "." else rel + "/" + name)
        elif key in first:
            lines.append("h %s %s" % (first[key], rel))
        else:
            first[key] = rel
            with open(full, "rb") as f:
                data = f.read()
            lines.append("f %s %d %016x %s" % (head, len(data), xxh3(data), rel))

    walk(".")
    # A directory's nlink as the image gives it (2 + subdirectories) is what
    # Linux reports too, so the manifest holds the source's own counts.
    return "".join(l + "\n" for l in lines)


def pack(bindir, name, work):
    src = os.path.join(work, name)
    build_tree(src, name == "tree_hardlinks")
    if name == "tree_stream":  # a pipe on standard output: a TRAILER stream
        p = subprocess.run([os.path.join(bindir, "ransfs-mkimage"), "-q", "-j1", src, "-"],
                           stdout=subprocess.PIPE, check=True)
        return p.stdout, manifest(src)
    img = os.path.join(work, name + ".img")
    subprocess.run([os.path.join(bindir, "ransfs-mkimage"), "-q", "-j1", src, img], check=True)
    with open(img, "rb") as f:
        return f.read(), manifest(src)


def main():
    check = sys.argv[1] == "--check"
    bindir = sys.argv[2] if check else sys.argv[1]
    out = HERE if check or len(sys.argv) < 3 else sys.argv[2]
    work = tempfile.mkdtemp(prefix="rfs-golden-")
    bad = 0
    try:
        for name in NAMES:
            img, man = pack(bindir, name, work)
            if not check:
                with open(os.path.join(out, name + ".img"), "wb") as f:
                    f.write(img)
                with open(os.path.join(out, name + ".manifest"), "w") as f:
                    f.write(man)
                continue
            with open(os.path.join(out, name + ".img"), "rb") as f:
                same = f.read() == img
            with open(os.path.join(out, name + ".manifest")) as f:
                same_man = f.read() == man
            print("%s: image %s, manifest %s" % (name, "identical" if same else "DIFFERS",
                                                 "identical" if same_man else "DIFFERS"))
            bad += not (same and same_man)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
