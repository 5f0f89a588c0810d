#!/usr/bin/python3
"""bench_loader.py - the mount at model scale (issue 11): loader access patterns.

usage: /usr/bin/python3 tests/bench/bench_loader.py [VARIANT...]
       VARIANT = BUILD_DIR[:MOUNT_OPTS[:ENV]]   (default: build)

Each VARIANT is a daemon (BUILD_DIR/bin/ransfs) with the -o options
MOUNT_OPTS (comma-separated, e.g. readahead=8M,max_background=128) and the
environment ENV (comma-separated K=V) for the daemon.  Every measurement
runs once with each variant in turn, then on the plain file, so a
before/after or knob comparison shares one shard and one run.

Builds one bf16 safetensors shard (RFS_BENCH_GB GiB, 1 by default;
gaussian f32 rounded to bf16 like real weights) of tensors 8192 x
RFS_BENCH_COLS (8192 by default, 16384 from 5 GiB up: the issue's shard is
RFS_BENCH_GB=5, 20 tensors of 8192x16384), packs it with ransfs-mkimage,
and measures in one run, side by side, each reader through a fresh mount
and on the plain file:
  torch-load    safetensors.torch.load_file + .clone() of every tensor (only
                when torch and safetensors are importable: run this script
                with a venv's Python that has them and numpy, e.g.
                `python3 -m venv V && V/bin/pip install torch safetensors
                numpy` (~5.4 GB), then `V/bin/python bench_loader.py ...`);
  mmap-threads  torch's pattern: ONE numpy memmap of the file, 4 threads
                (RFS_BENCH_THREADS) each copying its contiguous share of
                every tensor, so the faults reach the file as several
                sequential streams at once;
  mmap-16M      Python mmap, sequential 16 MiB copies;
  read-1M       read() in 1 MiB blocks;
  read-1M-odirect  the same on a file opened O_DIRECT (the mount then
                replies straight into the buffer; the plain file is read
                from its disk, page cache or not).
Page cache: by default the image and the plain file are read once before
each run (the issue's "cached" conditions).  RFS_BENCH_COLD=1: cold disk
instead: `sync; echo 3 > /proc/sys/vm/drop_caches` before every run, so
the plain file comes cold from the disk and the mount reads the image cold
from the same disk.  Every measurement is run RFS_BENCH_ROUNDS times (2),
alternating (every other round with the variants in reverse order, so a
load that drifts during a round favours none), because the machine is
shared; the load average is printed per round.  For each mount run it prints the daemon's stats (request
latency p50/p99/max, requests, prefetch hits / late / unused / resets,
demand misses, units decoded against the file's units) and memory: the
daemon's peak RSS (VmHWM), the growth of the page cache during the load
(/proc/meminfo Cached) and how much of the image is resident after it
(fincore).  RFS_BENCH_PRETOUCH=MIB fills and frees MIB MiB of memory just
before every timed run: on a VM with free-page reporting (virtio_balloon)
the first write to memory the guest has handed back faults on the host
too, and the page cache a mount fills is such memory (docs/benchmarks.md,
"Free-page reporting on this VM"); with the pretouch every run starts with
backed free memory, as on bare metal.  RFS_BENCH_DISK_MBPS=N (implies
RFS_BENCH_COLD=1): the disk reads at most N MB/s for the bench's processes
(the readers and every daemon they start), by the block layer's throttle
(cgroup v2 io.max rbps, or v1 blkio.throttle.read_bps_device) on the disk
that holds the shard and image: a stand-in for the slower disks and network
volumes loaders read from (this machine's disk reads 1.3-3 GB/s, faster than
the mount decodes on 2 cores).  RFS_BENCH_DIR=DIR keeps the shard
and image in DIR and reuses them (delete DIR when done: they are
RFS_BENCH_GB x 1.66 GiB).  Needs
root (mounts, drop_caches), /dev/fuse, util-linux's fincore and Debian's
python3-numpy.  Not run by CTest (tests/fs's mmap_threads test checks the
same pattern's bytes).
"""
import json
import mmap
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
import rfs_testlib  # noqa: E402  (daemon_pid, wait_gone, proc_status, resident_bytes)

STATS = "user.ransfs.stats"
ROWS = 8192
TILE = 262144


