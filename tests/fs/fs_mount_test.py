#!/usr/bin/python3
"""End-to-end tests of the ransfs mount: real images, real FUSE mounts.

usage: fs_mount_test.py --bin BUILD/bin --src SOURCE_DIR [--corpus DIR] TEST

Each TEST packs its own image with ransfs-mkimage into a temporary
directory, mounts it with ransfs, checks, and always unmounts
(fusermount3 -u -z) and deletes the directory.  Needs root or a user
allowed to mount FUSE, /dev/fuse, and Debian's python3 with numpy.
Exit 0 = pass, 77 = skipped (CTest SKIP_RETURN_CODE), else fail.
Random tests print their seed; set RFS_TEST_SEED to replay one.
"""
import ctypes
import errno
import hashlib
import json
import mmap
import os
import random
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import threading
import time

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from rfs_testlib import (Cleanup, PeakRss, Skip, daemon_pid, is_mounted, log,  # noqa: E402
                         mount_test_main, proc_status, ransfs_mount, ransfs_mount_fg, seed,
                         unmount, wait_gone)
import rfs_testlib  # noqa: E402

TILE = 262144
STATS = "user.ransfs.stats"

ARGS = None
CLEAN = Cleanup()


def tool(name):
    return os.path.join(ARGS.bin, name)


def tmpdir():
    return rfs_testlib.tmpdir(CLEAN, "rfs_fs_")


