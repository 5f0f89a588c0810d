#!/usr/bin/python3
"""Self-tests of the remote-test fixtures (tests/pylib/rfs_remote.py) and of
the fault proxy (tests/remote/fault_proxy.py), with curl as the client: no
ransfs code is involved, so a failure here is a fixture's fault.

usage: remote_fixture_test.py --venv BUILD/venv-remote TEST

Exit 0 = pass, else fail (nothing here skips: the fixtures need only
Debian packages and the venv).
"""
import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "pylib"))
sys.path.insert(0, HERE)
import fault_proxy  # noqa: E402
import rfs_remote as R  # noqa: E402
from rfs_testlib import list_if_asked, log, lookup, pid_state, seed  # noqa: E402

ARGS = None
CLEAN = R.Cleanup()


def tmpdir():
    d = tempfile.mkdtemp(prefix="rfs_remote_")
    CLEAN.push(lambda: shutil.rmtree(d, ignore_errors=True))
    return d


def weed():
    w = R.find_weed(ARGS.venv)
    if w is None:
        raise AssertionError("no weed in %s (the remote_venv fixture makes it)" % ARGS.venv)
    return w


def served_dir(base, rng):
    """A directory with a 3 MiB random object and a small nested one."""
    root = os.path.join(base, "www")
    os.makedirs(os.path.join(root, "sub"))
    big = rng.randbytes(3 << 20)
    with open(os.path.join(root, "obj.bin"), "wb") as f:
        f.write(big)
    with open(os.path.join(root, "sub", "small.txt"), "wb") as f:
        f.write(b"hello\n")
    return root, big


def refused(port):
    r = R.curl("-o", "/dev/null", "--max-time", "5", "http://127.0.0.1:%d/" % port)
    return r.returncode == 7  # curl: failed to connect


def gone(pid, secs=15):
    t0 = time.time()
    while time.time() - t0 < secs:
        if pid_state(pid) in (None, "Z"):
            return True
        time.sleep(0.05)
    return False


# ------------------------------------------------------------ nginx

def t_nginx_range_etag():
    rng = random.Random(seed())
    d = tmpdir()
    root, big = served_dir(d, rng)
    ng = R.Nginx(root, os.path.join(d, "ng"), CLEAN).start()
    st, h, body = R.http_get(ng.url("obj.bin"))
    assert st == 200 and body == big, "full GET: %d, %d bytes" % (st, len(body))
    etag = h["etag"]
    assert h.get("accept-ranges") == "bytes", h
    for a, b in ((0, 0), (100, 199), (len(big) - 5, len(big) - 1), (1 << 20, (2 << 20) + 7)):
        st, h, body = R.http_get(ng.url("obj.bin"), rng=(a, b))
        assert st == 206 and body == big[a:b + 1], "range %d-%d: %d" % (a, b, st)
        assert h["content-range"] == "bytes %d-%d/%d" % (a, b, len(big)), h["content-range"]
        assert h["etag"] == etag
    st, _, _ = R.http_get(ng.url("obj.bin"), rng=(0, 9), headers=['If-Match: "nope"'])
    assert st == 412, "If-Match with a wrong ETag: %d" % st
    st, _, _ = R.http_get(ng.url("obj.bin"), rng=(0, 9), headers=["If-Match: " + etag])
    assert st == 206, "If-Match with the ETag: %d" % st
    assert R.http_get(ng.url("sub/small.txt"))[2] == b"hello\n"
    assert R.http_get(ng.url("missing"))[0] == 404
    assert R.http_get(ng.url("rfs-forbidden/x"))[0] == 403
    # A replaced object has a new ETag and the old one no longer matches.
    new = rng.randbytes(len(big))
    ng.replace("obj.bin", new)
    st, h, body = R.http_get(ng.url("obj.bin"), rng=(0, 9), headers=["If-Match: " + etag])
    assert st == 412, "If-Match after replace: %d" % st
    st, h, body = R.http_get(ng.url("obj.bin"))
    assert h["etag"] != etag and body == new
    reqs = ng.requests()
    ranged = [q for q in reqs if q["range"] == "bytes=100-199"]
    assert len(ranged) == 1 and ranged[0]["status"] == 206 and ranged[0]["bytes"] == 100, reqs
    assert any(q["if_match"] == '"nope"' and q["status"] == 412 for q in reqs), reqs
    pid, port = ng.proc.pid, ng.port
    ng.stop()
    assert gone(pid), "nginx still running after stop"
    assert refused(port), "port %d still answers after stop" % port