def bf16(w):
    u = w.view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def build_shard(path, gib, cols):
    """n tensors of ROWS x cols bf16, written one by one (bounded memory)."""
    size = ROWS * cols * 2
    n = max(1, round(gib * (1 << 30) / size))
    rng = np.random.default_rng(11)
    header, off = {}, 0
    for i in range(n):
        header["model.layers.%d.weight" % i] = {
            "dtype": "BF16", "shape": [ROWS, cols], "data_offsets": [off, off + size]}
        off += size
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for i in range(n):
            w = rng.standard_normal((ROWS, cols), dtype=np.float32)
            w *= 0.02
            f.write(bf16(w).tobytes())
    os.rename(path + ".tmp", path)


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
    hdr.pop("__metadata__", None)
    return hdr, 8 + n


def run(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit("bench_loader: %s failed: %s" % (cmd[0], r.stderr.strip()))


def read_torch(path, hdr, base, threads):
    from safetensors.torch import load_file
    total = 0
    for t in load_file(path).values():
        total += t.clone().numel() * t.element_size()
    return total


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


def read_blocks_direct(path, hdr, base, threads):
    """read() in 1 MiB blocks of a file opened O_DIRECT: through the mount
    the daemon's reply lands straight in the buffer (no page cache, as with
    -o direct_io); the plain file then comes from its disk, not the cache."""
    total, off = 0, 0
    buf = mmap.mmap(-1, 1 << 20)  # page-aligned, as O_DIRECT on ext4 needs
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        while True:
            n = os.preadv(fd, [buf], off)
            if n <= 0:
                return total
            total += n
            off += n
    finally:
        os.close(fd)
        buf.close()


def torch_usable():
    try:
        import safetensors.torch  # noqa: F401
        import torch  # noqa: F401
        return True
    except ImportError:
        return False


READERS = [("mmap-threads", read_mmap_threads), ("mmap-16M", read_mmap_seq),
           ("read-1M", read_blocks), ("read-1M-odirect", read_blocks_direct)]


def self_cpu():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def timed(fn, path, hdr, base, threads):
    """MB/s of one read of path, and the CPU seconds the reader spent."""
    c0, t0 = self_cpu(), time.perf_counter()
    n = fn(path, hdr, base, threads)
    return n / (time.perf_counter() - t0) / 1e6, self_cpu() - c0


def proc_cpu(pid):
    """user + system CPU seconds of process pid, all its threads."""
    with open("/proc/%d/stat" % pid) as f:
        f = f.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def meminfo_cached():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Cached:"):
                return int(line.split()[1]) * 1024
    return 0


def resident(path):
    """Bytes of path in the page cache, or -1 where fincore cannot tell."""
    try:
        return rfs_testlib.resident_bytes(path)
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError):
        return -1


def daemon_pid(mnt):
    """The daemon serving mnt, found by the mount's own FUSE connection
    (tests/pylib/rfs_testlib.py): the first ransfs naming mnt could be an
    earlier run's daemon still draining after its lazy unmount."""
    try:
        return rfs_testlib.daemon_pid(mnt)
    except AssertionError as e:
        sys.exit("bench_loader: %s" % e)


def wait_exit(pid, secs=60):
    """Wait for the unmounted daemon to go, so that runs do not overlap."""
    if not rfs_testlib.wait_gone(pid, secs):
        print("bench_loader: daemon %d still alive %d s after its unmount" % (pid, secs),
              file=sys.stderr)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def pretouch():
    """RFS_BENCH_PRETOUCH MiB written once and freed (see the docstring)."""
    mib = int(os.environ.get("RFS_BENCH_PRETOUCH", "0"))
    if mib > 0:
        b = b"\1" * (mib << 20)
        del b


def whole_disk(dev):
    """major:minor of the disk under device number dev (a partition's parent)."""
    node = "/sys/dev/block/%d:%d" % (os.major(dev), os.minor(dev))
    if not os.path.exists(node):
        sys.exit("bench_loader: RFS_BENCH_DISK_MBPS: %s is not a block device's "
                 "filesystem (tmpfs or overlay?)" % node)
    if os.path.exists(os.path.join(node, "partition")):
        node = os.path.join(node, "..")
    return open(os.path.join(node, "dev")).read().strip()


