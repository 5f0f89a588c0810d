#!/usr/bin/python3
"""bench_remote.py - cold load of a model over the network (issue 12).

  tests/bench/bench_remote.py [--build build] [--work DIR] [--bf16-gib 1.0]
                              [--f32-gib 1.0] [--rate 1gbit] [--nets shaped,loopback] [--only m1,m2]
                              [--methods a,b] [--ransfs-opts k=v,...]

The servers (nginx, SeaweedFS S3 with SigV4) run in a network namespace of
this script's own behind a veth pair whose both directions are shaped with
tc tbf at --rate (netem is not available on these kernels), or on unshaped
loopback.  Models: the committed tests/data/human32-mini, ../shared/corpus/
human32-st (f32) when present, a synthetic bf16 safetensors model of
--bf16-gib GiB, and (only with --only ...,f32) a synthetic f32 one of
--f32-gib GiB.  Each is in the bucket (and the web root) twice: the
uncompressed folder and its ransfs image.

Methods, each timed from the mount command to the last tensor read (a
safetensors-format loader: header, then every tensor in file order into a
numpy buffer; other files read whole), each on a fresh mount:

  curl          a plain download of the uncompressed files (the wire limit)
  s3fs          s3fs-fuse of the uncompressed folder (-o url=,use_path_request_style)
  rclone        rclone mount of the uncompressed folder (provider = SeaweedFS)
  ransfs-s3     ransfs s3://BUCKET/MODEL.rfs, an empty cache dir
  ransfs-http   ransfs http://.../MODEL.rfs (nginx), an empty cache dir
  ransfs-warm   ransfs-http again on the filled cache dir, its page cache dropped
  ransfs-local  ransfs of the local image file, its page cache dropped

Reported per row: seconds, MB/s of the model's (uncompressed) bytes, the
bytes that crossed the link and the link utilisation (shaped only: bytes*8 /
seconds / rate), and for ransfs-http the requests from the mount command to
the first `ls`.  Needs root (netns, tc, mounts), /dev/fuse; installs s3fs and
rclone (Debian) when missing.  Not run by CTest.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "pylib"))
import rfs_remote as R  # noqa: E402
from rfs_testlib import is_mounted, unmount, wait_mounted  # noqa: E402

# The veth pair's /30 (TEST-NET-2, used only inside this script's own namespace
# pair); Net() refuses to start when the host already routes or owns it.
NS_NET, NS_HOST, NS_SERVER = "198.51.100.0/30", "198.51.100.1", "198.51.100.2"
BUCKET = "bench"
ARGS = None


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sh(*cmd, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise SystemExit("bench_remote: %s failed: %s" % (" ".join(cmd), r.stderr.strip()))
    return r


def apt_install(*pkgs):
    missing = [p for p in pkgs if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode]
    if missing:
        log("installing", *missing)
        sh("apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-qq", *missing,
           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


# ------------------------------------------------------------ models

def synth_model(d, gib, dtype, seed=1234):
    """A synthetic safetensors model (4 shards) of about gib GiB, dtype
    "bf16" or "f32": normal(0, 0.02) weights, some rows scaled, some pruned
    (bf16: rounded to nearest even); kept between runs (same seed, same
    bytes)."""
    stamp = os.path.join(d, ".done-%g" % gib)
    if os.path.exists(stamp):
        return d
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    rng = np.random.default_rng(seed)
    width = 2 if dtype == "bf16" else 4
    shards, rows, cols = 4, 4096, 4096
    per = max(1, int(gib * (1 << 30) / shards / (rows * cols * width)))
    for s in range(shards):
        hdr, off, path = {}, 0, os.path.join(d, "model-%05d-of-%05d.safetensors" % (s + 1, shards))
        for t in range(per):
            hdr["layers.%d.%d.weight" % (s, t)] = {"dtype": dtype.upper(), "shape": [rows, cols],
                                                  "data_offsets": [off, off + rows * cols * width]}
            off += rows * cols * width
        h = json.dumps(hdr).encode()
        h += b" " * (-len(h) % 8)
        with open(path, "wb") as f:
            f.write(len(h).to_bytes(8, "little") + h)
            for t in range(per):
                w = rng.normal(0, 0.02, size=(rows, cols)).astype(np.float32)
                w[rng.random(rows) < 0.1] *= rng.uniform(0.1, 8.0)
                w[rng.random((rows, cols)) < 0.05] = 0.0
                if dtype == "f32":
                    f.write(w.tobytes())
                    continue
                u = w.view(np.uint32)
                f.write(((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16).tobytes())
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"model_type": "synthetic-" + dtype, "shards": shards}, f)
    open(stamp, "w").close()
    return d


def models(work):
    out = {"committed": os.path.join(ROOT, "tests", "data", "human32-mini")}
    corpus = os.path.join(ROOT, "..", "shared", "corpus", "human32-st")
    if os.path.isdir(corpus):
        out["corpus-f32"] = os.path.normpath(corpus)
    else:
        log("corpus: ../shared/corpus/human32-st is absent, not measured")
    want = ARGS.only.split(",") if ARGS.only else ["committed", "corpus-f32", "bf16"]
    if "bf16" in want:
        out["bf16"] = synth_model(os.path.join(work, "bf16-src"), ARGS.bf16_gib, "bf16")
    if "f32" in want:
        out["f32"] = synth_model(os.path.join(work, "f32-src"), ARGS.f32_gib, "f32")
    return {k: v for k, v in out.items() if k in want}


def files_of(d):
    return sorted(os.path.relpath(os.path.join(r, n), d) for r, _, fs in os.walk(d) for n in fs
                  if not n.startswith(".") and os.path.isfile(os.path.join(r, n)))


def model_bytes(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in files_of(d))


def pack(src, img):
    if os.path.exists(img) and os.path.getmtime(img) >= max(
            os.path.getmtime(os.path.join(src, f)) for f in files_of(src)):
        return img
    t0 = time.time()
    sh(os.path.join(ARGS.bin, "ransfs-mkimage"), "-q", "-f", src, img)
    log("packed %s: %.1f s, ratio %.3f" % (img, time.time() - t0,
                                          os.path.getsize(img) / model_bytes(src)))
    return img


# ------------------------------------------------------------ loader

def load(d, names):
    """The safetensors-format loader over directory d; returns bytes read."""
    total = 0
    for rel in names:
        p = os.path.join(d, rel)
        with open(p, "rb", buffering=0) as f:
            if not rel.endswith(".safetensors"):
                total += len(f.read())
                continue
            n = int.from_bytes(f.read(8), "little")
            hdr = json.loads(f.read(n))
            base = 8 + n
            total += base
            for name, t in sorted(((k, v) for k, v in hdr.items() if k != "__metadata__"),
                                  key=lambda kv: kv[1]["data_offsets"][0]):
                a, b = t["data_offsets"]
                buf = np.empty(b - a, dtype=np.uint8)
                got = os.preadv(f.fileno(), [buf], base + a) if b > a else 0
                assert got == b - a, "short read of %s in %s" % (name, p)
                total += got
    return total


# ------------------------------------------------------------ network

class Net:
    """A namespace with the servers behind a tbf-shaped veth pair (shaped),
    or nothing (loopback)."""

    def __init__(self, kind, clean):
        self.kind, self.ns, self.host = kind, None, R.LOOP
        self.dev = None
        if kind == "shaped":
            used = sh("ip", "-4", "-o", "addr").stdout + sh("ip", "-4", "route").stdout
            if "198.51.100." in used:
                raise SystemExit("bench_remote: 198.51.100.0/24 is in use on this host "
                                 "(addresses or routes); the shaped net needs it free")
            tag = "rfsb%d" % (os.getpid() % 100000)
            self.ns, self.dev, peer = tag, tag + "h", tag + "n"
            sh("ip", "netns", "add", self.ns)
            clean.push(lambda: sh("ip", "netns", "del", self.ns, check=False))
            sh("ip", "link", "add", self.dev, "type", "veth", "peer", "name", peer)
            clean.push(lambda: sh("ip", "link", "del", self.dev, check=False))
            sh("ip", "link", "set", peer, "netns", self.ns)
            sh("ip", "addr", "add", NS_HOST + "/30", "dev", self.dev)
            sh("ip", "link", "set", self.dev, "up")
            nse = ("ip", "netns", "exec", self.ns)
            sh(*nse, "ip", "addr", "add", NS_SERVER + "/30", "dev", peer)
            sh(*nse, "ip", "link", "set", peer, "up")
            sh(*nse, "ip", "link", "set", "lo", "up")
            for cmd in (("tc", "qdisc", "add", "dev", self.dev), nse + ("tc", "qdisc", "add", "dev", peer)):
                sh(*cmd, "root", "tbf", "rate", ARGS.rate, "burst", "256kb", "latency", "20ms")
            self.host = NS_SERVER

    def rx(self):
        if not self.dev:
            return None
        with open("/sys/class/net/%s/statistics/rx_bytes" % self.dev) as f:
            return int(f.read())


class LinkSampler:
    """rx bytes of the shaped link every 0.1 s while a method runs: the
    link's rate over each second, to see where it idles."""

    def __init__(self, net):
        self.net, self.samples, self.stop = net, [], threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        if net.dev:
            self.t.start()

    def _run(self):
        while not self.stop.is_set():
            self.samples.append((time.monotonic(), self.net.rx()))
            self.stop.wait(0.1)

    def fetch_util(self, rate):
        """Utilisation while there was something to fetch: 99% of the bytes
        over the time until 99% had arrived (the tail, when the reader
        decodes what is already here, left out)."""
        if not self.net.dev or len(self.samples) < 2:
            return None
        (t0, b0), total = self.samples[0], self.samples[-1][1] - self.samples[0][1]
        for t, b in self.samples:
            if b - b0 >= 0.99 * total and t > t0:
                return (b - b0) * 8 / (t - t0) / rate
        return None

    def per_second(self):
        """MB received in each whole second of the run."""
        self.stop.set()
        if not self.net.dev:
            return None
        self.t.join()
        out, (t0, b0) = [], self.samples[0]
        for t, b in self.samples[1:]:
            if t - t0 >= 1.0:
                out.append(round((b - b0) / 1e6 / (t - t0), 1))
                t0, b0 = t, b
        return out