def t_nginx_https():
    rng = random.Random(seed())
    d = tmpdir()
    root, big = served_dir(d, rng)
    ca = R.make_ca(os.path.join(d, "pki"))
    cert = R.issue_cert(ca, os.path.join(d, "pki"))
    ng = R.Nginx(root, os.path.join(d, "ng"), CLEAN, tls=cert).start()
    assert ng.url("x").startswith("https://127.0.0.1:")
    st, h, body = R.http_get(ng.url("obj.bin"), rng=(5, 65540), cafile=ca["cert"])
    assert st == 206 and body == big[5:65541]
    st, _, body = R.http_get(ng.url("obj.bin").replace("127.0.0.1", "localhost"),
                             cafile=ca["cert"])
    assert st == 200 and body == big, "the DNS name in the certificate"
    # Not trusted: the system store, and another CA.
    r = R.curl("-o", "/dev/null", ng.url("obj.bin"))
    assert r.returncode == 60, "untrusted certificate: curl exit %d" % r.returncode
    other = R.make_ca(os.path.join(d, "other"), name="rfs-other-ca")
    r = R.curl("-o", "/dev/null", "--cacert", other["cert"], ng.url("obj.bin"))
    assert r.returncode == 60, "certificate of another CA: curl exit %d" % r.returncode


# ------------------------------------------------------------ SeaweedFS

def t_seaweed_sigv4():
    rng = random.Random(seed())
    d = tmpdir()
    s3 = R.SeaweedS3(weed(), os.path.join(d, "weed"), CLEAN).start()
    s3.create_bucket("models")
    data = rng.randbytes(5 << 20)
    s3.put("models", "dir/model.rfs", data)
    keys = s3.put_tree("models", served_dir(d, rng)[0], prefix="tree/")
    assert sorted(keys) == ["tree/obj.bin", "tree/sub/small.txt"], keys
    st, h, body = s3.get("models", "dir/model.rfs")
    assert st == 200 and body == data, "signed GET: %d" % st
    etag = h["etag"]
    st, h, body = s3.get("models", "dir/model.rfs", rng=(4 << 20, (5 << 20) - 1))
    assert st == 206 and body == data[4 << 20:], "signed Range GET: %d" % st
    assert h["content-range"] == "bytes %d-%d/%d" % (4 << 20, (5 << 20) - 1, len(data))
    assert s3.get("models", "tree/sub/small.txt")[2] == b"hello\n"
    # Every request needs a valid signature.
    assert s3.get("models", "dir/model.rfs", anonymous=True)[0] == 403, "anonymous GET"
    assert s3.get("models", "dir/model.rfs", secret="x" * 40)[0] == 403, "wrong secret"
    r = R.curl("-T", "/dev/null", "-o", "/dev/null", "-w", "%{http_code}",
               s3.url("models", "anon-put"))
    assert r.stdout == b"403", "anonymous PUT: %r" % r.stdout
    assert s3.get("models", "no-such-key")[0] == 404
    # Replacing the object changes the ETag; If-Match the old one: 412.
    s3.put("models", "dir/model.rfs", rng.randbytes(len(data)))
    args = s3._sign() + ["-H", "If-Match: " + etag, "-r", "0-9", "-o", "/dev/null",
                         "-w", "%{http_code}", s3.url("models", "dir/model.rfs")]
    assert R.curl(*args).stdout == b"412", "If-Match after replace"
    assert s3.get("models", "dir/model.rfs")[1]["etag"] != etag
    pid, port = s3.proc.pid, s3.ports["s3.port"]
    s3.stop()
    assert gone(pid), "weed still running after stop"
    assert refused(port)
    left = [f for f in os.listdir("/tmp") if f.startswith("seaweedfs-") and
            any(f.endswith("-%d.sock" % p) for p in s3.ports.values())]
    assert not left, "weed's sockets left in /tmp: %s" % left