def limit_disk(path, mbps):
    """Put this process (and so every child it starts from now on) into a
    cgroup whose reads from path's disk are throttled to mbps MB/s."""
    disk, bps = whole_disk(os.stat(path).st_dev), int(mbps * 1e6)
    v2 = "/sys/fs/cgroup/cgroup.controllers"
    if os.path.exists(v2) and "io" in open(v2).read().split():
        cg = "/sys/fs/cgroup/rfs-bench-loader"
        with open("/sys/fs/cgroup/cgroup.subtree_control", "w") as f:
            f.write("+io")
        os.makedirs(cg, exist_ok=True)
        knob, rule = "io.max", "%s rbps=%d" % (disk, bps)
    elif os.path.exists("/sys/fs/cgroup/blkio/blkio.throttle.read_bps_device"):
        cg = "/sys/fs/cgroup/blkio/rfs-bench-loader"
        os.makedirs(cg, exist_ok=True)
        knob, rule = "blkio.throttle.read_bps_device", "%s %d" % (disk, bps)
    else:
        sys.exit("bench_loader: RFS_BENCH_DISK_MBPS: no cgroup io (v2) or blkio (v1) "
                 "controller mounted under /sys/fs/cgroup")
    with open(os.path.join(cg, knob), "w") as f:
        f.write(rule)
    with open(os.path.join(cg, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))
    return "%s/%s = %s" % (cg, knob, rule)


def warm(path):
    with open(path, "rb") as f:
        while f.read(16 << 20):
            pass


def stats_line(st, units):
    return ("req %d p50 %d us p99 %d us max %d us | prefetched %d hits %d late %d unused %d "
            "resets %d | demand misses %d | decoded %d of %d units | cache peak %.0f MiB, "
            "over budget %d" % (
                st["reads"], st["read_us_p50"], st["read_us_p99"], st["read_us_max"],
                st["prefetched_tiles"], st["prefetch_hits"], st["prefetch_late"],
                st["prefetch_unused"], st["prefetch_resets"], st["cache_misses"],
                st["tiles_decoded"], units, st["cache_peak_bytes"] / MIB,
                st["cache_over_budget"]))


MIB = float(1 << 20)


def parts_line(st):
    """Where the requests' time went (daemons with the read_*_us_sum stats)."""
    tot = st.get("read_us_sum")
    if not tot:
        return "request time: (this daemon has no breakdown)"
    return ("request time %.2f s: on CPU %.0f%%, decoding own units %.0f%%, waiting for "
            "units others decode %.0f%%, reply %.0f%%" % (
                tot / 1e6, 100.0 * st["read_cpu_us_sum"] / tot,
                100.0 * st["read_decode_us_sum"] / tot, 100.0 * st["read_wait_us_sum"] / tot,
                100.0 * st["read_reply_us_sum"] / tot))


def mounted_run(var, img, mnt, fn, hdr, base, threads, units, cold):
    binp, opts, env = var
    os.makedirs(mnt, exist_ok=True)
    cmd = [os.path.join(binp, "ransfs"), img, mnt] + (["-o", opts] if opts else [])
    if not cold:
        warm(img)
    run(cmd, env=dict(os.environ, **env))
    pid = daemon_pid(mnt)
    try:
        if cold:
            drop_caches()
        pretouch()
        c0, d0 = meminfo_cached(), proc_cpu(pid)
        mbs, cpu = timed(fn, os.path.join(mnt, "model.safetensors"), hdr, base, threads)
        time.sleep(0.1)  # the last replies' counters
        st = json.loads(os.getxattr(mnt, STATS))
        pm = rfs_testlib.proc_status(pid)  # VmHWM, and RssAnon / RssFile at the end
        mem = "cpu s: daemon %.2f reader %.2f | daemon VmHWM %.0f MiB (at the end: anon %.0f, " \
              "file %.0f) | page cache: %+.0f MiB during the load (Cached, whole machine); " \
              "resident after it: file %.0f MiB, image %.0f MiB" % (
                  proc_cpu(pid) - d0, cpu, pm["VmHWM"] / MIB, pm["RssAnon"] / MIB,
                  pm["RssFile"] / MIB, (meminfo_cached() - c0) / MIB,
                  resident(os.path.join(mnt, "model.safetensors")) / MIB, resident(img) / MIB)
    finally:
        subprocess.run(["fusermount3", "-u", "-z", mnt])
        wait_exit(pid)
    return mbs, stats_line(st, units) + "\n      " + parts_line(st), st["read_us_log2"], mem


def plain_run(src, fn, hdr, base, threads, cold):
    if cold:
        drop_caches()
    else:
        warm(src)
    pretouch()
    c0 = meminfo_cached()
    mbs, cpu = timed(fn, src, hdr, base, threads)
    return mbs, cpu, (meminfo_cached() - c0) / MIB


