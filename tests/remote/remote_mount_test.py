#!/usr/bin/python3
"""End-to-end tests of remote images: real servers on loopback, real mounts.

usage: remote_mount_test.py --bin BUILD/bin --src tests/data --venv BUILD/venv-remote
                            [--corpus DIR] TEST

Each TEST packs its own image, serves it with nginx (HTTP or HTTPS) or
SeaweedFS (S3, SigV4), optionally through the fault proxy
(tests/remote/fault_proxy.py), mounts the URL with ransfs and a cache dir
of its own, reads every file with the readers of the local mount tests
(cat-like full reads, numpy.memmap, mmap, safetensors), and always tears
down mounts and servers.  Exit 0 = pass, 77 = skipped, else fail.
"""
import errno
import json
import mmap
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
for sub in ("pylib", "remote", "fs"):
    sys.path.insert(0, os.path.join(HERE, "..", sub))
import fault_proxy  # noqa: E402
import fs_mount_test as FS  # noqa: E402  (its readers: compare_trees, check_safetensors, ...)
import rfs_remote as R  # noqa: E402
from rfs_testlib import (Skip, daemon_pid, is_mounted, log, mount_test_main,  # noqa: E402
                         pid_state, ransfs_mount, ransfs_mount_fg, seed, unmount)
import rfs_testlib  # noqa: E402

TILE = FS.TILE
ARGS = None
CLEAN = rfs_testlib.Cleanup()
DAEMONS = []                  # (url, Popen) of the foreground daemons: stderr shown on failure
IMG = "models/m.rfs"          # the image's path under the HTTP root, and its S3 key
BUCKET = "models"
S3_KEY = "m.rfs"


def tool(name):
    return os.path.join(ARGS.bin, name)


def tmpdir():
    return rfs_testlib.tmpdir(CLEAN, "rfs_rm_")


def clean_env(**more):
    """The environment of a daemon or tool: no CA bundle or AWS settings
    from outside the test, plus more."""
    e = {k: v for k, v in os.environ.items()
         if not k.startswith("AWS_") and k not in ("CURL_CA_BUNDLE", "SSL_CERT_FILE")}
    e.update(more)
    return e


# ------------------------------------------------------------ images

def model_src(d, s=7):
    """The committed real model (tests/data/human32-mini), a small synthetic
    safetensors model (bf16, f32, f16) and a stored-raw random file."""
    src = os.path.join(d, "src")
    shutil.copytree(os.path.join(ARGS.src, "human32-mini"), os.path.join(src, "human32-mini"),
                    symlinks=True)
    FS.synth_model(os.path.join(src, "synth"), 3, s)
    with open(os.path.join(src, "random.bin"), "wb") as f:
        f.write(np.random.default_rng(s).bytes(2 * TILE + 12345))
    return src


def serve_image(d, src, trailer=False):
    """Pack src into d/www/models/m.rfs (a TRAILER image through stdout when
    trailer); returns the web root."""
    www = os.path.join(d, "www")
    img = os.path.join(www, IMG)
    os.makedirs(os.path.dirname(img), exist_ok=True)
    if trailer:
        with open(img, "wb") as f:
            r = subprocess.run([tool("ransfs-mkimage"), "-q", src, "-"], stdout=f,
                               stderr=subprocess.PIPE, text=True)
        assert r.returncode == 0, "mkimage -: " + r.stderr
    else:
        FS.mkimage(src, img)
    return www


def img_requests(ng):
    """nginx's log of the requests for the image (not its readiness probes)."""
    return [q for q in ng.requests() if q["path"] == "/" + IMG]


def nginx(d, www, tls=None):
    return R.Nginx(www, os.path.join(d, "nginx" + ("-tls" if tls else "")), CLEAN, tls=tls).start()


def seaweed(d):
    w = R.find_weed(ARGS.venv)
    assert w, "no weed in %s (the CTest fixture remote_venv installs it)" % ARGS.venv
    return R.SeaweedS3(w, os.path.join(d, "weed"), CLEAN).start()


def s3_image(d, src):
    """SeaweedFS with src packed as s3://models/m.rfs; returns the server."""
    www = serve_image(d, src)
    s3 = seaweed(d)
    s3.create_bucket(BUCKET)
    s3.put(BUCKET, S3_KEY, path=os.path.join(www, IMG))
    return s3