# ------------------------------------------------------------ fault proxy

def t_fault_proxy():
    rng = random.Random(seed())
    d = tmpdir()
    root, big = served_dir(d, rng)
    ng = R.Nginx(root, os.path.join(d, "ng"), CLEAN).start()
    px = fault_proxy.FaultProxy((R.LOOP, ng.port), seed=rng.randrange(1 << 30)).start()
    CLEAN.push(px.close)
    url = px.url("obj.bin")

    def get(*extra, rng_=(1000, 200999)):
        return R.curl("-D", "-", "-o", "-", "-r", "%d-%d" % rng_, *extra, url)

    r = get()
    st, h, body = R._split_response(r.stdout)
    assert st == 206 and body == big[1000:201000], "clean pass-through"
    px.once("reset")
    assert get().returncode == 56, "reset: curl should see a receive failure"
    px.once("reset_body")
    assert get().returncode in (18, 56), "reset mid-body"
    px.once("truncate")
    r = get()
    assert r.returncode == 18, "truncated body: curl exit %d" % r.returncode
    px.once("503")
    assert R._split_response(get().stdout)[0] == 503
    px.once("429")
    st, h, _ = R._split_response(get().stdout)
    assert st == 429 and h.get("retry-after") == "0"
    px.once("wrong_range")
    st, h, body = R._split_response(get().stdout)
    assert st == 206 and h["content-range"] != "bytes 1000-200999/%d" % len(big), h
    px.once("ignore_range")
    st, h, body = R._split_response(get().stdout)
    assert st == 200 and body == big, "ignore_range: the whole object"
    px.set(stall_secs=30).once("stall")
    t0 = time.time()
    assert get("--max-time", "1").returncode == 28, "stall: curl should time out"
    px.clear()  # ends the stall
    px.set(stall_secs=30).once("stall_body")
    assert get("--max-time", "1").returncode == 28, "stall mid-body: curl times out"
    px.clear()
    assert time.time() - t0 < 20, "clear() did not end the stalls"
    # Rates: a seeded share of requests, only on matching paths.
    px.set(match="obj.bin", **{"503": 0.5})
    codes = [R._split_response(get().stdout)[0] for _ in range(40)]
    n503 = codes.count(503)
    assert 5 <= n503 <= 35 and set(codes) <= {206, 503}, codes
    assert R.http_get(px.url("sub/small.txt"))[2] == b"hello\n", "match= spares other paths"
    px.clear()
    # Down and back up on the same port.
    px.pause()
    assert get().returncode == 7, "paused proxy refuses connections"
    px.resume()
    st, _, body = R._split_response(get().stdout)
    assert st == 206 and body == big[1000:201000], "resumed"
    # The log saw every request with its fault; the control API works.
    c = px.counts()
    assert c.get("503") == n503 + 1 and c.get("reset") == 1 and c.get("stall") == 1, c
    r = R.curl("-X", "POST", "--data-binary", '{"once": ["429"]}', px.url("__proxy__/faults"))
    assert b'"ok": true' in r.stdout, r.stdout
    assert R._split_response(get().stdout)[0] == 429
    r = R.curl(px.url("__proxy__/log"))
    assert b'"seed"' in r.stdout and r.stdout.count(b'"fault": "429"') == 2
    # Each 64 KiB chunk fails twice (the kinds in turn), then is served;
    # another start in the same chunk counts for that chunk.
    px.set(first=2, kinds=("503", "429"), align=65536)
    seen = [R._split_response(get(rng_=(70000, 80000)).stdout)[0] for _ in range(3)]
    assert sorted(seen[:2]) == [429, 503] and seen[2] == 206, seen
    assert R._split_response(get(rng_=(65536, 70000)).stdout)[0] == 206, "same chunk"
    assert R._split_response(get(rng_=(0, 10)).stdout)[0] in (429, 503), "other chunk"
    px.clear()
    r = get()
    assert r.returncode == 0 and px.log()[-1]["done"], "a served response is logged done"


