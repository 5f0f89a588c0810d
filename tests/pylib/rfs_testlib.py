"""Shared helpers of the Python tests (tests/fs, tests/remote, tests/hardening,
tests/image, tests/install, tests/python) and benchmarks.

Three things live here:

* Test registration.  A script's tests are its top-level functions named
  t_NAME; `rfs_testlib.test(...)` is needed only to give one a different
  CTest name, extra CTest properties, or several variants.  CTest learns the
  list at configure time from `SCRIPT --list` (rfs_add_py_tests in
  tests/CMakeLists.txt), so adding a test is one edit: write the function.
  Running an unknown name is a usage error (exit 2), never a silent pass.
* Mount helpers: find, wait for and unmount a FUSE mount, find the daemon
  of a mount point, wait for a process to go, route sanitizer reports to
  files, and the seed every random test prints (RFS_TEST_SEED replays it).
* The frame of the scripts of mount tests (tests/fs, tests/remote): Skip,
  the Cleanup stack, tmpdir, mounting with ransfs (daemon or foreground)
  and mount_test_main, their main().

Exit codes of every test script: 0 pass, 1 fail, 2 usage, 77 skipped.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback

SKIP = 77
USAGE = 2
LSAN_SUPP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "hardening",
                         "lsan.supp")


def log(*a):
    print(*a, flush=True)


def seed():
    """The seed of a random test: RFS_TEST_SEED when set, else from the
    clock; printed either way so a failure can be replayed."""
    s = int(os.environ.get("RFS_TEST_SEED", int(time.time() * 1000) % 1000000007))
    log("seed", s, "(replay with RFS_TEST_SEED=%d)" % s)
    return s


# ------------------------------------------------------------ registration

_VARIANTS = "_rfs_variants"


def test(name=None, arg=None, **ctest):
    """Decorator for a t_* function: register it as CTest case NAME (default:
    the function name without t_), called with ARG (a value the script's
    runner interprets, e.g. which data set), with CTest properties CTEST
    (e.g. TIMEOUT=900).  Stack it to register several variants."""
    def deco(fn):
        variants = getattr(fn, _VARIANTS, [])
        variants.insert(0, (name or fn.__name__[2:], arg, ctest))
        setattr(fn, _VARIANTS, variants)
        return fn
    return deco


def collect(namespace):
    """{name: (function, arg)} and {name: ctest properties} of every t_*
    function in namespace (a module's globals()).  Duplicate names fail."""
    tests, props = {}, {}
    for fname, fn in namespace.items():
        if not fname.startswith("t_") or not callable(fn):
            continue
        for name, arg, ctest in getattr(fn, _VARIANTS, [(fname[2:], None, {})]):
            if name in tests:
                raise SystemExit("%s: test %s registered twice" % (sys.argv[0], name))
            tests[name] = (fn, arg)
            props[name] = ctest
    return tests, props


def list_if_asked(namespace):
    """`SCRIPT --list`: print one line per test (its name, then its CTest
    properties and values, ','-separated) and exit 0.  Call it
    first in main, before any argument parsing."""
    if sys.argv[1:] != ["--list"]:
        return
    tests, props = collect(namespace)
    for name in sorted(tests):
        print(",".join([name] + ["%s,%s" % kv for kv in sorted(props[name].items())]))
    sys.exit(0)


def lookup(namespace, name):
    """(function, arg) of test NAME; an unknown name exits 2 naming the
    known ones (a typo must never pass)."""
    tests, _ = collect(namespace)
    if name not in tests:
        sys.stderr.write("%s: unknown test '%s' (known: %s)\n" %
                         (os.path.basename(sys.argv[0]), name, " ".join(sorted(tests))))
        sys.exit(USAGE)
    return tests[name]


# ------------------------------------------------------------ mounts

def is_mounted(mnt):
    mnt = os.path.realpath(mnt)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == mnt for line in f)


def unmount(mnt):
    if is_mounted(mnt):
        subprocess.run(["fusermount3", "-u", "-z", mnt], capture_output=True, timeout=30)


def wait_mounted(mnt, proc, secs=60):
    """True once mnt answers; False when proc (if any) exits first or after secs."""
    t0 = time.time()
    while time.time() - t0 < secs:
        if is_mounted(mnt):
            os.statvfs(mnt)
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


def fuse_usable():
    """None when real mounts can run here, else the reason to skip."""
    if not os.access("/dev/fuse", os.R_OK | os.W_OK) or not shutil.which("fusermount3"):
        return "/dev/fuse or fusermount3 is not usable here"
    return None


