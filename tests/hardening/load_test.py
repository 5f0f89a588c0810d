#!/usr/bin/python3
"""Load test of the mount: many readers on an image larger than the cache,
then the faults a long-running daemon meets.

usage: load_test.py --bin BUILD/bin [--mb 160] [--readers 16] [--seconds N]

1. load: a seeded synthetic safetensors model (bf16 and f32 weights, about
   --mb MiB, numpy) is packed and mounted with -o cache=16M; 16 reader
   processes (half random preads of 1 B..1 MiB, half sequential 1 MiB
   passes) read it for RFS_LOAD_SECONDS (default 60) seconds, dropping the
   page cache often so reads reach the daemon, and compare every byte with
   the source.  No error, no wrong byte; the daemon's RssAnon and VmRSS are
   sampled and must stay within the budget + the documented overhead
   (docs/mount.md); p50/p99/max read latency are printed.
2. kill -9: readers are SIGKILLed mid-read; the others go on unharmed and
   the daemon still serves.
3. unmount while reading: fusermount3 -u fails (EBUSY) and leaves the mount
   as it is; fusermount3 -u -z detaches it; open files keep reading correct
   bytes; the daemon exits once the readers are gone.
4. SIGTERM of the daemon with readers active: it exits, the readers get an
   error (never wrong bytes) and finish, the mount is gone.
Every wait is bounded; at the end no mount of ours is left in /proc/mounts
(cleanup uses fusermount3 -u -z).  Exit 0 pass, 1 fail, 77 skip.
"""
import argparse
import array
import errno
import json
import os
import random
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from rfs_testlib import (SKIP, Cleanup, PeakRss, Sanitizers, daemon_pid, fuse_usable,  # noqa: E402
                         is_mounted, log, pid_state, proc_status, ransfs_mount, wait_gone)

CACHE = 16 << 20
# docs/mount.md: resident memory is the cache budget plus a fixed overhead;
# fs_mount_cache_budget allows budget + 48 MiB of RssAnon (VmHWM + 16 MiB
# more for mapped image pages and libraries).
OVERHEAD = 48 << 20
STATS = "user.ransfs.stats"
CLEAN = Cleanup()
MNTS = []


# ---------------------------------------------------------------- reader

def reader_main(a):
    """One reader process: prints 'reading' once it has read, then reads
    until the deadline (0: until killed).  Exit 0 ok, 2 wrong bytes, 3 an
    error (errno printed) or a short read that is not at the end of file
    (what a buffered read returns when the connection dies after part of it
    came from the page cache).  Latencies (s) go to a.out as doubles."""
    rng = random.Random(a.seed)
    fb = os.open(a.path, os.O_RDONLY)
    fa = os.open(a.src, os.O_RDONLY)
    size = os.fstat(fa).st_size
    lat = array.array("d")
    nbytes = nreads = 0
    pos = rng.randrange(0, size) // 4096 * 4096
    said = False
    rc = 0
    try:
        while a.deadline == 0 or time.time() < a.deadline:
            if nreads % 32 == 0:
                os.posix_fadvise(fb, 0, 0, os.POSIX_FADV_DONTNEED)
            if a.mode == "seq":
                off, n = pos, 1 << 20
                pos = pos + n if pos + n < size else 0
            else:
                off = rng.randrange(0, size)
                n = rng.choice([1, 100, 4096, 65536, 262144, rng.randrange(1, 1 << 20)])
            t0 = time.perf_counter()
            got = os.pread(fb, n, off)
            lat.append(time.perf_counter() - t0)
            want = os.pread(fa, n, off)
            if got != want[:len(got)]:
                print("wrong bytes at [%d, +%d)" % (off, n), flush=True)
                rc = 2
                break
            if len(got) < len(want):  # a short read is an error, not wrong bytes
                print("error short read: %d of %d bytes at %d" % (len(got), n, off), flush=True)
                rc = 3
                break
            nbytes += len(got)
            nreads += 1
            if not said:
                print("reading", flush=True)
                said = True
    except OSError as e:
        print("error %s %s" % (errno.errorcode.get(e.errno, e.errno), e), flush=True)
        rc = 3
    if a.out:
        with open(a.out, "wb") as f:
            f.write(struct.pack("<QQ", nreads, nbytes))
            lat.tofile(f)
    print("done %d reads %d bytes" % (nreads, nbytes), flush=True)
    return rc


