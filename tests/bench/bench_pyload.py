#!/usr/bin/python3
"""bench_pyload.py - ransfs.load_file against safetensors.numpy.load_file
(issue 13 §3): the Python loader, the uncompressed file, and the mount.

usage: VENV/bin/python tests/bench/bench_pyload.py [BUILD_DIR]
  (root; VENV has safetensors, e.g. BUILD_DIR/tests/python/venv, which the
  python_venv CTest creates; BUILD_DIR defaults to build)

Two bf16 models, each a safetensors file packed with ransfs-mkimage:
  real   the real weights of ../shared/corpus/human32-st (tests/data's
         human32-mini without it), F32 rounded to BF16 (nearest even; the
         corpus README's recipe), I32 kept;
  synth  a RFS_BENCH_GB (1) GiB shard of 8192x8192 bf16 tensors
         (bench_loader.py's build_shard: gaussian weights rounded to bf16).
Each is loaded, side by side in one run, RFS_BENCH_ROUNDS (3) times in
turn (the order rotates each round, so none always follows another), every
time with a cold page cache (sync; echo 3 > /proc/sys/vm/drop_caches) and
so a fresh read of the file or image from disk:
  st-file    safetensors.numpy.load_file of the uncompressed file;
  st-mount   safetensors.numpy.load_file through a ransfs mount of the
             image (default options), mounted before the caches are
             dropped; the daemon is unmounted and waited for before the
             next method runs (its exit must not overlap that one);
  ransfs     ransfs.load_file(image, ..., threads=RFS_BENCH_THREADS (0 =
             all cores)), decoding into the arrays;
  ransfs-hp  the same with hugepages=True (numpy's transparent huge pages
             for the arrays, which load_file turns off by default).
and then warm (the file or image in the page cache; a fresh daemon).
Each load runs in a fresh child process, as a user's script would (so the
bench's own heap and the last load's freed memory do not colour the
next); the child times the load alone (imports excluded), touches every
page of every array before the clock stops (a lazy load is not a load),
and returns a SHA-256 of every array's name, dtype, shape and bytes, which
must equal that of safetensors.numpy.load_file of the file.  Prints
seconds and MB/s of tensor bytes (the median round), CPU seconds (user +
system, every thread, from getrusage in the child; plus the daemon's from
/proc for st-mount) and ransfs's speed-up over each.  Not run by CTest.
"""
import hashlib
import json
import os
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(TOP, "python"))
sys.dont_write_bytecode = True
import bench_loader  # noqa: E402  (build_shard, bf16, daemon_pid, proc_cpu, wait_exit)