# ------------------------------------------------------------ processes

def pid_state(pid):
    """'R', 'S', 'Z', ... or None when the process is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def wait_gone(pid, secs):
    """True once pid has exited (a zombie counts: daemons are reparented)."""
    t0 = time.time()
    while time.time() - t0 < secs:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        st = pid_state(pid)
        if st is None or st == "Z":
            return True
        time.sleep(0.01)
    return False


def proc_status(pid):
    """The kB fields of /proc/PID/status (VmRSS, RssAnon, VmHWM, ...) in
    bytes; {} once the process is gone."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if v.strip().endswith("kB"):
                    out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def resident_bytes(path):
    """Bytes of path in the page cache (util-linux fincore); raises when
    fincore fails."""
    r = subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "-o", "RES", path],
                       capture_output=True, text=True, check=True)
    return int(r.stdout.split()[0])


class PeakRss:
    """`with PeakRss(pid, period) as peak:` samples pid's RssAnon and VmRSS
    every period seconds on a thread while the block runs; peak.anon and
    peak.rss are the highest seen, in bytes."""

    def __init__(self, pid, period):
        self.pid, self.period, self.anon, self.rss = pid, period, 0, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def _sample(self):
        while not self._done.is_set():
            st = proc_status(self.pid)
            self.anon = max(self.anon, st.get("RssAnon", 0))
            self.rss = max(self.rss, st.get("VmRSS", 0))
            self._done.wait(self.period)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        return False


def _start_time(pid):
    """Start time of pid in clock ticks since boot (/proc/PID/stat field 22)."""
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


def _holds_fuse_conn(pid, conn):
    """True when pid has /dev/fuse open for FUSE connection conn; None when
    the kernel does not say (fdinfo's fuse_connection line is recent)."""
    said = False
    try:
        for fd in os.listdir("/proc/%d/fdinfo" % pid):
            with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
                for line in f:
                    if line.startswith("fuse_connection:"):
                        if int(line.split()[1]) == conn:
                            return True
                        said = True
    except OSError:
        return False
    return False if said else None


def _daemon_procs(mnt, prog):
    """Pids of the live prog processes (ransfs, squashfuse_ll, ...) with
    mount point mnt (a real path, bytes) on their command line."""
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == prog and mnt in argv \
                and pid_state(int(pid)) not in (None, "Z"):
            pids.append(int(pid))
    return pids


def daemon_pid(mnt, prog="ransfs"):
    """The pid of the live daemon (program prog) serving mount point mnt.
    Several such processes can name mnt (an earlier daemon of the same
    mount point still draining after a lazy unmount, another run's, the
    mount command still exiting after forking the daemon): those holding
    the mount's FUSE connection win (the connection number is the mount's
    device, in the kernel's encoding), else, where the kernel does not show
    connections, all of them; of those, the newest."""
    real = os.path.realpath(mnt)
    pids = _daemon_procs(real.encode(), os.fsencode(prog))
    try:
        dev = os.stat(real).st_dev
        conn = (os.major(dev) << 20) | os.minor(dev)
        held = {pid: _holds_fuse_conn(pid, conn) for pid in pids}
    except OSError:
        held = {}
    if any(held.values()):
        pids = [pid for pid in pids if held[pid]]
    elif held and all(v is False for v in held.values()):
        pids = []
    live = []
    for pid in pids:
        try:
            live.append((_start_time(pid), pid))
        except (OSError, IndexError, ValueError):
            continue
    if not live:
        raise AssertionError("no %s daemon for %s" % (prog, real))
    return max(live)[1]