class Reader:
    def __init__(self, args, k, path, src, mode, deadline, work):
        self.out = os.path.join(work, "reader%d.%d" % (k, time.monotonic_ns()))
        cmd = [sys.executable, os.path.abspath(__file__), "--bin", args.bin, "--reader",
               "--path", path, "--src", src, "--mode", mode, "--seed", str(args.seed * 100 + k),
               "--deadline", str(deadline), "--out", self.out]
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        CLEAN.push(lambda: self.p.poll() is None and self.p.kill())
        self.k, self.mode = k, mode

    def wait_reading(self, secs=60):
        ready, _, _ = select.select([self.p.stdout], [], [], secs)
        assert ready, "reader %d: no first read within %d s" % (self.k, secs)
        line = self.p.stdout.readline().strip()
        assert line == "reading", "reader %d did not start: %r" % (self.k, line)

    def finish(self, secs):
        try:
            out, _ = self.p.communicate(timeout=secs)
        except subprocess.TimeoutExpired:
            self.p.kill()
            raise AssertionError("reader %d hung (no exit in %d s)" % (self.k, secs))
        self.text = out.strip()
        return self.p.returncode

    def results(self):
        with open(self.out, "rb") as f:
            nreads, nbytes = struct.unpack("<QQ", f.read(16))
            lat = array.array("d")
            lat.frombytes(f.read())
        return nreads, nbytes, lat


# ---------------------------------------------------------------- helpers

def to_bf16(w):
    u = w.view("<u4").astype("<u8")
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")


def synth(path, mb, seed):
    """Seeded safetensors model: bf16 and f32 weight-like tensors."""
    import numpy as np
    rng = np.random.default_rng(seed)
    hdr, blobs, off, i = {}, [], 0, 0
    while off < mb << 20:
        rows, cols = int(rng.integers(256, 2048)), int(rng.choice([1024, 2048, 4096]))
        w = rng.normal(0, 0.02, size=(rows, cols)).astype("<f4")
        w[rng.random(rows) < 0.05] *= 8.0
        if i % 3 != 2:
            b, dt = to_bf16(w).tobytes(), "BF16"
        else:
            b, dt = w.tobytes(), "F32"
        hdr["layers.%d.weight" % i] = {"dtype": dt, "shape": [rows, cols],
                                       "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
        i += 1
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)
    return i


def sanitized(binary):
    """True for an ASan/TSan build (its runtime is linked in)."""
    with open(binary, "rb") as f:
        blob = f.read()
    return b"__asan_init" in blob or b"__tsan_init" in blob


def stats(mnt):
    return json.loads(os.getxattr(mnt, STATS))


def mount(args, img, mnt):
    MNTS.append(mnt)
    ransfs_mount(CLEAN, os.path.join(args.bin, "ransfs"), img, mnt, ("cache=16M",), timeout=120)
    return daemon_pid(mnt)


def pct(sorted_vals, p):
    return sorted_vals[min(len(sorted_vals) - 1, int(p * len(sorted_vals)))]


# ---------------------------------------------------------------- phases

