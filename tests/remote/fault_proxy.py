#!/usr/bin/python3
"""A fault-injecting HTTP reverse proxy for the remote-image tests.

It sits between the ransfs daemon and a real server (nginx or SeaweedFS) on
loopback and passes requests through unchanged -- the Host header too, so a
SigV4 signature made for the proxy's address still verifies upstream -- except
that, at a set rate or on demand, a request gets one of these faults:

  reset        the connection is reset (RST) before any response byte
  reset_body   the status line, headers and half the body, then RST
  truncate     the headers promise N bytes, half come, then a clean close
  stall        nothing for stall_secs (a stalled server), then normal service
  stall_body   the headers and half the body, then nothing for stall_secs,
               then a clean close (the rest never comes)
  wrong_range  a 206 whose Content-Range names other bytes than were asked
  ignore_range a Range request answered 200 with the whole object
  503, 429     that status, with Retry-After: 0, without asking upstream

Instead of a rate, set(first=K, kinds=[...], align=A) fails the first K
requests for each A-aligned chunk (by the start of its Range), taking the
kinds in rotation, and serves the next one: a deterministic "every range
fails K times" for a client with a retry budget.  set(throttle=B) sends every
body at B bytes/s (per connection), to keep fetches in flight.

pause() closes the listening socket and every open connection (new
connections are refused: a server that is down); resume() listens again on
the same port.  Every request is logged (method, path, Range, If-Match, the
fault, the status and body bytes sent) for tests to count.

Use it in-process (tests/remote: FaultProxy(...).start(), .set(...), .log())
or as a program for the benchmarks and by hand:

  fault_proxy.py --upstream 127.0.0.1:8080 [--port N] [--seed S] [--rate 503=0.1 ...]

which prints "listening PORT" and serves until SIGTERM; its faults can then
be changed with POST /__proxy__/faults (a JSON object of the arguments of
set()) and read with GET /__proxy__/log ("__proxy__" is no valid S3 bucket
name, so it never hides an object).
"""
import argparse
import collections
import http.client
import http.server
import json
import random
import signal
import socket
import struct
import sys
import threading
import time

KINDS = ("reset", "reset_body", "truncate", "stall", "stall_body", "wrong_range",
         "ignore_range", "503", "429")
HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
       "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"}
CONTROL = "/__proxy__/"
CHUNK = 1 << 16


