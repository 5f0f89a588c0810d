"""ransfs.Image: an open image (ransfs_open) with listdir/stat/read/tensors.

Paths inside the image are relative to its root, '/'-separated; "" (or
"/") is the root, and a leading or trailing '/' is ignored.  One Image may
be used from several threads at once (libransfs is thread-safe for every
call and ctypes releases the GIL while the C code runs); close() must not
race with other calls.
"""
import collections
import ctypes
import os
import stat as _stat

from . import _lib
from ._lib import LIB, check

StatResult = collections.namedtuple(
    "StatResult", "st_mode st_ino st_nlink st_size st_mtime st_mtime_ns")
StatResult.__doc__ = ("lstat-like facts of a path in the image (symlinks are not "
                      "followed); the field names are os.stat_result's")

TensorInfo = collections.namedtuple("TensorInfo", "name dtype shape offset size")
TensorInfo.__doc__ = ("one tensor of a safetensors file: name, dtype string as in the "
                      "file ('BF16', 'F32', 'I64', ...), shape tuple, offset of its data "
                      "in the file, size in bytes")

_WHY_CAP = 512


def _stat_result(st):
    ns = st.mtime_sec * 1000000000 + st.mtime_nsec
    return StatResult(st.mode, st.ino, st.nlink, st.size, ns / 1e9, ns)


class TensorList:
    """The C list of ransfs_tensors for one file, freed on close(); the
    array handed to ransfs_read_tensors(_device).  Use as a context manager."""

    def __init__(self, image, path):
        self.ptr, n = ctypes.POINTER(_lib.Tensor)(), ctypes.c_size_t()
        check(LIB.ransfs_tensors(image._handle(), image._cpath(path),
                                 ctypes.byref(self.ptr), ctypes.byref(n)), image._name(path))
        self.n = n.value

    def info(self):
        out = []
        for i in range(self.n):
            t = self.ptr[i]
            out.append(TensorInfo(t.name.decode("utf-8"), t.dtype.decode("ascii"),
                                  tuple(t.shape[:t.ndim]), t.offset, t.size))
        return out

    def close(self):
        if self.ptr:
            LIB.ransfs_tensors_free(self.ptr, self.n)
            self.ptr = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Image:
    """An open ransfs image: ransfs.open(path) returns one.  Closes on
    close(), at the end of a with block, or when garbage-collected."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._img = ctypes.c_void_p()
        why = ctypes.create_string_buffer(_WHY_CAP)
        rc = LIB.ransfs_open(ctypes.byref(self._img), os.fsencode(self.path), why, _WHY_CAP)
        if rc != _lib.OK:
            self._img = None
            detail = why.value.decode("utf-8", "replace") or _lib.strerror(rc)
            if rc == _lib.E_IO and not os.path.lexists(self.path):
                rc = _lib.E_NOENT  # FileNotFoundError, as open() would raise
            check(rc, self.path, detail)

    # -- plumbing

    def _handle(self):
        if not self._img:
            raise ValueError("ransfs: %s: the image is closed" % self.path)
        return self._img

    @staticmethod
    def _cpath(path):
        return os.fsencode(os.fspath(path)).strip(b"/")

    def _name(self, path):
        p = os.fsdecode(self._cpath(path))
        return "%s:%s" % (self.path, p) if p else self.path

    def close(self):
        if getattr(self, "_img", None):
            LIB.ransfs_close(self._img)
            self._img = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def __repr__(self):
        return "<ransfs.Image %r%s>" % (self.path, "" if self._img else " closed")

    # -- the file tree

    def stat(self, path):
        """StatResult of path (lstat-like); NotFoundError when absent."""
        st = _lib.Stat()
        check(LIB.ransfs_stat(self._handle(), self._cpath(path), ctypes.byref(st)),
              self._name(path))
        return _stat_result(st)

    def exists(self, path):
        try:
            self.stat(path)
            return True
        except _lib.NotFoundError:
            return False

    def scandir(self, path=""):
        """[(name, StatResult)] of directory path, sorted by name."""
        h, cp, n = self._handle(), self._cpath(path), ctypes.c_uint64()
        check(LIB.ransfs_dir_count(h, cp, ctypes.byref(n)), self._name(path))
        out, name, st = [], ctypes.c_char_p(), _lib.Stat()
        for i in range(n.value):
            check(LIB.ransfs_dir_entry(h, cp, i, ctypes.byref(name), ctypes.byref(st)),
                  self._name(path))
            out.append((os.fsdecode(name.value), _stat_result(st)))
        return out

    def listdir(self, path=""):
        """The names in directory path (sorted; no '.' or '..')."""
        return [name for name, _ in self.scandir(path)]

    def walk(self, top=""):
        """Like os.walk (top-down): (dirpath, dirnames, filenames) with
        dirpath relative to the image root ("" for the root)."""
        dirs, files = [], []
        for name, st in self.scandir(top):
            (dirs if _stat.S_ISDIR(st.st_mode) else files).append(name)
        top = os.fsdecode(self._cpath(top))
        yield top, dirs, files
        for d in dirs:
            yield from self.walk(top + "/" + d if top else d)

    def readlink(self, path):
        target = ctypes.c_char_p()
        check(LIB.ransfs_readlink(self._handle(), self._cpath(path), ctypes.byref(target)),
              self._name(path))
        return os.fsdecode(target.value)

    # -- file contents

    def readinto(self, path, buf, offset=0):
        """Read into a writable buffer (bytearray, numpy array, memoryview)
        from offset; returns the bytes read (fewer only at end of file)."""
        mv = memoryview(buf).cast("B")
        if mv.readonly:
            raise TypeError("ransfs: readinto needs a writable buffer")
        if offset < 0:
            raise ValueError("ransfs: %s: negative offset %d" % (self._name(path), offset))
        got = ctypes.c_size_t()
        ptr = ctypes.addressof((ctypes.c_char * len(mv)).from_buffer(mv)) if len(mv) else None
        check(LIB.ransfs_read(self._handle(), self._cpath(path), offset, ptr, len(mv),
                              ctypes.byref(got)), self._name(path))
        return got.value

    def read(self, path, offset=0, size=-1):
        """Bytes of file path from offset: size bytes, or up to the end of
        the file when size < 0 (fewer only at end of file)."""
        if size < 0:
            size = max(0, self.stat(path).st_size - offset)
        buf = bytearray(size)
        got = self.readinto(path, buf, offset)
        del buf[got:]
        return bytes(buf)

    def tensors(self, path):
        """[TensorInfo] of safetensors file path, in file order;
        NotSafetensorsError when it is not one."""
        with TensorList(self, path) as tl:
            return tl.info()