# ------------------------------------------------------------ methods

def drop(path):
    for p in ([path] if os.path.isfile(path) else
              [os.path.join(r, n) for r, _, fs in os.walk(path) for n in fs]):
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            continue
        # Written back first: DONTNEED leaves dirty pages (the cache dir
        # just filled) in the page cache, and their writeback would overlap
        # the next load.
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)


def timed_mount(cmd, mnt, env=None, proc=False):
    os.makedirs(mnt, exist_ok=True)
    if proc:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        if not wait_mounted(mnt, p, 120):
            raise SystemExit("bench_remote: %s did not mount: %s" % (cmd[0], p.stderr.read()))
        return p
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if r.returncode != 0 or not is_mounted(mnt):
        raise SystemExit("bench_remote: %s failed: %s" % (" ".join(cmd[:2]), r.stderr.strip()))
    return None


def daemon_cpu(mnt):
    """CPU seconds (user + system) of the processes serving mount point mnt
    (those whose argv names it: ransfs, s3fs, rclone), or None."""
    want, tick, total, found = os.path.realpath(mnt).encode(), os.sysconf("SC_CLK_TCK"), 0, 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
            with open("/proc/%s/stat" % pid) as f:
                st = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if want in argv or mnt.encode() in argv:
            total, found = total + int(st[11]) + int(st[12]), found + 1
    return total / tick if found else None