def s3_opts(s3, cache, endpoint=None):
    return ["s3_endpoint=" + (endpoint or s3.endpoint), "cache_dir=" + cache]


# ------------------------------------------------------------ mounts

def mount(url, mnt, *opts, env=None, check=True):
    """ransfs URL MNT -o opts (daemonizes; returns once mounted)."""
    return ransfs_mount(CLEAN, tool("ransfs"), url, mnt, opts, check=check, timeout=120,
                        env=env if env is not None else clean_env())


def mount_fg(url, mnt, *opts, env=None):
    """ransfs -f in a child (stderr to a file: p.errfile); returns Popen."""
    p = ransfs_mount_fg(CLEAN, tool("ransfs"), url, mnt, opts, mnt + ".err", secs=120,
                        env=env if env is not None else clean_env())
    DAEMONS.append((url, p))
    return p


def daemon_err(p):
    p.errfile.seek(0)
    return p.errfile.read()


def refused(url, mnt, *opts, env=None):
    """A mount that must fail: returns its one stderr line; nothing mounted."""
    r = mount(url, mnt, *opts, env=env, check=False)
    assert r.returncode != 0, "mount of %s succeeded" % url
    assert not is_mounted(mnt), "a failed mount left %s mounted" % mnt
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, "want one line, got: %r" % r.stderr
    log("refused as expected:", lines[0])
    return lines[0]


def stats(mnt):
    return json.loads(os.getxattr(mnt, FS.STATS))


REMOTE_KEYS = ("remote_requests", "remote_bytes", "remote_retries", "remote_errors",
               "remote_cache_hits", "remote_cache_misses", "remote_cache_bytes")


def remote_stats(mnt):
    s = stats(mnt)
    missing = [k for k in REMOTE_KEYS if k not in s]
    assert not missing, "stats lack %s: %s" % (missing, s)
    return s


def drop_tree_cache(mnt):
    for root, _, files in os.walk(mnt):
        for name in files:
            p = os.path.join(root, name)
            if os.path.isfile(p) and not os.path.islink(p):
                FS.drop_cache(p)


