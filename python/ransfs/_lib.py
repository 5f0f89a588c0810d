"""The ctypes binding of libransfs (lib/ransfs.h): finding the library,
the C structs, the prototypes, and turning error codes into exceptions.

Nothing here knows the image format: every fact about images lives in the
C library; this module only declares its ABI (SOVERSION 0).
"""
import ctypes
import ctypes.util
import errno
import os

SONAME = "libransfs.so.0"

# ransfs_err (lib/ransfs.h); the values are stable, never renumbered.
OK = 0
E_NOMEM = 1
E_IO = 2
E_CORRUPT = 3
E_NOENT = 4
E_NOTDIR = 5
E_ISDIR = 6
E_INVAL = 7
E_NOT_SAFETENSORS = 8
E_RANGE = 9
E_NOCUDA = 10
E_CUDA = 11
E_UNSUPPORTED = 12

_ERRNO = {E_NOMEM: errno.ENOMEM, E_IO: errno.EIO, E_CORRUPT: errno.EIO,
          E_NOENT: errno.ENOENT, E_NOTDIR: errno.ENOTDIR, E_ISDIR: errno.EISDIR,
          E_INVAL: errno.EINVAL, E_NOT_SAFETENSORS: errno.EINVAL, E_RANGE: errno.ERANGE,
          E_NOCUDA: errno.ENODEV, E_CUDA: errno.EIO, E_UNSUPPORTED: errno.EOPNOTSUPP}


class RansfsError(OSError):
    """A libransfs call failed.  .code is the ransfs_err value, .errno the
    closest errno, .filename what was being opened or read ("IMAGE" or
    "IMAGE:PATH"), str() one line naming it and the problem."""

    def __init__(self, code, filename, detail):
        super().__init__(_ERRNO.get(code, errno.EIO), detail, filename)
        self.code = code

    def __str__(self):
        if self.strerror.startswith(str(self.filename)):  # libransfs's own "why" names it
            return self.strerror
        return "%s: %s" % (self.filename, self.strerror)


class NotFoundError(RansfsError, FileNotFoundError):
    """The image, or a path inside it, does not exist (RANSFS_E_NOENT)."""


class CorruptImageError(RansfsError):
    """The image fails a check (RANSFS_E_CORRUPT): no bytes were returned."""


class NotSafetensorsError(RansfsError, ValueError):
    """The file is not a safetensors file (RANSFS_E_NOT_SAFETENSORS)."""


class CudaUnavailableError(RansfsError, RuntimeError):
    """The library was built without CUDA, or no GPU is usable (RANSFS_E_NOCUDA)."""


_CLASS = {E_NOENT: NotFoundError, E_CORRUPT: CorruptImageError,
          E_NOT_SAFETENSORS: NotSafetensorsError, E_NOCUDA: CudaUnavailableError}


class Stat(ctypes.Structure):
    _fields_ = [("ino", ctypes.c_uint64), ("mode", ctypes.c_uint32),
                ("nlink", ctypes.c_uint32), ("size", ctypes.c_uint64),
                ("mtime_sec", ctypes.c_int64), ("mtime_nsec", ctypes.c_uint32)]


class Tensor(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("dtype", ctypes.c_char * 8),
                ("ndim", ctypes.c_uint32), ("shape", ctypes.c_uint64 * 8),
                ("offset", ctypes.c_uint64), ("size", ctypes.c_uint64)]


def _candidates():
    """Where to look, in order: $RANSFS_LIBRARY (a path), a copy next to
    this package (a build or wheel may put one there), then the default
    loader's search (an installed library)."""
    env = os.environ.get("RANSFS_LIBRARY")
    if env:
        return [("RANSFS_LIBRARY", env)]
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), SONAME)
    out = []
    if os.path.exists(here):
        out.append(("next to the package", here))
    out.append(("the default loader", SONAME))
    found = ctypes.util.find_library("ransfs")
    if found and found != SONAME:
        out.append(("ctypes.util.find_library", found))
    return out


def _declare(lib):
    """The prototypes; ctypes releases the GIL during each call."""
    P, E, sz, u64 = ctypes.POINTER, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint64
    img, cstr = ctypes.c_void_p, ctypes.c_char_p
    protos = {
        "ransfs_strerror": (cstr, [ctypes.c_int]),
        "ransfs_version": (cstr, []),
        "ransfs_features": (cstr, []),
        "ransfs_open": (E, [P(ctypes.c_void_p), cstr, ctypes.c_char_p, sz]),
        "ransfs_close": (None, [img]),
        "ransfs_stat": (E, [img, cstr, P(Stat)]),
        "ransfs_dir_count": (E, [img, cstr, P(u64)]),
        "ransfs_dir_entry": (E, [img, cstr, u64, P(cstr), P(Stat)]),
        "ransfs_readlink": (E, [img, cstr, P(cstr)]),
        "ransfs_read": (E, [img, cstr, u64, ctypes.c_void_p, sz, P(sz)]),
        "ransfs_tensors": (E, [img, cstr, P(P(Tensor)), P(sz)]),
        "ransfs_tensors_free": (None, [P(Tensor), sz]),
        "ransfs_read_tensors": (E, [img, cstr, P(Tensor), sz, P(ctypes.c_void_p),
                                    ctypes.c_int]),
        "ransfs_read_tensors_device": (E, [img, cstr, P(Tensor), sz, P(ctypes.c_void_p),
                                           ctypes.c_int, ctypes.c_void_p]),
    }
    for name, (res, args) in protos.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


def load():
    """The loaded library (ctypes.CDLL with prototypes), or ImportError
    naming every place tried."""
    tried = []
    for where, path in _candidates():
        try:
            return _declare(ctypes.CDLL(path))
        except (OSError, AttributeError) as e:
            tried.append("%s (%s): %s" % (path, where, e))
    raise ImportError("ransfs: cannot load libransfs: " + "; ".join(tried) +
                      " (set RANSFS_LIBRARY to the path of libransfs.so.0)")


LIB = load()


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def loaded_path():
    """The file the dynamic loader mapped for LIB (its soname may have been
    resolved through the search path)."""
    info, dladdr = _DlInfo(), ctypes.CDLL(None).dladdr
    dladdr.argtypes, dladdr.restype = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)], ctypes.c_int
    if dladdr(ctypes.cast(LIB.ransfs_version, ctypes.c_void_p), ctypes.byref(info)) and \
            info.dli_fname:
        return os.path.realpath(os.fsdecode(info.dli_fname))
    return LIB._name


def strerror(code):
    s = LIB.ransfs_strerror(code)
    return s.decode() if s else "error %d" % code


def check(code, filename, detail=None):
    """Raise the exception for ransfs_err CODE (nothing for RANSFS_OK)."""
    if code != OK:
        raise _CLASS.get(code, RansfsError)(code, filename, detail or strerror(code))
