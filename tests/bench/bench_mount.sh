#!/usr/bin/env bash
# bench_mount.sh - read benchmark of the mount (issue 4, "Benchmark").
#
#   tests/bench/bench_mount.sh [BUILD_DIR] [MODEL_DIR]
#
# On one model directory (default: a seeded synthetic bf16/f32 safetensors
# model of RFS_BENCH_MB MB, 512 by default), in one run, cold page cache
# before every measurement (drop_caches, root):
#   ransfs      the ransfs image (rANS tiles), mounted by ransfs;
#   ransfs-raw  the same directory packed with --codec=raw, mounted by ransfs
#               (the FUSE ceiling without decoding);
#   squashfuse  squashfuse_ll over mksquashfs -comp zstd (Debian packages).
# Reports: sequential MB/s (cat of every file; numpy.fromfile of every file),
# random 4 KiB pread latency p50/p99, mmap random page-fault latency p50/p99,
# peak daemon RSS (VmHWM), and the image sizes.  Every measurement gets a
# fresh mount (no decoded tile survives from the previous one).  Each mount uses its default
# options (ransfs: cache 256M, readahead 4M; squashfuse_ll: kernel defaults).
# Needs root, /dev/fuse, squashfs-tools, squashfuse, Debian's python3-numpy.
# Not run by CTest.
set -euo pipefail
BUILD=${1:-build}
BIN=$(cd "$BUILD/bin" && pwd)
MODEL=${2:-}
PY=/usr/bin/python3
MB=${RFS_BENCH_MB:-512}
[[ $(id -u) -eq 0 ]] || { echo "bench_mount: needs root (drop_caches, mounts)" >&2; exit 1; }
for t in mksquashfs squashfuse_ll fusermount3; do
  command -v $t >/dev/null || { echo "bench_mount: $t is missing" >&2; exit 1; }
done

W=$(mktemp -d /tmp/rfs-bench-mount.XXXXXX)
cleanup() {
  for m in "$W"/mnt_*; do
    [[ -d $m ]] && mountpoint -q "$m" && fusermount3 -u -z "$m"
  done
  rm -rf "$W"
}
trap cleanup EXIT INT TERM

if [[ -z $MODEL ]]; then
  MODEL=$W/model
  mkdir -p "$MODEL"
  $PY - "$MODEL" "$MB" <<'EOF'