def run_mount(name, cmd, mnt, names, env=None, proc=False, before=None):
    if before:
        before()
    t0 = time.monotonic()
    p = timed_mount(cmd, mnt, env, proc)
    t_mount = time.monotonic() - t0
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    n = load(mnt, names)
    dt = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    extra = {"daemon_cpu_s": daemon_cpu(mnt),
             "loader_cpu_s": ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime}
    if name == "ransfs":
        st = json.loads(os.getxattr(mnt, "user.ransfs.stats"))
        extra.update({k: st[k] for k in ("remote_requests", "remote_bytes", "remote_retries")
                      if k in st})
    unmount(mnt)
    if p is not None:
        p.wait(timeout=60)
    return dict(extra, secs=dt, mount_secs=t_mount, bytes=n)


def measure(net, model, src, srv, work):
    names = files_of(src)
    size = model_bytes(src)
    s3, ng = srv["s3"], srv["nginx"]
    rows = []
    mnt = os.path.join(work, "mnt")
    ransfs = os.path.join(ARGS.bin, "ransfs")
    env = s3.env()
    env.pop("AWS_CA_BUNDLE", None)

    def row(method, fn):
        if ARGS.methods and method not in ARGS.methods.split(","):
            return
        rx0 = net.rx()
        sampler = LinkSampler(net)
        try:
            r = fn()
        except SystemExit as e:
            log("%s %s %s: not measured: %s" % (net.kind, model, method, e))
            return
        finally:
            per_s = sampler.per_second()
        if per_s is not None:
            r["link_mb_per_s"] = per_s
            r["fetch_util"] = sampler.fetch_util(rate_bps(ARGS.rate))
        assert r["bytes"] == size, (method, r["bytes"], size)
        if rx0 is not None:
            r["link_bytes"] = net.rx() - rx0
            r["util"] = r["link_bytes"] * 8 / r["secs"] / rate_bps(ARGS.rate)
        r.update(net=net.kind, model=model, method=method, model_bytes=size,
                 mbps=size / r["secs"] / 1e6)
        log(json.dumps(r))
        rows.append(r)

    def curl_all():
        t0 = time.monotonic()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        args = []
        for rel in names:
            args += ["-o", "/dev/null", ng.url("%s/%s" % (model, rel))]
        R.curl("--fail", *args, check=True, timeout=3600)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {"secs": time.monotonic() - t0, "bytes": size,
                "daemon_cpu_s": ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime}

    row("curl", curl_all)
    pw = os.path.join(work, "s3fs.passwd")
    with open(pw, "w") as f:
        f.write("%s:%s\n" % (s3.access_key, s3.secret))
    os.chmod(pw, 0o600)
    row("s3fs", lambda: run_mount("s3fs", [
        "s3fs", "%s:/%s" % (BUCKET, model), mnt, "-o",
        "url=%s,use_path_request_style,passwd_file=%s,ro" % (s3.endpoint, pw)], mnt, names))
    rc = os.path.join(work, "rclone.conf")
    with open(rc, "w") as f:
        f.write("[sw]\ntype = s3\nprovider = SeaweedFS\naccess_key_id = %s\n"
                "secret_access_key = %s\nendpoint = %s\n" % (s3.access_key, s3.secret,
                                                            s3.endpoint))
    row("rclone", lambda: run_mount("rclone", [
        "rclone", "--config", rc, "mount", "sw:%s/%s" % (BUCKET, model), mnt, "--read-only"],
        mnt, names, env=env, proc=True))
    img_key = model + ".rfs"
    if not srv["remote"]:
        log("ransfs rows: not measured (%s)" % srv["why"])
        return rows
    cache = os.path.join(work, "cache")
    xo = "," + ARGS.ransfs_opts if ARGS.ransfs_opts else ""

    def fresh():
        shutil.rmtree(cache, ignore_errors=True)
    row("ransfs-s3", lambda: run_mount("ransfs", [
        ransfs, "s3://%s/%s" % (BUCKET, img_key), mnt, "-o",
        "s3_endpoint=%s,cache_dir=%s%s" % (s3.endpoint, cache, xo)], mnt, names, env=env,
        before=fresh))
    n0 = [0]

    def http_cold():
        fresh()
        n0[0] = len(ng.requests())
    url = ng.url(img_key)
    row("ransfs-http", lambda: run_mount("ransfs", [ransfs, url, mnt, "-o",
                                                    "cache_dir=" + cache + xo], mnt, names,
                                         before=http_cold))
    row("ransfs-warm", lambda: run_mount("ransfs", [ransfs, url, mnt, "-o",
                                                    "cache_dir=" + cache + xo], mnt, names,
                                         before=lambda: drop(cache)))
    local = os.path.join(work, "www", img_key)
    row("ransfs-local", lambda: run_mount("ransfs", [ransfs, local, mnt], mnt, names,
                                          before=lambda: drop(local)))
    # Requests from the mount command to the first ls.
    n0[0] = len(ng.requests())
    fresh()
    timed_mount([ransfs, url, mnt, "-o", "cache_dir=" + cache], mnt)
    os.listdir(mnt)
    rt = len(ng.requests()) - n0[0]
    unmount(mnt)
    for r in rows:
        if r["method"] == "ransfs-http":
            r["mount_requests"] = rt
    return rows