def check_all(src, mnt, rng):
    """Every file byte-exact (full reads), every safetensors file tensor by
    tensor, numpy.memmap and mmap of the largest file at random pages."""
    n = FS.compare_trees(src, mnt)
    drop_tree_cache(mnt)
    sts, big = [], None
    for root, _, files in os.walk(src):
        for name in files:
            a = os.path.join(root, name)
            if os.path.islink(a):
                continue
            rel = os.path.relpath(a, src)
            if name.endswith(".safetensors"):
                sts.append(rel)
            if big is None or os.path.getsize(a) > os.path.getsize(os.path.join(src, big)):
                big = rel
    for rel in sts:
        FS.check_safetensors(os.path.join(src, rel), os.path.join(mnt, rel))
    a, b = os.path.join(src, big), os.path.join(mnt, big)
    FS.drop_cache(b)
    ma, mb = np.memmap(a, dtype=np.uint8, mode="r"), np.memmap(b, dtype=np.uint8, mode="r")
    assert np.array_equal(ma[::4097], mb[::4097]), "numpy.memmap strided"
    del ma, mb
    size = os.path.getsize(a)
    FS.drop_cache(b)
    with open(a, "rb") as fa, open(b, "rb") as fb:
        xa = mmap.mmap(fa.fileno(), 0, access=mmap.ACCESS_READ)
        xb = mmap.mmap(fb.fileno(), 0, access=mmap.ACCESS_READ)
        for _ in range(300):
            p = rng.randrange(0, (size + 4095) // 4096) * 4096
            q = min(size, p + rng.choice([1, 100, 4096, 70000]))
            assert xa[p:q] == xb[p:q], "mmap %s at %d" % (big, p)
        xb.close()
        xa.close()
    log("byte-exact: %d files, %d safetensors, memmap/mmap of %s" % (n, len(sts), big))
    return n


# ------------------------------------------------------------ plain mounts

def t_http():
    rng = random.Random(seed())
    d = tmpdir()
    src = model_src(d)
    ng = nginx(d, serve_image(d, src))
    mnt = os.path.join(d, "mnt")
    mount(ng.url(IMG), mnt, "cache_dir=" + os.path.join(d, "cache"))
    os.listdir(os.path.join(mnt, "human32-mini"))
    at_mount = len(img_requests(ng))
    log("requests to mount and list:", at_mount, img_requests(ng))
    assert 1 <= at_mount <= 3, "mount + ls took %d requests" % at_mount
    check_all(src, mnt, rng)
    s = remote_stats(mnt)
    log(json.dumps(s))
    assert s["remote_requests"] >= at_mount and s["remote_bytes"] > 0, s
    assert s["remote_cache_misses"] > 0 and s["remote_cache_bytes"] > 0, s
    assert all(q["method"] in ("GET", "HEAD") for q in img_requests(ng))
    ranged = [q for q in img_requests(ng) if q["method"] == "GET"]
    assert all(q["range"] for q in ranged), "a GET without Range: %s" % ranged


def t_http_trailer():
    """A streamed (TRAILER) image: the superblock is in its last 512 bytes."""
    rng = random.Random(seed())
    d = tmpdir()
    src = model_src(d)
    ng = nginx(d, serve_image(d, src, trailer=True))
    mnt = os.path.join(d, "mnt")
    mount(ng.url(IMG), mnt, "cache_dir=" + os.path.join(d, "cache"))
    os.listdir(mnt)
    at_mount = len(img_requests(ng))
    assert 1 <= at_mount <= 3, "TRAILER mount + ls took %d requests" % at_mount
    check_all(src, mnt, rng)


def t_https():
    rng = random.Random(seed())
    d = tmpdir()
    src = model_src(d)
    www = serve_image(d, src)
    pki = os.path.join(d, "pki")
    ca = R.make_ca(pki)
    ng = nginx(d, www, tls=R.issue_cert(ca, pki))
    url = ng.url(IMG)
    # Trusted through -o ca_file.
    mnt = os.path.join(d, "mnt")
    mount(url, mnt, "ca_file=" + ca["cert"], "cache_dir=" + os.path.join(d, "c1"))
    check_all(src, mnt, rng)
    unmount(mnt)
    # Through CURL_CA_BUNDLE and SSL_CERT_FILE (fresh cache dirs: fetched again).
    for var in ("CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        m = os.path.join(d, "mnt-" + var)
        mount(url, m, "cache_dir=" + os.path.join(d, "c-" + var), env=clean_env(**{var: ca["cert"]}))
        FS.compare_trees(src, m)
        unmount(m)
    # Not trusted: no CA given, and a CA that did not sign the certificate.
    line = refused(url, os.path.join(d, "mnt-untrusted"), "cache_dir=" + os.path.join(d, "c2"))
    assert ng.host in line and "certificate" in line.lower(), line
    other = R.make_ca(os.path.join(d, "other"), name="rfs-other-ca")
    line = refused(url, os.path.join(d, "mnt-other"), "ca_file=" + other["cert"],
                   "cache_dir=" + os.path.join(d, "c3"))
    assert "certificate" in line.lower(), line


def t_http_refused():
    """403, 404, a closed port and bad URLs at mount: one line, non-zero,
    naming the URL and the status, never a password."""
    d = tmpdir()
    www = os.path.join(d, "www")
    os.makedirs(www)
    with open(os.path.join(www, "not-an-image.rfs"), "wb") as f:
        f.write(os.urandom(100000))
    ng = nginx(d, www)
    cache = "cache_dir=" + os.path.join(d, "cache")
    line = refused(ng.url("missing.rfs"), os.path.join(d, "m1"), cache)
    assert "404" in line and ng.url("missing.rfs") in line, line
    line = refused(ng.url("rfs-forbidden/m.rfs"), os.path.join(d, "m2"), cache)
    assert "403" in line and "rfs-forbidden/m.rfs" in line, line
    # a held port refuses connections as a closed one does, and no other
    # test's server can take it meanwhile
    ports, holds = R.hold_ports(1)
    url = "http://127.0.0.1:%d/m.rfs" % ports[0]
    try:
        line = refused(url, os.path.join(d, "m3"), cache)
    finally:
        R.release_ports(holds)
    assert url in line, line
    line = refused(ng.url("not-an-image.rfs"), os.path.join(d, "m4"), cache)
    assert "not-an-image.rfs" in line, line
    secret = "Sup3rS3cretPw"
    url = "http://rfsuser:%s@127.0.0.1:%d/missing.rfs" % (secret, ng.port)
    r = mount(url, os.path.join(d, "m5"), cache, check=False)
    assert r.returncode != 0 and secret not in r.stderr, r.stderr


def t_s3():
    rng = random.Random(seed())
    d = tmpdir()
    src = model_src(d)
    s3 = s3_image(d, src)
    mnt = os.path.join(d, "mnt")
    url = "s3://%s/%s" % (BUCKET, S3_KEY)
    mount(url, mnt, *s3_opts(s3, os.path.join(d, "cache")), env=clean_env(**s3.env()))
    check_all(src, mnt, rng)
    s = remote_stats(mnt)
    log(json.dumps(s))
    assert s["remote_requests"] > 0 and s["remote_bytes"] > 0
    for k, v in s.items():
        assert s3.secret not in str(v) and s3.access_key not in str(v), "credential in stats " + k
    with open("/proc/self/mountinfo") as f:
        assert s3.secret not in f.read()
    pid = daemon_pid(mnt)
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        assert s3.secret.encode() not in f.read(), "the secret is in the daemon's argv"
    # The tools take the same URL (the endpoint from AWS_ENDPOINT_URL_S3).
    env = clean_env(RANSFS_CACHE_DIR=os.path.join(d, "tool-cache"),
                    AWS_ENDPOINT_URL_S3=s3.endpoint, **s3.env())
    for cmd in ([tool("ransfs-fsck"), url], [tool("ransfs-dump"), "--ls", url]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, "%s: %s" % (cmd, r.stderr)
        assert s3.secret not in r.stdout + r.stderr
    assert "synth" in r.stdout and "random.bin" in r.stdout, r.stdout


def t_s3_credentials():
    """The credential chain: the shared credentials file with AWS_PROFILE;
    a wrong secret, anonymous access, a missing key: one line, non-zero,
    naming the URL and the status, never the secret."""
    d = tmpdir()
    src = os.path.join(d, "src")
    FS.synth_model(src, 1, 3)
    s3 = s3_image(d, src)
    url = "s3://%s/%s" % (BUCKET, S3_KEY)
    home = os.path.join(d, "home")
    os.makedirs(os.path.join(home, ".aws"))
    with open(os.path.join(home, ".aws", "credentials"), "w") as f:
        f.write("[default]\naws_access_key_id = RFSWRONG\naws_secret_access_key = wrong\n\n"
                "[rfs]\naws_access_key_id = %s\naws_secret_access_key = %s\n"
                % (s3.access_key, s3.secret))
    mnt = os.path.join(d, "mnt")
    mount(url, mnt, *s3_opts(s3, os.path.join(d, "c1")),
          env=clean_env(HOME=home, AWS_PROFILE="rfs"))
    FS.compare_trees(src, mnt)
    unmount(mnt)
    wrong = "W" * 40
    line = refused(url, os.path.join(d, "m-wrong"), *s3_opts(s3, os.path.join(d, "c2")),
                   env=clean_env(**s3.env(AWS_SECRET_ACCESS_KEY=wrong)))
    assert "403" in line and url in line and wrong not in line, line
    line = refused(url, os.path.join(d, "m-anon"), "s3_anonymous",
                   *s3_opts(s3, os.path.join(d, "c3")), env=clean_env())
    assert "403" in line, line
    line = refused("s3://%s/no-such.rfs" % BUCKET, os.path.join(d, "m-404"),
                   *s3_opts(s3, os.path.join(d, "c4")), env=clean_env(**s3.env()))
    assert "404" in line and "no-such.rfs" in line and s3.secret not in line, line


def t_corpus():
    """The real-weights corpus (../shared/corpus) through HTTP and S3."""
    if not ARGS.corpus or not os.path.isdir(os.path.join(ARGS.corpus, "human32-st")):
        log("skipped: shared corpus (../shared/corpus/human32-st) is absent")
        raise Skip()
    rng = random.Random(seed())
    d = tmpdir()
    src = os.path.join(d, "src")
    shutil.copytree(os.path.join(ARGS.corpus, "human32-st"), os.path.join(src, "human32-st"))
    s3 = s3_image(d, src)
    ng = nginx(d, os.path.join(d, "www"))
    m1, m2 = os.path.join(d, "m-http"), os.path.join(d, "m-s3")
    mount(ng.url(IMG), m1, "cache_dir=" + os.path.join(d, "c1"))
    check_all(src, m1, rng)
    mount("s3://%s/%s" % (BUCKET, S3_KEY), m2, *s3_opts(s3, os.path.join(d, "c2")),
          env=clean_env(**s3.env()))
    check_all(src, m2, rng)


# ------------------------------------------------------------ cache dir

def read_all_concurrently(src, mnts, rng):
    """One thread per (mount, file), all at once; returns the errors."""
    errors, threads = [], []
    files = [os.path.relpath(os.path.join(r, n), src) for r, _, fs in os.walk(src) for n in fs]
    rng.shuffle(files)

    def worker(m, rel):
        try:
            if FS.sha(os.path.join(m, rel)) != FS.sha(os.path.join(src, rel)):
                errors.append("bytes differ: %s in %s" % (rel, m))
        except Exception as e:  # noqa: BLE001
            errors.append("%s in %s: %r" % (rel, m, e))
    for m in mnts:
        for rel in files:
            threads.append(threading.Thread(target=worker, args=(m, rel)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return errors + ["a reader hangs"] * sum(t.is_alive() for t in threads)


def t_cache_dir_shared():
    """Two daemons on one cache dir read concurrently; a remount serves
    everything from the cache dir: zero requests after its mount."""
    rng = random.Random(seed())
    d = tmpdir()
    src = model_src(d)
    ng = nginx(d, serve_image(d, src))
    cache = "cache_dir=" + os.path.join(d, "cache")
    m1, m2 = os.path.join(d, "m1"), os.path.join(d, "m2")
    mount(ng.url(IMG), m1, cache, "fetch_size=64K")
    mount(ng.url(IMG), m2, cache, "fetch_size=64K")
    errors = read_all_concurrently(src, [m1, m2], rng)
    assert not errors, errors
    s1, s2 = remote_stats(m1), remote_stats(m2)
    log("daemon 1:", json.dumps(s1))
    log("daemon 2:", json.dumps(s2))
    unmount(m1)
    unmount(m2)
    m3 = os.path.join(d, "m3")
    mount(ng.url(IMG), m3, cache, "fetch_size=64K")
    n_log, r0 = len(img_requests(ng)), remote_stats(m3)["remote_requests"]
    check_all(src, m3, rng)
    s3 = remote_stats(m3)
    log("remount:", json.dumps(s3))
    assert s3["remote_requests"] == r0, "the remount fetched: %d requests after the mount" % (
        s3["remote_requests"] - r0)
    assert len(img_requests(ng)) == n_log, img_requests(ng)[n_log:]
    assert s3["remote_cache_hits"] > 0 and s3["remote_cache_misses"] == 0, s3


def t_sigkill_mid_fetch():
    """SIGKILL a daemon while it fetches (a throttled proxy keeps bodies in
    flight); a remount on the same cache dir serves correct bytes."""
    rng = random.Random(seed())
    d = tmpdir()
    src = model_src(d)
    ng = nginx(d, serve_image(d, src))
    px = fault_proxy.FaultProxy((R.LOOP, ng.port), seed=rng.randrange(1 << 30)).start()
    CLEAN.push(px.close)
    cache = "cache_dir=" + os.path.join(d, "cache")
    mnt = os.path.join(d, "mnt")
    p = mount_fg(px.url(IMG), mnt, cache, "fetch_size=64K")
    px.set(throttle=1 << 20)
    done = threading.Event()

    def reader():
        try:
            FS.compare_trees(src, mnt)
        except Exception:  # noqa: BLE001 - the daemon dies under it
            pass
        done.set()
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t0 = time.time()

    def inflight():
        return [e for e in px.log() if e["status"] == 206 and e["bytes"] and not e["done"]]
    while time.time() - t0 < 120 and not (
            inflight() and sum(e["bytes"] for e in px.log()) >= (1 << 20)):
        time.sleep(0.01)
    busy = inflight()
    assert busy, "no fetch in flight to kill the daemon in"
    log("killing the daemon with %d responses in flight, %d bytes of them sent" % (
        len(busy), sum(e["bytes"] for e in busy)))
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    unmount(mnt)
    done.wait(120)
    px.clear()
    m2 = os.path.join(d, "m2")
    mount(px.url(IMG), m2, cache, "fetch_size=64K")
    check_all(src, m2, rng)
    log(json.dumps(remote_stats(m2)))


# ------------------------------------------------------------ faults

FAULTY = ("reset", "reset_body", "truncate", "wrong_range", "503", "429", "stall", "stall_body",
          "ignore_range")


def proxied(d, src, *opts, fetch="64K"):
    """nginx with src's image behind a fault proxy, mounted in the
    foreground through the proxy; returns (nginx, proxy, mnt, daemon)."""
    ng = nginx(d, serve_image(d, src))
    px = fault_proxy.FaultProxy((R.LOOP, ng.port), seed=random.randrange(1 << 30)).start()
    CLEAN.push(px.close)
    log("fault proxy seed", px.seed)
    mnt = os.path.join(d, "mnt")
    p = mount_fg(px.url(IMG), mnt, "cache_dir=" + os.path.join(d, "cache"),
                 "fetch_size=" + fetch, *opts)
    return ng, px, mnt, p


def alive(p):
    return p.poll() is None and pid_state(p.pid) not in (None, "Z")


def t_faults_transient():
    """Every range fails twice (a different fault each time: resets, short
    bodies, wrong Content-Range, 503, 429, stalls past the timeout) before
    it is served: with the default retry budget every byte reads back
    exact, no EIO, and the retries show in the stats."""
    random.seed(seed())
    d = tmpdir()
    src = model_src(d)
    ng, px, mnt, p = proxied(d, src, "timeout=2")
    px.set(first=2, align=64 << 10, kinds=FAULTY, stall_secs=6)
    FS.compare_trees(src, mnt)
    c = px.counts()
    log("proxy:", c)
    assert all(c.get(k, 0) > 0 for k in FAULTY), "not every fault was injected: %s" % c
    s = remote_stats(mnt)
    log(json.dumps(s))
    assert s["remote_retries"] > 0 and s["remote_errors"] > 0, s
    assert alive(p)


class Reader:
    """A whole-file read of path in a thread of its own."""

    def __init__(self, path):
        self.r = None
        self.t = threading.Thread(target=self._run, args=(path,), daemon=True)
        self.t.start()

    def _run(self, path):
        try:
            with open(path, "rb", buffering=0) as f:
                self.r = ("ok", f.read())
        except OSError as e:
            self.r = ("errno", e.errno)

    def wait(self, secs):
        """('ok', bytes), ('errno', n), or ('hang', None) when the read has
        not ended after secs."""
        self.t.join(secs)
        return self.r if not self.t.is_alive() else ("hang", None)


CACHED = os.path.join("human32-mini", "config.json")
# One file per fault kind, so an EIO is never left over from the kind before.
TARGETS = {"503": os.path.join("synth", "model.safetensors"), "down": "random.bin",
           "stall": os.path.join("human32-mini", "model.safetensors")}


def cached_reads(src, mnt):
    """The listing and a file already fetched still read, from the daemon."""
    assert sorted(os.listdir(mnt)) == sorted(os.listdir(src))
    FS.drop_cache(os.path.join(mnt, CACHED))
    assert FS.sha(os.path.join(mnt, CACHED)) == FS.sha(os.path.join(src, CACHED))


def inject(px, fault):
    if fault == "down":
        px.pause()
    elif fault == "stall":
        px.set(stall=1.0, stall_secs=3600)
    else:
        px.set(**{fault: 1.0})


def fail_read(src, mnt, p, px, fault):
    """Inject fault for every request; a read of a file not cached gets EIO
    once the retry budget is spent (not a hang); the daemon stays up and
    still serves the listing and cached files meanwhile."""
    target = os.path.join(mnt, TARGETS[fault])
    inject(px, fault)
    FS.drop_cache(target)
    t0, n0 = time.time(), len(px.log())
    rd = Reader(target)
    if rd.wait(0.5)[0] == "hang":  # still retrying: other reads must not wait for it
        cached_reads(src, mnt)
    r = rd.wait(180)
    log("%s: the read ended (%s) after %.1f s, %d requests" % (
        fault, r[0], time.time() - t0, len(px.log()) - n0))
    assert r == ("errno", errno.EIO), "%s: the read gave %s, not EIO" % (fault, r[0])
    assert alive(p), "daemon died"
    cached_reads(src, mnt)


def t_faults_budget():
    """A server that keeps failing (503; down: connection refused; stalled
    past the timeout): reads of bytes not cached get EIO once the retry
    budget is spent, nothing hangs, cached files and the listing still
    answer, the daemon stays up."""
    d = tmpdir()
    src = model_src(d)
    ng, px, mnt, p = proxied(d, src, "timeout=2", "retries=2")
    cached_reads(src, mnt)
    for fault in ("503", "down", "stall"):
        fail_read(src, mnt, p, px, fault)
        px.resume()
        px.clear()
    s = remote_stats(mnt)
    log(json.dumps(s))
    assert s["remote_errors"] > 0 and s["remote_retries"] > 0, s


def t_faults_recovery():
    """After each outage of t_faults_budget the server comes back: the reads
    that failed succeed, byte-exact, with no remount."""
    d = tmpdir()
    src = model_src(d)
    ng, px, mnt, p = proxied(d, src, "timeout=2", "retries=2")
    cached_reads(src, mnt)
    for fault in ("503", "down", "stall"):
        fail_read(src, mnt, p, px, fault)
        px.resume()
        px.clear()
        n = len(px.log())
        target = TARGETS[fault]
        r = Reader(os.path.join(mnt, target)).wait(180)
        log("%s, then back up: %d requests, %s" % (fault, len(px.log()) - n, r[0]))
        with open(os.path.join(src, target), "rb") as f:
            assert r == ("ok", f.read()), "%s: no recovery once the server is back: %s" % (
                fault, r[0])
    FS.compare_trees(src, mnt)


def t_object_replaced_http():
    replaced("http")


def t_object_replaced_s3():
    replaced("s3")


def replaced(kind):
    """The object is replaced while mounted: reads of bytes not cached get
    EIO (one log line), never the new object's bytes; cached files still
    read; the daemon stays up."""
    d = tmpdir()
    src = model_src(d)
    new_src = model_src(os.path.join(d, "new"), s=8)  # other synthetic tensors
    new_img = os.path.join(d, "new.rfs")
    FS.mkimage(new_src, new_img)
    cache = "cache_dir=" + os.path.join(d, "cache")
    mnt = os.path.join(d, "mnt")
    if kind == "http":
        ng = nginx(d, serve_image(d, src))
        p = mount_fg(ng.url(IMG), mnt, cache, "fetch_size=64K")
    else:
        s3 = s3_image(d, src)
        p = mount_fg("s3://%s/%s" % (BUCKET, S3_KEY), mnt, cache, "fetch_size=64K",
                     "s3_endpoint=" + s3.endpoint, env=clean_env(**s3.env()))
    cached = os.path.join("human32-mini", "config.json")
    assert FS.sha(os.path.join(mnt, cached)) == FS.sha(os.path.join(src, cached))
    with open(new_img, "rb") as f:
        data = f.read()
    if kind == "http":
        ng.replace(IMG, data)
    else:
        s3.put(BUCKET, S3_KEY, data)
    good = bad = 0
    for rel in (os.path.join("synth", "model.safetensors"), "random.bin"):
        g, b = FS.read_or_eio(os.path.join(src, rel), os.path.join(mnt, rel))
        good, bad = good + g, bad + b
    log("after the replace: %d good reads, %d EIO" % (good, bad))
    assert bad > 0, "no read failed after the object was replaced"
    FS.drop_cache(os.path.join(mnt, cached))
    assert FS.sha(os.path.join(mnt, cached)) == FS.sha(os.path.join(src, cached))
    assert alive(p)
    s = stats(mnt)
    assert s.get("remote_object_changed") is True, s
    unmount(mnt)
    p.wait(timeout=30)
    err = daemon_err(p)
    log("daemon stderr:", err.strip())
    assert err.count("changed") == 1, err


def show_daemons():
    for url, p in DAEMONS:
        log("stderr of the daemon of %s:\n%s" % (url, daemon_err(p).strip()))


def main():
    return mount_test_main(globals(), CLEAN, extra=("--venv",), on_fail=show_daemons,
                           on_start=lambda args: setattr(FS, "ARGS", args))  # FS.mkimage's tools


if __name__ == "__main__":
    sys.exit(main())