import json, os, struct, sys
import numpy as np
out, mb = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(7)
def bf16(w):
    u = w.astype(np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
def weight(r, c):
    w = rng.normal(0, 0.02, (r, c)).astype(np.float32)
    w[rng.random(r) < 0.02] *= 6.0
    w[rng.random((r, c)) < 0.02] = 0.0
    return w
tensors, total, i = {}, 0, 0
while total < mb << 20:
    dt = "F32" if i % 8 == 7 else "BF16"
    w = weight(2048, 2048)
    a = w if dt == "F32" else bf16(w)
    tensors["layers.%d.weight" % i] = (dt, a)
    total += a.nbytes
    i += 1
hdr, off = {}, 0
for k, (dt, a) in tensors.items():
    hdr[k] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
    off += a.nbytes
h = json.dumps(hdr).encode(); h += b" " * (-len(h) % 8)
with open(os.path.join(out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    for _, a in tensors.values():
        f.write(a.tobytes())
json.dump({"model_type": "synthetic", "layers": i}, open(os.path.join(out, "config.json"), "w"))
EOF
fi

echo "model: $MODEL ($(du -sb "$MODEL" | cut -f1) bytes)"
"$BIN/ransfs-mkimage" -q "$MODEL" "$W/rans.rfs"
"$BIN/ransfs-mkimage" -q --codec=raw "$MODEL" "$W/raw.rfs"
mksquashfs "$MODEL" "$W/sq.img" -comp zstd -b 262144 -quiet -no-progress >/dev/null
mkdir -p "$W/mnt_rans" "$W/mnt_raw" "$W/mnt_sq"

$PY - "$W" "$BIN" "$MODEL" "${RFS_BENCH_OPTS:-}" "$(cd "$(dirname "$0")/../pylib" && pwd)" <<'EOF'
import json, mmap, os, random, subprocess, sys, time
import numpy as np
W, BIN, MODEL, OPTS, PYLIB = sys.argv[1:6]
sys.dont_write_bytecode = True
sys.path.insert(0, PYLIB)
import rfs_testlib  # daemon_pid
RFS_OPTS = ["-o", OPTS] if OPTS else []

def drop():
    subprocess.run(["sync"])
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")

def files(mnt):
    out = []
    for root, _, names in os.walk(mnt):
        out += [os.path.join(root, n) for n in sorted(names)]
    return [p for p in out if os.path.isfile(p)]

def pid_of(mnt, prog):
    try:
        return rfs_testlib.daemon_pid(mnt, prog)
    except AssertionError:
        return None

def hwm(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024.0
    return float("nan")

def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]

class Mount:
    """A fresh mount per measurement: no decoded tile survives from the last."""
    def __init__(self, cmd, mnt):
        self.cmd, self.mnt = cmd, mnt
    def __enter__(self):
        subprocess.run(self.cmd, check=True)
        self.pid = pid_of(self.mnt, os.path.basename(self.cmd[0]))
        drop()
        return self
    def __exit__(self, *a):
        self.hwm = hwm(self.pid) if self.pid else float("nan")
        try:
            self.stats = json.loads(os.getxattr(self.mnt, "user.ransfs.stats"))
        except OSError:
            self.stats = None
        subprocess.run(["fusermount3", "-u", self.mnt], check=True)

def bench(name, mount_cmd, mnt, img):
    r = {"name": name, "image_MB": os.path.getsize(img) / 1e6, "peak_rss_MB": 0.0}
    def done(m):
        r["peak_rss_MB"] = max(r["peak_rss_MB"], m.hwm)
    with Mount(mount_cmd, mnt) as m:
        fs = files(mnt)
        total = sum(os.path.getsize(p) for p in fs)
        big = max(fs, key=os.path.getsize)
        size = os.path.getsize(big)
        t = time.time()
        for p in fs:
            subprocess.run(["cat", p], stdout=subprocess.DEVNULL, check=True)
        r["cat_MBps"] = total / (time.time() - t) / 1e6
    done(m)
    r["stats"] = m.stats
    with Mount(mount_cmd, mnt) as m:
        t = time.time()
        for p in fs:
            np.fromfile(p, dtype=np.uint8)
        r["numpy_MBps"] = total / (time.time() - t) / 1e6
    done(m)
    rng = random.Random(1)
    with Mount(mount_cmd, mnt) as m:
        lat = []
        fd = os.open(big, os.O_RDONLY)
        for _ in range(2000):
            off = rng.randrange(0, size // 4096) * 4096
            t = time.perf_counter()
            os.pread(fd, 4096, off)
            lat.append((time.perf_counter() - t) * 1e6)
        os.close(fd)
    done(m)
    r["rand4k_p50_us"], r["rand4k_p99_us"] = pct(lat, 0.5), pct(lat, 0.99)
    with Mount(mount_cmd, mnt) as m:
        lat = []
        with open(big, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            for _ in range(1000):
                off = rng.randrange(0, size // 4096) * 4096
                t = time.perf_counter()
                mm[off]
                lat.append((time.perf_counter() - t) * 1e6)
            mm.close()
    done(m)
    r["mmap_p50_us"], r["mmap_p99_us"] = pct(lat, 0.5), pct(lat, 0.99)
    return r, total

rows = []
for name, cmd, mnt, img in (
        ("ransfs", [BIN + "/ransfs", W + "/rans.rfs", W + "/mnt_rans"] + RFS_OPTS, W + "/mnt_rans", W + "/rans.rfs"),
        ("ransfs-raw", [BIN + "/ransfs", W + "/raw.rfs", W + "/mnt_raw"] + RFS_OPTS, W + "/mnt_raw", W + "/raw.rfs"),
        ("squashfuse_ll", ["squashfuse_ll", W + "/sq.img", W + "/mnt_sq"], W + "/mnt_sq", W + "/sq.img")):
    r, total = bench(name, cmd, mnt, img)
    rows.append(r)
print("input: %.1f MB in %s, %d CPUs, ransfs options: %s, load average %s" % (
    total / 1e6, MODEL, os.cpu_count(), OPTS or "defaults",
    " ".join(open("/proc/loadavg").read().split()[:3])))
hdr = ("mount", "image MB", "cat MB/s", "numpy MB/s", "4K p50 us", "4K p99 us",
       "mmap p50 us", "mmap p99 us", "peak RSS MB")
print("| " + " | ".join(hdr) + " |")
print("|" + "---|" * len(hdr))
for r in rows:
    print("| %s | %.1f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.1f |" % (
        r["name"], r["image_MB"], r["cat_MBps"], r["numpy_MBps"], r["rand4k_p50_us"],
        r["rand4k_p99_us"], r["mmap_p50_us"], r["mmap_p99_us"], r["peak_rss_MB"]))
a, raw, sq = rows
print("ransfs/raw sequential (cat): %.2fx (target >= 0.8)" % (a["cat_MBps"] / raw["cat_MBps"]))
print("ransfs/squashfuse sequential (cat): %.2fx (target >= 2)" % (a["cat_MBps"] / sq["cat_MBps"]))
print("ransfs/squashfuse random 4K p99: %.2fx (target <= 0.5)" % (a["rand4k_p99_us"] / sq["rand4k_p99_us"]))
s = a["stats"]  # of the cat run
print("ransfs stats: decode p50 %.0f us, p99 %.0f us, prefetch hits %d of %d tiles decoded"
      % (s["decode_us_p50"], s["decode_us_p99"], s["prefetch_hits"], s["tiles_decoded"]))
EOF