def phase_load(args, mnt, src, pid, work):
    secs = args.seconds
    path = os.path.join(mnt, "model.safetensors")
    deadline = time.time() + secs
    with PeakRss(pid, 0.02) as peak:
        rs = [Reader(args, k, path, src, "seq" if k % 2 else "rand", deadline, work)
              for k in range(args.readers)]
        for r in rs:
            r.wait_reading()
        bad = []
        for r in rs:
            rc = r.finish(secs + 300)
            if rc != 0:
                bad.append((r.k, rc, r.text))
    assert not bad, "readers failed: %r" % bad
    lat, nreads, nbytes = [], 0, 0
    for r in rs:
        n, b, l = r.results()
        nreads, nbytes = nreads + n, nbytes + b
        lat.extend(l)
    lat.sort()
    m, s = proc_status(pid), stats(mnt)
    log("load: %d readers x %d s: %d reads, %.1f MiB verified (%.1f MiB/s); latency p50 %.3f ms, "
        "p99 %.3f ms, max %.3f ms"
        % (args.readers, secs, nreads, nbytes / 2**20, nbytes / 2**20 / secs,
           pct(lat, 0.5) * 1e3, pct(lat, 0.99) * 1e3, lat[-1] * 1e3))
    log("load: daemon peak RssAnon %.1f MiB, peak VmRSS %.1f MiB, VmHWM %.1f MiB "
        "(budget %d MiB + overhead %d MiB)"
        % (peak.anon / 2**20, peak.rss / 2**20, m.get("VmHWM", 0) / 2**20,
           CACHE >> 20, OVERHEAD >> 20))
    log("load: stats " + json.dumps(s))
    assert s["read_errors"] == 0 and s["decode_errors"] == 0, "daemon counted errors"
    assert s["evictions"] > 0, "the image did not exceed the cache"
    if sanitized(os.path.join(args.bin, "ransfs")):
        log("load: sanitizer build: shadow memory makes RSS meaningless, not checked")
        return
    assert peak.anon <= CACHE + OVERHEAD, "RssAnon %.1f MiB above budget + overhead" \
        % (peak.anon / 2**20)
    assert m["VmHWM"] <= CACHE + OVERHEAD + (16 << 20), "VmHWM above budget + overhead"


def phase_kill9(args, mnt, src, pid, work):
    path = os.path.join(mnt, "model.safetensors")
    rs = [Reader(args, 100 + k, path, src, "seq" if k % 2 else "rand", 0, work) for k in range(8)]
    for r in rs:
        r.wait_reading()
    time.sleep(1)
    for r in rs[:4]:
        r.p.kill()  # SIGKILL mid-read (readers read continuously)
    for r in rs[:4]:
        r.finish(60)
    time.sleep(1)
    assert pid_state(pid) not in (None, "Z"), "daemon died after readers were killed"
    for r in rs[4:]:
        r.p.send_signal(signal.SIGINT)  # KeyboardInterrupt: exits non-zero
    for r in rs[4:]:
        rc = r.finish(60)
        assert "wrong bytes" not in r.text and "error" not in r.text, \
            "surviving reader %d: %s" % (r.k, r.text)
    with open(path, "rb") as fb, open(src, "rb") as fa:
        assert fb.read(3 << 20) == fa.read(3 << 20), "daemon serves wrong bytes after kill -9"
    log("kill -9: 4 of 8 readers killed mid-read; the others and the daemon went on")


def phase_unmount_busy(args, mnt, src, pid, work):
    path = os.path.join(mnt, "model.safetensors")
    rs = [Reader(args, 200 + k, path, src, "seq" if k % 2 else "rand", 0, work) for k in range(4)]
    for r in rs:
        r.wait_reading()
    r1 = subprocess.run(["fusermount3", "-u", mnt], capture_output=True, text=True, timeout=30)
    log("unmount while reading: fusermount3 -u -> exit %d: %s" % (r1.returncode, r1.stderr.strip()))
    assert r1.returncode != 0 and "busy" in r1.stderr.lower(), "busy unmount did not fail with EBUSY"
    assert is_mounted(mnt), "failed unmount left no mount"
    r2 = subprocess.run(["fusermount3", "-u", "-z", mnt], capture_output=True, text=True,
                        timeout=30)
    assert r2.returncode == 0, "lazy unmount failed: " + r2.stderr
    assert not is_mounted(mnt), "lazy unmount left the mount visible"
    time.sleep(1)  # open files go on reading (and verifying) after the detach
    for r in rs:
        r.p.send_signal(signal.SIGINT)
    for r in rs:
        r.finish(60)
        assert "wrong bytes" not in r.text and "error" not in r.text, \
            "reader %d after lazy unmount: %s" % (r.k, r.text)
    assert wait_gone(pid, 60), "daemon did not exit after lazy unmount and readers gone"
    log("unmount while reading: EBUSY, then -z detached; readers unharmed; daemon exited")


