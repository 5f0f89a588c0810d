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
turn, every time with a cold page cache (sync; echo 3 >
/proc/sys/vm/drop_caches) and so a fresh read of the file from disk:
  st-file    safetensors.numpy.load_file of the uncompressed file;
  st-mount   safetensors.numpy.load_file through a fresh ransfs mount of
             the image (default options);
  ransfs     ransfs.load_file(image, ..., threads=RFS_BENCH_THREADS (0 =
             all cores)), decoding into the arrays.
and once more with the file in the page cache (warm).  Every result is
checked bit for bit against st-file's arrays, and every array is touched
page by page before the clock stops (a lazy load is not a load).  Prints
seconds and MB/s of tensor bytes (the median round) and ransfs's speed-up
over each.  Not run by CTest.
"""
import json
import os
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
import bench_loader  # noqa: E402  (build_shard, bf16)


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


def timed(fn):
    t0 = time.perf_counter()
    arrays = fn()
    touch(arrays)
    return time.perf_counter() - t0, arrays


def same(got, want, what):
    if sorted(got) != sorted(want) or any(
            got[k].dtype != want[k].dtype or got[k].shape != want[k].shape or
            got[k].tobytes() != want[k].tobytes() for k in want):
        die("%s: arrays differ from safetensors.numpy.load_file of the file" % what)


class Mount:
    def __init__(self, binp, img, mnt):
        self.mnt = mnt
        os.makedirs(mnt, exist_ok=True)
        run([os.path.join(binp, "ransfs"), img, mnt])

    def close(self):
        subprocess.run(["fusermount3", "-u", "-z", self.mnt])


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
    want = st_load(src)
    mnt = d + ".mnt"
    load0 = os.getloadavg()[0]

    def st_mount():
        m = Mount(binp, img, mnt)
        try:
            a = st_load(os.path.join(mnt, "model.safetensors"))
            touch(a)
            return a
        finally:
            m.close()

    methods = [("st-file", lambda: st_load(src)), ("st-mount", st_mount),
               ("ransfs", lambda: ransfs.load_file(img, "model.safetensors",
                                                   threads=threads))]
    res = {name: [] for name, _ in methods}
    for r in range(rounds):
        for name, fn in methods:
            drop_caches()
            secs, arrays = timed(fn)
            same(arrays, want, "%s %s" % (label, name))
            del arrays
            res[name].append(secs)
    warm = {}
    for name, fn in methods:  # the files in the page cache (mount: a fresh daemon)
        fn()
        warm[name] = timed(fn)[0]
    med = {k: statistics.median(v) for k, v in res.items()}
    print("  %-9s %9s %9s   %s" % ("", "cold s", "cold MB/s", "rounds (s) | warm s, MB/s"))
    for name, _ in methods:
        print("  %-9s %9.3f %9.0f   %s | %.3f, %.0f" % (
            name, med[name], tensor_bytes / med[name] / 1e6,
            " ".join("%.3f" % s for s in res[name]), warm[name],
            tensor_bytes / warm[name] / 1e6))
    print("  ransfs.load_file cold: %.2fx st-file, %.2fx st-mount; warm: %.2fx, %.2fx" % (
        med["st-file"] / med["ransfs"], med["st-mount"] / med["ransfs"],
        warm["st-file"] / warm["ransfs"], warm["st-mount"] / warm["ransfs"]))
    print("  load average (1 min) %.1f before, %.1f after (the machine is shared)" % (
        load0, os.getloadavg()[0]))
    sys.stdout.flush()


def main():
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
        hdr, _ = bench_loader.build_shard(os.path.join(d, "model.safetensors"), gib)
        bench_model("synth bf16 %g GiB (%d tensors 8192x8192)" % (gib, len(hdr)), d, binp,
                    rounds, threads)
    finally:
        shutil.rmtree(w, ignore_errors=True)


if __name__ == "__main__":
    main()