def rate_bps(rate):
    units = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
    for u, m in units.items():
        if rate.endswith(u):
            return float(rate[:-len(u)]) * m
    return float(rate)


def remote_support():
    r = subprocess.run([os.path.join(ARGS.bin, "ransfs"), "--help"], capture_output=True,
                       text=True)
    if "s3://" in (r.stdout + r.stderr):
        return True, ""
    return False, "this ransfs takes no URL (its --help names no s3://)"


def start_servers(net, work, mods, clean):
    www = os.path.join(work, "www")
    os.makedirs(www, exist_ok=True)
    for name, src in mods.items():
        link = os.path.join(www, name)
        if not os.path.islink(link):
            os.symlink(src, link)
        pack(src, os.path.join(www, name + ".rfs"))
    venv = os.path.join(ARGS.build, "venv-remote")
    if not R.find_weed(venv):
        sh("/usr/bin/python3", os.path.join(ROOT, "tests", "remote", "setup_venv.py"), venv)
    d = tempfile.mkdtemp(prefix="rfs_bench_srv_", dir=work)
    clean.push(lambda: shutil.rmtree(d, ignore_errors=True))
    ng = R.Nginx(www, os.path.join(d, "nginx"), clean, host=net.host, netns=net.ns).start()
    s3 = R.SeaweedS3(R.find_weed(venv), os.path.join(d, "weed"), clean, host=net.host,
                     netns=net.ns).start(secs=180)
    s3.create_bucket(BUCKET)
    s3_methods = ("s3fs", "rclone", "ransfs-s3")
    if ARGS.methods and not set(ARGS.methods.split(",")) & set(s3_methods):
        mods = {}  # no method reads the bucket: nothing to upload
    for name, src in mods.items():
        t0 = time.time()
        s3.put_tree(BUCKET, src, prefix=name + "/")
        s3.put(BUCKET, name + ".rfs", path=os.path.join(www, name + ".rfs"))
        log("uploaded %s: %.1f s" % (name, time.time() - t0))
    ok, why = remote_support()
    return {"nginx": ng, "s3": s3, "remote": ok, "why": why}


