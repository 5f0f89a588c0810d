#!/usr/bin/python3
"""bench_loader.py - the mount at model scale (issue 11): loader access patterns.

usage: /usr/bin/python3 tests/bench/bench_loader.py [BUILD_DIR...]

With several build directories (e.g. a copy of build/bin from before a
change, then build), every measurement runs once with each daemon in turn,
so a before/after comparison shares one shard and one run.

Builds one bf16 safetensors shard (RFS_BENCH_GB GiB, 1 by default: tensors
of 8192x8192 bf16, gaussian f32 rounded to bf16 like real weights), packs
it with ransfs-mkimage, and measures in one run, side by side, each reader
through a fresh mount with default options and on the plain file (in the
page cache):
  mmap-threads  torch's pattern: ONE numpy memmap of the file, 4 threads
                (RFS_BENCH_THREADS) each copying its contiguous share of
                every tensor, so the faults reach the file as several
                sequential streams at once;
  mmap-16M      Python mmap, sequential 16 MiB copies;
  read-1M       read() in 1 MiB blocks.
The image file is read once first so that it sits in the page cache (the
issue's conditions).  Every measurement is run RFS_BENCH_ROUNDS times (2),
alternating mount and plain file, because the machine is shared.  For each
mount run it prints the daemon's stats: request latency p50/p99/max,
requests, prefetch hits / late / unused / resets, demand misses, and units
decoded against the file's units.  Needs root (mounts), /dev/fuse and
Debian's python3-numpy.  Not run by CTest (tests/fs's mmap_threads test
checks the same pattern's bytes).
"""
import json
import mmap
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

STATS = "user.ransfs.stats"
ROWS = COLS = 8192
TILE = 262144


def bf16(w):
    u = w.view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def build_shard(path, gib):
    """n tensors of ROWS x COLS bf16, written one by one (bounded memory)."""
    n = max(1, round(gib * (1 << 30) / (ROWS * COLS * 2)))
    rng = np.random.default_rng(11)
    header, off = {}, 0
    for i in range(n):
        size = ROWS * COLS * 2
        header["model.layers.%d.weight" % i] = {
            "dtype": "BF16", "shape": [ROWS, COLS], "data_offsets": [off, off + size]}
        off += size
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for i in range(n):
            w = rng.standard_normal((ROWS, COLS), dtype=np.float32)
            w *= 0.02
            f.write(bf16(w).tobytes())
    return header, 8 + len(h)


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("bench_loader: %s failed: %s" % (cmd[0], r.stderr.strip()))


def read_mmap_threads(path, hdr, base, threads):
    m = np.memmap(path, dtype=np.uint8, mode="r")
    total = 0
    for t in hdr.values():
        a0, a1 = t["data_offsets"]
        src, dst = m[base + a0:base + a1], np.empty(a1 - a0, dtype=np.uint8)
        share = (len(src) + threads - 1) // threads

        def work(k, src=src, dst=dst, share=share):
            dst[k * share:(k + 1) * share] = src[k * share:(k + 1) * share]

        th = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        for x in th:
            x.start()
        for x in th:
            x.join()
        total += len(dst)
    del m
    return total


def read_mmap_seq(path, hdr, base, threads):
    total = 0
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        size, step = len(m), 16 << 20
        for p in range(0, size, step):
            total += len(m[p:p + step])
        m.close()
    return total


def read_blocks(path, hdr, base, threads):
    total = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return total
            total += len(b)


READERS = [("mmap-threads", read_mmap_threads), ("mmap-16M", read_mmap_seq),
           ("read-1M", read_blocks)]


def timed(fn, path, hdr, base, threads):
    t0 = time.perf_counter()
    n = fn(path, hdr, base, threads)
    return n / (time.perf_counter() - t0) / 1e6


def stats_line(st, units):
    return ("req %d p50 %d us p99 %d us max %d us | prefetched %d hits %d late %d unused %d "
            "resets %d | demand misses %d | decoded %d of %d units" % (
                st["reads"], st["read_us_p50"], st["read_us_p99"], st["read_us_max"],
                st["prefetched_tiles"], st["prefetch_hits"], st["prefetch_late"],
                st["prefetch_unused"], st["prefetch_resets"], st["cache_misses"],
                st["tiles_decoded"], units))


def mounted_run(binp, img, mnt, name, fn, hdr, base, threads, units):
    os.makedirs(mnt, exist_ok=True)
    run([os.path.join(binp, "ransfs"), img, mnt])
    try:
        mbs = timed(fn, os.path.join(mnt, "model.safetensors"), hdr, base, threads)
        time.sleep(0.1)  # the last replies' counters
        st = json.loads(os.getxattr(mnt, STATS))
    finally:
        subprocess.run(["fusermount3", "-u", "-z", mnt])
    return mbs, stats_line(st, units), st["read_us_log2"]


def plain_run(src, fn, hdr, base, threads):
    fn(src, hdr, base, threads)  # in the page cache
    return timed(fn, src, hdr, base, threads)


def main():
    builds = sys.argv[1:] or ["build"]
    bins = [os.path.abspath(os.path.join(b, "bin")) for b in builds]
    gib = float(os.environ.get("RFS_BENCH_GB", "1"))
    rounds = int(os.environ.get("RFS_BENCH_ROUNDS", "2"))
    threads = int(os.environ.get("RFS_BENCH_THREADS", "4"))
    if os.geteuid() != 0:
        sys.exit("bench_loader: needs root (mounts)")
    w = tempfile.mkdtemp(prefix="rfs-bench-loader.")
    try:
        d = os.path.join(w, "model")
        os.makedirs(d)
        src = os.path.join(d, "model.safetensors")
        t0 = time.perf_counter()
        hdr, base = build_shard(src, gib)
        size = os.path.getsize(src)
        print("shard: %d tensors %dx%d bf16, %d bytes (built in %.0f s)" % (
            len(hdr), ROWS, COLS, size, time.perf_counter() - t0))
        img = os.path.join(w, "model.rfs")
        t0 = time.perf_counter()
        run([os.path.join(bins[0], "ransfs-mkimage"), "-q", d, img])
        print("image: %d bytes (%.3f of the shard), packed in %.0f s" % (
            os.path.getsize(img), os.path.getsize(img) / size, time.perf_counter() - t0))
        with open(img, "rb") as f:  # the image in the page cache
            while f.read(16 << 20):
                pass
        units = (size + TILE - 1) // TILE
        mnt = os.path.join(w, "mnt")
        print("threads for mmap-threads: %d; rounds: %d; mount options: defaults" % (
            threads, rounds))
        for r in range(rounds):
            for name, fn in READERS:
                got = [mounted_run(b, img, mnt, name, fn, hdr, base, threads, units)
                       for b in bins]
                plain = plain_run(src, fn, hdr, base, threads)
                print("round %d %-13s plain(cached) %7.0f MB/s" % (r + 1, name, plain))
                for build, (mbs, line, hist) in zip(builds, got):
                    print("    mount %7.0f MB/s  %.2fx  [%s]" % (mbs, mbs / plain, build))
                    print("      %s" % line)
                    print("      read_us_log2 %s" % hist)
                sys.stdout.flush()
    finally:
        shutil.rmtree(w, ignore_errors=True)


if __name__ == "__main__":
    main()