class FaultProxy:
    """A threaded reverse proxy to upstream (host, port) with faults.

    Thread-safe: set(), once(), clear(), log(), counts() may be called from
    any thread while requests are served.  close() stops serving, ends every
    stall at once and closes every connection.
    """

    def __init__(self, upstream, port=0, seed=None, host="127.0.0.1", upstream_timeout=60):
        self.upstream = upstream
        self.host, self.port = host, port
        self.seed = seed if seed is not None else int(time.time() * 1000) % 1000003
        self.rng = random.Random(self.seed)
        self.lock = threading.Lock()
        self.rates = {}
        self.queue = collections.deque()
        self.stall_secs = 5.0
        self.match = None
        self.first, self.kinds, self.align, self.seen, self.turn = 0, (), 0, {}, 0
        self.throttle = 0
        self.upstream_timeout = upstream_timeout
        self.released = threading.Event()
        self.entries = []
        self.server = None
        self.thread = None
        self.conns = set()

    # ---------------------------------------------------------- control

    def set(self, stall_secs=None, match=None, first=0, kinds=(), align=0, throttle=0,
            **rates):
        """Fault rates per request (0..1, summed must be <= 1), e.g.
        set(reset=0.1, **{"503": 0.05}); kinds not named are set to 0.
        match: a substring of the path a request must contain to be
        faulted (None: every request).  first, kinds, align: the first
        `first` ranged requests of each align-byte chunk (by the Range's
        start; align 0: each distinct start) get kinds in rotation, before
        any rate.  throttle: body bytes per second per connection (0: as
        fast as it goes)."""
        bad = [k for k in list(rates) + list(kinds) if k not in KINDS]
        if bad or sum(rates.values()) > 1.0 or (first and not kinds):
            raise ValueError("bad faults %r %r (kinds: %s)" % (rates, kinds, " ".join(KINDS)))
        with self.lock:
            self.rates = {k: float(v) for k, v in rates.items() if v}
            if stall_secs is not None:
                self.stall_secs = float(stall_secs)
            self.match = match
            self.first, self.kinds, self.align = int(first), tuple(kinds), int(align)
            self.seen, self.turn = {}, 0
            self.throttle = float(throttle)
        return self

    def once(self, *kinds):
        """Give the next len(kinds) matching requests these faults, in order
        (before any rate applies)."""
        for k in kinds:
            if k not in KINDS:
                raise ValueError("unknown fault %r" % k)
        with self.lock:
            self.queue.extend(kinds)
        return self

    def clear(self):
        """No more faults; every stall in progress ends now."""
        with self.lock:
            self.rates, self.match, self.first, self.throttle = {}, None, 0, 0
            self.queue.clear()
        self.released.set()
        self.released = threading.Event()
        return self

    def log(self):
        """A copy of the request log, oldest first (dicts: method, path,
        range, if_match, fault, status, bytes (body bytes sent so far),
        done (the whole response was sent))."""
        with self.lock:
            return [dict(e) for e in self.entries]

    def counts(self):
        """{fault kind or 'ok': number of requests} so far."""
        c = collections.Counter(e["fault"] or "ok" for e in self.log())
        return dict(c)

    def _pick(self, path, rng_header):
        with self.lock:
            if self.match is not None and self.match not in path:
                return None
            if self.queue:
                return self.queue.popleft()
            start = _range_start(rng_header)
            if self.first and start is not None:
                key = (path, start // self.align if self.align else start)
                n = self.seen.get(key, 0)
                self.seen[key] = n + 1
                if n < self.first:
                    self.turn += 1
                    return self.kinds[self.turn % len(self.kinds)]
            r = self.rng.random()
            for k in KINDS:
                p = self.rates.get(k, 0.0)
                if r < p:
                    return k
                r -= p
        return None

    def _record(self, entry):
        with self.lock:
            self.entries.append(entry)

    def _stall(self):
        self.released.wait(self.stall_secs)

    # ---------------------------------------------------------- serving

    def start(self):
        self.server = _Server((self.host, self.port), _Handler)
        self.server.proxy = self
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    @property
    def base(self):
        return "http://%s:%d" % (self.host, self.port)

    def url(self, rel=""):
        return "%s/%s" % (self.base, rel.lstrip("/"))

    def pause(self):
        """Stop listening and drop every connection: new connections to the
        port are refused until resume()."""
        if self.server is None:
            return
        self.server.shutdown()
        self.server.server_close()
        self.server = None
        self.released.set()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            _rst(c)
        self.released = threading.Event()

    def resume(self):
        """Listen on the same port again."""
        if self.server is None:
            self.start()

    def close(self):
        self.pause()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # A client that hangs up (it timed out, or we reset it) is normal
        # here; anything else is a proxy bug and keeps its traceback.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def _rst(sock):
    """Close sock with an RST (SO_LINGER 0) instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def _range_start(value):
    """The first byte of a 'bytes=A-B' Range header, or None."""
    if not value or not value.startswith("bytes="):
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None


def _shift_range(value):
    """A Content-Range naming other bytes than value does: one byte later."""
    try:
        unit, spec = value.split(" ", 1)
        rng, total = spec.split("/")
        a, b = (int(x) for x in rng.split("-"))
        t = int(total) if total != "*" else b + 2
        return "%s %d-%d/%d" % (unit, a + 1, b + 1, max(t, b + 2))
    except ValueError:
        return "bytes 1-1/1"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "rfs-fault-proxy"
    up = None

    def log_message(self, *a):  # quiet: the proxy keeps its own log
        pass

    def setup(self):
        super().setup()
        with self.server.proxy.lock:
            self.server.proxy.conns.add(self.connection)

    def finish(self):
        with self.server.proxy.lock:
            self.server.proxy.conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass
        if self.up is not None:
            self.up.close()

    def do_GET(self):
        self._serve()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    # ------------------------------------------------------------------

    def _serve(self):
        p = self.server.proxy
        if self.path.startswith(CONTROL):
            return self._control(p)
        fault = p._pick(self.path, self.headers.get("Range"))
        entry = {"method": self.command, "path": self.path,
                 "range": self.headers.get("Range"), "if_match": self.headers.get("If-Match"),
                 "fault": fault, "status": None, "bytes": 0, "done": False, "time": time.time()}
        p._record(entry)
        body = self._request_body()
        if fault == "reset":
            return self._reset()
        if fault in ("503", "429"):
            return self._status(entry, int(fault))
        if fault == "stall":
            p._stall()
        try:
            resp = self._upstream(p, fault, body)
        except (OSError, http.client.HTTPException) as e:
            self._drop_upstream()
            return self._status(entry, 502, ("upstream: %s\n" % e).encode())
        self._relay(p, entry, fault, resp)

    def _request_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else None

    def _upstream(self, p, fault, body):
        if self.up is None:
            self.up = http.client.HTTPConnection(*p.upstream, timeout=p.upstream_timeout)
        self.up.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for k, v in self.headers.items():
            if k.lower() in HOP or (fault == "ignore_range" and k.lower() == "range"):
                continue
            self.up.putheader(k, v)
        if body is not None:
            self.up.endheaders(body)
        else:
            self.up.endheaders()
        return self.up.getresponse()

    def _drop_upstream(self):
        if self.up is not None:
            self.up.close()
            self.up = None

    def _relay(self, p, entry, fault, resp):
        data_len = resp.getheader("Content-Length")
        data = None
        if data_len is None and self.command != "HEAD":
            data = resp.read()  # chunked upstream: resend with a length
            data_len = str(len(data))
        entry["status"] = resp.status
        self.send_response_only(resp.status, resp.reason)
        for k, v in resp.getheaders():
            kl = k.lower()
            if kl in HOP or kl == "content-length":
                continue
            if fault == "wrong_range" and kl == "content-range":
                v = _shift_range(v)
            self.send_header(k, v)
        if data_len is not None:
            self.send_header("Content-Length", data_len)
        self.end_headers()
        if self.command == "HEAD":
            resp.read()
            entry["done"] = True
            return
        total = int(data_len)
        cut = total
        if fault in ("reset_body", "truncate", "stall_body"):
            cut = max(0, min(total - 1, total // 2))
        sent = self._copy(p, resp, data, cut, entry)
        entry["done"] = sent == total
        if sent < total:
            self._drop_upstream()
            if fault == "stall_body":
                p._stall()
            if fault == "reset_body":
                return self._reset()
            self.close_connection = True
        elif resp.will_close:
            self._drop_upstream()

    def _copy(self, p, resp, data, cut, entry):
        sent, t0 = 0, time.time()
        step = CHUNK if not p.throttle else max(1024, min(CHUNK, int(p.throttle / 50)))
        while sent < cut:
            if p.throttle:
                ahead = sent / p.throttle - (time.time() - t0)
                if ahead > 0:
                    time.sleep(ahead)
            chunk = data[sent:sent + step] if data is not None else \
                resp.read(min(step, cut - sent))
            if not chunk:
                break
            chunk = chunk[:cut - sent]
            try:
                self.wfile.write(chunk)
            except OSError:
                self.close_connection = True
                break
            sent += len(chunk)
            entry["bytes"] = sent
        return sent

    def _status(self, entry, code, msg=b""):
        entry["status"] = code
        try:
            self.send_response_only(code)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            entry["done"] = True
        except OSError:
            self.close_connection = True

    def _reset(self):
        self.close_connection = True
        self._drop_upstream()
        try:
            self.rfile.close()
        except OSError:
            pass
        _rst(self.connection)

    def _control(self, p):
        if self.command == "POST" and self.path == CONTROL + "faults":
            try:
                args = json.loads(self._request_body() or b"{}")
                queue = args.pop("once", [])
                p.clear()
                p.set(**args)
                p.once(*queue)
                out, code = {"ok": True}, 200
            except (ValueError, TypeError) as e:
                out, code = {"error": str(e)}, 400
        elif self.command == "GET" and self.path == CONTROL + "log":
            out, code = {"seed": p.seed, "log": p.log()}, 200
        else:
            out, code = {"error": "unknown control request"}, 404
        b = json.dumps(out).encode()
        self.send_response_only(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", required=True, help="HOST:PORT of the real server")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--stall-secs", type=float, default=5.0)
    ap.add_argument("--rate", action="append", default=[], metavar="KIND=P")
    a = ap.parse_args()
    host, _, port = a.upstream.rpartition(":")
    proxy = FaultProxy((host, int(port)), port=a.port, seed=a.seed)
    proxy.set(stall_secs=a.stall_secs, **{k: float(v) for k, v in
                                          (r.split("=", 1) for r in a.rate)})
    proxy.start()
    print("listening %d seed %d" % (proxy.port, proxy.seed), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    proxy.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