def table(rows):
    out = ["| net | model | method | s | MB/s | vs best peer | link MB | link util | "
           "util while fetching | daemon CPU s | mount reqs |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        peers = [x["secs"] for x in rows if x["net"] == r["net"] and x["model"] == r["model"]
                 and x["method"] in ("s3fs", "rclone")]
        rel = "%.2fx" % (r["secs"] / min(peers)) if peers else "-"
        out.append("| %s | %s | %s | %.2f | %.0f | %s | %s | %s | %s | %s | %s |" % (
            r["net"], r["model"], r["method"], r["secs"], r["mbps"], rel,
            "%.1f" % (r["link_bytes"] / 1e6) if "link_bytes" in r else "-",
            "%.2f" % r["util"] if "util" in r else "-",
            "%.2f" % r["fetch_util"] if r.get("fetch_util") else "-",
            "%.1f" % r["daemon_cpu_s"] if r.get("daemon_cpu_s") is not None else "-",
            r.get("mount_requests", "-")))
    return "\n".join(out)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--bin", help="the ransfs binaries (default: BUILD/bin)")
    ap.add_argument("--work", default="/var/tmp/rfs-bench-remote")
    ap.add_argument("--bf16-gib", type=float, default=1.0)
    ap.add_argument("--f32-gib", type=float, default=1.0)
    ap.add_argument("--rate", default="1gbit")
    ap.add_argument("--nets", default="shaped,loopback")
    ap.add_argument("--only", help="models to measure, e.g. committed,bf16")
    ap.add_argument("--ransfs-opts", help="more -o options of the remote ransfs mounts, "
                    "e.g. fetch_parallel=32,fetch_size=8M")
    ap.add_argument("--methods", help="methods to measure, e.g. rclone,ransfs-http,ransfs-warm "
                    "(ransfs-warm reuses the cache dir ransfs-http filled)")
    ARGS = ap.parse_args()
    ARGS.build = os.path.abspath(ARGS.build)
    ARGS.bin = os.path.abspath(ARGS.bin or os.path.join(ARGS.build, "bin"))
    if os.geteuid() != 0:
        raise SystemExit("bench_remote: needs root (netns, tc, mounts)")
    apt_install("s3fs", "rclone", "nginx", "iproute2", "curl")
    os.makedirs(ARGS.work, exist_ok=True)
    mods = models(ARGS.work)
    rows = []
    for kind in ARGS.nets.split(","):
        clean = R.Cleanup()
        try:
            net = Net(kind, clean)
            srv = start_servers(net, ARGS.work, mods, clean)
            for name, src in mods.items():
                rows += measure(net, name, src, srv, ARGS.work)
        finally:
            unmount(os.path.join(ARGS.work, "mnt"))
            clean.close()
    print(table(rows))
    with open(os.path.join(ARGS.work, "results.json"), "w") as f:
        json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
