#!/usr/bin/python3
"""Tool-level tests of ransfs-mkimage, ransfs-fsck and ransfs-dump.

usage: image_tools.py --bin BINDIR --mini DIR --corpus DIR TEST
       image_tools.py --list

Each t_NAME function below is the CTest case image_NAME (tests/pylib/
rfs_testlib.py; @test renames one or names its data set, DIR: "mini" is
tests/data/human32-mini, "corpus" the shared corpus's human32-st):
  roundtrip_data      mkimage DIR, fsck --extract, compare the trees
  roundtrip_corpus    the same on the full corpus; exit 77 (skip) when absent
  roundtrip_raw(_mini) raw layer_N.f32/.fp16/.bf16 files derived from DIR's
                      safetensors, round-tripped
  roundtrip_synthetic edge cases: tile boundaries, empty files, zero-element
                      tensors, nested dirs, symlinks, json, duplicates, ...
  determinism         -j1, -j2 and -j4 give identical bytes
  big_groups          tensors of 256 MiB and more (read while the one before
                      is written): -j1 == -j2, and fsck --compare finds the
                      source
  bad_input           every malformed input: message, exit status, no file left
  signal              SIGINT while packing leaves no file behind
  fsck_corrupt        a flipped data byte is reported by fsck with the file
  fsck_threads        fsck -j1 and -j4 print the same, on good and bad images
  encoder_scalar      RANSFS_CPU=scalar packs the same bytes as the SIMD encoder
  fault_change        a source file truncated, grown, rewritten or deleted
                      while mkimage runs (stopped with SIGSTOP after its
                      plan): one error line naming it, no crash, no image
  fault_unreadable    a file and a directory that cannot be read (as root:
                      mkimage runs as uid 65534 on a mode-000 file/dir)
  fault_disk_full     pack into a 2 MiB tmpfs (root; exit 77 when mount
                      fails): "No space left on device", no file left
  tools_extract       fsck --extract DIR IMAGE PATH...; -f; refusals
  tools_extract_full  --extract into a full tmpfs leaves nothing (root)
  tools_compare       fsck --compare DIR IMAGE: each kind of difference
  tools_ls            dump --ls against ls -lgo --time-style=long-iso
  tools_json_names    dump --json with non-UTF-8 names: valid, recoverable
  tools_deep          a 600-deep tree through every tool
  tools_usage         --version, exit 2, a FIFO as IMAGE
  tools_truncated     fsck and dump on an image truncated under them
  golden_images       tests/data/golden/tree_*.img: packing their trees again
                      gives the committed bytes (images without hard links
                      are format 1 as first written), and fsck --extract of
                      each gives the tree back, hard links included
  stream              IMAGE - on a pipe: a TRAILER image, no temporary file,
                      read by every tool and the mount; damage refused
  hardlinks           a tree with hard links (names in one and in several
                      directories, one whose other name is outside SOURCE):
                      fsck --extract recreates each link, nlink as in SOURCE

Comparison covers type, content, permission bits, mtime (ns) and symlink
targets of every entry.  Only the standard library and numpy are used.
"""
import argparse
import collections
import filecmp
import hashlib
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
import rfs_testlib  # noqa: E402
from rfs_testlib import SKIP, list_if_asked, lookup, test  # noqa: E402

TILE = 262144

# In sanitizer builds a report must never pass for the tools' own exit 1
# (bad input, damage found): give sanitizers exit codes no tool uses.
os.environ.setdefault("ASAN_OPTIONS", "exitcode=86")
os.environ.setdefault("LSAN_OPTIONS", "exitcode=87")
os.environ.setdefault("UBSAN_OPTIONS", "halt_on_error=1:exitcode=88")


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def run(args, expect=0):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       errors="surrogateescape")  # names are bytes
    if expect is not None and p.returncode != expect:
        raise Fail("%s: exit %d (wanted %d)\nstdout: %s\nstderr: %s" %
                   (" ".join(args), p.returncode, expect, p.stdout[-2000:], p.stderr[-2000:]))
    return p


def tree(root):
    """path -> (type, perm, mtime_ns, content or link target) for the tree."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            if os.path.islink(full):
                out[rel] = ("l", None, st.st_mtime_ns, os.readlink(full))
            elif os.path.isdir(full):
                out[rel] = ("d", st.st_mode & 0o7777, st.st_mtime_ns, None)
            elif os.path.isfile(full):
                with open(full, "rb") as f:
                    out[rel] = ("f", st.st_mode & 0o7777, st.st_mtime_ns, f.read())
    st = os.stat(root)
    out["."] = ("d", st.st_mode & 0o7777, st.st_mtime_ns, None)
    return out


def compare(a, b, skip=()):
    ta, tb = tree(a), tree(b)
    for k in skip:
        ta.pop(k, None)
    check(sorted(ta) == sorted(tb), "entries differ: only in source %s, only in copy %s" %
          (sorted(set(ta) - set(tb))[:5], sorted(set(tb) - set(ta))[:5]))
    for k in ta:
        x, y = ta[k], tb[k]
        check(x[0] == y[0], "%s: type %s vs %s" % (k, x[0], y[0]))
        check(x[3] == y[3], "%s: content or link target differs" % k)
        if x[0] != "l":
            check(x[1] == y[1], "%s: mode %o vs %o" % (k, x[1], y[1]))
        check(x[2] == y[2], "%s: mtime %d vs %d" % (k, x[2], y[2]))
    return len(ta)


def roundtrip(b, src, work, extra=(), skip=()):
    img = os.path.join(work, "t.img")
    out = os.path.join(work, "out")
    shutil.rmtree(out, ignore_errors=True)
    p = run([b("ransfs-mkimage"), "--json", "--force", *extra, src, img])
    summary = json.loads(p.stdout)
    for key in ("input_bytes", "image_bytes", "ratio", "files", "tensors", "seconds"):
        check(key in summary, "--json lacks %s" % key)
    run([b("ransfs-fsck"), "-q", img, "--extract", out])
    n = compare(src, out, skip)
    if not skip:
        run([b("ransfs-fsck"), "-q", "--compare", src, img])
    d = json.loads(run([b("ransfs-dump"), "--json", img]).stdout)
    check(d["totals"]["image_bytes"] == os.path.getsize(img), "dump: image size")
    run([b("ransfs-dump"), img])
    print("round trip %s: %d entries, %d -> %d bytes (ratio %.4f), %d tensors" %
          (src, n, summary["input_bytes"], summary["image_bytes"], summary["ratio"],
           summary["tensors"]))
    return img, summary


# ---------------------------------------------------------------- data

def st_write(path, tensors, pad=0, meta=True):
    """Write a safetensors file; tensors: list of (name, dtype, shape, bytes)."""
    hdr, blob = {}, bytearray()
    if meta:
        hdr["__metadata__"] = {"format": "pt"}
    for name, dtype, shape, data in tensors:
        hdr[name] = {"dtype": dtype, "shape": list(shape),
                     "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
        blob += b"\0" * pad
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + bytes(blob))


def st_load(path):
    """(header, data) of a safetensors file: its JSON header as a dict and
    the bytes after it (what data_offsets index)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)), f.read()


def st_read_f32(path):
    hdr, data = st_load(path)
    out = []
    for k, v in hdr.items():
        if k != "__metadata__" and v["dtype"] == "F32":
            b, e = v["data_offsets"]
            out.append((b, np.frombuffer(data[b:e], dtype="<f4")))
    return [a for _, a in sorted(out, key=lambda t: t[0])]


def to_bf16(a):
    """float32 -> bfloat16 bits, round to nearest even (NaN kept quiet)."""
    u = a.astype("<f4").view("<u4").astype(np.uint64)
    r = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = np.isnan(a)
    r[nan] = (u[nan] >> 16) | 0x40
    return r.astype("<u2")


def st_to_bf16(src, dst):
    """Write safetensors file dst as src with every F32 tensor rounded to
    BF16 (to_bf16); other tensors, names and data order kept."""
    hdr, data = st_load(src)
    out = []
    for k, v in sorted(((k, v) for k, v in hdr.items() if k != "__metadata__"),
                       key=lambda kv: kv[1]["data_offsets"][0]):
        x = data[v["data_offsets"][0]:v["data_offsets"][1]]
        if v["dtype"] == "F32":
            out.append((k, "BF16", v["shape"], to_bf16(np.frombuffer(x, "<f4")).tobytes()))
        else:
            out.append((k, v["dtype"], v["shape"], x))
    st_write(dst, out)


def gaussian(rng, n, std=0.02):
    return (rng.standard_normal(n) * std).astype("<f4")