def die(msg):
    sys.exit("bench_pyload: " + msg)


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        die("%s failed: %s" % (" ".join(cmd), r.stderr.strip()))


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def derive_bf16(src, dst):
    """src's tensors with F32 rounded to BF16 (round to nearest even),
    others kept: a bf16 model of real weights."""
    with open(src, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        data = f.read()
    meta = h.pop("__metadata__", None)
    out, blobs, off = {}, [], 0
    for name, t in sorted(h.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        a0, a1 = t["data_offsets"]
        raw, dt = data[a0:a1], t["dtype"]
        if dt == "F32":
            raw, dt = bench_loader.bf16(np.frombuffer(raw, np.float32).copy()).tobytes(), "BF16"
        out[name] = {"dtype": dt, "shape": t["shape"], "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if meta:
        out["__metadata__"] = meta
    hb = json.dumps(out).encode()
    hb += b" " * (-len(hb) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb)
        for b in blobs:
            f.write(b)


def touch(arrays):
    """Read one byte of every page of every array (all must be resident)."""
    s = 0
    for a in arrays.values():
        if a.size:
            s += int(a.reshape(-1).view(np.uint8)[::4096].sum())
    return s


def self_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def digest(arrays):
    """SHA-256 of every array's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = arrays[k]
        h.update(("%s %s %r\n" % (k, a.dtype, a.shape)).encode())
        h.update(memoryview(np.ascontiguousarray(a).reshape(-1).view(np.uint8)))
    return h.hexdigest()


def child(how, path, threads):
    """--load HOW PATH THREADS: one load in a fresh process, as a user's
    script does it; prints JSON: seconds and CPU seconds (user + system,
    all threads) of the load alone, imports excluded, and the digest."""
    if how.startswith("ransfs"):
        import ransfs
        img, inner = path.split("::")
        hp = how == "ransfs-hp"
        load = lambda: ransfs.load_file(img, inner, threads=threads, hugepages=hp)  # noqa: E731
    else:
        import ml_dtypes  # noqa: F401  (registers bfloat16, which safetensors.numpy needs)
        from safetensors.numpy import load_file
        load = lambda: load_file(path)  # noqa: E731
    c0, t0 = self_cpu(), time.perf_counter()
    arrays = load()
    touch(arrays)
    secs, cpu = time.perf_counter() - t0, self_cpu() - c0
    print(json.dumps({"secs": secs, "cpu": cpu, "digest": digest(arrays)}))


class Method:
    """One way to load the model, run as a child process (--load HOW
    PATH): start() before the caches are dropped (the mount), stop()
    after; other_cpu() the CPU seconds spent outside the child so far
    (the daemon's)."""
    def __init__(self, name, how, path, threads):
        self.name, self.how, self.path, self.threads = name, how, path, threads

    def start(self):
        pass

    def stop(self):
        pass

    def other_cpu(self):
        return 0.0

    def load(self):
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--load", self.how,
                            self.path, str(self.threads)], capture_output=True, text=True)
        if r.returncode != 0:
            die("%s: %s" % (self.name, r.stderr.strip()))
        return json.loads(r.stdout)


class MountMethod(Method):
    def __init__(self, binp, img, mnt):
        super().__init__("st-mount", "st", os.path.join(mnt, "model.safetensors"), 0)
        self.binp, self.img, self.mnt, self.pid = binp, img, mnt, None
        os.makedirs(mnt, exist_ok=True)

    def start(self):
        run([os.path.join(self.binp, "ransfs"), self.img, self.mnt])
        self.pid = bench_loader.daemon_pid(self.mnt)

    def stop(self):
        subprocess.run(["fusermount3", "-u", "-z", self.mnt])
        bench_loader.wait_exit(self.pid)

    def other_cpu(self):
        return bench_loader.proc_cpu(self.pid)


def timed(m, cold, want):
    """(seconds, CPU seconds) of one load by method m, its bytes checked."""
    m.start()
    try:
        if cold:
            drop_caches()
        o0 = m.other_cpu()
        got = m.load()
        other = m.other_cpu() - o0
    finally:
        m.stop()
    if got["digest"] != want:
        die("%s: arrays differ from safetensors.numpy.load_file of the file" % m.name)
    return got["secs"], got["cpu"] + other


def bench_model(label, d, binp, rounds, threads):
    import ransfs
    from safetensors.numpy import load_file as st_load
    src = os.path.join(d, "model.safetensors")
    img = d + ".rfs"
    t0 = time.perf_counter()
    run([os.path.join(binp, "ransfs-mkimage"), "-q", "-f", d, img])
    with ransfs.open(img) as im:
        tensor_bytes = sum(t.size for t in im.tensors("model.safetensors"))
    print("%s: %d bytes file, %d tensor bytes, image %d bytes (%.3f), packed in %.1f s" % (
        label, os.path.getsize(src), tensor_bytes, os.path.getsize(img),
        os.path.getsize(img) / os.path.getsize(src), time.perf_counter() - t0))
    want = digest(st_load(src))
    load0 = os.getloadavg()[0]
    methods = [Method("st-file", "st", src, 0), MountMethod(binp, img, d + ".mnt"),
               Method("ransfs", "ransfs", img + "::model.safetensors", threads),
               Method("ransfs-hp", "ransfs-hp", img + "::model.safetensors", threads)]
    res = {m.name: [] for m in methods}
    for r in range(rounds):
        for m in methods[r % len(methods):] + methods[:r % len(methods)]:
            res[m.name].append(timed(m, True, want))
    warm = {}
    for m in methods:  # the files in the page cache (mount: a fresh daemon)
        timed(m, False, want)
        warm[m.name] = timed(m, False, want)
    med = {k: statistics.median(s for s, _ in v) for k, v in res.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in res.items()}
    print("  %-9s %7s %9s %7s   %s" % ("", "cold s", "cold MB/s", "cpu s",
                                     "rounds (s/cpu s) | warm s, MB/s, cpu s"))
    for m in methods:
        n = m.name
        print("  %-9s %7.3f %9.0f %7.3f   %s | %.3f, %.0f, %.3f" % (
            n, med[n], tensor_bytes / med[n] / 1e6, cpu[n],
            " ".join("%.3f/%.3f" % sc for sc in res[n]), warm[n][0],
            tensor_bytes / warm[n][0] / 1e6, warm[n][1]))
    print("  ransfs.load_file cold: %.2fx st-file, %.2fx st-mount (CPU: %.2fx, %.2fx); "
          "warm: %.2fx, %.2fx; hugepages=True cold: %.2fx the time, %.2fx the CPU" % (
              med["st-file"] / med["ransfs"], med["st-mount"] / med["ransfs"],
              cpu["st-file"] / cpu["ransfs"], cpu["st-mount"] / cpu["ransfs"],
              warm["st-file"][0] / warm["ransfs"][0], warm["st-mount"][0] / warm["ransfs"][0],
              med["ransfs-hp"] / med["ransfs"], cpu["ransfs-hp"] / cpu["ransfs"]))
    print("  load average (1 min) %.1f before, %.1f after (the machine is shared)" % (
        load0, os.getloadavg()[0]))
    sys.stdout.flush()


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--load":
        return child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
    binp = os.path.join(build, "bin")
    os.environ.setdefault("RANSFS_LIBRARY", os.path.join(build, "lib", "libransfs.so.0"))
    gib = float(os.environ.get("RFS_BENCH_GB", "1"))
    rounds = int(os.environ.get("RFS_BENCH_ROUNDS", "3"))
    threads = int(os.environ.get("RFS_BENCH_THREADS", "0"))
    if os.geteuid() != 0:
        die("needs root (drop_caches, mounts)")
    try:
        import safetensors  # noqa: F401
    except ImportError:
        die("needs safetensors: run it with BUILD/tests/python/venv/bin/python")
    import ransfs
    corpus = os.path.join(TOP, "..", "shared", "corpus", "human32-st", "model.safetensors")
    real = corpus if os.path.exists(corpus) else \
        os.path.join(TOP, "tests", "data", "human32-mini", "model.safetensors")
    print("libransfs %s (%s) features '%s'; %d CPUs; threads %d; rounds %d" % (
        ransfs.library_version(), ransfs.library_path(), ransfs.library_features(),
        os.cpu_count(), threads, rounds))
    w = tempfile.mkdtemp(prefix="rfs-bench-pyload.", dir=os.environ.get("RFS_BENCH_DIR"))
    try:
        d = os.path.join(w, "real")
        os.makedirs(d)
        derive_bf16(real, os.path.join(d, "model.safetensors"))
        bench_model("real bf16 (%s)" % os.path.relpath(real, TOP), d, binp, rounds, threads)
        d = os.path.join(w, "synth")
        os.makedirs(d)
        shard = os.path.join(d, "model.safetensors")
        bench_loader.build_shard(shard, gib, 8192)
        hdr, _ = bench_loader.read_header(shard)
        bench_model("synth bf16 %g GiB (%d tensors 8192x8192)" % (gib, len(hdr)), d, binp,
                    rounds, threads)
    finally:
        shutil.rmtree(w, ignore_errors=True)


if __name__ == "__main__":
    main()