class Sanitizers:
    """Route sanitizer reports of every tool and daemon started from here to
    files (daemons' stderr is /dev/null); report() lists them, and any
    report fails a test."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="rfs_san_")
        for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS", "LSAN_OPTIONS"):
            os.environ[var] = ":".join(filter(None, [os.environ.get(var, ""),
                                                     "log_path=%s/%s" % (self.dir, var[:4].lower())]))
        os.environ["LSAN_OPTIONS"] += ":suppressions=" + LSAN_SUPP

    def report(self):
        out = []
        for name in sorted(os.listdir(self.dir)):
            with open(os.path.join(self.dir, name), errors="replace") as f:
                out.append("sanitizer report %s:\n%s" % (name, f.read()))
        return out

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def finish(self):
        """After the teardown: wait a moment for exiting daemons' reports,
        log every report, close; True when there was any (a failure)."""
        time.sleep(0.2)
        reports = self.report()
        for rep in reports:
            log(rep)
        self.close()
        return bool(reports)


# ------------------------------------------------------------ test scripts

class Skip(Exception):
    """Raised by a test that cannot run here, once it has logged why: the
    script exits SKIP."""


class Cleanup:
    """A stack of teardown actions run newest first by close(); errors in one
    action are printed and do not stop the others."""

    def __init__(self):
        self.actions = []

    def push(self, fn):
        self.actions.append(fn)
        return fn

    def close(self):
        while self.actions:
            fn = self.actions.pop()
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - teardown must go on
                print("cleanup:", repr(e), flush=True)


def tmpdir(clean, prefix):
    """A new temporary directory, removed by clean."""
    d = tempfile.mkdtemp(prefix=prefix)
    clean.push(lambda: shutil.rmtree(d, ignore_errors=True))
    return d


def _ransfs_cmd(ransfs, flags, src, mnt, opts):
    return [ransfs] + flags + [src, mnt] + (["-o", ",".join(opts)] if opts else [])


def ransfs_mount(clean, ransfs, src, mnt, opts=(), env=None, timeout=60, check=True):
    """`ransfs SRC MNT [-o OPTS]`: the daemon forks and the command returns
    once the mount answers; clean unmounts it.  With check, a failure or
    nothing mounted raises.  Returns the CompletedProcess."""
    os.makedirs(mnt, exist_ok=True)
    clean.push(lambda: unmount(mnt))
    r = subprocess.run(_ransfs_cmd(ransfs, [], src, mnt, opts), capture_output=True, text=True,
                       timeout=timeout, env=env)
    if check:
        assert r.returncode == 0, "mount %s failed (%d): %s" % (src, r.returncode, r.stderr)
        assert is_mounted(mnt), "ransfs returned 0 but nothing is mounted"
    return r


def ransfs_mount_fg(clean, ransfs, src, mnt, opts, errpath, flag="-f", env=None, secs=60):
    """`ransfs -f` (or FLAG, e.g. -d) in a child, its stderr in the file
    errpath (p.errfile, open), until the mount answers; clean kills a child
    still running, then unmounts.  Returns the Popen; raises with the
    child's stderr when the mount is not up within secs."""
    os.makedirs(mnt, exist_ok=True)
    clean.push(lambda: unmount(mnt))
    errf = open(errpath, "w+")
    p = subprocess.Popen(_ransfs_cmd(ransfs, [flag], src, mnt, opts), stdout=subprocess.DEVNULL,
                         stderr=errf, env=env)
    p.errfile = errf
    clean.push(lambda: p.poll() is None and p.kill())
    if wait_mounted(mnt, p, secs):
        return p
    errf.seek(0)
    raise AssertionError("%s mount of %s did not come up: %s" % (flag, src, errf.read()))


def mount_test_main(namespace, clean, extra=(), on_start=None, on_fail=None):
    """main() of a script of mount tests.  `--list` (list_if_asked), else
    --bin BUILD/bin --src tests/data [--corpus DIR] EXTRA... TEST, where each
    EXTRA is one more required option; the arguments become the namespace's
    ARGS (bin made absolute), then on_start(ARGS).  Exit code: SKIP where
    FUSE is unusable or the test raises Skip; 1 when it fails (its
    traceback, then on_fail()) or any sanitizer reported; else 0.  clean is
    closed after the test, whatever happened."""
    list_if_asked(namespace)
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--src", required=True, help="tests/data")
    for opt in extra:
        ap.add_argument(opt, required=True)
    ap.add_argument("--corpus")
    ap.add_argument("test")
    args = ap.parse_args()
    args.bin = os.path.abspath(args.bin)
    namespace["ARGS"] = args
    if on_start:
        on_start(args)
    fn, _ = lookup(namespace, args.test)
    why = fuse_usable()
    if why:
        log("skipped:", why)
        return SKIP
    san = Sanitizers()
    rc = 0
    try:
        fn()
        log("PASS", args.test)
    except Skip:
        rc = SKIP
    except Exception:  # noqa: BLE001 - any failure fails the test, with its trace
        traceback.print_exc()
        if on_fail:
            on_fail()
        rc = 1
    finally:
        clean.close()
        if san.finish():
            rc = 1
    return rc
