"""Shared helpers of the hardening tests (corruption sweep, load test).

Images are parsed here independently of codec/ (docs/format.md Part 2), so
the tests know where every section, unit and RAW extent lies and which file
ranges each one feeds, without trusting the reader under test.  Mount and
process helpers are tests/pylib/rfs_testlib.py's.
"""
import struct

SECT_NAMES = ["inode table", "directory table", "extent table", "unit index",
              "tensor table", "dimension table", "frequency table blob", "name pool"]
SECT_REC = [48, 16, 40, 32, 64, 8, 0, 0]


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