def parse_variant(arg):
    """BUILD_DIR[:MOUNT_OPTS[:ENV]] -> (bin dir, opts, env dict)."""
    parts = arg.split(":")
    env = dict(kv.split("=", 1) for kv in parts[2].split(",") if kv) if len(parts) > 2 else {}
    return os.path.abspath(os.path.join(parts[0], "bin")), parts[1] if len(parts) > 1 else "", env


def prepare(w, gib, cols, mkimage):
    """The shard and its image in w (reused when there from an earlier run)."""
    d = os.path.join(w, "model")
    os.makedirs(d, exist_ok=True)
    src, img = os.path.join(d, "model.safetensors"), os.path.join(w, "model.rfs")
    if not os.path.exists(src):
        t0 = time.perf_counter()
        build_shard(src, gib, cols)
        print("shard built in %.0f s" % (time.perf_counter() - t0))
    if not os.path.exists(img):
        t0 = time.perf_counter()
        run([mkimage, "-q", d, img])
        print("image packed in %.0f s" % (time.perf_counter() - t0))
    return src, img


def main():
    args = sys.argv[1:] or ["build"]
    variants = [parse_variant(a) for a in args]
    gib = float(os.environ.get("RFS_BENCH_GB", "1"))
    cols = int(os.environ.get("RFS_BENCH_COLS", "16384" if gib >= 5 else "8192"))
    rounds = int(os.environ.get("RFS_BENCH_ROUNDS", "2"))
    threads = int(os.environ.get("RFS_BENCH_THREADS", "4"))
    disk_mbps = float(os.environ.get("RFS_BENCH_DISK_MBPS", "0"))
    cold = os.environ.get("RFS_BENCH_COLD", "0") == "1" or disk_mbps > 0
    keep = os.environ.get("RFS_BENCH_DIR")
    if os.geteuid() != 0:
        sys.exit("bench_loader: needs root (mounts, drop_caches)")
    w = keep or tempfile.mkdtemp(prefix="rfs-bench-loader.")
    readers = ([("torch-load", read_torch)] if torch_usable() else []) + READERS
    try:
        src, img = prepare(w, gib, cols, os.path.join(variants[0][0], "ransfs-mkimage"))
        hdr, base = read_header(src)
        size = os.path.getsize(src)
        print("shard: %d tensors %s bf16, %d bytes; image %d bytes (%.3f of the shard)" % (
            len(hdr), "x".join(map(str, next(iter(hdr.values()))["shape"])), size,
            os.path.getsize(img), os.path.getsize(img) / size))
        units = (size + TILE - 1) // TILE
        if disk_mbps > 0:
            print("disk limited to %.0f MB/s: %s" % (disk_mbps, limit_disk(img, disk_mbps)))
        mnt = os.path.join(w, "mnt")
        print("threads for mmap-threads: %d; rounds: %d; page cache: %s; torch: %s; "
              "pretouch: %s MiB" % (
                  threads, rounds, "cold (drop_caches before every run)" if cold else
                  "image and plain file cached", "yes" if readers[0][0] == "torch-load" else
                  "not importable (mmap-threads stands in)",
                  os.environ.get("RFS_BENCH_PRETOUCH", "0")))
        for r in range(rounds):
            print("round %d, load average %s" % (r + 1, " ".join(
                open("/proc/loadavg").read().split()[:3])))
            # Every other round in reverse order: on a shared machine the load
            # drifts, and a fixed order would hand the drift to one variant.
            order = list(range(len(variants)))[::1 if r % 2 == 0 else -1]
            for name, fn in readers:
                got = [None] * len(variants)
                for i in order:
                    got[i] = mounted_run(variants[i], img, mnt, fn, hdr, base, threads, units,
                                         cold)
                plain, cpu, pc = plain_run(src, fn, hdr, base, threads, cold)
                how = "disk" if fn is read_blocks_direct else "cold" if cold else "cached"
                print("round %d %-13s plain(%s) %7.0f MB/s (reader cpu %.2f s, page cache "
                      "%+.0f MiB)" % (r + 1, name, how, plain, cpu, pc))
                for a, (mbs, line, hist, mem) in zip(args, got):
                    print("    mount %7.0f MB/s  %.2fx  [%s]" % (mbs, mbs / plain, a))
                    print("      %s" % line)
                    print("      %s" % mem)
                    print("      read_us_log2 %s" % hist)
                sys.stdout.flush()
    finally:
        if not keep:
            shutil.rmtree(w, ignore_errors=True)


if __name__ == "__main__":
    main()