def phase_sigterm(args, mnt, src, pid, work):
    path = os.path.join(mnt, "model.safetensors")
    rs = [Reader(args, 300 + k, path, src, "seq" if k % 2 else "rand", 0, work) for k in range(8)]
    for r in rs:
        r.wait_reading()
    os.kill(pid, signal.SIGTERM)
    assert wait_gone(pid, 60), "daemon ignored SIGTERM with readers active"
    seen = {}
    for r in rs:
        r.finish(60)  # the readers end on their own: bounded, no hang
        assert "wrong bytes" not in r.text, "reader %d: %s" % (r.k, r.text)
        key = r.text.splitlines()[0].split()[1] if r.text.startswith("error") else "no error"
        seen[key] = seen.get(key, 0) + 1
    t0 = time.time()
    while is_mounted(mnt) and time.time() - t0 < 30:
        time.sleep(0.05)
    stale = is_mounted(mnt)
    log("SIGTERM with 8 readers: daemon exited; readers saw %s; mount %s"
        % (seen, "STILL PRESENT" if stale else "gone"))
    assert not stale, "stale mount after SIGTERM"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--mb", type=int, default=160)
    ap.add_argument("--readers", type=int, default=16)
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("RFS_LOAD_SECONDS", 60)))
    ap.add_argument("--reader", action="store_true", help=argparse.SUPPRESS)
    for o in ("--path", "--src", "--mode", "--out"):
        ap.add_argument(o, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=int(os.environ.get(
        "RFS_TEST_SEED", int(time.time() * 1000) % 1000000007)))
    ap.add_argument("--deadline", type=float, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.reader:
        try:
            return reader_main(args)
        except KeyboardInterrupt:
            print("done (interrupted)", flush=True)
            return 0
    args.bin = os.path.abspath(args.bin)
    why = fuse_usable()
    if why:
        log("skipped:", why)
        return SKIP
    try:
        import numpy  # noqa: F401
    except ImportError:
        log("skipped: numpy is missing")
        return SKIP
    log("seed", args.seed, "(replay with RFS_TEST_SEED=%d)" % args.seed)
    san = Sanitizers()
    work = tempfile.mkdtemp(prefix="rfs_hd_load_")
    CLEAN.push(lambda: shutil.rmtree(work, ignore_errors=True))
    rc, t_all = 1, time.time()
    try:
        srcdir = os.path.join(work, "src")
        os.makedirs(srcdir)
        src = os.path.join(srcdir, "model.safetensors")
        t0 = time.time()
        n = synth(src, args.mb, args.seed)
        img = os.path.join(work, "img.rfs")
        r = subprocess.run([os.path.join(args.bin, "ransfs-mkimage"), "-q", srcdir, img],
                           capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, "mkimage: " + r.stderr
        log("model: %d tensors, %.1f MiB -> image %.1f MiB (%.1f s); cache 16 MiB"
            % (n, os.path.getsize(src) / 2**20, os.path.getsize(img) / 2**20, time.time() - t0))
        mnt = os.path.join(work, "mnt")
        pid = mount(args, img, mnt)
        t0 = time.time()
        phase_load(args, mnt, src, pid, work)
        phase_kill9(args, mnt, src, pid, work)
        log("phases load + kill -9: %.1f s" % (time.time() - t0))
        phase_unmount_busy(args, mnt, src, pid, work)
        pid = mount(args, img, mnt)
        phase_sigterm(args, mnt, src, pid, work)
        rc = 0
    except AssertionError as e:
        log("FAIL:", e)
    finally:
        CLEAN.close()
        with open("/proc/mounts") as f:
            left = [l for l in f if any(os.path.realpath(m) in l for m in MNTS)]
        if left:
            log("FAIL: mounts left behind: %r" % left)
            rc = 1
        if san.finish():
            rc = 1
    log("%s in %.1f s" % ("PASS" if rc == 0 else "FAIL", time.time() - t_all))
    return rc


if __name__ == "__main__":
    sys.exit(main())