def make_synthetic(root, rng):
    os.makedirs(os.path.join(root, "a", "b", "c", "d"))
    os.makedirs(os.path.join(root, "empty-dir"))
    g = gaussian(rng, 3 * TILE // 4 + 5)
    special = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-45, -1e-40, 3.4e38], dtype="<f4")
    tensors = [
        ("embed.weight", "BF16", [TILE // 2 + 3], to_bf16(gaussian(rng, TILE // 2 + 3)).tobytes()),
        ("lm_head.weight", "BF16", [TILE // 2 + 3], None),  # tied: same bytes as embed
        ("exact_tile", "F16", [TILE // 2], gaussian(rng, TILE // 2).astype("<f2").tobytes()),
        ("tile_minus_1", "U8", [TILE - 1], rng.integers(0, 7, TILE - 1, dtype=np.uint8).tobytes()),
        ("tile_plus_1", "I8", [TILE + 1], rng.integers(-3, 3, TILE + 1, dtype=np.int8).tobytes()),
        ("f32.multi", "F32", [len(g)], g.tobytes()),
        ("specials", "F32", [64, 7], np.tile(special, 64).tobytes()),
        ("zeros", "F32", [4096], bytes(4 * 4096)),
        ("const", "F16", [5000], np.full(5000, 0.5, dtype="<f2").tobytes()),
        ("empty", "F32", [0, 16], b""),
        ("scalar", "F32", [], struct.pack("<f", 1.5)),
        ("fp8", "F8_E4M3", [9000], rng.integers(0, 256, 9000, dtype=np.uint8).tobytes()),
        ("fp8b", "F8_E5M2", [5000], rng.integers(60, 70, 5000, dtype=np.uint8).tobytes()),
        ("ids", "I64", [700], np.arange(700, dtype="<i8").tobytes()),
        ("f64", "F64", [600], rng.standard_normal(600).tobytes()),
    ]
    tensors[1] = (tensors[1][0], tensors[1][1], tensors[1][2], tensors[0][3])
    st_write(os.path.join(root, "model.safetensors"), tensors)
    st_write(os.path.join(root, "a", "padded.safetensors"),
             [(n, d, s, b) for n, d, s, b in tensors if n in ("f32.multi", "zeros", "ids")], pad=8)
    # an identical copy of a shard, and a copy in another dir
    shutil.copy(os.path.join(root, "model.safetensors"), os.path.join(root, "a", "b", "copy.safetensors"))
    # dedup: files of one size with the same first 4 KiB but other last bytes
    # (not copies), small equal files, and a copy among files of one size
    dd = os.path.join(root, "dedup")
    os.makedirs(dd)
    head = rng.integers(0, 256, 3 * 4096, dtype=np.uint8).tobytes()
    for i in range(3):
        with open(os.path.join(dd, "head%d.bin" % i), "wb") as f:
            f.write(head[:-1] + bytes([i]))
    for name in ("small_a.txt", "small_b.txt"):
        with open(os.path.join(dd, name), "w") as f:
            f.write("the same small text\n")
    shutil.copy(os.path.join(dd, "head1.bin"), os.path.join(dd, "head1_copy.bin"))
    gl = gaussian(rng, TILE // 2 + 1)
    gl.astype("<f2").tofile(os.path.join(root, "a", "layer_0.fp16"))
    to_bf16(gl).tofile(os.path.join(root, "a", "layer_0.bf16"))
    gl.tofile(os.path.join(root, "a", "b", "layer_0.f32"))
    gl[:1000].tofile(os.path.join(root, "a", "b", "layer_1.fp32"))
    gl[:10].tofile(os.path.join(root, "a", "b", "tiny.f32"))
    open(os.path.join(root, "a", "empty.fp16"), "wb").close()
    open(os.path.join(root, "empty.txt"), "wb").close()
    with open(os.path.join(root, "config.json"), "w") as f:
        json.dump({"hidden_size": 4096, "num_layers": 32, "torch_dtype": "bfloat16"}, f, indent=2)
    vocab = {"tok%d" % i: i for i in range(60000)}
    with open(os.path.join(root, "tokenizer.json"), "w") as f:
        json.dump({"model": {"vocab": vocab}}, f)
    with open(os.path.join(root, "a", "b", "c", "d", "random.bin"), "wb") as f:
        f.write(rng.integers(0, 256, 3 * TILE + 17, dtype=np.uint8).tobytes())
    with open(os.path.join(root, "a", "b", "c", "README.md"), "w") as f:
        f.write("# synthetic\n" * 100)
    os.symlink("config.json", os.path.join(root, "link-to-config"))
    os.symlink("a/b", os.path.join(root, "link-to-dir"))
    os.symlink("/nonexistent/target", os.path.join(root, "a", "dangling"))
    os.symlink("../../" + "x" * 200, os.path.join(root, "a", "b", "long-link"))
    os.chmod(os.path.join(root, "config.json"), 0o600)
    os.chmod(os.path.join(root, "a", "layer_0.fp16"), 0o755)
    os.chmod(os.path.join(root, "a", "b", "c", "README.md"), 0o444)
    os.chmod(os.path.join(root, "empty-dir"), 0o700)
    # mtimes with nanoseconds, set bottom-up so directories keep theirs
    t = 1700000000
    for i, (dirpath, dirs, files) in enumerate(sorted(os.walk(root), key=lambda w: -len(w[0]))):
        for j, name in enumerate(sorted(files + dirs)):
            os.utime(os.path.join(dirpath, name), ns=(t * 10**9, (t - i * 1000 - j) * 10**9 + 123456789 + j),
                     follow_symlinks=False)
        os.utime(dirpath, ns=(t * 10**9, (t - 5000 - i) * 10**9 + 987654321))


def copies(root):
    """Non-empty regular files under root that repeat an earlier one's bytes."""
    seen = collections.Counter()
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path) and os.path.getsize(path) > 0:
                with open(path, "rb") as f:
                    seen[hashlib.sha256(f.read()).digest()] += 1
    return sum(n - 1 for n in seen.values())


# ---------------------------------------------------------------- tests

@test("roundtrip_data", arg="mini")
def t_roundtrip(b, work, src):
    roundtrip(b, src, work)
    roundtrip(b, src, work, ("--codec=raw",))
    roundtrip(b, src, work, ("--tile-size", "64K", "-j", "2"))


@test("roundtrip_corpus", arg="corpus")
def t_corpus(b, work, src):
    if not os.path.isdir(src):
        print("SKIP: corpus %s not present" % src)
        return SKIP
    img, s = roundtrip(b, src, work)
    check(s["ratio"] < 0.9, "corpus ratio %.4f unexpectedly poor" % s["ratio"])


@test("roundtrip_raw", arg="corpus")
@test("roundtrip_raw_mini", arg="mini")
def t_raw(b, work, src):
    st = os.path.join(src, "model.safetensors")
    if not os.path.exists(st):
        print("SKIP: %s not present" % st)
        return SKIP
    d = os.path.join(work, "raw")
    os.makedirs(d)
    arrays = st_read_f32(st)
    for i, a in enumerate(arrays):
        a.tofile(os.path.join(d, "layer_%d.f32" % i))
        a.astype("<f2").tofile(os.path.join(d, "layer_%d.fp16" % i))
        to_bf16(a).tofile(os.path.join(d, "layer_%d.bf16" % i))
    img, s = roundtrip(b, d, work)
    check(s["tensors"] > 0, "no tensors coded")
    by = s["by_dtype"]
    for k in ("F16", "BF16", "F32"):
        check(k in by, "no %s tensors coded" % k)
        print("  %s: ratio %.4f" % (k, by[k]["stored_bytes"] / by[k]["input_bytes"]))


@test("roundtrip_synthetic")
def t_synthetic(b, work, _):
    rng = np.random.default_rng(1234)
    src = os.path.join(work, "src")
    make_synthetic(src, rng)
    img, s = roundtrip(b, src, work)
    check(s["duplicate_files"] == copies(src),
          "%d duplicate files stored once, %d expected" % (s["duplicate_files"], copies(src)))
    check(s["duplicate_tensors"] >= 1, "tied tensor not stored once")
    roundtrip(b, src, work, ("--tile-size", "65536"))
    roundtrip(b, src, work, ("--tile-size", "4M", "--codec=raw"))
    # a single file as SOURCE
    one = os.path.join(src, "model.safetensors")
    img = os.path.join(work, "one.img")
    out = os.path.join(work, "one")
    run([b("ransfs-mkimage"), "-q", one, img])
    run([b("ransfs-fsck"), "-q", img, "--extract", out])
    with open(one, "rb") as f, open(os.path.join(out, "model.safetensors"), "rb") as g:
        check(f.read() == g.read(), "single-file source differs")
    # special files: warned, skipped; a hard link: kept (see t_hardlinks)
    os.mkfifo(os.path.join(src, "a", "fifo"))
    os.link(os.path.join(src, "config.json"), os.path.join(src, "a", "zz-hardlink.json"))
    p = run([b("ransfs-mkimage"), "-q", "-f", src, img])
    check("fifo: special file" in p.stderr, "no warning for a fifo: " + p.stderr)
    check("hard link" not in p.stderr, "a warning for a hard link: " + p.stderr)
    out2 = os.path.join(work, "out2")
    run([b("ransfs-fsck"), "-q", img, "--extract", out2])
    check(not os.path.exists(os.path.join(out2, "a", "fifo")), "fifo was packed")
    check(os.path.samefile(os.path.join(out2, "config.json"),
                           os.path.join(out2, "a", "zz-hardlink.json")), "hard link not kept")


@test(arg="mini")
def t_determinism(b, work, src):
    if not os.path.isdir(src):
        return SKIP
    imgs = []
    for j in ("1", "2", "4"):
        img = os.path.join(work, "j%s.img" % j)
        run([b("ransfs-mkimage"), "-q", "-j", j, src, img])
        with open(img, "rb") as f:
            imgs.append(f.read())
    check(imgs[0] == imgs[1] == imgs[2], "images differ between -j1, -j2 and -j4")
    syn = os.path.join(work, "syn")
    make_synthetic(syn, np.random.default_rng(7))
    a, c = os.path.join(work, "s1.img"), os.path.join(work, "s4.img")
    run([b("ransfs-mkimage"), "-q", "-j1", "--tile-size", "64K", syn, a])
    run([b("ransfs-mkimage"), "-q", "-j4", "--tile-size", "64K", syn, c])
    with open(a, "rb") as f, open(c, "rb") as g:
        check(f.read() == g.read(), "synthetic images differ between -j1 and -j4")
    print("determinism: ok (%d bytes)" % len(imgs[0]))


def sanitized(path):
    """Whether the binary at path is an AddressSanitizer build."""
    p = subprocess.run(["ldd", path], capture_output=True, text=True)
    return "libasan" in p.stdout


def peak_rss_mib(args):
    """Run args (exit 0 wanted); its peak RSS in MiB (wait4's ru_maxrss)."""
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    check(p.returncode == 0, "%s: exit %d: %s" % (" ".join(args), p.returncode, err[-2000:]))
    return ru.ru_maxrss / 1024.0


@test()
def t_big_groups(b, work, _):
    """Tensors of PK_GROUP_BIG (256 MiB) and more are read one at a time,
    each while the one before is still being written; a small tensor comes
    after them.  Every 16 MiB block differs (its low bytes XORed
    with its own value), so no tile is a duplicate and every one is encoded.
    With three big tensors the packer must hold at most two buffers of the
    largest one's size (it held one per slot, three, before): its peak RSS
    stays below 2.4 times the largest tensor (not checked under ASan, whose
    quarantine keeps freed buffers mapped)."""
    rng = np.random.default_rng(5)
    base = to_bf16(gaussian(rng, 8 << 20))
    src = os.path.join(work, "big")
    os.makedirs(src)
    for i, mib in enumerate((256, 264, 256)):
        with open(os.path.join(src, "layer_%d.bf16" % i), "wb") as f:
            for k in range(mib // 16):
                (base ^ np.uint16(1 + 17 * i + k)).tofile(f)
    gaussian(rng, 2 << 20).tofile(os.path.join(src, "layer_3.f32"))  # a group of its own
    imgs, rss = [], {}
    for j in ("1", "2"):
        img = os.path.join(work, "big%s.img" % j)
        rss[j] = peak_rss_mib([b("ransfs-mkimage"), "-q", "-j", j, src, img])
        imgs.append(img)
    check(filecmp.cmp(imgs[0], imgs[1], shallow=False), "big tensors: -j1 and -j2 images differ")
    p = run([b("ransfs-fsck"), "-q", "--compare", src, imgs[1]])
    check(p.stdout == "" and not p.stderr, "big tensors: " + p.stdout + p.stderr)
    if sanitized(b("ransfs-mkimage")):
        note = "peak RSS %.0f / %.0f MiB, not checked under ASan" % (rss["1"], rss["2"])
    else:
        for j in rss:
            check(rss[j] < 2.4 * 264, "big tensors: -j%s peak RSS %.0f MiB, over 2.4 x the "
                  "largest tensor (264 MiB)" % (j, rss[j]))
        note = "peak RSS -j1 %.0f MiB, -j2 %.0f MiB" % (rss["1"], rss["2"])
    print("big_groups: ok (%d bytes; %s)" % (os.path.getsize(imgs[1]), note))


@test(arg="mini")
def t_encoder_scalar(b, work, src):
    """RANSFS_CPU=scalar forces the scalar encoder: its image is byte for
    byte the default (SIMD) encoder's."""
    with open("/proc/cpuinfo") as f:
        flags = set(next((l for l in f if l.startswith("flags")), "").split())
    if not {"avx2", "bmi2"} <= flags:
        print("SKIP: no AVX2 here, the default encoder is the scalar one")
        return SKIP
    imgs = []
    for cpu in ("", "scalar"):
        os.environ["RANSFS_CPU"] = cpu
        imgs.append(os.path.join(work, "%s.img" % (cpu or "default")))
        run([b("ransfs-mkimage"), "-q", src, imgs[-1]])
    del os.environ["RANSFS_CPU"]
    with open(imgs[0], "rb") as f0, open(imgs[1], "rb") as f1:
        check(f0.read() == f1.read(), "the scalar encoder's image differs from the default's")
    print("encoder_scalar: ok, %d bytes identical" % os.path.getsize(imgs[0]))


def leftovers(d):
    return [n for n in os.listdir(d) if n.startswith("out.img")]


def expect_error(b, work, src, needle, status=1, image=None, extra=(), strict=False):
    img = image or os.path.join(work, "outdir", "out.img")
    if image is None:
        os.makedirs(os.path.dirname(img), exist_ok=True)
    if strict:
        extra = ("--strict", *extra)
    p = run([b("ransfs-mkimage"), "-q", *extra, src, img], expect=status)
    lines = p.stderr.strip().splitlines()
    check(len(lines) == 1, "want one error line, got: %r" % p.stderr)
    check(needle in lines[0], "error %r lacks %r" % (lines[0], needle))
    check(lines[0].startswith("ransfs-mkimage: "), "error lacks the program name")
    if image is None:
        check(leftovers(os.path.dirname(img)) == [], "left behind: %s" % leftovers(os.path.dirname(img)))
    print("ok: %s" % lines[0])


def bad_st(work, name, raw=None, header=None, data=b""):
    d = os.path.join(work, name)
    os.makedirs(d)
    path = os.path.join(d, "model.safetensors")
    with open(path, "wb") as f:
        if raw is not None:
            f.write(raw)
        else:
            h = header.encode() if isinstance(header, str) else json.dumps(header).encode()
            f.write(struct.pack("<Q", len(h)) + h + data)
    return d, path


def t_bad_input(b, work, _):
    expect_error(b, work, os.path.join(work, "missing"), "missing: cannot read source")
    d, p = bad_st(work, "badjson", header='{"a": {"dtype": "F32", ')
    expect_error(b, work, d, strict=True, needle=p + ": safetensors header is not a valid JSON object")
    d, p = bad_st(work, "range", header={"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
                  data=bytes(8))
    expect_error(b, work, d, strict=True, needle=p + ": tensor 'w': data_offsets [0, 16] out of range")
    d, p = bad_st(work, "overlap", header={
        "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, data=bytes(24))
    expect_error(b, work, d, strict=True, needle=p + ": tensors 'a' and 'b' overlap")
    d, p = bad_st(work, "unsorted", header={"a": {"dtype": "F32", "shape": [2], "data_offsets": [16, 8]}},
                  data=bytes(24))
    expect_error(b, work, d, strict=True, needle=p + ": tensor 'a': data_offsets [16, 8] are unsorted")
    d, p = bad_st(work, "hdrlen", raw=struct.pack("<Q", 1000) + b"{}")
    expect_error(b, work, d, strict=True, needle=p + ": safetensors header length 1000 runs past the end of the file")
    d, p = bad_st(work, "short", raw=b"\x01\x02")
    expect_error(b, work, d, strict=True, needle=p + ": too short for a safetensors header")
    d, p = bad_st(work, "shape", header={"a": {"dtype": "F16", "shape": [3], "data_offsets": [0, 8]}},
                  data=bytes(8))
    expect_error(b, work, d, strict=True, needle=p + ": tensor 'a': 8 bytes do not match shape x F16")
    d, p = bad_st(work, "noobj", header='[1, 2, 3]')
    expect_error(b, work, d, strict=True, needle=p + ": safetensors header is not a valid JSON object")
    d = os.path.join(work, "odd")
    os.makedirs(d)
    with open(os.path.join(d, "layer_3.fp16"), "wb") as f:
        f.write(bytes(4097))
    expect_error(b, work, d, os.path.join(d, "layer_3.fp16") + ": size 4097 is not a multiple of the 2-byte",
                 strict=True)
    with open(os.path.join(d, "x.f32"), "wb") as f:
        f.write(bytes(4 * 100 + 2))
    expect_error(b, work, os.path.join(d, "x.f32"), "x.f32: size 402 is not a multiple of the 4-byte",
                 strict=True)
    good = os.path.join(work, "good")
    os.makedirs(good)
    with open(os.path.join(good, "f.txt"), "w") as f:
        f.write("hello\n")
    expect_error(b, work, good, "nonexistent-dir/x.img: cannot create the image",
                 image=os.path.join(work, "nonexistent-dir", "x.img"))
    expect_error(b, work, good, "tile size 1000 is not a power of two", extra=("--tile-size", "1000"))
    expect_error(b, work, good, "tile size 8388608 is not a power of two", extra=("--tile-size", "8M"))
    if os.geteuid() != 0:
        locked = os.path.join(work, "locked")
        os.makedirs(locked)
        with open(os.path.join(locked, "secret"), "w") as f:
            f.write("x")
        os.chmod(os.path.join(locked, "secret"), 0)
        expect_error(b, work, locked, "secret: cannot read")
        ro = os.path.join(work, "ro")
        os.makedirs(ro)
        os.chmod(ro, 0o555)
        expect_error(b, work, good, "cannot create the image", image=os.path.join(ro, "x.img"))
    else:
        print("note: running as root, permission cases skipped")
    p = run([b("ransfs-mkimage")], expect=2)
    check("usage" in p.stderr, "no usage text")
    p = run([b("ransfs-fsck"), os.path.join(good, "f.txt")], expect=1)
    check("bad magic" in p.stderr or "shorter than" in p.stderr, p.stderr)


def t_signal(b, work, _):
    # Sparse all-zero tensors: cheap to make, and big enough (16 GiB) that
    # packing them with -j1 takes seconds however fast the encoder gets.
    src = os.path.join(work, "big")
    os.makedirs(src)
    for i in range(4):
        with open(os.path.join(src, "layer_%d.f32" % i), "wb") as f:
            f.truncate(4 << 30)
    out = os.path.join(work, "outdir")
    os.makedirs(out)
    for sig in (signal.SIGINT, signal.SIGTERM):
        p = subprocess.Popen([b("ransfs-mkimage"), "-q", "-j1", src, os.path.join(out, "out.img")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # Signal once the temporary image exists, so the packer is mid-write.
        deadline = time.time() + 30
        while not os.listdir(out) and p.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        p.send_signal(sig)
        p.wait()
        check(p.returncode != 0, "mkimage finished before the signal; make the input bigger")
        check(os.listdir(out) == [], "left behind after %s: %s" % (sig, os.listdir(out)))
    print("signal: ok")


@test(arg="mini")
def t_fsck_corrupt(b, work, src):
    img = os.path.join(work, "c.img")
    run([b("ransfs-mkimage"), "-q", src, img])
    info = json.loads(run([b("ransfs-dump"), "--json", img]).stdout)
    size = os.path.getsize(img)
    with open(img, "rb") as f:
        data = bytearray(f.read())
    # a byte in the data region (after the 512-byte superblock, inside the tensors)
    pos = 512 + (size - info["totals"]["metadata_bytes"]) // 2
    data[pos] ^= 0x40
    bad = os.path.join(work, "bad.img")
    with open(bad, "wb") as f:
        f.write(data)
    p = run([b("ransfs-fsck"), bad], expect=1)
    check("checksum" in p.stderr and "model.safetensors" in p.stderr, p.stderr)
    p = run([b("ransfs-fsck"), bad, "--extract", os.path.join(work, "x")], expect=1)
    # metadata corruption: refused at open
    data[pos] ^= 0x40
    data[size - 3] ^= 1
    with open(bad, "wb") as f:
        f.write(data)
    p = run([b("ransfs-fsck"), bad], expect=1)
    check("checksum mismatch" in p.stderr, p.stderr)
    print("fsck: %s" % p.stderr.strip())


def fault_source(work, name, files=12, mb=8):
    """A tree of f32 layers (files x mb MiB) and a last file 'z-last.f32'."""
    src = os.path.join(work, name)
    os.makedirs(src)
    rng = np.random.default_rng(11)
    for i in range(files):
        gaussian(rng, mb << 18).tofile(os.path.join(src, "layer_%02d.f32" % i))
    gaussian(rng, 1 << 20).tofile(os.path.join(src, "z-last.f32"))
    return src


def run_stopped(b, src, img, action, *extra):
    """Start mkimage -j1; once its plan is done (the temporary image holds the
    superblock), SIGSTOP it, apply action(), SIGCONT.  Returns (rc, stderr)
    or None when mkimage finished before it could be stopped."""
    d = os.path.dirname(img)
    p = subprocess.Popen([b("ransfs-mkimage"), "-q", "-j1", *extra, src, img],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stopped = False
    while p.poll() is None:
        tmps = [n for n in os.listdir(d) if n.startswith(os.path.basename(img) + ".tmp.")]
        try:
            if tmps and os.path.getsize(os.path.join(d, tmps[0])) >= 512:
                p.send_signal(signal.SIGSTOP)
                stopped = os.path.exists(os.path.join(d, tmps[0]))
                break
        except FileNotFoundError:
            pass
        time.sleep(0.0005)
    if stopped:
        action()
        p.send_signal(signal.SIGCONT)
    else:
        p.send_signal(signal.SIGCONT)
    err = p.communicate()[1]
    return (p.returncode, err) if stopped else None


def t_fault_change(b, work, _):
    src = fault_source(work, "src")
    out = os.path.join(work, "outdir")
    os.makedirs(out)
    img = os.path.join(out, "out.img")
    last = os.path.join(src, "z-last.f32")
    first = os.path.join(src, "layer_00.f32")
    size = os.path.getsize(last)

    def truncate():
        os.truncate(last, size // 3)

    def grow():
        with open(last, "ab") as f:
            f.write(bytes(4096))

    def rewrite():  # same size, new bytes, new mtime
        with open(first, "r+b") as f:
            f.write(b"\x7f" * 64)
        st = os.stat(first)
        os.utime(first, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))

    def rewrite_same_mtime():  # same size, new bytes, the old mtime put back (cp -p)
        st = os.stat(first)
        with open(first, "r+b") as f:
            f.write(b"\x3f" * 64)
        os.utime(first, ns=(st.st_atime_ns, st.st_mtime_ns))

    def vanish():
        os.unlink(last)

    cases = [("truncate", truncate, last, ("truncated during packing", "changed size")),
             ("grow", grow, last, ("changed size",)),
             ("rewrite", rewrite, first, ("modified during packing",)),
             ("rewrite, mtime kept", rewrite_same_mtime, first, ("modified during packing",)),
             ("vanish", vanish, last, ("vanished during packing",))]
    for what, action, victim, needles in cases:
        backup = os.path.join(work, "backup")
        shutil.copy2(victim, backup)
        r = run_stopped(b, src, img, action)
        check(r is not None, "%s: mkimage finished before it could be stopped" % what)
        rc, err = r
        lines = err.strip().splitlines()
        check(rc == 1, "%s: exit %d (wanted 1; a negative one is a signal): %s" % (what, rc, err))
        check(len(lines) == 1 and victim in lines[0] and any(n in lines[0] for n in needles),
              "%s: wanted one line naming %s with %s, got %r" % (what, victim, needles, err))
        check(os.listdir(out) == [], "%s: left behind: %s" % (what, os.listdir(out)))
        print("ok %s: %s" % (what, lines[0]))
        os.replace(backup, victim)
    run([b("ransfs-mkimage"), "-q", src, img])  # the restored tree packs
    os.unlink(img)
    # Cut a file while mkimage is reading it (where a mapped source would
    # SIGBUS): one 160 MiB file of other bytes (zstd blocks, read a few
    # groups of 8 MiB ahead of the writer), stopped once 4 MiB of image are
    # written, cut to 120 MiB.
    shutil.rmtree(src)
    os.makedirs(src)
    big = os.path.join(src, "big.bin")
    gaussian(np.random.default_rng(12), 40 << 20).tofile(big)
    p = subprocess.Popen([b("ransfs-mkimage"), "-q", "-j1", src, img],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stopped = False
    while p.poll() is None and not stopped:
        for n in os.listdir(out):
            try:
                check(".tmp." in n, "unexpected file %s" % n)
                if os.path.getsize(os.path.join(out, n)) >= (4 << 20):
                    p.send_signal(signal.SIGSTOP)
                    stopped = True
            except FileNotFoundError:
                pass
        time.sleep(0.0005)
    check(stopped, "mkimage finished before it could be stopped")
    os.truncate(big, 120 << 20)
    p.send_signal(signal.SIGCONT)
    err = p.communicate()[1]
    lines = err.strip().splitlines()
    check(p.returncode == 1, "cut while read: exit %d (negative: a signal): %s" % (p.returncode, err))
    check(len(lines) == 1 and big + ": truncated during packing" in lines[0],
          "cut while read: got %r" % err)
    check(os.listdir(out) == [], "cut while read: left behind: %s" % os.listdir(out))
    print("ok cut while read: %s" % lines[0])
    print("fault_change: ok")


def t_fault_unreadable(b, work, _):
    """As root, permission bits do not stop reads: mkimage then runs as the
    unprivileged uid 65534 over a tree it may read except for one file (or
    one directory) of mode 000 - the realistic case of a model directory
    with a file from another user."""
    root = os.geteuid() == 0
    os.chmod(work, 0o755)
    kw = {"user": 65534, "group": 65534, "extra_groups": [], "cwd": work} if root else {}
    mkimage = b("ransfs-mkimage")
    if root:
        # The build tree may sit where uid 65534 cannot go (a clone in /root,
        # mode 700): run a copy from this test's own directory.  It needs
        # nothing else from the tree (the project's libraries are static).
        mkimage = os.path.join(work, "ransfs-mkimage")
        shutil.copy2(b("ransfs-mkimage"), mkimage)
        os.chmod(mkimage, 0o755)
        if subprocess.run(["test", "-x", mkimage], **kw).returncode != 0:
            print("SKIP: uid 65534 cannot reach %s (TMPDIR under a closed directory?)" % work)
            return SKIP
    for what in ("file", "dir"):
        src = os.path.join(work, "src-" + what)
        os.makedirs(os.path.join(src, "sub"))
        with open(os.path.join(src, "config.json"), "w") as f:
            f.write('{"a": 1}\n')
        gaussian(np.random.default_rng(3), 1 << 16).tofile(os.path.join(src, "sub", "w.f32"))
        victim = os.path.join(src, "sub", "w.f32") if what == "file" else os.path.join(src, "sub")
        os.chmod(victim, 0)
        out = os.path.join(work, "out-" + what)
        os.makedirs(out)
        os.chmod(out, 0o777)
        p = subprocess.run([mkimage, "-q", src, os.path.join(out, "out.img")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
        lines = p.stderr.strip().splitlines()
        want = "cannot read directory: Permission denied" if what == "dir" else \
            "cannot read: Permission denied"
        check(p.returncode == 1, "%s: exit %d: %s" % (what, p.returncode, p.stderr))
        check(len(lines) == 1 and lines[0].startswith("ransfs-mkimage: " + victim + ": ") and
              want in lines[0], "%s: got %r" % (what, p.stderr))
        check(os.listdir(out) == [], "%s: left behind: %s" % (what, os.listdir(out)))
        os.chmod(victim, 0o755)
        print("ok %s: %s" % (what, lines[0]))


def small_tmpfs(work):
    """A 2 MiB tmpfs mounted at WORK/mnt, or None (with a SKIP line) when it
    cannot be mounted (needs root).  The caller unmounts it."""
    mnt = os.path.join(work, "mnt")
    os.makedirs(mnt)
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if m.returncode != 0:
        print("SKIP: cannot mount a tmpfs (needs root): %s" % m.stdout.strip())
        return None
    return mnt


def t_fault_disk_full(b, work, _):
    mnt = small_tmpfs(work)
    if mnt is None:
        return SKIP
    try:
        src = os.path.join(work, "src")
        os.makedirs(src)
        rng = np.random.default_rng(4)
        for i in range(4):
            gaussian(rng, 1 << 20).tofile(os.path.join(src, "layer_%d.f32" % i))
        img = os.path.join(mnt, "out.img")
        for j in ("1", "2"):
            p = run([b("ransfs-mkimage"), "-q", "-j", j, src, img], expect=1)
            lines = p.stderr.strip().splitlines()
            check(len(lines) == 1 and img + ": write failed: No space left on device" in lines[0],
                  "wanted one ENOSPC line naming %s, got %r" % (img, p.stderr))
            check(os.listdir(mnt) == [], "left behind: %s" % os.listdir(mnt))
            print("ok -j%s: %s" % (j, lines[0]))
        # a small tree still fits: the tmpfs works
        small = os.path.join(work, "small")
        os.makedirs(small)
        gaussian(rng, 1 << 16).tofile(os.path.join(small, "w.f32"))
        run([b("ransfs-mkimage"), "-q", small, img])
        run([b("ransfs-fsck"), "-q", img])
    finally:
        subprocess.run(["umount", "-l", mnt])
    print("fault_disk_full: ok")


@test(arg="mini")
def t_fsck_threads(b, work, src):
    img = os.path.join(work, "c.img")
    run([b("ransfs-mkimage"), "-q", src, img])
    outs = [run([b("ransfs-fsck"), "-j", j, img]).stdout for j in ("1", "2", "4")]
    check(outs[0] == outs[1] == outs[2], "fsck output differs between -j1, -j2, -j4")
    info = json.loads(run([b("ransfs-dump"), "--json", img]).stdout)
    size = os.path.getsize(img)
    with open(img, "rb") as f:
        data = bytearray(f.read())
    data_end = size - info["totals"]["metadata_bytes"]
    for k in range(1, 6):  # several damaged units
        data[512 + (data_end - 512) * k // 6] ^= 0x10
    bad = os.path.join(work, "bad.img")
    with open(bad, "wb") as f:
        f.write(data)
    res = [run([b("ransfs-fsck"), "-j", j, bad], expect=1) for j in ("1", "2", "4")]
    check(res[0].stdout == res[1].stdout == res[2].stdout and
          res[0].stderr == res[1].stderr == res[2].stderr,
          "fsck reports differ between -j1, -j2, -j4:\n%s\n---\n%s" % (res[0].stderr, res[2].stderr))
    check(res[0].stderr.count("\n") >= 2, "want several damaged units: %r" % res[0].stderr)
    print("fsck_threads: ok\n%s" % res[0].stderr)


# ---------------------------------------------------------------- the tools (issue 9 §5, §7; 10 §4)

def tools_tree(work, name="src"):
    """A small tree with every entry type, a non-UTF-8 name and setuid bits."""
    src = os.path.join(work, name)
    os.makedirs(os.path.join(src, "a", "b"))
    os.makedirs(os.path.join(src, "c"))
    rng = np.random.default_rng(21)
    gaussian(rng, TILE // 2 + 7).tofile(os.path.join(src, "a", "w.f32"))
    with open(os.path.join(src, "a", "b", "notes.txt"), "w") as f:
        f.write("notes\n" * 1000)
    with open(os.path.join(src, "c", "x.bin"), "wb") as f:
        f.write(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with open(os.path.join(src, "top.txt"), "w") as f:
        f.write("top\n")
    os.symlink("b/notes.txt", os.path.join(src, "a", "link"))
    with open(os.path.join(os.fsencode(src), b"caf\xe9.txt"), "wb") as f:
        f.write(b"latin-1 name\n")
    return src


def t_tools_extract(b, work, _):
    """--extract DIR IMAGE [PATH...]: only the named paths (a directory with
    its subtree, and the directories leading to them); a PATH not in the
    image, or a non-empty DIR without -f, is refused before anything is
    written; -f writes into an existing DIR and replaces what is in the way."""
    src = tools_tree(work)
    img = os.path.join(work, "t.img")
    run([b("ransfs-mkimage"), "-q", src, img])
    out = os.path.join(work, "out")
    run([b("ransfs-fsck"), "-q", "--extract", out, img, "a/b", "/top.txt", "c/x.bin/"])
    got = sorted(tree(out))
    check(got == [".", "a", "a/b", "a/b/notes.txt", "c", "c/x.bin", "top.txt"],
          "extracted %s" % got)
    for rel in ("a/b/notes.txt", "c/x.bin", "top.txt", "a/b", "a"):
        x, y = tree(src)[rel], tree(out)[rel]
        check(x == y, "%s differs after a partial extract: %r vs %r" % (rel, x[:3], y[:3]))
    # a PATH not in the image: error naming it, nothing written
    fresh = os.path.join(work, "fresh")
    p = run([b("ransfs-fsck"), "--extract", fresh, img, "a", "no/such"], expect=1)
    check(p.stderr.strip() == "ransfs-fsck: %s: no/such: not in the image" % img, p.stderr)
    check(not os.path.exists(fresh), "a failed --extract created %s" % fresh)
    p = run([b("ransfs-fsck"), "--extract", fresh, img, "a/../c"], expect=2)
    check("'..'" in p.stderr and not os.path.exists(fresh), p.stderr)
    # a non-empty DIR without -f: refused before writing anything
    before = tree(out)
    p = run([b("ransfs-fsck"), "--extract", out, img], expect=1)
    lines = p.stderr.strip().splitlines()
    check(len(lines) == 1 and lines[0] == "ransfs-fsck: %s: exists and is not empty "
          "(-f extracts into it)" % out, p.stderr)
    check(tree(out) == before, "a refused --extract changed %s" % out)
    notdir = os.path.join(work, "notdir")
    open(notdir, "w").close()
    p = run([b("ransfs-fsck"), "-f", "--extract", notdir, img], expect=1)
    check("exists and is not a directory" in p.stderr, p.stderr)
    # an empty existing DIR is fine without -f
    empty = os.path.join(work, "empty")
    os.makedirs(empty)
    run([b("ransfs-fsck"), "-q", "--extract", empty, img])
    compare(src, empty)
    # -f: into the partial tree, replacing a file, a symlink pointing out
    # (never written through) and a file where a directory goes
    victim = os.path.join(work, "victim")
    with open(victim, "w") as f:
        f.write("must stay\n")
    os.unlink(os.path.join(out, "top.txt"))
    os.symlink(victim, os.path.join(out, "top.txt"))
    with open(os.path.join(out, "a", "b", "notes.txt"), "w") as f:
        f.write("old")
    shutil.rmtree(os.path.join(out, "c"))
    with open(os.path.join(out, "c"), "w") as f:
        f.write("a file where a directory goes")
    with open(os.path.join(out, "extra"), "w") as f:
        f.write("kept")
    run([b("ransfs-fsck"), "-q", "-f", "--extract", out, img])
    with open(victim) as f:
        check(f.read() == "must stay\n", "-f wrote through a symlink")
    os.unlink(os.path.join(out, "extra"))
    os.utime(out, ns=(0, os.stat(src).st_mtime_ns))  # the unlink touched it
    compare(src, out)
    # -f does not remove a directory that stands where a file goes
    os.unlink(os.path.join(out, "top.txt"))
    os.makedirs(os.path.join(out, "top.txt", "inner"))
    p = run([b("ransfs-fsck"), "-f", "--extract", out, img], expect=1)
    check(out + "/top.txt: a directory is in the way" in p.stderr, p.stderr)
    check(os.path.isdir(os.path.join(out, "top.txt", "inner")), "-f removed a directory")
    p = run([b("ransfs-fsck"), "-f", img], expect=2)
    check("usage" in p.stderr, "-f without --extract: %r" % p.stderr)
    p = run([b("ransfs-fsck"), img, "a"], expect=2)
    check("usage" in p.stderr, "a PATH without --extract: %r" % p.stderr)
    print("tools_extract: ok")


def t_tools_extract_full(b, work, _):
    """--extract into a 2 MiB tmpfs (root; exit 77 when mount fails): one
    "No space left on device" line, and nothing left behind, not even a
    partial tree; a tree that fits appears whole."""
    mnt = small_tmpfs(work)
    if mnt is None:
        return SKIP
    try:
        src = tools_tree(work)
        rng = np.random.default_rng(8)
        for i in range(3):
            with open(os.path.join(src, "c", "big%d.bin" % i), "wb") as f:
                f.write(rng.integers(0, 256, 1 << 20, dtype=np.uint8).tobytes())
        img = os.path.join(work, "t.img")
        run([b("ransfs-mkimage"), "-q", src, img])
        for dest in (os.path.join(mnt, "out"), os.path.join(mnt, "out") + "/"):
            p = run([b("ransfs-fsck"), "-q", "--extract", dest, img], expect=1)
            lines = p.stderr.strip().splitlines()
            check(len(lines) == 1 and "No space left on device" in lines[0] and
                  lines[0].startswith("ransfs-fsck: %s/c/big" % dest.rstrip("/")) and
                  lines[0].endswith(": write failed: No space left on device"),
                  "wanted one ENOSPC line naming the file, got %r" % p.stderr)
            check(os.listdir(mnt) == [], "left behind: %s" % os.listdir(mnt))
        print("ok: %s" % lines[0])
        out = os.path.join(mnt, "small")
        run([b("ransfs-fsck"), "-q", "--extract", out, img, "a", "top.txt"])
        check(sorted(os.listdir(mnt)) == ["small"], "left behind: %s" % os.listdir(mnt))
        check(sorted(tree(out)) == [".", "a", "a/b", "a/b/notes.txt", "a/link", "a/w.f32",
                                    "top.txt"], sorted(tree(out)))
    finally:
        subprocess.run(["umount", "-l", mnt])
    print("tools_extract_full: ok")


def t_tools_compare(b, work, _):
    """--compare DIR IMAGE: silent and 0 on the source; one line per
    difference (first differing offset, size, type, mode, link target,
    hard links, entries on one side only) and 1 otherwise; PATHs limit it."""
    src = tools_tree(work)
    img = os.path.join(work, "t.img")
    run([b("ransfs-mkimage"), "-q", src, img])
    p = run([b("ransfs-fsck"), "--compare", src, img])
    check(p.stdout.startswith("%s: same as %s:" % (img, src)) and not p.stderr, p.stdout + p.stderr)
    check(run([b("ransfs-fsck"), "-q", "--compare", src, img]).stdout == "", "-q prints")
    w = os.path.join(src, "a", "w.f32")
    with open(w, "r+b") as f:
        f.seek(300001)
        c = f.read(1)
        f.seek(300001)
        f.write(bytes([c[0] ^ 1]))
    with open(os.path.join(src, "top.txt"), "a") as f:
        f.write("more\n")
    os.truncate(os.path.join(src, "c", "x.bin"), 4000)
    os.chmod(os.path.join(src, "a", "b", "notes.txt"), 0o4755)
    os.unlink(os.path.join(src, "a", "link"))
    os.symlink("elsewhere", os.path.join(src, "a", "link"))
    os.unlink(os.path.join(os.fsencode(src), b"caf\xe9.txt"))
    with open(os.path.join(src, "c", "new.txt"), "w") as f:
        f.write("new\n")
    shutil.rmtree(os.path.join(src, "a", "b"))
    with open(os.path.join(src, "a", "b"), "w") as f:
        f.write("was a directory\n")
    p = run([b("ransfs-fsck"), "--compare", src, img], expect=1)
    want = sorted([
        "a/b: type differs: directory in the image, regular file in %s" % src,
        "a/link: symlink target differs: 'b/notes.txt' in the image, 'elsewhere' in %s" % src,
        "a/w.f32: differs at offset 300001",
        "c/x.bin: differs at offset 4000 (size 5000 in the image, 4000 in %s)" % src,
        "only in %s: c/new.txt" % src,
        "only in the image: caf\udce9.txt",
        "top.txt: differs at offset 4 (size 4 in the image, 9 in %s)" % src])
    got = sorted(p.stdout.strip().splitlines())
    check(got == want, "compare printed\n%s\nwanted\n%s" % ("\n".join(got), "\n".join(want)))
    check(p.stderr.strip() == "ransfs-fsck: %s: 7 difference(s) from %s" % (img, src), p.stderr)
    # a mode difference, and PATHs limiting the comparison
    shutil.rmtree(src)
    src = tools_tree(work)
    os.chmod(os.path.join(src, "a", "w.f32"), 0o2640)
    p = run([b("ransfs-fsck"), "--compare", src, img], expect=1)
    check(p.stdout.strip() == "a/w.f32: mode differs: 0644 in the image, 2640 in %s" % src, p.stdout)
    run([b("ransfs-fsck"), "-q", "--compare", src, img, "c", "a/b", "top.txt"])
    p = run([b("ransfs-fsck"), "--compare", src, img, "a"], expect=1)
    check(p.stdout.count("\n") == 1, p.stdout)
    p = run([b("ransfs-fsck"), "--compare", src, img, "zz"], expect=1)
    check("zz: not in the image" in p.stderr, p.stderr)
    p = run([b("ransfs-fsck"), "--compare", os.path.join(work, "none"), img], expect=1)
    check("none: No such file or directory" in p.stderr, p.stderr)
    p = run([b("ransfs-fsck"), "--compare", src, "--extract", work, img], expect=2)
    # hard links: a link broken in DIR, and one made in DIR only
    os.chmod(os.path.join(src, "a", "w.f32"), 0o644)
    os.link(os.path.join(src, "top.txt"), os.path.join(src, "c", "hard.txt"))
    img2 = os.path.join(work, "t2.img")
    run([b("ransfs-mkimage"), "-q", src, img2])
    run([b("ransfs-fsck"), "-q", "--compare", src, img2])
    hard = os.path.join(src, "c", "hard.txt")
    os.unlink(hard)
    shutil.copy2(os.path.join(src, "top.txt"), hard)
    p = run([b("ransfs-fsck"), "--compare", src, img2], expect=1)
    check(p.stdout.strip() == "top.txt: a hard link to c/hard.txt in the image, not in %s" % src,
          p.stdout)
    p = run([b("ransfs-fsck"), "--compare", src, img], expect=1)
    check(p.stdout.strip() == "only in %s: c/hard.txt" % src, p.stdout)
    os.unlink(os.path.join(src, "a", "b", "notes.txt"))
    os.link(os.path.join(src, "c", "x.bin"), os.path.join(src, "a", "b", "notes.txt"))
    p = run([b("ransfs-fsck"), "--compare", src, img2], expect=1)
    check("c/x.bin: a hard link to a/b/notes.txt in %s, not in the image" % src in p.stdout,
          p.stdout)
    print("tools_compare: ok")


def t_tools_ls(b, work, _):
    """dump --ls IMAGE [PATH] prints what `ls -lgo --time-style=long-iso`
    prints for files and symlinks (mode letters s/S/t/T included); a PATH
    not in the image is an error."""
    src = tools_tree(work)
    d = os.path.join(src, "modes")
    os.makedirs(d)
    for name, mode in (("suid", 0o4755), ("suid-noexec", 0o4644), ("sgid", 0o2755),
                       ("sgid-noexec", 0o2644), ("sticky", 0o1777), ("sticky-noexec", 0o1666),
                       ("all", 0o7777), ("none", 0o000)):
        with open(os.path.join(d, name), "w") as f:
            f.write(name * 3)
        os.chmod(os.path.join(d, name), mode)
    os.symlink("suid", os.path.join(d, "zlink"))
    img = os.path.join(work, "t.img")
    run([b("ransfs-mkimage"), "-q", src, img])
    env = dict(os.environ, TZ="UTC", LC_ALL="C")

    def ls(*args):
        p = subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        check(p.returncode == 0, "%s: exit %d: %s" % (args, p.returncode, p.stderr))
        return [line.split() for line in p.stdout.decode("utf-8", "surrogateescape").splitlines()]

    mine = ls(b("ransfs-dump"), "--ls", img, "modes")
    theirs = ls("ls", "-lgo", "--time-style=long-iso", d)[1:]  # without "total N"
    check(mine == theirs, "--ls modes:\n%s\nls -lgo:\n%s" % (mine, theirs))
    check(any(r[0] == "-rwSr--r--" for r in mine) and any(r[0] == "-rw-rw-rwT" for r in mine),
          "no S/s/t in %s" % mine)
    # the root: every entry, files and links equal to ls; directories by name
    mine = ls(b("ransfs-dump"), "--ls", img)
    theirs = ls("ls", "-lgo", "--time-style=long-iso", src)[1:]
    check([r[-1] for r in mine] == [r[-1] for r in theirs], "names: %s vs %s" % (mine, theirs))
    for m, t in zip(mine, theirs):
        check(m[0] == t[0] and (m[0][0] == "d" or m == t), "%s vs %s" % (m, t))
    # one file, as named; a symlink with its target
    one = ls(b("ransfs-dump"), "--ls", img, "/a/w.f32")
    check(len(one) == 1 and one[0][-1] == "/a/w.f32", one)
    link = ls(b("ransfs-dump"), "--ls", img, "a/link")
    check(link[0][-3:] == ["a/link", "->", "b/notes.txt"], link)
    p = run([b("ransfs-dump"), "--ls", img, "nope"], expect=1)
    check(p.stderr.strip() == "ransfs-dump: %s: nope: not in the image" % img, p.stderr)
    run([b("ransfs-dump"), "--ls", "--json", img], expect=2)
    run([b("ransfs-dump"), img, "a"], expect=2)
    print("tools_ls: ok")


def t_tools_json_names(b, work, _):
    """dump --json is valid JSON whatever bytes the names hold, and
    os.fsencode(name) gives the bytes back (docs/tools.md)."""
    src = os.fsencode(os.path.join(work, "src"))
    os.makedirs(src)
    names = [b"caf\xe9.txt", b"na\xc3\xafve.txt", b"ctl\x01\x1f\x7f.txt", b'q"uo\\te.txt',
             b"sur\xed\xa0\x80.txt", b"over\xc0\xaf.txt", b"cut\xe2\x82.txt", b"big\xf4\x90\x80\x80",
             b"emoji\xf0\x9f\x98\x80", b"new\nline"]
    for n in names:
        with open(os.path.join(src, n), "wb") as f:
            f.write(n)
    gaussian(np.random.default_rng(5), 5000).tofile(os.path.join(src, b"t\xff.f32"))
    os.symlink(b"target\xfe", os.path.join(src, b"link\x80"))
    img = os.path.join(work, "t.img")
    run([b("ransfs-mkimage"), "-q", src, img])
    p = subprocess.run([b("ransfs-dump"), "--json", img], stdout=subprocess.PIPE)
    check(p.returncode == 0, "dump --json exit %d" % p.returncode)
    p.stdout.decode("utf-8")  # strict: the dump itself is UTF-8
    d = json.loads(p.stdout)
    got = {os.fsencode(f["path"]) for f in d["files"]}
    want = {b"/"} | set(names) | {b"t\xff.f32", b"link\x80"}
    check(got == want, "paths: %s vs %s" % (sorted(got), sorted(want)))
    for f in d["files"]:
        check(f["path"] == os.fsdecode(os.fsencode(f["path"])), f["path"])
    link = [f for f in d["files"] if os.fsencode(f["path"]) == b"link\x80"][0]
    check(os.fsencode(link["target"]) == b"target\xfe", link)
    t = [x for x in d["tensors"] if os.fsencode(x["file"]) == b"t\xff.f32"]
    check(len(t) == 1, "tensor of t\\xff.f32: %s" % d["tensors"])
    print("tools_json_names: ok (%d names)" % len(got))


def t_tools_deep(b, work, _):
    """A tree 600 directories deep: mkimage packs it, and fsck, --extract,
    --compare, dump, dump --json and dump --ls handle all of it."""
    depth = 600
    src = os.path.join(work, "src")
    os.mkdir(src)
    path = src
    for i in range(depth):
        path = os.path.join(path, "d")
        os.mkdir(path)
        with open(os.path.join(path, "f"), "w") as f:
            f.write("level %d\n" % i)
    img = os.path.join(work, "deep.img")
    run([b("ransfs-mkimage"), "-q", src, img])
    p = run([b("ransfs-fsck"), img])
    check("%d inodes" % (2 * depth + 1) in p.stdout, p.stdout)
    out = os.path.join(work, "out")
    run([b("ransfs-fsck"), "-q", "--extract", out, img])
    compare(src, out)
    run([b("ransfs-fsck"), "-q", "--compare", src, img])
    run([b("ransfs-fsck"), "-q", "--compare", out, img])
    deepest = "/".join(["d"] * depth)
    run([b("ransfs-fsck"), "-q", "--extract", os.path.join(work, "one"), img, deepest + "/f"])
    with open(os.path.join(work, "one", deepest, "f")) as f:
        check(f.read() == "level %d\n" % (depth - 1), "deepest file")
    lines = run([b("ransfs-dump"), img]).stdout.splitlines()
    check(sum(line.endswith(deepest + "/f") for line in lines) == 1, "dump lacks the deepest file")
    d = json.loads(run([b("ransfs-dump"), "--json", img]).stdout)
    check(d["totals"]["directories"] == depth + 1 and len(d["files"]) == 2 * depth + 1,
          "dump --json: %s" % d["totals"])
    ls = run([b("ransfs-dump"), "--ls", img, deepest]).stdout.split()
    check(ls[-1] == "f" and ls[0] == "-rw-r--r--", ls)
    print("tools_deep: ok (%d levels)" % depth)


def t_tools_usage(b, work, _):
    """--version, exit 2 for usage errors, and a FIFO as IMAGE refused at
    once (it used to block in open)."""
    for tool in ("ransfs-fsck", "ransfs-dump"):
        p = run([b(tool), "--version"])
        check(p.stdout.startswith(tool + " ") and p.stdout.strip().split()[1][0].isdigit(),
              p.stdout)
        for args in ([], ["--no-such-option", "x"], ["a", "b", "c"]):
            p = run([b(tool), *args], expect=2)
            check("usage:" in p.stderr, "%s %s: %r" % (tool, args, p.stderr))
        check(run([b(tool), "--help"]).stdout.startswith("usage:"), tool + " --help")
    run([b("ransfs-fsck"), "-j", "0", "x"], expect=2)
    fifo = os.path.join(work, "fifo")
    os.mkfifo(fifo)
    for args in (["ransfs-fsck", fifo], ["ransfs-dump", fifo], ["ransfs-dump", "--ls", fifo],
                 ["ransfs-fsck", "--extract", os.path.join(work, "x"), fifo],
                 ["ransfs-fsck", "--compare", work, fifo]):
        try:
            p = subprocess.run([b(args[0])] + args[1:], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            raise Fail("%s blocked on a FIFO" % " ".join(args))
        check(p.returncode == 1 and p.stderr.strip() == "%s: %s: not a regular file (a FIFO)" %
              (args[0], fifo), "%s: exit %d: %r" % (args, p.returncode, p.stderr))
    check(not os.path.exists(os.path.join(work, "x")), "--extract of a FIFO wrote")
    print("tools_usage: ok")


def truncated_image(b, work):
    """An image whose first entries (3000 small files, RAW, listed first)
    come before a tensor file whose tiles are read last; returns (image,
    [(offset, length)] of the small files' bytes in the image)."""
    src = os.path.join(work, "src")
    os.makedirs(src)
    rng = np.random.default_rng(9)
    blobs = []
    for i in range(3000):
        blob = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
        with open(os.path.join(src, "a%04d.bin" % i), "wb") as f:
            f.write(blob)
        blobs.append(blob)
    gaussian(rng, 4 * TILE).tofile(os.path.join(src, "z-weights.f32"))
    img = os.path.join(work, "t.img")
    run([b("ransfs-mkimage"), "-q", src, img])
    with open(img, "rb") as f:
        data = f.read()
    where = [data.find(blob) for blob in blobs]
    check(all(w > 0 for w in where), "small files not stored as they are")
    return img, where


def cut_while_blocked(b, img, args, stream, size=4096):
    """Run a tool on img with `stream` ("stdout" or "stderr") a pipe nobody
    reads: it blocks once the pipe is full, before the work that reads the
    tiles.  Then cut the image to size bytes, drain, and return (rc, stderr)."""
    p = subprocess.Popen([b(args[0])] + args[1:], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    pipe = getattr(p, stream)
    import select
    select.select([pipe], [], [])  # it has written: the image is open
    os.truncate(img, size)
    out, err = p.communicate()
    return p.returncode, err.decode("utf-8", "replace")


def t_tools_truncated(b, work, _):
    """fsck and dump on an image cut short under them (after they opened it,
    while they are blocked writing their report to a full pipe): one line
    naming the file, exit 1, no SIGBUS death."""
    img, where = truncated_image(b, work)
    with open(img, "rb") as f:
        good = f.read()
    # dump: 3000 file lines fill a pipe before the tensor section reads tiles
    rc, err = cut_while_blocked(b, img, ["ransfs-dump", img], "stdout")
    want = "ransfs-dump: %s: the image file was truncated while being read (%d bytes, now 4096)" \
        % (img, len(good))
    check(rc == 1 and err.strip().splitlines()[-1:] == [want],
          "dump: exit %d (negative: a signal): %r" % (rc, err[-500:]))
    print("ok dump: %s" % want)
    # fsck: 3000 damaged small files fill stderr before any tile is
    # decoded.  Cut inside their bytes (the index pass faults), or just
    # after them (the index pass completes; the unit decode on the pool's
    # workers faults).
    bad = bytearray(good)
    for w in where:
        bad[w] ^= 1
    after = (max(where) + 64 + 4095) // 4096 * 4096
    check(after < len(good) - 4 * TILE // 2, "the tiles do not follow the small files")
    for size, n_lines in ((4096, None), (after, len(where) + 1)):
        with open(img, "wb") as f:
            f.write(bad)
        rc, err = cut_while_blocked(b, img, ["ransfs-fsck", "-j4", img], "stderr", size)
        want = "ransfs-fsck: %s: the image file was truncated while being read (%d bytes, " \
            "now %d)" % (img, len(good), size)
        lines = err.strip().splitlines()
        check(rc == 1 and lines[-1:] == [want] and len(lines) > 1 and
              (n_lines is None or len(lines) == n_lines),
              "fsck: exit %d (negative: a signal), %d lines: %r" % (rc, len(lines), err[-500:]))
        print("ok fsck (%d lines): %s" % (len(lines), want))


def link_groups(root):
    """Hard-link groups of regular files under root: sorted lists of paths."""
    groups = collections.defaultdict(list)
    for dirpath, _, files in os.walk(root):
        for name in files:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            if os.path.isfile(full) and not os.path.islink(full):
                groups[(st.st_dev, st.st_ino)].append(os.path.relpath(full, root))
    return sorted(sorted(g) for g in groups.values())


def extract_same(b, img, src, out):
    """fsck --extract img gives src back: entries, bytes, modes, mtimes, links."""
    run([b("ransfs-fsck"), "-q", img, "--extract", out])
    n = compare(src, out)
    check(link_groups(src) == link_groups(out), "hard links differ: %s vs %s" %
          (link_groups(src), link_groups(out)))
    return n


def golden_module():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data",
                                    "golden"))
    import make_golden_images
    return make_golden_images


def t_golden_images(b, work, _):
    gm = golden_module()
    p = subprocess.run([sys.executable, "-B", gm.__file__, "--check", os.path.dirname(b("x"))],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(p.stdout, end="")
    check(p.returncode == 0, "repacking the golden trees does not give the committed images")
    for name in gm.NAMES:
        src = os.path.join(work, name)
        gm.build_tree(src, name == "tree_hardlinks")
        n = extract_same(b, os.path.join(gm.HERE, name + ".img"), src,
                         os.path.join(work, name + ".out"))
        print("%s: %d entries extracted as packed" % (name, n))


def t_hardlinks(b, work, _):
    src, outside = os.path.join(work, "src"), os.path.join(work, "outside")
    os.makedirs(os.path.join(src, "a", "b"))
    os.makedirs(outside)
    rng = random.Random(9)
    with open(os.path.join(src, "w.bf16"), "wb") as f:
        f.write(to_bf16(gaussian(np.random.default_rng(9), 3 * TILE // 2 + 5)).tobytes())
    with open(os.path.join(src, "a", "notes.txt"), "wb") as f:
        f.write(bytes(rng.randrange(32, 127) for _ in range(5000)))
    os.link(os.path.join(src, "w.bf16"), os.path.join(src, "a", "b", "w-again.bf16"))
    os.link(os.path.join(src, "w.bf16"), os.path.join(src, "a", "w.bin"))
    os.link(os.path.join(src, "a", "notes.txt"), os.path.join(src, "a", "notes2.txt"))
    with open(os.path.join(outside, "x"), "wb") as f:
        f.write(b"one name inside SOURCE\n")
    os.link(os.path.join(outside, "x"), os.path.join(src, "lonely"))
    img = os.path.join(work, "h.img")
    p = run([b("ransfs-mkimage"), src, img])
    check("hard link" not in p.stderr, "mkimage still warns about hard links: " + p.stderr)
    out = os.path.join(work, "out")
    extract_same(b, img, src, out)
    for rel, nlink in (("w.bf16", 3), ("a/w.bin", 3), ("a/notes2.txt", 2), ("lonely", 1)):
        got = os.lstat(os.path.join(out, rel)).st_nlink
        check(got == nlink, "%s: nlink %d after extract, want %d" % (rel, got, nlink))
    with open(img, "rb") as f:
        features = struct.unpack_from("<I", f.read(16), 12)[0]
    check(features == 1, "feature flags 0x%x, want HARDLINKS (0x1)" % features)
    # only PATH a: its names of w.bf16 link to each other, not to the one left out
    part = os.path.join(work, "part")
    run([b("ransfs-fsck"), "-q", "--extract", part, img, "a"])
    want = [["a/b/w-again.bf16", "a/w.bin"], ["a/notes.txt", "a/notes2.txt"]]
    check(link_groups(part) == sorted(want), "extract of PATH a: links %s" % link_groups(part))
    print("hardlinks: %s" % link_groups(out))


# ------------------------------------------------- issue 9: output path

def small_tree(root, text="hello\n"):
    os.makedirs(os.path.join(root, "sub"))
    with open(os.path.join(root, "f.txt"), "w") as f:
        f.write(text)
    gaussian(np.random.default_rng(5), 1 << 14).tofile(os.path.join(root, "sub", "w.f32"))
    return root


def pack_refused(b, src, out, needle, extra=(), stdout=None):
    """mkimage must exit 1 with one line naming out and needle."""
    p = subprocess.run([b("ransfs-mkimage"), "-q", *extra, src, out], stderr=subprocess.PIPE,
                       stdout=stdout if stdout is not None else subprocess.PIPE, text=True)
    lines = p.stderr.strip().splitlines()
    check(p.returncode == 1, "%s %s: exit %d (wanted 1): %s" % (extra, out, p.returncode, p.stderr))
    check(len(lines) == 1 and needle in lines[0], "%s %s: wanted one line with %r, got %r" %
          (extra, out, needle, p.stderr))
    print("ok refused %s %s: %s" % (" ".join(extra), out, lines[0]))


def same_bytes(path, data, what):
    with open(path, "rb") as f:
        check(f.read() == data, "%s: contents changed" % what)


def extract_matches(b, img, src, work, name):
    out = os.path.join(work, "x-" + name)
    run([b("ransfs-fsck"), "-q", img, "--extract", out])
    compare(src, out)
    shutil.rmtree(out)


def t_output_exists(b, work, _):
    """An existing IMAGE is refused, before the source is read; --force
    replaces an image or an empty file, --force twice any regular file."""
    src = small_tree(os.path.join(work, "src"))
    d = os.path.join(work, "out")
    os.makedirs(d)
    text = os.path.join(d, "notes.txt")
    with open(text, "w") as f:
        f.write("precious\n")
    pack_refused(b, src, text, text + ": exists (--force")
    # the target is checked first: a missing source is not reached
    pack_refused(b, os.path.join(work, "no-such-source"), text, text + ": exists")
    pack_refused(b, src, text, text + ": exists and is not a ransfs image", ("--force",))
    same_bytes(text, b"precious\n", text)
    check(sorted(os.listdir(d)) == ["notes.txt"], "left behind: %s" % os.listdir(d))
    run([b("ransfs-mkimage"), "-q", "--force", "--force", src, text])
    extract_matches(b, text, src, work, "ff")
    # an image is replaced with --force (the new one holds the new tree)
    img = os.path.join(d, "a.img")
    run([b("ransfs-mkimage"), "-q", src, img])
    pack_refused(b, src, img, img + ": exists")
    src2 = small_tree(os.path.join(work, "src2"), "other\n")
    run([b("ransfs-mkimage"), "-q", "-f", src2, img])
    extract_matches(b, img, src2, work, "f")
    empty = os.path.join(d, "empty.img")
    open(empty, "w").close()
    pack_refused(b, src, empty, empty + ": exists")
    run([b("ransfs-mkimage"), "-q", "-f", src, empty])
    extract_matches(b, empty, src, work, "empty")
    check(sorted(os.listdir(d)) == ["a.img", "empty.img", "notes.txt"],
          "left behind: %s" % os.listdir(d))
    print("output_exists: ok")


def t_output_special(b, work, _):
    """IMAGE a symlink, directory, FIFO or device: refused at once, even with
    --force twice, and left as it was."""
    src = small_tree(os.path.join(work, "src"))
    d = os.path.join(work, "out")
    os.makedirs(d)
    target = os.path.join(d, "target.img")
    run([b("ransfs-mkimage"), "-q", src, target])
    with open(target, "rb") as f:
        before = f.read()
    link = os.path.join(d, "link.img")
    os.symlink("target.img", link)
    fifo = os.path.join(d, "fifo")
    os.mkfifo(fifo)
    sub = os.path.join(d, "dir")
    os.makedirs(sub)
    for force in ((), ("-f",), ("-f", "-f")):
        pack_refused(b, src, link, link + ": is a symbolic link", force)
        pack_refused(b, src, sub, sub + ": is a directory", force)
        pack_refused(b, src, fifo, fifo + ": is a device, FIFO or socket", force)
        pack_refused(b, src, "/dev/null", "/dev/null: is a device, FIFO or socket", force)
    check(os.path.islink(link) and os.readlink(link) == "target.img", "the symlink was replaced")
    same_bytes(target, before, "the symlink's target")
    check(os.path.isdir(sub) and os.listdir(sub) == [], "the directory changed")
    import stat as st_mod
    check(st_mod.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced")
    check(st_mod.S_ISCHR(os.lstat("/dev/null").st_mode), "/dev/null was replaced")
    check(sorted(os.listdir(d)) == ["dir", "fifo", "link.img", "target.img"],
          "left behind: %s" % os.listdir(d))
    # a directory is refused before the source is read (it used to fail
    # only after the whole encode)
    pack_refused(b, os.path.join(work, "no-such-source"), sub, sub + ": is a directory")
    print("output_special: ok")


def pack_named(b, src, work):
    """The bytes of the image of src packed to a named IMAGE (seekable)."""
    named = os.path.join(work, "named.img")
    run([b("ransfs-mkimage"), "-q", src, named])
    with open(named, "rb") as f:
        return f.read()


def t_output_stdout(b, work, _):
    """IMAGE '-': the image on standard output, the same bytes as a named
    IMAGE; a pipe takes it as a stream, a regular file follows the rules of
    a named IMAGE; no temporary file is left in $TMPDIR."""
    src = small_tree(os.path.join(work, "src"))
    want = pack_named(b, src, work)
    tmp = os.path.join(work, "tmpdir")
    os.makedirs(tmp)
    env = dict(os.environ, TMPDIR=tmp)
    # a pipe takes a TRAILER stream (t_stream); the summary goes to stderr
    p = subprocess.run([b("ransfs-mkimage"), src, "-"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env)
    check(p.returncode == 0, "to a pipe: exit %d: %s" % (p.returncode, p.stderr))
    check_streamed(p.stdout, want)
    check(b"standard output" in p.stderr and b"files" in p.stderr, "no summary on stderr")
    streamed = p.stdout
    p = subprocess.run([b("ransfs-mkimage"), "--json", src, "-"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env)
    check(p.returncode == 0 and p.stdout == streamed, "--json to a pipe: image differs")
    check(json.loads(p.stderr)["image_bytes"] == len(streamed), "--json summary not on stderr")
    check(os.listdir(tmp) == [], "left in TMPDIR: %s" % os.listdir(tmp))
    # a regular file: a fresh one (the shell's '>') takes it ...
    out = os.path.join(work, "redirected.img")
    with open(out, "wb") as f:
        run_to(b, src, f, env)
    same_bytes(out, want, "stdout file")
    extract_matches(b, out, src, work, "stdout")
    # ... a file with other bytes ('1<>', '>>') is refused, even with --force ...
    text = os.path.join(work, "text")
    with open(text, "w") as f:
        f.write("precious\n")
    for force in ((), ("-f",)):
        with open(text, "ab") as f:
            pack_refused(b, src, "-", "standard output: exists", force, stdout=f)
    same_bytes(text, b"precious\n", "non-empty stdout file")
    # ... an image is replaced with --force, any file with --force twice
    with open(out, "r+b") as f:
        pack_refused(b, src, "-", "standard output: exists", (), stdout=f)
        run_to(b, src, f, env, "-f")
    same_bytes(out, want, "stdout image, replaced")
    with open(text, "ab") as f:
        run_to(b, src, f, env, "-f", "-f")
    same_bytes(text, want, "stdout text file, replaced")
    # a failing pack writes nothing to standard output
    bad = os.path.join(work, "bad")
    os.makedirs(bad)
    with open(os.path.join(bad, "x.fp16"), "wb") as f:
        f.write(bytes(4097))
    p = subprocess.run([b("ransfs-mkimage"), "-q", "--strict", bad, "-"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env)
    check(p.returncode == 1 and p.stdout == b"", "failed pack: exit %d, %d bytes on stdout" %
          (p.returncode, len(p.stdout)))
    # a terminal is refused
    master, slave = os.openpty()
    try:
        pack_refused(b, src, "-", "standard output is a terminal", stdout=slave)
    finally:
        os.close(master)
        os.close(slave)
    check(os.listdir(tmp) == [], "left in TMPDIR: %s" % os.listdir(tmp))
    print("output_stdout: ok")


SB = 512  # superblock size (docs/format.md 2.1)


def check_streamed(streamed, seekable):
    """A streamed (TRAILER) image is the seekable image of the same tree with
    its superblock replaced by a stub, and that superblock, TRAILER set and
    the image size the file's, appended (docs/format.md 2.1.3)."""
    check(len(streamed) == len(seekable) + SB, "streamed image: %d bytes, wanted %d + %d" %
          (len(streamed), len(seekable), SB))
    check(streamed[SB:-SB] == seekable[SB:], "streamed image: data or metadata differ from "
          "the seekable image's")
    sb = seekable[:SB]
    feat = struct.pack("<I", struct.unpack_from("<I", sb, 12)[0] | 2)
    stub = sb[:12] + feat + sb[16:20] + bytes(28) + sb[48:56] + bytes(SB - 56)
    check(streamed[:SB] == stub, "streamed image: the stub at offset 0 is not %r" % stub[:64])
    trailer = sb[:12] + feat + sb[16:32] + struct.pack("<Q", len(streamed)) + sb[40:504]
    check(streamed[-SB:-8] == trailer, "streamed image: the trailer is not the seekable "
          "superblock with TRAILER and the image size")


def pack_piped(b, src, out, env, *extra):
    """ransfs-mkimage SRC - | cat > out; both must exit 0."""
    with open(out, "wb") as f:
        mk = subprocess.Popen([b("ransfs-mkimage"), "-q", *extra, src, "-"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        cat = subprocess.Popen(["cat"], stdin=mk.stdout, stdout=f)
        mk.stdout.close()
        err = mk.stderr.read()
        rc = mk.wait()
        check(cat.wait() == 0 and rc == 0, "%s | cat: exit %d: %s" % (extra, rc, err))
    with open(out, "rb") as f:
        return f.read()


def stream_tree(root):
    """small_tree, a hard link and a tensor of several tiles."""
    small_tree(root)
    os.link(os.path.join(root, "f.txt"), os.path.join(root, "sub", "f-link.txt"))
    w = to_bf16(gaussian(np.random.default_rng(9), 3 * TILE // 2 + 100)).tobytes()
    st_write(os.path.join(root, "m.safetensors"), [("w", "BF16", [len(w) // 2], w)])
    return root


def files_of(root):
    want = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as f:
                want[os.path.relpath(full, root)] = f.read()
    return want


def refused_by_readers(b, img, needle):
    """fsck and dump refuse img with one line that says needle."""
    for tool in (["ransfs-fsck"], ["ransfs-dump"]):
        p = run([b(tool[0]), img], expect=1)
        lines = p.stderr.strip().splitlines()
        check(len(lines) == 1 and needle in lines[0] and img in lines[0],
              "%s: wanted one line naming %s with %r, got %r" % (tool[0], img, needle, p.stderr))
    print("ok refused: %s" % lines[0])


def t_stream(b, work, _):
    """IMAGE '-' on a pipe: a TRAILER image written front to back with no
    temporary file; fsck, --compare, dump and a real mount read it; -j1 and
    -j2 give the same bytes; it is the seekable image but for the stub and
    the trailer; a damaged stub or trailer is refused."""
    src = stream_tree(os.path.join(work, "src"))
    want = pack_named(b, src, work)
    # No temporary file: $TMPDIR is a regular file, below which nothing can
    # be made (not even by root), and an empty directory that stays empty.
    notdir = os.path.join(work, "notdir")
    with open(notdir, "w") as f:
        f.write("x")
    with open(os.path.join(work, "reg.img"), "wb") as f:  # the test can fail: a
        p = subprocess.run([b("ransfs-mkimage"), "-q", src, "-"], stdout=f,  # copy needs one
                           stderr=subprocess.PIPE, env=dict(os.environ, TMPDIR=notdir))
    check(p.returncode == 1, "regular stdout with TMPDIR a file: exit %d" % p.returncode)
    img = os.path.join(work, "s1.img")
    s1 = pack_piped(b, src, img, dict(os.environ, TMPDIR=notdir), "-j1")
    empty = os.path.join(work, "tmpdir")
    os.makedirs(empty, mode=0o555)
    s2 = pack_piped(b, src, os.path.join(work, "s2.img"), dict(os.environ, TMPDIR=empty), "-j2")
    check(os.listdir(empty) == [], "left in TMPDIR: %s" % os.listdir(empty))
    check(s1 == s2, "streamed -j1 and -j2 images differ")
    check_streamed(s1, want)
    check(struct.unpack_from("<I", s1, 12)[0] == 3, "stub features: wanted HARDLINKS|TRAILER")
    run([b("ransfs-fsck"), "-q", img])
    run([b("ransfs-fsck"), "--compare", src, img])
    d = run([b("ransfs-dump"), img])
    check("sub/f-link.txt" in d.stdout and "m.safetensors:w" in d.stdout, "dump: %s" % d.stdout)
    extract_matches(b, img, src, work, "stream")
    n = mount_compare(b, img, files_of(src), work)
    print("ok streamed image: %d bytes (seekable %d), %d files byte-exact in the mount" %
          (len(s1), len(want), n))
    # damage: (offset, new byte or None to flip, what the reader says)
    end = len(s1)
    cases = [(12, s1[12] & ~2, "checksum"),          # stub without TRAILER: a bad superblock
             (16, None, "superblock stub"), (20, None, "superblock stub"),
             (48, None, "superblock stub"), (300, None, "superblock stub"),
             (504, None, "superblock stub"), (8, None, "version"),
             (end - SB, None, "no trailer superblock"),
             (end - SB + 12, s1[end - SB + 12] & ~2, "TRAILER"),
             (end - SB + 12, s1[end - SB + 12] | 8, "unknown feature flags"),
             (end - SB + 32, None, "checksum"), (end - 1, None, "checksum")]
    bad = os.path.join(work, "bad.img")
    for off, val, needle in cases:
        data = bytearray(s1)
        data[off] = data[off] ^ 0x10 if val is None else val
        with open(bad, "wb") as f:
            f.write(data)
        refused_by_readers(b, bad, needle)
    for data, needle in ((s1[:-1], "trailer superblock"), (s1 + bytes(SB), "trailer superblock"),
                         (s1[:SB + 100], "trailer superblock"), (s1[:SB] + s1[-SB:], "")):
        with open(bad, "wb") as f:
            f.write(data)
        refused_by_readers(b, bad, needle)
    r = subprocess.run([b("ransfs"), bad, os.path.join(work, "mnt")], capture_output=True,
                       text=True, timeout=60)
    check(r.returncode != 0, "a damaged streamed image mounted")
    print("stream: ok")


def run_to(b, src, f, env, *extra):
    p = subprocess.run([b("ransfs-mkimage"), "-q", *extra, src, "-"], stdout=f,
                       stderr=subprocess.PIPE, env=env, text=True)
    check(p.returncode == 0, "%s to a file on stdout: exit %d: %s" % (extra, p.returncode, p.stderr))


def t_output_race(b, work, _):
    """An IMAGE created (or replaced) by someone else while mkimage packs
    is not overwritten by the final rename."""
    src = fault_source(work, "src", files=4, mb=8)
    out = os.path.join(work, "outdir")
    os.makedirs(out)
    img = os.path.join(out, "out.img")

    def create():
        with open(img, "w") as f:
            f.write("theirs\n")

    r = run_stopped(b, src, img, create)
    check(r is not None, "mkimage finished before it could be stopped")
    rc, err = r
    lines = err.strip().splitlines()
    check(rc == 1 and len(lines) == 1 and img + ": created by someone else during packing" in lines[0],
          "create race: exit %d, %r" % (rc, err))
    same_bytes(img, b"theirs\n", "the file created meanwhile")
    check(os.listdir(out) == ["out.img"], "left behind: %s" % os.listdir(out))
    print("ok created meanwhile: %s" % lines[0])
    os.unlink(img)
    run([b("ransfs-mkimage"), "-q", src, img])

    def replace():
        os.unlink(img)
        os.symlink("/dev/null", img)

    r = run_stopped(b, src, img, replace, "-f")
    check(r is not None, "mkimage finished before it could be stopped")
    rc, err = r
    check(rc == 1 and "replaced by something else during packing" in err, "replace race: %r" % err)
    check(os.path.islink(img), "the symlink made meanwhile was replaced")
    print("output_race: ok")


# --------------------------------------- issue 9: model folders as they are

def hf_cache(root, rng):
    """A Hugging Face hub cache entry: blobs named by hash, a snapshot of
    symlinks into them (one in a subdirectory), refs/main.  Returns the
    snapshot directory and {name in the snapshot: blob path}."""
    repo = os.path.join(root, "models--org--name")
    rev = "0123456789abcdef0123456789abcdef01234567"
    snap = os.path.join(repo, "snapshots", rev)
    os.makedirs(os.path.join(repo, "blobs"))
    os.makedirs(os.path.join(snap, "1_Pooling"))
    os.makedirs(os.path.join(repo, "refs"))
    with open(os.path.join(repo, "refs", "main"), "w") as f:
        f.write(rev)
    st = os.path.join(root, "model.tmp")
    st_write(st, [("embed.weight", "BF16", [2048, 64], to_bf16(gaussian(rng, 2048 * 64)).tobytes()),
                  ("dense.weight", "F32", [256, 64], gaussian(rng, 256 * 64).tobytes()),
                  ("dense.bias", "F32", [64], gaussian(rng, 64).tobytes())])
    files = {"model.safetensors": open(st, "rb").read(),
             "config.json": json.dumps({"architectures": ["BertModel"], "hidden_size": 64}).encode(),
             "tokenizer.json": json.dumps({"model": {"vocab": {"t%d" % i: i for i in range(3000)}}}).encode(),
             "1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}\n'}
    files["config_copy.json"] = files["config.json"]  # one blob, two names
    os.unlink(st)
    blobs = {}
    for name, data in files.items():
        h = hashlib.sha256(data).hexdigest()
        blob = os.path.join(repo, "blobs", h)
        with open(blob, "wb") as f:
            f.write(data)
        up = "../" * (name.count("/") + 2)
        os.symlink(up + "blobs/" + h, os.path.join(snap, name))
        blobs[name] = blob
    os.symlink("config.json", os.path.join(snap, "alias.json"))  # stays inside: kept
    return snap, blobs


def mount_compare(b, img, want, work):
    """Mount img for real and compare {path: bytes} want, and the entries."""
    if rfs_testlib.fuse_usable():
        raise Fail("cannot mount here: %s" % rfs_testlib.fuse_usable())
    mnt = os.path.join(work, "mnt")
    os.makedirs(mnt, exist_ok=True)
    r = subprocess.run([b("ransfs"), img, mnt], capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, "mount failed: %s" % r.stderr)
    try:
        got = {}
        for dirpath, dirs, files in os.walk(mnt):
            for name in files:
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, mnt)
                if os.path.islink(full):
                    got[rel] = ("link", os.readlink(full))
                else:
                    with open(full, "rb") as f:
                        got[rel] = f.read()
        check(sorted(got) == sorted(want), "mounted entries %s, wanted %s" % (sorted(got), sorted(want)))
        for k in want:
            check(got[k] == want[k], "%s: differs in the mount" % k)
    finally:
        rfs_testlib.unmount(mnt)
    return len(got)


def t_hf_cache(b, work, _):
    """A snapshot of the Hugging Face cache: without -L one warning per link
    that leaves SOURCE, and the links are kept; with -L the blobs' bytes are
    packed under the snapshot's names (byte-exact through a real mount and
    --extract); the safetensors is coded as tensors either way it is named."""
    snap, blobs = hf_cache(os.path.join(work, "cache"), np.random.default_rng(21))
    img = os.path.join(work, "snap.img")
    p = run([b("ransfs-mkimage"), "--json", snap, img])
    warn = [l for l in p.stderr.splitlines() if "points outside SOURCE" in l]
    check(len(warn) == len(blobs), "want %d warnings for the links leaving SOURCE, got %r" %
          (len(blobs), p.stderr))
    check(all("-L" in l for l in warn), "the warning does not name -L: %r" % warn)
    check("alias.json" not in p.stderr, "a link inside SOURCE was warned about: %r" % p.stderr)
    out = os.path.join(work, "x-nolinks")
    run([b("ransfs-fsck"), "-q", img, "--extract", out])
    check(os.path.islink(os.path.join(out, "model.safetensors")), "link not kept without -L")
    p = run([b("ransfs-mkimage"), "--json", "-f", "-L", snap, img])
    check("SOURCE" not in p.stderr, "-L still warns: %r" % p.stderr)
    summary = json.loads(p.stdout)
    check(summary["tensors"] >= 2 and "BF16" in summary["by_dtype"], "tensors not coded: %s" % summary)
    want = {}
    for name, blob in blobs.items():
        with open(blob, "rb") as f:
            want[name] = f.read()
    want["alias.json"] = ("link", "config.json")
    n = mount_compare(b, img, want, work)
    out = os.path.join(work, "x-links")
    run([b("ransfs-fsck"), "-q", img, "--extract", out])
    for name, data in want.items():
        path = os.path.join(out, name)
        if isinstance(data, tuple):
            check(os.path.islink(path) and os.readlink(path) == data[1], "%s: link lost" % name)
        else:
            check(not os.path.islink(path), "%s: still a link" % name)
            same_bytes(path, data, name)
    # the blobs themselves, named by hash: the safetensors is found by content
    blobdir = os.path.dirname(blobs["model.safetensors"])
    p = run([b("ransfs-mkimage"), "--json", blobdir, os.path.join(work, "blobs.img")])
    s2 = json.loads(p.stdout)
    check(s2["tensors"] == summary["tensors"], "by hash name: %d tensors coded, %d with the name" %
          (s2["tensors"], summary["tensors"]))
    # a symlink given as SOURCE is packed as the file it names
    one = os.path.join(work, "one.img")
    run([b("ransfs-mkimage"), "-q", os.path.join(snap, "model.safetensors"), one])
    out = os.path.join(work, "x-one")
    run([b("ransfs-fsck"), "-q", one, "--extract", out])
    same_bytes(os.path.join(out, "model.safetensors"), want["model.safetensors"], "single link")
    run([b("ransfs-mkimage"), "-q", "-f", os.path.join(snap, "alias.json"), one])  # a link inside
    shutil.rmtree(out)
    run([b("ransfs-fsck"), "-q", one, "--extract", out])
    same_bytes(os.path.join(out, "alias.json"), want["config.json"], "single link inside")
    # a followed link that leads back into a directory holding it
    loop = os.path.join(snap, "loop")
    os.symlink(os.path.abspath(snap), loop)
    expect_error(b, work, snap, loop + ": symlink to '%s' leads back" % os.path.abspath(snap),
                 extra=("-L",))
    os.unlink(loop)
    # a dangling link: warned, kept
    os.symlink("../../blobs/missing", os.path.join(snap, "gone.bin"))
    p = run([b("ransfs-mkimage"), "-q", "-f", "-L", snap, img])
    check("gone.bin: symlink to '../../blobs/missing' points outside SOURCE and dangles" in p.stderr,
          "dangling link: %r" % p.stderr)
    print("hf_cache: ok (%d entries through the mount, %d tensors)" % (n, summary["tensors"]))


def expect_opaque(b, work, src, victim, needle, extra=()):
    """Default (lenient) mode: exit 0, one warning naming victim, stored
    opaque (counted), bytes back exactly."""
    img = os.path.join(work, "lenient.img")
    p = run([b("ransfs-mkimage"), "--json", "-f", *extra, src, img])
    lines = p.stderr.strip().splitlines()
    check(len(lines) == 1 and lines[0].startswith("ransfs-mkimage: warning: " + victim + ": ") and
          needle in lines[0] and lines[0].endswith("stored as an opaque file"),
          "%s: wanted one warning naming it with %r, got %r" % (victim, needle, p.stderr))
    check(json.loads(p.stdout)["malformed_opaque"] == 1, "not counted: %s" % p.stdout)
    extract_matches(b, img, src, work, "lenient")
    print("ok opaque: %s" % lines[0])


def t_malformed(b, work, _):
    """A corrupt safetensors header or an odd-sized raw tensor file: by
    default one warning and the file stored opaque; --strict fails (the
    strict messages are image_bad_input's).  Extensions match in any case."""
    cases = [("badjson", '{"a": {"dtype": "F32", ', b"", "not a valid JSON object"),
             ("range", {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8),
              "out of range"),
             ("shape", {"a": {"dtype": "F16", "shape": [3], "data_offsets": [0, 8]}}, bytes(8),
              "do not match shape")]
    for name, header, data, needle in cases:
        d, path = bad_st(work, name, header=header, data=data)
        with open(os.path.join(d, "keep.txt"), "w") as f:
            f.write("the rest of the folder\n")
        expect_opaque(b, work, d, path, needle)
    d = os.path.join(work, "odd")
    os.makedirs(d)
    odd = os.path.join(d, "layer_3.FP16")
    with open(odd, "wb") as f:
        f.write(bytes(4097))
    expect_opaque(b, work, d, odd, "size 4097 is not a multiple of the 2-byte")
    expect_error(b, work, d, odd + ": size 4097", strict=True)
    # upper case names are tensor files too
    up = os.path.join(work, "upper")
    os.makedirs(up)
    gaussian(np.random.default_rng(2), 1 << 16).tofile(os.path.join(up, "LAYER.F32"))
    st_write(os.path.join(up, "MODEL.SAFETENSORS"),
             [("w", "BF16", [1 << 15], to_bf16(gaussian(np.random.default_rng(3), 1 << 15)).tobytes())])
    s = json.loads(run([b("ransfs-mkimage"), "--json", up, os.path.join(work, "up.img")]).stdout)
    check(s["tensors"] == 2 and "F32" in s["by_dtype"] and "BF16" in s["by_dtype"],
          "upper-case names not coded: %s" % s)
    with open(os.path.join(up, "MODEL.SAFETENSORS"), "r+b") as f:
        f.write(struct.pack("<Q", 1 << 40))
    expect_opaque(b, work, up, os.path.join(up, "MODEL.SAFETENSORS"), "runs past the end")
    print("malformed: ok")


def t_exclude(b, work, _):
    """--exclude and --exclude-from: a name pattern at any depth, a path
    pattern relative to SOURCE, a directory with everything below it."""
    src = os.path.join(work, "src")
    for d in ("a/original", "b/c", "onnx/deep/er"):
        os.makedirs(os.path.join(src, d))
    for f in ("keep.txt", "x.bin", "a/y.bin", "a/original/z.safetensors", "b/c/w.txt",
              "b/c2.txt", "onnx/deep/er/model.onnx", "a/keep.json"):
        with open(os.path.join(src, f), "w") as fh:
            fh.write(f + "\n")
    lst = os.path.join(work, "exclude.lst")
    with open(lst, "w") as f:
        f.write("# comments and blank lines are ignored\n\nonnx\r\nb/c\n")
    img = os.path.join(work, "ex.img")
    p = run([b("ransfs-mkimage"), "--json", "--exclude", "*.bin", "--exclude", "original",
             "--exclude-from", lst, src, img])
    check(json.loads(p.stdout)["excluded"] == 5, "excluded count: %s" % p.stdout)
    out = os.path.join(work, "x")
    run([b("ransfs-fsck"), "-q", img, "--extract", out])
    got = sorted(os.path.relpath(os.path.join(dp, n), out)
                 for dp, ds, fs in os.walk(out) for n in ds + fs)
    check(got == ["a", "a/keep.json", "b", "b/c2.txt", "keep.txt"], "extracted %s" % got)
    # a path pattern's '*' does not cross '/'; a pattern names no root
    p = run([b("ransfs-mkimage"), "--json", "-f", "--exclude", "*/y.bin", "--exclude", "a/*.txt",
             src, img])
    check(json.loads(p.stdout)["excluded"] == 1, "path pattern: %s" % p.stdout)
    r = subprocess.run([b("ransfs-mkimage"), "--exclude-from", os.path.join(work, "nope"), src,
                        os.path.join(work, "n.img")], capture_output=True, text=True)
    check(r.returncode == 1 and "nope: cannot read the exclude list" in r.stderr, r.stderr)
    print("exclude: ok")


def t_mtime(b, work, _):
    """--mtime / SOURCE_DATE_EPOCH: later mtimes become it, earlier ones
    stay; trees that differ only in later mtimes give identical images."""
    T = 1600000000
    src = small_tree(os.path.join(work, "src"))
    old = (T - 1000) * 10**9 + 5
    os.utime(os.path.join(src, "f.txt"), ns=(old, old))
    img, out = os.path.join(work, "m.img"), os.path.join(work, "x")
    imgs = []
    for how in (("--mtime", str(T)), "env", ("--mtime", str(T), "env-other")):
        env = dict(os.environ)
        if how == "env":
            env["SOURCE_DATE_EPOCH"] = str(T)
            args = ()
        elif "env-other" in how:
            env["SOURCE_DATE_EPOCH"] = str(T + 12345)  # --mtime wins
            args = how[:2]
        else:
            args = how
        for p_ in (os.path.join(src, "sub"), os.path.join(src, "sub", "w.f32"), src):
            t = (T + 1 + len(imgs) * 7777) * 10**9 + 123
            os.utime(p_, ns=(t, t))
        r = subprocess.run([b("ransfs-mkimage"), "-q", "-f", *args, src, img], env=env,
                           capture_output=True, text=True)
        check(r.returncode == 0, "%s: %s" % (how, r.stderr))
        shutil.rmtree(out, ignore_errors=True)
        run([b("ransfs-fsck"), "-q", img, "--extract", out])
        for rel, want in (("f.txt", old), ("sub", T * 10**9), ("sub/w.f32", T * 10**9), (".", T * 10**9)):
            got = os.lstat(os.path.join(out, rel)).st_mtime_ns
            check(got == want, "%s: %s mtime %d, wanted %d" % (how, rel, got, want))
        with open(img, "rb") as f:
            imgs.append(f.read())
    check(imgs[0] == imgs[1] == imgs[2], "images differ though only later mtimes changed")
    for bad in ("-5", "12x", ""):
        r = subprocess.run([b("ransfs-mkimage"), "--mtime", bad, src, img], capture_output=True,
                           text=True)
        check(r.returncode == 2 and "--mtime" in r.stderr, "--mtime %r: %d %s" % (bad, r.returncode, r.stderr))
    r = subprocess.run([b("ransfs-mkimage"), "-f", src, img], capture_output=True, text=True,
                       env=dict(os.environ, SOURCE_DATE_EPOCH="soon"))
    check(r.returncode == 1 and "SOURCE_DATE_EPOCH" in r.stderr, r.stderr)
    print("mtime: ok")


def t_xattr(b, work, _):
    """Extended attributes are not stored: one warning line says so."""
    src = small_tree(os.path.join(work, "src"))
    img = os.path.join(work, "x.img")
    p = run([b("ransfs-mkimage"), "-q", src, img])
    check("extended attributes" not in p.stderr, "warned without xattrs: %r" % p.stderr)
    victim = os.path.join(src, "f.txt")
    try:
        os.setxattr(victim, "user.origin", b"hub")
        os.setxattr(os.path.join(src, "sub"), "user.x", b"1")
    except OSError as e:
        print("SKIP: this file system takes no user xattrs: %s" % e)
        return SKIP
    p = run([b("ransfs-mkimage"), "--json", "-f", src, img])
    lines = [l for l in p.stderr.splitlines() if "extended attributes" in l]
    check(len(lines) == 1 and "2 entries" in lines[0] and (victim in lines[0] or "sub" in lines[0]),
          "wanted one warning about 2 entries, got %r" % p.stderr)
    check(json.loads(p.stdout)["xattr_files"] == 2, p.stdout)
    print("xattr: ok: %s" % lines[0])


def t_mkimage_cli(b, work, _):
    """--version exits 0; usage errors exit 2, failures 1."""
    p = run([b("ransfs-mkimage"), "--version"])
    check(p.stdout.startswith("ransfs-mkimage ") and p.stderr == "", "--version: %r" % p.stdout)
    p = run([b("ransfs-mkimage"), "--help"])
    for opt in ("--force", "--dereference", "--exclude", "--exclude-from", "--mtime", "--strict",
                "--version"):
        check(opt in p.stdout, "--help lacks %s" % opt)
    src = small_tree(os.path.join(work, "src"))
    for args in ([], [src], [src, "a", "b"], ["--bogus", src, "x"], ["-j", "0", src, "x"],
                 ["--tile-size", "abc", src, "x"], ["--codec=zip", src, "x"], ["--exclude"]):
        r = subprocess.run([b("ransfs-mkimage"), *args], capture_output=True, text=True,
                           cwd=work)
        check(r.returncode == 2, "%s: exit %d, wanted 2" % (args, r.returncode))
    check(not os.path.exists(os.path.join(work, "x")), "a usage error wrote an image")
    run([b("ransfs-mkimage"), os.path.join(work, "missing"), os.path.join(work, "y")], expect=1)
    print("mkimage_cli: ok")



def main():
    list_if_asked(globals())
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--mini", required=True, help="tests/data/human32-mini")
    ap.add_argument("--corpus", required=True, help="the shared corpus's human32-st")
    ap.add_argument("test")
    args = ap.parse_args()
    fn, data = lookup(globals(), args.test)
    src = {"mini": args.mini, "corpus": args.corpus, None: None}[data]
    bindir = os.path.abspath(args.bin)
    work = tempfile.mkdtemp(prefix="rfs-image-%s-" % args.test)
    rc = 1
    try:
        rc = fn(lambda tool: os.path.join(bindir, tool), work, src) or 0
    except Fail as e:
        print("FAIL: %s" % e)
    finally:
        subprocess.run(["chmod", "-R", "u+rwx", work])
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()