def mkimage(src, img, *extra):
    r = subprocess.run([tool("ransfs-mkimage"), "-q", *extra, src, img],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("mkimage failed: " + r.stderr)
    return img


def mount(img, mnt, *opts, check=True):
    """Mount in the background (daemon); returns the CompletedProcess."""
    return ransfs_mount(CLEAN, tool("ransfs"), img, mnt, opts, check=check)


def mount_fg(img, mnt, *opts, flag="-f", err="daemon.err"):
    """Mount with -f (or flag) in a child process, stderr captured in err
    beside mnt (p.errfile); returns Popen."""
    return ransfs_mount_fg(CLEAN, tool("ransfs"), img, mnt, opts,
                           os.path.join(os.path.dirname(mnt), err), flag=flag)


def stats(mnt):
    return json.loads(os.getxattr(mnt, STATS))


def drop_cache(path):
    """Drop the page cache of one file, so reads reach the daemon again."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def compare_trees(src, mnt):
    """Listing, types, sizes, modes, mtimes, link targets and bytes."""
    n = 0
    for root, dirs, files in os.walk(src):
        rel = os.path.relpath(root, src)
        mroot = os.path.normpath(os.path.join(mnt, rel))
        assert sorted(os.listdir(mroot)) == sorted(dirs + files), "listing differs in " + rel
        for name in dirs + files:
            a, b = os.path.join(root, name), os.path.join(mroot, name)
            sa, sb = os.lstat(a), os.lstat(b)
            assert stat.S_IFMT(sa.st_mode) == stat.S_IFMT(sb.st_mode), "type " + a
            assert stat.S_IMODE(sa.st_mode) == stat.S_IMODE(sb.st_mode), \
                "mode %s: %o vs %o" % (a, sa.st_mode, sb.st_mode)
            if not stat.S_ISDIR(sa.st_mode):
                assert sa.st_mtime_ns == sb.st_mtime_ns, \
                    "mtime %s: %d vs %d" % (a, sa.st_mtime_ns, sb.st_mtime_ns)
            if stat.S_ISLNK(sa.st_mode):
                assert os.readlink(a) == os.readlink(b), "link " + a
            elif stat.S_ISREG(sa.st_mode):
                assert sa.st_size == sb.st_size, "size " + a
                assert sha(a) == sha(b), "bytes differ: " + a
                n += 1
    return n


def safetensors_bytes(rng, tensors):
    """A safetensors file from {name: ndarray} (dtype names per the format)."""
    header, data, off = {}, [], 0
    names = {np.dtype("float32"): "F32", np.dtype("float16"): "F16",
             np.dtype("int32"): "I32", np.dtype("uint16"): "BF16"}
    for name, a in tensors.items():
        b = a.tobytes()
        header[name] = {"dtype": names[a.dtype], "shape": list(a.shape),
                        "data_offsets": [off, off + len(b)]}
        data.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(data)


def weights(rng, rows, cols, dtype):
    """Normal(0, 0.02) weights with some rows scaled and some pruned to zero."""
    w = rng.normal(0, 0.02, size=(rows, cols)).astype(np.float32)
    w[rng.random(rows) < 0.05] *= 8.0
    w[rng.random((rows, cols)) < 0.03] = 0.0
    if dtype == "bf16":
        u = w.view(np.uint32)
        u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
        return u
    return w.astype(dtype)


def synth_model(d, mb, s):
    """A safetensors model of about mb MiB plus config.json; returns the dir."""
    rng = np.random.default_rng(s)
    os.makedirs(d, exist_ok=True)
    tensors, total, i = {}, 0, 0
    while total < mb << 20:
        rows, cols = int(rng.integers(64, 1024)), int(rng.choice([256, 512, 1024, 1536]))
        dt = ["bf16", "float32", "float16"][i % 3]
        t = weights(rng, rows, cols, dt)
        tensors["layers.%d.weight" % i] = t
        total += t.nbytes
        i += 1
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(safetensors_bytes(rng, tensors))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"model_type": "synthetic", "layers": i}, f)
    return d


def data_tree(base):
    """tests/data plus the awkward cases: many files, empty, modes, links."""
    src = os.path.join(base, "src")
    shutil.copytree(ARGS.src, src, symlinks=True)
    many = os.path.join(src, "many")
    os.makedirs(many)
    for i in range(1500):
        with open(os.path.join(many, "f%05d.txt" % i), "w") as f:
            f.write("x" * (i % 37))
    deep = os.path.join(src, "a", "b", "c", "d")
    os.makedirs(deep)
    open(os.path.join(deep, "empty"), "w").close()
    with open(os.path.join(deep, "exec.sh"), "w") as f:
        f.write("#!/bin/sh\necho hi\n")
    os.chmod(os.path.join(deep, "exec.sh"), 0o750)
    with open(os.path.join(deep, "private"), "wb") as f:
        f.write(os.urandom(3 * TILE + 17))
    os.chmod(os.path.join(deep, "private"), 0o600)
    os.symlink("../../../../many/f00001.txt", os.path.join(deep, "link"))
    os.symlink("/nonexistent/target", os.path.join(src, "dangling"))
    synth_model(os.path.join(src, "model"), 6, 1234)
    return src


# ---------------------------------------------------------------- tests

def t_tree():
    d = tmpdir()
    src = data_tree(d)
    img = mkimage(src, os.path.join(d, "img.rfs"))
    mnt = os.path.join(d, "mnt")
    mount(img, mnt)
    n = compare_trees(src, mnt)
    log("compared %d files" % n)
    st = os.statvfs(mnt)
    assert st.f_flag & os.ST_RDONLY
    assert STATS in os.listxattr(mnt)
    s = stats(mnt)
    for k in ("bytes_served", "tiles_decoded", "cache_hits", "cache_misses", "evictions",
              "prefetch_hits", "decode_us_p50", "decode_us_p99", "gpu_batches"):
        assert k in s, "stats lack " + k
    assert s["bytes_served"] > 0 and s["tiles_decoded"] > 0
    log(json.dumps(s))


def t_corpus():
    if not ARGS.corpus or not os.path.isdir(os.path.join(ARGS.corpus, "human32-st")):
        log("skipped: shared corpus (../shared/corpus/human32-st) is absent")
        raise Skip()
    d = tmpdir()
    src = os.path.join(d, "src")
    shutil.copytree(os.path.join(ARGS.corpus, "human32-st"), os.path.join(src, "human32-st"))
    # A raw layer_N.fp16 directory derived from it (round to nearest even).
    raw = os.path.join(src, "layers-fp16")
    os.makedirs(raw)
    path = os.path.join(src, "human32-st", "model.safetensors")
    hdr, base = read_safetensors_header(path)
    n = 0
    with open(path, "rb") as f:
        for name, t in hdr.items():
            if name == "__metadata__" or t["dtype"] != "F32":
                continue
            a, b = t["data_offsets"]
            if b - a < 4096:
                continue
            f.seek(base + a)
            v = np.frombuffer(f.read(b - a), dtype=np.float32).astype(np.float16)
            v.tofile(os.path.join(raw, "layer_%d.fp16" % n))
            n += 1
    img = mkimage(src, os.path.join(d, "img.rfs"))
    mnt = os.path.join(d, "mnt")
    mount(img, mnt)
    log("compared %d files (%d fp16 layers)" % (compare_trees(src, mnt), n))
    check_safetensors(os.path.join(src, "human32-st", "model.safetensors"),
                      os.path.join(mnt, "human32-st", "model.safetensors"))
    log(json.dumps(stats(mnt)))


def model_mount(mb=8, *opts, s=99):
    d = tmpdir()
    src = synth_model(os.path.join(d, "src"), mb, s)
    with open(os.path.join(src, "random.bin"), "wb") as f:
        f.write(np.random.default_rng(s).bytes(2 * TILE + 12345))  # stored raw
    img = mkimage(src, os.path.join(d, "img.rfs"))
    mnt = os.path.join(d, "mnt")
    mount(img, mnt, *opts)
    return d, src, img, mnt


def t_pread():
    s = seed()
    rng = random.Random(s)
    d, src, img, mnt = model_mount(8)
    for name in ("model.safetensors", "random.bin", "config.json"):
        a, b = os.path.join(src, name), os.path.join(mnt, name)
        size = os.path.getsize(a)
        fa, fb = os.open(a, os.O_RDONLY), os.open(b, os.O_RDONLY)
        try:
            for i in range(1500):
                if i % 100 == 0:
                    drop_cache(b)
                kind = rng.random()
                if kind < 0.4 and size > TILE:   # straddle a tile boundary
                    off = rng.randrange(1, size // TILE + 1) * TILE - rng.randrange(0, 70000)
                elif kind < 0.5:                 # near or past the end
                    off = size - rng.randrange(-100, 5000)
                else:
                    off = rng.randrange(0, size)
                off = max(off, 0)
                n = rng.choice([0, 1, 3, 4095, 4096, 4097, rng.randrange(0, 3 << 20)])
                got = os.pread(fb, n, off)
                want = os.pread(fa, n, off)
                assert got == want, "%s: pread(%d, %d) differs" % (name, n, off)
            assert os.pread(fb, 10, size) == b""
            assert os.pread(fb, 10, size + 12345) == b""
            assert os.pread(fb, 0, 0) == b""
            assert os.pread(fb, 10, size - 3) == os.pread(fa, 10, size - 3)
        finally:
            os.close(fa)
            os.close(fb)
    log(json.dumps(stats(mnt)))


def kernel_at_least(major, minor):
    k = tuple(int(x) for x in re.match(r"(\d+)\.(\d+)", os.uname().release).groups())
    return k >= (major, minor)


def t_pread_direct_io():
    """With -o direct_io every read reaches the daemon and leaves nothing in
    the page cache; shared mmap (Python's mmap, numpy.memmap: MAP_SHARED)
    still works and gives the same bytes where the kernel lets the daemon
    allow it (FUSE_DIRECT_IO_ALLOW_MMAP, Linux 6.6: fs/rfs_fuse_io.c, as
    libfuse 3.14 cannot ask for it), and fails with ENODEV on older ones."""
    s = seed()
    rng = random.Random(s)
    d, src, img, mnt = model_mount(4, "direct_io", "cache=4M")
    a, b = os.path.join(src, "model.safetensors"), os.path.join(mnt, "model.safetensors")
    size = os.path.getsize(a)
    with open(a, "rb") as fa, open(b, "rb", buffering=0) as fb:
        for _ in range(1000):
            off = rng.randrange(0, size)
            n = rng.randrange(0, 2 << 20)
            assert os.pread(fb.fileno(), n, off) == os.pread(fa.fileno(), n, off)
        fb.seek(0)
        assert fb.read() == fa.read()
    assert rfs_testlib.resident_bytes(b) == 0, "direct_io reads left pages in the page cache"
    with open(a, "rb") as fa:
        want = fa.read()
    if not kernel_at_least(6, 6):
        with open(b, "rb") as fb:
            try:
                mmap.mmap(fb.fileno(), 0, access=mmap.ACCESS_READ)
                raise AssertionError("shared mmap of a direct_io file on Linux < 6.6")
            except OSError as e:
                assert e.errno == errno.ENODEV, e
        return
    with open(b, "rb") as fb:
        mb = mmap.mmap(fb.fileno(), 0, access=mmap.ACCESS_READ)
        for _ in range(500):
            p = rng.randrange(0, size)
            q = min(size, p + rng.choice([1, 4096, 100000]))
            assert mb[p:q] == want[p:q], "shared mmap of a direct_io file at %d" % p
        # the direct reads of the same handle, beside the mapping
        assert os.pread(fb.fileno(), 1 << 20, size // 3) == want[size // 3:size // 3 + (1 << 20)]
        assert mb[:] == want
        mb.close()
    m = np.memmap(b, dtype=np.uint8, mode="r")
    assert m.tobytes() == want
    del m


def t_pread_odirect():
    """A file opened O_DIRECT on a default mount is read by FUSE's direct
    I/O: the bytes are the source's at any offset and length, and nothing
    lands in the page cache (docs/mount.md: loaders may ask for this path)."""
    rng = random.Random(seed())
    d, src, img, mnt = model_mount(4)
    a, b = os.path.join(src, "model.safetensors"), os.path.join(mnt, "model.safetensors")
    with open(a, "rb") as fa:
        want = fa.read()
    buf = mmap.mmap(-1, 2 << 20)
    fd = os.open(b, os.O_RDONLY | os.O_DIRECT)
    try:
        for _ in range(300):
            off = rng.randrange(0, len(want))
            n = rng.choice([1, 4096, 65536, 1 << 20, 2 << 20])
            got = os.preadv(fd, [memoryview(buf)[:n]], off)
            assert got == min(n, len(want) - off), (off, n, got)
            assert buf[:got] == want[off:off + got], "O_DIRECT read at %d+%d" % (off, n)
    finally:
        os.close(fd)
        buf.close()
    assert rfs_testlib.resident_bytes(b) == 0, "O_DIRECT reads left pages in the page cache"


def t_mmap():
    s = seed()
    rng = random.Random(s)
    d, src, img, mnt = model_mount(8)
    for name in ("model.safetensors", "random.bin"):
        a, b = os.path.join(src, name), os.path.join(mnt, name)
        size = os.path.getsize(a)
        with open(a, "rb") as fa, open(b, "rb") as fb:
            ma = mmap.mmap(fa.fileno(), 0, access=mmap.ACCESS_READ)
            mb = mmap.mmap(fb.fileno(), 0, access=mmap.ACCESS_READ)
            for _ in range(2000):              # random pages
                p = rng.randrange(0, (size + 4095) // 4096) * 4096
                q = min(size, p + rng.choice([1, 100, 4096, 10000]))
                assert mb[p:q] == ma[p:q], "mmap random page %d" % p
            drop_cache(b)
            for p in range(0, size, 1 << 20):  # sequential
                assert mb[p:p + (1 << 20)] == ma[p:p + (1 << 20)], "mmap seq %d" % p
            mb.close()
            ma.close()


def t_numpy():
    d, src, img, mnt = model_mount(8)
    a, b = os.path.join(src, "model.safetensors"), os.path.join(mnt, "model.safetensors")
    assert np.array_equal(np.fromfile(a, dtype=np.uint8), np.fromfile(b, dtype=np.uint8))
    drop_cache(b)
    ma, mb = np.memmap(a, dtype=np.uint8, mode="r"), np.memmap(b, dtype=np.uint8, mode="r")
    assert np.array_equal(ma, mb)
    assert np.array_equal(ma[::4099], mb[::4099])
    del ma, mb
    check_safetensors(a, b)


def read_safetensors_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)), 8 + n


def check_safetensors(src, mnt_path):
    """Tensors through the mount equal the source (safetensors if installed)."""
    try:
        from safetensors.numpy import load_file  # noqa
        a, b = load_file(src), load_file(mnt_path)
        assert a.keys() == b.keys()
        for k in a:
            assert np.array_equal(a[k], b[k]), k
        log("safetensors package: %d tensors equal" % len(a))
        return
    except ImportError:
        pass
    hdr, base = read_safetensors_header(mnt_path)
    assert (hdr, base) == read_safetensors_header(src)
    dt = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I32": np.int32,
          "I64": np.int64, "U8": np.uint8, "I8": np.int8, "F64": np.float64}
    with open(src, "rb") as fa, open(mnt_path, "rb") as fb:
        ma = mmap.mmap(fa.fileno(), 0, access=mmap.ACCESS_READ)
        mb = mmap.mmap(fb.fileno(), 0, access=mmap.ACCESS_READ)
        n = 0
        for name, t in hdr.items():
            if name == "__metadata__":
                continue
            a0, a1 = t["data_offsets"]
            x = np.frombuffer(ma, dtype=dt[t["dtype"]], count=(a1 - a0) // np.dtype(dt[t["dtype"]]).itemsize, offset=base + a0)
            y = np.frombuffer(mb, dtype=dt[t["dtype"]], count=x.size, offset=base + a0)
            assert np.array_equal(x.view(np.uint8), y.view(np.uint8)), name
            n += 1
        del x, y
        ma.close()
        mb.close()
    log("safetensors by format: %d tensors equal" % n)


def t_concurrent():
    s = seed()
    d, src, img, mnt = model_mount(16, "cache=8M")
    a, b = os.path.join(src, "model.safetensors"), os.path.join(mnt, "model.safetensors")
    size = os.path.getsize(a)
    errors = []

    def reader(k):
        rng = random.Random(s + k)
        fa, fb = os.open(a, os.O_RDONLY), os.open(b, os.O_RDONLY)
        try:
            base = rng.randrange(0, size // 2)  # overlapping windows
            for i in range(300):
                if i % 50 == 0:
                    drop_cache(b)
                off = base + rng.randrange(0, size // 2)
                n = rng.randrange(1, 1 << 20)
                if os.pread(fb, n, off) != os.pread(fa, n, off):
                    errors.append((k, off, n))
        except Exception as e:  # noqa
            errors.append((k, repr(e)))
        finally:
            os.close(fa)
            os.close(fb)

    th = [threading.Thread(target=reader, args=(k,)) for k in range(8)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    assert not errors, errors[:5]
    log(json.dumps(stats(mnt)))


def t_read_stats():
    """The request latency histogram and the prefetch counters move sensibly."""
    d, src, img, mnt = model_mount(16)
    b = os.path.join(mnt, "model.safetensors")
    before = stats(mnt)
    for k in ("read_us_count", "read_us_p50", "read_us_p90", "read_us_p99", "read_us_max",
              "read_us_log2", "prefetch_late", "prefetch_unused", "prefetch_resets",
              "read_us_sum", "read_cpu_us_sum", "read_decode_us_sum", "read_wait_us_sum",
              "read_reply_us_sum"):
        assert k in before, "stats lack " + k
    drop_cache(b)
    with open(b, "rb", buffering=0) as f:  # a sequential cat in 1 MiB reads
        while f.read(1 << 20):
            pass
    # A request is timed just after its reply, so the reader may ask before
    # the last one is counted: let the daemon settle (no timing asserted).
    for _ in range(100):
        st = stats(mnt)
        if st["read_us_count"] == st["reads"]:
            break
        time.sleep(0.05)
    log(json.dumps(st))
    assert st["reads"] > before["reads"]
    # Every request that reached the engine is timed once, answered or not.
    assert st["read_us_count"] == st["reads"], (st["read_us_count"], st["reads"])
    assert sum(st["read_us_log2"]) == st["read_us_count"], st["read_us_log2"]
    assert 0 < st["read_us_max"], st
    assert st["read_us_p50"] <= st["read_us_p90"] <= st["read_us_p99"] <= st["read_us_max"], st
    # The parts of a request's time are disjoint intervals inside it, on one
    # clock (each sum rounded down to whole us, which keeps the inequality).
    parts = st["read_decode_us_sum"] + st["read_wait_us_sum"] + st["read_reply_us_sum"]
    assert parts <= st["read_us_sum"], st
    assert st["read_reply_us_sum"] > 0 and st["read_cpu_us_sum"] > 0, st
    # A sequential read is what the detector prefetches for, and it uses it.
    assert st["prefetched_tiles"] > 0 and st["prefetch_hits"] > 0, st
    assert st["prefetch_late"] <= st["prefetch_hits"] <= st["prefetched_tiles"], st
    assert st["prefetch_unused"] + st["prefetch_hits"] <= st["prefetched_tiles"], st
    assert st["prefetch_resets"] <= st["reads"], st


def interleaved_copy(path, hdr, base, threads, dealt, probe=False):
    """How torch materialises mmap-backed tensors: one mapping, several threads
    each copying its share of every tensor, so the page faults reach the file
    as several sequential streams at once.  The share is contiguous (torch's
    parallel_for: thread k copies the k-th 1/threads of the tensor) or, with
    dealt, 1 MiB chunks dealt round-robin.  With probe, the first byte of
    every tensor is read before any copy, as safetensors.torch.load_file's
    mapping does (the mmap read-around of each of those faults reaches the
    daemon as a run across a tensor boundary).  Returns {name: bytes}."""
    m = np.memmap(path, dtype=np.uint8, mode="r")
    out, errors = {}, []
    if probe:
        for name, t in hdr.items():
            if name != "__metadata__" and t["data_offsets"][1] > t["data_offsets"][0]:
                int(m[base + t["data_offsets"][0]])
    for name, t in hdr.items():
        if name == "__metadata__":
            continue
        a0, a1 = t["data_offsets"]
        src, dst = m[base + a0:base + a1], np.empty(a1 - a0, dtype=np.uint8)
        share = (len(src) + threads - 1) // threads
        chunk, stride = (1 << 20, threads << 20) if dealt else (share, len(src) + 1)

        def work(k, src=src, dst=dst, chunk=chunk, stride=stride):
            try:
                for at in range(k * chunk, len(src), stride):
                    dst[at:at + chunk] = src[at:at + chunk]
            except Exception as e:  # noqa
                errors.append(repr(e))

        th = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        for x in th:
            x.start()
        for x in th:
            x.join()
        out[name] = dst.tobytes()
    del m
    assert not errors, errors[:3]
    return out


def t_mmap_threads():
    """The multi-thread interleaved mmap copy (torch's pattern) gives the bytes."""
    d, src, img, mnt = model_mount(24)
    a, b = os.path.join(src, "model.safetensors"), os.path.join(mnt, "model.safetensors")
    hdr, base = read_safetensors_header(a)
    with open(a, "rb") as f:
        data = f.read()
    # (2, contiguous, probed): torch's load_file + clone on two cores
    for threads, dealt, probe in ((4, False, False), (4, True, False), (3, True, False),
                                  (2, False, True)):
        drop_cache(b)
        got = interleaved_copy(b, hdr, base, threads, dealt, probe)
        for name, t in hdr.items():
            if name == "__metadata__":
                continue
            a0, a1 = t["data_offsets"]
            assert got[name] == data[base + a0:base + a1], \
                "%s differs (%d threads, dealt %s, probe %s)" % (name, threads, dealt, probe)
    log(json.dumps(stats(mnt)))


# Fixed overhead beyond the cache budget, documented in docs/mount.md:
# libfuse buffers and decode scratch per thread, image metadata, heap.
OVERHEAD = 48 << 20


def t_cache_budget():
    budget = 8 << 20
    d, src, img, mnt = model_mount(40, "cache=8M")
    pid = daemon_pid(mnt)
    b = os.path.join(mnt, "model.safetensors")
    size = os.path.getsize(b)
    assert size >= 4 * budget
    with PeakRss(pid, 0.005) as peak:
        for _ in range(2):
            drop_cache(b)
            with open(b, "rb") as f:
                while f.read(1 << 20):
                    pass
    st = proc_status(pid)
    s = stats(mnt)
    log("budget %d MiB, read %d MiB: peak RssAnon %.1f MiB, peak VmRSS %.1f MiB, VmHWM %.1f MiB"
        % (budget >> 20, 2 * size >> 20, peak.anon / 2**20, peak.rss / 2**20,
           st["VmHWM"] / 2**20))
    log(json.dumps(s))
    assert s["cache_peak_bytes"] <= budget + 8 * (TILE + 4096) * 4, "cache held too much"
    assert s["evictions"] > 0
    assert peak.anon <= budget + OVERHEAD, "RssAnon above budget + overhead"
    assert st["VmHWM"] <= budget + OVERHEAD + (16 << 20), "VmHWM above budget + overhead"


def t_image_pages_dropped():
    """The daemon unmaps the image pages it decoded from (rfs_batch_drop_source):
    after a sequential read (prefetch batches) and after random reads (one
    unit at a time) of a ~90 MB image, its mapped file pages have grown by
    far less than the image."""
    d, src, img, mnt = model_mount(128)
    pid = daemon_pid(mnt)
    b = os.path.join(mnt, "model.safetensors")
    size = os.path.getsize(b)
    with open(img, "rb") as f:  # the image in the page cache: decodes map it
        while f.read(1 << 24):
            pass
    limit = 16 << 20
    assert os.path.getsize(img) > 4 * limit
    base = proc_status(pid)["RssFile"]
    with open(b, "rb") as f:
        while f.read(1 << 20):
            pass
    seq = proc_status(pid)["RssFile"] - base
    drop_cache(b)
    rng = random.Random(seed())
    fd = os.open(b, os.O_RDONLY)
    try:
        for _ in range(1000):
            os.pread(fd, 4096, rng.randrange(0, size - 4096))
    finally:
        os.close(fd)
    rnd = proc_status(pid)["RssFile"] - base
    drop_cache(b)
    hdr, off = read_safetensors_header(os.path.join(src, "model.safetensors"))
    interleaved_copy(b, hdr, off, 4, False)
    thr = proc_status(pid)["RssFile"] - base
    log("image %d MiB; daemon RssFile +%.1f MiB after the sequential read, +%.1f MiB after "
        "random reads, +%.1f MiB after 4 threads' mmap copies" % (
            os.path.getsize(img) >> 20, seq / 2**20, rnd / 2**20, thr / 2**20))
    assert seq <= limit, "sequential read left %d MiB of image mapped" % (seq >> 20)
    assert rnd <= limit, "random reads left %d MiB of image mapped" % (rnd >> 20)
    assert thr <= limit, "mmap copies left %d MiB of image mapped" % (thr >> 20)


def t_corrupt():
    d, src, img, mnt = model_mount(8)
    bad = os.path.join(d, "bad.rfs")
    shutil.copy(img, bad)
    target = 3 * TILE + 1000  # some tile in the middle of model.safetensors
    out = subprocess.run([tool("fs_unit_locate"), bad, "model.safetensors", str(target)],
                         capture_output=True, text=True, check=True).stdout.split()
    unit, at, enc, start, length = (int(x) for x in out)
    log("corrupting unit %d: image bytes [%d, %d), file range [%d, %d)"
        % (unit, at, at + enc, start, start + length))
    with open(bad, "r+b") as f:
        f.seek(at + enc // 2)
        old = f.read(1)
        f.seek(at + enc // 2)
        f.write(bytes([old[0] ^ 0x5A]))
    mnt2 = os.path.join(d, "mnt2")
    p = mount_fg(bad, mnt2)
    b = os.path.join(mnt2, "model.safetensors")
    a = os.path.join(src, "model.safetensors")
    with open(b, "rb", buffering=0) as fb, open(a, "rb") as fa:
        for off in (start, start + length // 2, start + length - 1):
            try:
                os.pread(fb.fileno(), 100, off)
                raise AssertionError("read of the corrupt unit succeeded at %d" % off)
            except OSError as e:
                assert e.errno == errno.EIO, e
        # The rest of the file still reads (pages away from the bad unit).
        for off in list(range(0, start - 8192, 65536)) + \
                list(range(start + length + 8192, os.path.getsize(a), 65536)):
            assert os.pread(fb.fileno(), 4096, off) == os.pread(fa.fileno(), 4096, off), off
        try:  # twice: still EIO, logged once
            os.pread(fb.fileno(), 10, start + 5)
            raise AssertionError("second read of the corrupt unit succeeded")
        except OSError as e:
            assert e.errno == errno.EIO
    # Other files read.
    assert sha(os.path.join(mnt2, "random.bin")) == sha(os.path.join(src, "random.bin"))
    assert sha(os.path.join(mnt2, "config.json")) == sha(os.path.join(src, "config.json"))
    s = stats(mnt2)
    assert s["decode_errors"] >= 1
    unmount(mnt2)
    p.wait(timeout=10)
    p.errfile.seek(0)
    err = p.errfile.read()
    log("daemon stderr:", err.strip())
    lines = [l for l in err.splitlines() if "unit %d " % unit in l]
    assert len(lines) == 1, "expected the bad unit logged once, got %r" % err


def read_or_eio(src_path, mnt_path):
    """Read mnt_path in 64 KiB steps: every byte returned must be src_path's,
    a failed read must be EIO (skip to the next step), and no read may end
    the file early.  Returns (good reads, EIO reads)."""
    good = bad = 0
    with open(src_path, "rb") as fs_, open(mnt_path, "rb", buffering=0) as fm:
        size, off = os.path.getsize(src_path), 0
        while off < size:
            try:
                got = os.pread(fm.fileno(), 65536, off)
            except OSError as e:
                assert e.errno == errno.EIO, e
                bad += 1
                off = (off // 65536 + 1) * 65536
                continue
            assert got, "%s ends early, at %d of %d" % (mnt_path, off, size)
            assert got == os.pread(fs_.fileno(), len(got), off), (mnt_path, off)
            good += 1
            off += len(got)
    return good, bad


def t_image_changed():
    """The image file changes under the mount.  Rewritten in place (same
    size): a stored-raw range never hands out the new bytes.  Cut short (`cp
    new.img old.img` truncates first): reads of the lost part get EIO, not a
    dead daemon.  Every byte returned equals the source; the daemon keeps
    serving and unmounts cleanly."""
    d, src, img, mnt = model_mount(8)
    cut = os.path.join(d, "cut.rfs")
    shutil.copy(img, cut)
    mnt2 = os.path.join(d, "mnt2")
    p = mount_fg(cut, mnt2)
    raw_src, raw_mnt = os.path.join(src, "random.bin"), os.path.join(mnt2, "random.bin")
    assert sha(raw_mnt) == sha(raw_src)  # its RAW extent is now checked and trusted
    with open(raw_src, "rb") as f:
        f.seek(1000)
        probe = f.read(64)
    with open(cut, "r+b") as f:
        at = f.read().find(probe)
        assert at > 0, "random.bin is not stored raw"
        f.seek(at)
        f.write(bytes([probe[0] ^ 0xFF]))
    drop_cache(raw_mnt)
    good, bad = read_or_eio(raw_src, raw_mnt)
    log("rewritten in place: random.bin %d good reads, %d EIO" % (good, bad))
    assert bad > 0, "no read of the rewritten image failed"
    os.truncate(cut, os.path.getsize(cut) // 2)
    good = bad = 0
    for name in ("model.safetensors", "config.json"):
        g, b = read_or_eio(os.path.join(src, name), os.path.join(mnt2, name))
        good, bad = good + g, bad + b
    log("cut to half: %d good reads, %d EIO" % (good, bad))
    assert bad > 0, "no read reached the lost half of the image"
    assert sorted(os.listdir(mnt2)) == sorted(os.listdir(src))
    s = stats(mnt2)
    assert s["decode_errors"] >= 1 and s["image_faults"] >= 1 and s["image_changed"], s
    unmount(mnt2)
    assert p.wait(timeout=10) == 0, "daemon exit status %s" % p.returncode
    p.errfile.seek(0)
    err = p.errfile.read()
    log("daemon stderr:", err.strip())
    assert err.count("changed under the mount") == 1, err


def t_bad_image():
    d = tmpdir()
    src = synth_model(os.path.join(d, "src"), 2, 5)
    img = mkimage(src, os.path.join(d, "good.rfs"))
    data = open(img, "rb").read()
    cases = {
        "garbage": os.urandom(100000),
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "header": data[:8] + bytes([data[8] ^ 0xFF]) + data[9:],
        "tail": data[:-64] + bytes(64),
    }
    for name, blob in cases.items():
        path = os.path.join(d, name + ".rfs")
        with open(path, "wb") as f:
            f.write(blob)
        mnt = os.path.join(d, "mnt_" + name)
        r = mount(path, mnt, check=False)
        lines = r.stderr.strip().splitlines()
        log("%-9s rc=%d %s" % (name, r.returncode, r.stderr.strip()))
        assert r.returncode != 0, name + " mounted"
        assert not is_mounted(mnt), name + " left a mount"
        assert len(lines) == 1 and lines[0].startswith("ransfs: %s: " % path), r.stderr
    r = mount(os.path.join(d, "missing.rfs"), os.path.join(d, "mnt_missing"), check=False)
    assert r.returncode != 0 and "missing.rfs" in r.stderr
    r = mount(img, os.path.join(d, "mnt_opt"), "cache=banana", check=False)
    assert r.returncode != 0 and "cache" in r.stderr
    r = mount(img, os.path.join(d, "mnt_gpu"), "gpu=on", check=False)
    if r.returncode != 0:
        assert len(r.stderr.strip().splitlines()) == 1 and "gpu" in r.stderr, r.stderr
        log("gpu=on refused:", r.stderr.strip())
    else:
        log("gpu=on accepted (GPU build with a device)")


def cuda_device_present():
    d = "/proc/driver/nvidia/gpus"
    return os.path.isdir(d) and len(os.listdir(d)) > 0


def gpu_build():
    r = subprocess.run([tool("ransfs"), "--version"], capture_output=True, text=True)
    return "GPU decode: cuda" in r.stdout


def init_reply(img, mnt, *opts):
    """Mount with -d (libfuse's debug output), list the root, unmount;
    returns the fields of the INIT reply the daemon sent the kernel."""
    p = mount_fg(img, mnt, *opts, flag="-d", err="debug.err")
    os.listdir(mnt)
    unmount(mnt)
    p.wait(timeout=60)
    p.errfile.seek(0)
    lines = p.errfile.read().splitlines()
    # The reply follows the kernel's request; its lines are indented.
    start = lines.index(next(x for x in lines if x.startswith("   INIT: ")))
    reply = {}
    for x in lines[start + 1:]:
        if not x.startswith("   ") or "=" not in x:
            break
        k, v = x.strip().split("=", 1)
        reply[k] = int(v, 0)
    return reply


def t_conn_opts():
    """The connection's INIT settings: the defaults (1 MiB requests, 64
    background requests, congestion at 48), libfuse's -o max_background=,
    congestion_threshold=, max_write= when given (the bytes still right),
    and a bad value refused with one line, exit 2, nothing mounted."""
    d = tmpdir()
    src = synth_model(os.path.join(d, "src"), 3, 5)
    img = mkimage(src, os.path.join(d, "img.rfs"))
    got = init_reply(img, os.path.join(d, "mnt_dflt"))
    log("defaults: %s" % got)
    assert got["max_write"] == 1 << 20, got
    assert got["max_background"] == 64 and got["congestion_threshold"] == 48, got
    got = init_reply(img, os.path.join(d, "mnt_dbg"), "max_background=100",
                     "congestion_threshold=80", "max_write=262144")
    log("asked 100/80/256K: %s" % got)
    assert got["max_background"] == 100 and got["congestion_threshold"] == 80, got
    assert got["max_write"] == 262144, got
    mnt = os.path.join(d, "mnt")
    mount(img, mnt, "max_background=100", "congestion_threshold=80", "max_write=262144",
          "no_splice_write")
    assert compare_trees(src, mnt) == 2
    unmount(mnt)
    for bad in ("max_background=many", "congestion_threshold=-"):
        r = mount(img, mnt, bad, check=False)
        log("-o %s: rc=%d %s" % (bad, r.returncode, r.stderr.strip()))
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r
        assert bad in r.stderr and not is_mounted(mnt), r


def read_ahead_kb(mnt):
    st = os.stat(mnt)
    with open("/sys/class/bdi/%d:%d/read_ahead_kb" % (os.major(st.st_dev),
                                                      os.minor(st.st_dev))) as f:
        return int(f.read())


# ransfs's default -o readahead (docs/mount.md), in KiB.
READAHEAD_KB = 4096


def t_readahead():
    """-o readahead sets the mount's bdi read_ahead_kb (as root): the
    default, a given size, 0 = the kernel's own; a bad size exits 2."""
    if os.geteuid() != 0:
        log("skipped: -o readahead acts only for root")
        raise Skip()
    d = tmpdir()
    img = mkimage(synth_model(os.path.join(d, "src"), 2, 3), os.path.join(d, "img.rfs"))
    mnt = os.path.join(d, "mnt")
    for opt, want in ((None, READAHEAD_KB), ("readahead=2M", 2048), ("readahead=0", 128)):
        mount(img, mnt, *([opt] if opt else []))
        got = read_ahead_kb(mnt)
        log("%s: read_ahead_kb %d" % (opt or "default", got))
        assert got == want, (opt, got, want)
        unmount(mnt)
    r = mount(img, mnt, "readahead=lots", check=False)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r
    assert "readahead" in r.stderr and not is_mounted(mnt), r


def t_gpu_on_refused():
    """-o gpu=on without a usable GPU (no device, or a build without CUDA):
    one line naming the problem, non-zero exit, nothing left mounted, both
    as a daemon (the check runs after the fork) and with -f."""
    if gpu_build() and cuda_device_present():
        log("skipped: a CUDA device is present (fs_mount_gpu mounts with gpu=on there)")
        raise Skip()
    d = tmpdir()
    img = mkimage(synth_model(os.path.join(d, "src"), 2, 7), os.path.join(d, "img.rfs"))
    for fg in (False, True):
        mnt = os.path.join(d, "mnt_fg" if fg else "mnt")
        os.makedirs(mnt, exist_ok=True)
        CLEAN.push(lambda m=mnt: unmount(m))
        cmd = [tool("ransfs")] + (["-f"] if fg else []) + [img, mnt, "-o", "gpu=on"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        lines = r.stderr.strip().splitlines()
        log("%-6s rc=%d %s" % ("-f" if fg else "daemon", r.returncode, r.stderr.strip()))
        assert r.returncode != 0, "gpu=on mounted without a GPU"
        assert not is_mounted(mnt), "gpu=on left a mount"
        assert len(lines) == 1 and lines[0].startswith("ransfs: ") and "gpu=on" in lines[0], \
            r.stderr
        # The same refusal (the engine's) for a build without CUDA as for a
        # machine without a device, with the reason.
        reason = "no usable GPU: " + ("no CUDA device" if gpu_build() else
                                      "this build has no GPU support")
        assert reason in lines[0], lines[0]
    r = mount(img, os.path.join(d, "mnt_bad"), "gpu=maybe", check=False)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "gpu" in r.stderr
    # gpu=off and gpu=auto mount the same image.
    for mode in ("off", "auto"):
        mnt = os.path.join(d, "mnt_" + mode)
        mount(img, mnt, "gpu=" + mode)
        assert stats(mnt)["gpu"] == "off"
        unmount(mnt)


def t_gpu():
    """gpu=auto mounts and reads every byte (on the CPU when there is no
    usable GPU, silently).  With a CUDA device (and a CUDA build), also
    gpu=on,gpu_min=1 (every batch to the GPU): every byte, random preads,
    and the stats show tiles decoded on the GPU and no CUDA error."""
    has_gpu = gpu_build() and cuda_device_present()
    d, src, img, mnt = model_mount(8, "gpu=auto")
    log("gpu=auto: compared %d files" % compare_trees(src, mnt))
    s = stats(mnt)
    log(json.dumps(s))
    if not has_gpu:
        assert s["gpu"] == "off" and s["gpu_batches"] == 0, s
        log("gpu=on part skipped: no CUDA device")
        return
    mnt2 = os.path.join(d, "mnt_on")
    mount(img, mnt2, "gpu=on", "gpu_min=1")
    log("gpu=on: compared %d files" % compare_trees(src, mnt2))
    rng = random.Random(seed())
    a, b = os.path.join(src, "model.safetensors"), os.path.join(mnt2, "model.safetensors")
    size = os.path.getsize(a)
    with open(a, "rb") as fa, open(b, "rb", buffering=0) as fb:
        for _ in range(500):
            off = rng.randrange(size)
            n = rng.randrange(1, 3 * TILE)
            assert os.pread(fb.fileno(), n, off) == os.pread(fa.fileno(), n, off), (off, n)
    s = stats(mnt2)
    log(json.dumps(s))
    assert s["gpu"] != "off" and s["gpu_tiles"] > 0 and s["gpu_errors"] == 0 and s["gpu_usable"], s


def t_erofs():
    d, src, img, mnt = model_mount(1)
    f = os.path.join(mnt, "config.json")
    attempts = [
        lambda: open(f, "w"),
        lambda: open(f, "a"),
        lambda: open(f, "r+"),
        lambda: open(os.path.join(mnt, "new"), "w"),
        lambda: os.mkdir(os.path.join(mnt, "dir")),
        lambda: os.unlink(f),
        lambda: os.rename(f, os.path.join(mnt, "x")),
        lambda: os.chmod(f, 0o777),
        lambda: os.truncate(f, 0),
        lambda: os.symlink("x", os.path.join(mnt, "ln")),
        lambda: os.utime(f, None),
        lambda: os.setxattr(f, "user.x", b"1"),
    ]
    for i, op in enumerate(attempts):
        try:
            op()
            raise AssertionError("write attempt %d succeeded" % i)
        except OSError as e:
            assert e.errno in (errno.EROFS, errno.EPERM, errno.ENOTSUP), (i, e)
            if i < 10:
                assert e.errno == errno.EROFS, (i, e)
    assert sha(f) == sha(os.path.join(src, "config.json"))


READER = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
print("reading", flush=True)
try:
    while True:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        off = 0
        while off < size:
            os.pread(fd, 1 << 20, off)
            off += 1 << 20
except OSError as e:
    print("reader stopped:", e, flush=True)
"""


def start_reader(path):
    p = subprocess.Popen([sys.executable, "-c", READER, path], stdout=subprocess.PIPE, text=True)
    CLEAN.push(lambda: p.poll() is None and p.kill())
    assert p.stdout.readline().strip() == "reading"
    time.sleep(0.3)
    return p


def t_unmount_busy():
    d, src, img, mnt = model_mount(8)
    path = os.path.join(mnt, "model.safetensors")
    # 1. Lazy unmount while a reader is active returns at once; the daemon
    #    exits when the reader lets go.
    pid = daemon_pid(mnt)
    rd = start_reader(path)
    t0 = time.time()
    r = subprocess.run(["fusermount3", "-u", "-z", mnt], capture_output=True, timeout=10)
    assert r.returncode == 0, r.stderr
    log("lazy unmount with an active reader returned in %.3f s" % (time.time() - t0))
    rd.kill()
    rd.wait()
    assert wait_gone(pid, 10), "daemon did not exit after unmount"
    # 2. Plain unmount (umount) of an idle mount.
    mount(img, mnt)
    pid = daemon_pid(mnt)
    r = subprocess.run(["umount", mnt], capture_output=True, timeout=10)
    assert r.returncode == 0, r.stderr
    assert wait_gone(pid, 10), "daemon did not exit after umount"
    # 3. SIGTERM with an active reader: the daemon exits and unmounts.
    for sig in (signal.SIGTERM, signal.SIGINT):
        mount(img, mnt)
        pid = daemon_pid(mnt)
        rd = start_reader(path)
        os.kill(pid, sig)
        assert wait_gone(pid, 10), "daemon ignored %s with a reader active" % sig.name
        out, _ = rd.communicate(timeout=10)
        log("%s: reader saw: %s" % (sig.name, out.strip()))
        unmount(mnt)


def installed_prefix(d):
    """`cmake --install` of this build into d/prefix (the install rules of
    fs/CMakeLists.txt); returns the prefix."""
    prefix = os.path.join(d, "prefix")
    r = subprocess.run(["cmake", "--install", os.path.dirname(ARGS.bin), "--prefix", prefix],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert os.access(os.path.join(prefix, "bin", "ransfs"), os.X_OK), "ransfs not installed"
    return prefix


CLONE_NEWNS = 0x00020000


def private_mount_ns(prefix):
    """Move this test into a mount namespace of its own, where the installed
    ransfs is on the PATH that mount(8) gives its helpers.

    mount(8) drops PATH from the environment of mount.fuse3, which then runs
    `/bin/sh -c "ransfs IMAGE MNT -o ..."`: the shell's default PATH starts
    at /usr/local/sbin.  Binding prefix/bin over /usr/local/sbin, inside
    the namespace only, makes `mount -t fuse.ransfs` and fstab lines find
    the installed copy without touching the system."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        log("skipped: cannot create a mount namespace:", os.strerror(ctypes.get_errno()))
        raise Skip()
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    subprocess.run(["mount", "--bind", os.path.join(prefix, "bin"), "/usr/local/sbin"],
                   check=True)


def mounts_line(mnt):
    """The /proc/mounts line of mount point mnt (exactly one must exist)."""
    with open("/proc/self/mounts") as f:
        lines = [l for l in f if l.split()[1] == os.path.realpath(mnt)]
    assert len(lines) == 1, lines
    return lines[0].strip()


def t_mount_helper():
    """`mount -t fuse.ransfs IMAGE MNT -o ...` goes through mount.fuse3,
    with the ransfs installed by `cmake --install` into a temporary prefix:
    through mount.fuse3 itself with that prefix on PATH, through mount(8)
    with the prog#source form, and through plain `mount -t fuse.ransfs` in
    a private mount namespace (private_mount_ns).  Options reach the daemon;
    the daemon that serves each mount is the installed copy."""
    if shutil.which("mount.fuse3") is None:
        log("skipped: mount.fuse3 not installed")
        raise Skip()
    d, src, img, mnt0 = model_mount(1)
    prefix = installed_prefix(d)
    ransfs = os.path.join(prefix, "bin", "ransfs")
    private_mount_ns(prefix)
    env = dict(os.environ, PATH=os.path.join(prefix, "bin") + ":" + os.environ.get("PATH", ""))
    ways = [
        ["mount.fuse3", img, "MNT", "-t", "fuse.ransfs", "-o", "cache=64M,allow_other"],
        ["mount", "-t", "fuse", ransfs + "#" + img, "MNT", "-o", "cache=64M"],
        ["mount", "-t", "fuse.ransfs", img, "MNT", "-o", "cache=64M"],
    ]
    for i, cmd in enumerate(ways):
        mnt = os.path.join(d, "mnt_helper%d" % i)
        os.makedirs(mnt)
        CLEAN.push(lambda m=mnt: unmount(m))
        cmd = [mnt if c == "MNT" else c for c in cmd]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, (cmd, r.stderr)
        assert os.path.samefile("/proc/%d/exe" % daemon_pid(mnt), ransfs), \
            "not the installed ransfs"
        assert stats(mnt)["cache_budget"] == 64 << 20
        assert sha(os.path.join(mnt, "config.json")) == sha(os.path.join(src, "config.json"))
        line = mounts_line(mnt)
        log(" ".join(cmd[:3]), "->", line)
        assert "fuse.ransfs" in line and " ro," in line
        subprocess.run(["umount", mnt], check=True)


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def t_nosuid():
    """Every mount is nosuid,nodev, whatever the mount helper passes
    (mount.fuse3 adds dev,suid unless told otherwise), even with an explicit
    -o suid,dev from root: /proc/mounts says so, and a setuid+setgid-root
    copy of id(1) stored in the image, run by uid 65534, keeps euid and egid
    65534.  Mounted four ways, with the ransfs installed into a temporary
    prefix: ransfs directly, mount.fuse3, `mount -t fuse.ransfs`, and an
    fstab line (`mount --fstab FILE MNT`, never /etc/fstab)."""
    if shutil.which("mount.fuse3") is None or shutil.which("setpriv") is None:
        log("skipped: mount.fuse3 or setpriv not installed")
        raise Skip()
    d = tmpdir()
    os.chmod(d, 0o755)  # uid 65534 runs the binary from the mounts below
    src = os.path.join(d, "src")
    os.makedirs(src)
    shutil.copy(shutil.which("id"), os.path.join(src, "id"))
    os.chmod(os.path.join(src, "id"), 0o6755)
    img = mkimage(src, os.path.join(d, "img.rfs"))
    prefix = installed_prefix(d)
    ransfs = os.path.join(prefix, "bin", "ransfs")
    private_mount_ns(prefix)
    fstab = os.path.join(d, "fstab")
    env = dict(os.environ, PATH=os.path.join(prefix, "bin") + ":" + os.environ.get("PATH", ""))
    ways = {
        "ransfs": [ransfs, img, "MNT", "-o", "allow_other,suid,dev"],
        "mount.fuse3": ["mount.fuse3", img, "MNT", "-t", "fuse.ransfs", "-o", "allow_other"],
        "mount -t": ["mount", "-t", "fuse.ransfs", img, "MNT", "-o", "allow_other,suid,dev"],
        "fstab": ["mount", "--fstab", fstab, "MNT"],
    }
    for i, (way, cmd) in enumerate(ways.items()):
        mnt = os.path.join(d, "mnt%d" % i)
        os.makedirs(mnt)
        CLEAN.push(lambda m=mnt: unmount(m))
        with open(fstab, "w") as f:
            f.write("%s %s fuse.ransfs ro,allow_other,suid,dev 0 0\n" % (img, mnt))
        cmd = [mnt if c == "MNT" else c for c in cmd]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, (cmd, r.stderr)
        assert os.path.samefile("/proc/%d/exe" % daemon_pid(mnt), ransfs)
        line = mounts_line(mnt)
        log("%-11s -> %s" % (way, line))
        st = os.stat(os.path.join(mnt, "id"))
        assert st.st_mode & (stat.S_ISUID | stat.S_ISGID), "the image lost the setuid bits"
        r = subprocess.run(NOBODY + [os.path.join(mnt, "id")], capture_output=True, text=True)
        log("   as nobody: " + (r.stdout + r.stderr).strip())
        assert r.returncode == 0, r.stderr
        ids = subprocess.run(NOBODY + [os.path.join(mnt, "id"), "-u"], capture_output=True,
                             text=True).stdout.strip(), \
            subprocess.run(NOBODY + [os.path.join(mnt, "id"), "-g"], capture_output=True,
                           text=True).stdout.strip()
        assert ids == ("65534", "65534"), "setuid/setgid took effect: euid, egid = %s" % (ids,)
        opts = line.split()[3].split(",")
        assert "nosuid" in opts and "nodev" in opts and "ro" in opts, line
        subprocess.run(["umount", mnt], check=True)
    # mount.fuse3's drop_privileges mounts by itself (rw,suid,dev, no
    # default_permissions) and hands ransfs /dev/fd/N: refused, so the
    # helper's mount is never served.
    mnt = os.path.join(d, "mnt_dropped")
    os.makedirs(mnt)
    CLEAN.push(lambda: subprocess.run(["umount", "-l", mnt], capture_output=True))
    r = subprocess.run(["mount.fuse3", img, mnt, "-t", "fuse.ransfs", "-o",
                        "drop_privileges,allow_other"], capture_output=True, text=True, env=env,
                       timeout=60)
    log("drop_privileges: rc=%d %s" % (r.returncode, r.stderr.strip()))
    assert r.returncode != 0 and "drop_privileges" in one_line(r), r.stderr
    r = subprocess.run(NOBODY + [os.path.join(mnt, "id"), "-u"], capture_output=True, text=True)
    assert r.returncode != 0 and r.stdout == "", "the helper's mount was served: " + r.stdout


def one_line(r):
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def t_mountpoint():
    """A mount point that is already mounted, or a regular file, is refused
    with one line and exit 1, and nothing (more) is mounted."""
    d = tmpdir()
    src = os.path.join(d, "src")
    os.makedirs(src)
    with open(os.path.join(src, "a.txt"), "w") as f:
        f.write("hello\n")
    img = mkimage(src, os.path.join(d, "img.rfs"))
    mnt = os.path.join(d, "mnt")
    mount(img, mnt)
    for fg in ([], ["-f"]):
        r = subprocess.run([tool("ransfs")] + fg + [img, mnt], capture_output=True, text=True,
                           timeout=60)
        log("second mount %s: rc=%d %s" % (fg, r.returncode, r.stderr.strip()))
        assert r.returncode == 1 and "already a mount point" in one_line(r), r.stderr
        with open("/proc/self/mountinfo") as f:
            n = sum(line.split()[4] == os.path.realpath(mnt) for line in f)
        assert n == 1, "%d mounts stacked on %s" % (n, mnt)
    unmount(mnt)
    afile = os.path.join(d, "afile")
    with open(afile, "w") as f:
        f.write("x")
    r = subprocess.run([tool("ransfs"), img, afile], capture_output=True, text=True, timeout=60)
    log("file as mount point: rc=%d %s" % (r.returncode, r.stderr.strip()))
    assert r.returncode == 1 and "not a directory" in one_line(r), r.stderr
    assert not is_mounted(afile)
    r = subprocess.run([tool("ransfs"), img, os.path.join(d, "absent")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and one_line(r).startswith("ransfs: "), r.stderr


def t_fsname():
    """The fsname in /proc/mounts is the image's absolute path (symlinks
    resolved), whatever path was typed."""
    d = os.path.realpath(tmpdir())
    src = os.path.join(d, "src")
    os.makedirs(src)
    with open(os.path.join(src, "a.txt"), "w") as f:
        f.write("hello\n")
    img = mkimage(src, os.path.join(d, "img.rfs"))
    os.symlink("img.rfs", os.path.join(d, "link.rfs"))
    for i, typed in enumerate(["img.rfs", "./link.rfs"]):
        mnt = os.path.join(d, "mnt%d" % i)
        os.makedirs(mnt)
        CLEAN.push(lambda m=mnt: unmount(m))
        r = subprocess.run([tool("ransfs"), typed, "mnt%d" % i], cwd=d, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        line = mounts_line(mnt)
        log("%s -> %s" % (typed, line))
        assert line.split()[0] == img, line
        unmount(mnt)


def t_image_type():
    """A FIFO, a directory or a device as IMAGE is refused at once (no
    blocking open of a FIFO without a writer): one line naming the type,
    exit 1, nothing mounted; with -f too."""
    d = tmpdir()
    fifo = os.path.join(d, "fifo")
    os.mkfifo(fifo)
    cases = {fifo: "FIFO", d: "directory", "/dev/null": "character device"}
    mnt = os.path.join(d, "mnt")
    os.makedirs(mnt)
    for path, kind in cases.items():
        for fg in ([], ["-f"]):
            # The timeout only turns a hang into a failure; nothing is timed.
            r = subprocess.run([tool("ransfs")] + fg + [path, mnt], capture_output=True,
                               text=True, timeout=60)
            log("%-10s %s rc=%d %s" % (kind, fg, r.returncode, r.stderr.strip()))
            line = one_line(r)
            assert r.returncode == 1 and line.startswith("ransfs: %s: " % path), r.stderr
            assert "not a regular file (a %s)" % kind in line, line
            assert not is_mounted(mnt)


def t_usage():
    """No arguments, or an IMAGE without MOUNTPOINT, print the usage on
    stderr and exit 2; a bad option value and a stray argument exit 2;
    --help exits 0."""
    for args in ([], ["img.rfs"]):
        r = subprocess.run([tool("ransfs")] + args, capture_output=True, text=True, timeout=60)
        log("ransfs %s: rc=%d, %d lines on stderr" % (" ".join(args), r.returncode,
                                                       len(r.stderr.splitlines())))
        assert r.returncode == 2 and r.stderr.startswith("usage: ") and r.stdout == "", r
        assert "IMAGE MOUNTPOINT" in r.stderr and "-o cache=SIZE" in r.stderr
    d = tmpdir()
    for args in (["-o", "gpu=maybe"], ["-o", "cache=banana"], ["extra"]):
        r = subprocess.run([tool("ransfs"), "img.rfs", d] + args, capture_output=True, text=True,
                           timeout=60)
        log("ransfs img.rfs DIR %s: rc=%d %s" % (" ".join(args), r.returncode, r.stderr.strip()))
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r
    r = subprocess.run([tool("ransfs"), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("usage: ")


def dotdot_ino(d):
    """The inode readdir gives for ".." in directory d (ls -a reads d_ino)."""
    out = subprocess.run(["ls", "-ai1", d], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        ino, name = line.split(None, 1)
        if name == "..":
            return int(ino)
    raise AssertionError("no .. in " + d)


def t_hardlinks():
    """A packed hard link is one inode at the mount: same st_ino, nlink,
    both names read the same bytes; readdir's ".." is the parent."""
    d = tmpdir()
    src = os.path.join(d, "src")
    os.makedirs(os.path.join(src, "sub", "deep"))
    rng = np.random.default_rng(seed())
    first = os.path.join(src, "w.fp16")
    with open(first, "wb") as f:
        f.write((rng.standard_normal(3 * TILE // 2 + 3) * 0.02).astype("<f2").tobytes())
    names = ["w.fp16", "sub/w-link.fp16", "sub/deep/w3"]
    for rel in names[1:]:
        os.link(first, os.path.join(src, rel))
    with open(os.path.join(src, "sub", "text"), "w") as f:
        f.write("hard links\n" * 5000)
    os.link(os.path.join(src, "sub", "text"), os.path.join(src, "sub", "deep", "text2"))
    img = mkimage(src, os.path.join(d, "img.rfs"))
    mnt = os.path.join(d, "mnt")
    mount(img, mnt)
    compare_trees(src, mnt)
    for group in (names, ["sub/text", "sub/deep/text2"]):
        st = [os.lstat(os.path.join(mnt, rel)) for rel in group]
        assert len({s.st_ino for s in st}) == 1, "%s: not one inode at the mount" % group
        assert all(s.st_nlink == len(group) for s in st), \
            "%s: nlink %s, want %d" % (group, [s.st_nlink for s in st], len(group))
        data = {sha(os.path.join(mnt, rel)) for rel in group}
        assert data == {sha(os.path.join(src, group[0]))}, "%s: bytes differ" % group
    assert os.lstat(os.path.join(mnt, "sub")).st_nlink == 3  # ., .., deep
    for sub, parent in (("sub/deep", "sub"), ("sub", ".")):  # the root's .. is outside
        want = os.stat(os.path.join(mnt, parent)).st_ino
        got = dotdot_ino(os.path.join(mnt, sub))
        assert got == want, "readdir %s/..: inode %d, want %d" % (sub, got, want)
    log("hard links: one inode per group, nlink right, .. right")


def main():
    return mount_test_main(globals(), CLEAN)


if __name__ == "__main__":
    sys.exit(main())
