"""Shared helpers of the hardening tests (corruption sweep, load test).

Images are parsed here independently of codec/ (docs/format.md Part 2), so
the tests know where every section, unit and RAW extent lies and which file
ranges each one feeds, without trusting the reader under test.
"""
import os
import shutil
import struct
import subprocess
import tempfile
import time

SKIP = 77

SECT_NAMES = ["inode table", "directory table", "extent table", "unit index",
              "tensor table", "dimension table", "frequency table blob", "name pool"]
SECT_REC = [48, 16, 40, 32, 64, 8, 0, 0]


def log(*a):
    print(*a, flush=True)


class Image:
    """The layout of a ransfs image file (format v1), parsed from its bytes."""

    def __init__(self, path):
        with open(path, "rb") as f:
            b = f.read()
        self.size = len(b)
        assert b[:8] == b"RANSFSIM", "not an image"
        self.tile_size, self.unit_max = struct.unpack_from("<II", b, 20)
        self.data_off, self.data_len = struct.unpack_from("<QQ", b, 48)
        self.sections = []  # (name, off, len, count)
        for s in range(8):
            off, ln, cnt, _ = struct.unpack_from("<QQQQ", b, 64 + 32 * s)
            self.sections.append((SECT_NAMES[s], off, ln, cnt))
        sec = {s[0]: s for s in self.sections}

        def recs(name, size):
            _, off, ln, _ = sec[name]
            return [b[off + i:off + i + size] for i in range(0, ln, size)]

        _, noff, nlen, _ = sec["name pool"]
        names = b[noff:noff + nlen]
        self.inodes = [struct.unpack_from("<I4xqI4xQQQ", r) for r in recs("inode table", 48)]
        dirents = [struct.unpack_from("<IH2xQ", r) for r in recs("directory table", 16)]
        extents = [struct.unpack_from("<QQQB3xIQ", r) for r in recs("extent table", 40)]
        # unit: (image offset, encoded size, decoded size, kind)
        self.units = [struct.unpack_from("<QII8xB", r) for r in recs("unit index", 32)]
        # Paths of regular files: ino -> path
        self.files = {}
        stack = [(1, "")]
        while stack:
            ino, path = stack.pop()
            mode, _, _, size, first, count = self.inodes[ino - 1]
            kind = mode & 0o170000
            if kind == 0o040000:
                for child, nl, no in dirents[first:first + count]:
                    stack.append((child, (path + "/" if path else "") +
                                  names[no:no + nl].decode("utf-8", "replace")))
            elif kind == 0o100000:
                self.files[ino] = (path, size, extents[first:first + count])
        # unit -> [(path, file start, length)]; raw extents: (path, off, len, image off)
        self.unit_users = {}
        self.raw = []
        for ino, (path, size, exts) in sorted(self.files.items()):
            for foff, ln, src, kind, stride, _ in exts:
                if kind == 0:
                    self.raw.append((path, foff, ln, src))
                    continue
                k = 0
                while k * stride < ln:
                    n = min(stride, ln - k * stride)
                    self.unit_users.setdefault(src + k, []).append((path, foff + k * stride, n))
                    k += 1

    @property
    def meta_off(self):
        return self.sections[0][1]


def tool(bindir, name):
    return os.path.join(bindir, name)


def is_mounted(mnt):
    mnt = os.path.realpath(mnt)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == mnt for line in f)


def unmount(mnt):
    if is_mounted(mnt):
        subprocess.run(["fusermount3", "-u", "-z", mnt], capture_output=True, timeout=30)


def wait_mounted(mnt, proc, secs=60):
    t0 = time.time()
    while time.time() - t0 < secs:
        if is_mounted(mnt):
            os.statvfs(mnt)
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


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
        time.sleep(0.02)
    return False


def daemon_pid(mnt):
    mnt = os.path.realpath(mnt).encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"ransfs" and mnt in argv \
                and pid_state(int(pid)) not in (None, "Z"):
            return int(pid)
    raise AssertionError("no ransfs daemon for %s" % mnt.decode())


class Sanitizers:
    """Route sanitizer reports of every tool and daemon started from here to
    files; report() lists them (any report fails a test)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="rfs_hd_san_")
        for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS", "LSAN_OPTIONS"):
            os.environ[var] = ":".join(filter(None, [os.environ.get(var, ""),
                                                     "log_path=%s/%s" % (self.dir, var[:4].lower())]))
        os.environ["LSAN_OPTIONS"] += ":suppressions=" + os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "lsan.supp")

    def report(self):
        out = []
        for name in sorted(os.listdir(self.dir)):
            with open(os.path.join(self.dir, name), errors="replace") as f:
                out.append("sanitizer report %s:\n%s" % (name, f.read()))
        return out

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)