def t_fault_proxy_sigv4():
    """SigV4 requests through the proxy still verify upstream (the Host
    header passes unchanged), and a fault reaches the S3 client."""
    rng = random.Random(seed())
    d = tmpdir()
    s3 = R.SeaweedS3(weed(), os.path.join(d, "weed"), CLEAN).start()
    s3.create_bucket("models")
    data = rng.randbytes(1 << 20)
    s3.put("models", "m.rfs", data)
    px = fault_proxy.FaultProxy((R.LOOP, s3.ports["s3.port"])).start()
    CLEAN.push(px.close)
    url = px.url("models/m.rfs")
    r = R.curl(*s3._sign(), "-D", "-", "-o", "-", "-r", "7-70006", url)
    st, _, body = R._split_response(r.stdout)
    assert st == 206 and body == data[7:70007], "signed GET through the proxy: %d" % st
    r = R.curl("-D", "-", "-o", "-", url)
    assert R._split_response(r.stdout)[0] == 403, "anonymous through the proxy"
    px.once("truncate")
    assert R.curl(*s3._sign(), "-o", "/dev/null", url).returncode == 18


# ------------------------------------------------------------ teardown

def t_teardown_on_failure():
    """A test that fails with servers running leaves no process behind."""
    d = tmpdir()
    pidfile = os.path.join(d, "pids")
    r = subprocess.run([sys.executable, "-B", os.path.abspath(__file__), "--venv", ARGS.venv,
                        "--crash-child", pidfile, "teardown_on_failure"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "deliberate failure" in r.stdout + r.stderr, \
        "child: %d\n%s%s" % (r.returncode, r.stdout, r.stderr)
    with open(pidfile) as f:
        pids = [int(x) for x in f.read().split()]
    assert len(pids) == 3, pids
    for pid in pids:
        assert gone(pid), "process %d survived its test's failure" % pid
    # nginx's workers are children of its master: none may be left either.
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open("/proc/%s/stat" % p) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
            assert ppid not in pids or pid_state(int(p)) in (None, "Z"), \
                "child %s of a server survived" % p


def crash_child(pidfile):
    """Start nginx, nginx over TLS and SeaweedFS, then fail."""
    rng = random.Random(1)
    d = tmpdir()
    root, _ = served_dir(d, rng)
    ng = R.Nginx(root, os.path.join(d, "ng"), CLEAN).start()
    pki = os.path.join(d, "pki")
    ngs = R.Nginx(root, os.path.join(d, "ngs"), CLEAN,
                  tls=R.issue_cert(R.make_ca(pki), pki)).start()
    s3 = R.SeaweedS3(weed(), os.path.join(d, "weed"), CLEAN).start()
    with open(pidfile, "w") as f:
        f.write("%d %d %d\n" % (ng.proc.pid, ngs.proc.pid, s3.proc.pid))
    raise AssertionError("deliberate failure with servers running")


def main():
    global ARGS
    list_if_asked(globals())
    ap = argparse.ArgumentParser()
    ap.add_argument("--venv", required=True)
    ap.add_argument("--crash-child")
    ap.add_argument("test")
    ARGS = ap.parse_args()
    fn, _ = lookup(globals(), ARGS.test)
    for tool in ("nginx", "openssl", "curl"):
        if not shutil.which(tool):
            log("FAIL: %s is missing (make test installs the Debian packages)" % tool)
            return 1
    rc = 0
    try:
        if ARGS.crash_child:
            crash_child(ARGS.crash_child)
        fn()
        log("PASS", ARGS.test)
    except Exception:  # noqa: BLE001 - any failure fails the test, with its trace
        traceback.print_exc()
        rc = 1
    finally:
        CLEAN.close()
    return rc


if __name__ == "__main__":
    sys.exit(main())
