"""ransfs.load_file: every tensor of a safetensors file in an image, decoded
in parallel straight into the arrays' memory.

The arrays are allocated first (numpy.empty / torch.empty), then their data
pointers go to ONE ransfs_read_tensors call (host) or
ransfs_read_tensors_device call (CUDA) for the whole file: libransfs's
threads decode the tiles into them directly, so the file is never held
whole in an intermediate buffer.
"""
import ctypes
import mmap

import numpy as np

from . import _lib
from ._image import Image, TensorList
from ._lib import LIB, check

try:  # numpy has no bfloat16 / float8: ml_dtypes' types when it is there
    import ml_dtypes as _ml
except ImportError:  # pragma: no cover - depends on the environment
    _ml = None

# safetensors dtype -> numpy dtype: the same as safetensors.numpy gives
# (with ml_dtypes installed: bfloat16 and float8 types; without it, the raw
# bits as unsigned integers of the same width).
_NP = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
       "U64": np.uint64, "I32": np.int32, "U32": np.uint32, "I16": np.int16,
       "U16": np.uint16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
       "C64": np.complex64,
       "BF16": _ml.bfloat16 if _ml else np.uint16,
       "F8_E4M3": _ml.float8_e4m3fn if _ml else np.uint8,
       "F8_E5M2": _ml.float8_e5m2 if _ml else np.uint8}

_TORCH = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
          "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
          "U16": "uint16", "U32": "uint32", "U64": "uint64", "BOOL": "bool",
          "C64": "complex64", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


def numpy_dtype(dtype):
    """The numpy dtype load_file uses for safetensors dtype string DTYPE."""
    try:
        return np.dtype(_NP[dtype])
    except KeyError:
        raise TypeError("ransfs: safetensors dtype %s has no numpy type here" % dtype) \
            from None


def _torch_dtype(torch, dtype):
    t = getattr(torch, _TORCH.get(dtype, "?"), None)
    if t is None:
        raise TypeError("ransfs: safetensors dtype %s has no type in torch %s" %
                        (dtype, torch.__version__))
    return t


def _import_torch(why):
    try:
        import torch
    except ImportError:
        raise ImportError("ransfs: %s needs torch, which is not importable here" % why) \
            from None
    return torch


def _parse_device(device, framework):
    """(framework, cuda, index): cuda False for the CPU, index None for
    torch's current device.  numpy unless framework is 'pt' or
    the device is a CUDA one (a string 'cuda[:N]', an int N, or a
    torch.device)."""
    dev = str(device) if not isinstance(device, int) else "cuda:%d" % device
    if framework not in (None, "np", "numpy", "pt", "torch"):
        raise ValueError("ransfs: framework must be 'np' or 'pt', not %r" % framework)
    if dev == "cpu":
        return ("pt" if framework in ("pt", "torch") else "np"), False, None
    if dev == "cuda" or dev.startswith("cuda:"):
        if framework in ("np", "numpy"):
            raise ValueError("ransfs: numpy arrays live on the CPU; device %r needs "
                             "framework='pt'" % dev)
        idx = dev[5:]
        if idx and not idx.isdigit():
            raise ValueError("ransfs: bad CUDA device %r" % dev)
        return "pt", True, (int(idx) if idx else None)
    raise ValueError("ransfs: device must be 'cpu' or 'cuda[:N]', not %r" % dev)


# numpy asks for transparent huge pages (MADV_HUGEPAGE) on every array of
# at least 4 MiB.  Their first touch (the kernel zeroing 2 MiB at a time)
# cost 3-4x the CPU of 4 KiB pages on the VMs this was measured on (a
# fresh process loading 1 GiB: 2.3-2.8 s of system time against 0.6-0.7 s,
# docs/benchmarks.md), more than the whole decode; so load_file undoes it
# on its fresh, untouched arrays unless hugepages=True.
_HUGE_MIN = 1 << 22
_PAGE = mmap.PAGESIZE
_libc = ctypes.CDLL(None, use_errno=True)
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.madvise.restype = ctypes.c_int


def _no_hugepages(ptr, nbytes):
    """MADV_NOHUGEPAGE on the whole pages of [ptr, ptr + nbytes): a hint,
    so a failure (an old kernel) changes nothing but the speed."""
    lo = -(-ptr // _PAGE) * _PAGE
    hi = (ptr + nbytes) // _PAGE * _PAGE
    if nbytes >= _HUGE_MIN and hi > lo:
        _libc.madvise(lo, hi - lo, getattr(mmap, "MADV_NOHUGEPAGE", 15))


def _alloc_np(infos, hugepages):
    arrays = [np.empty(t.shape, dtype=numpy_dtype(t.dtype)) for t in infos]
    if not hugepages:
        for a in arrays:
            _no_hugepages(a.ctypes.data, a.nbytes)
    return arrays


def _np_ptr(a):
    return a.ctypes.data


def _alloc_torch(torch, infos, device):
    return [torch.empty(t.shape, dtype=_torch_dtype(torch, t.dtype), device=device)
            for t in infos]


def _check_sizes(arrays, infos, nbytes, where):
    for a, t in zip(arrays, infos):
        if nbytes(a) != t.size:  # a shape/dtype that does not match its byte range
            raise _lib.CorruptImageError(_lib.E_CORRUPT, where,
                                         "tensor %s: %s x %r is not %d bytes" %
                                         (t.name, t.dtype, t.shape, t.size))


def _decode_host(img, path, tl, ptrs, threads):
    dst = (ctypes.c_void_p * max(1, tl.n))(*ptrs)
    check(LIB.ransfs_read_tensors(img._handle(), img._cpath(path), tl.ptr, tl.n, dst,
                                  threads), img._name(path))


def _decode_cuda(torch, img, path, tl, ptrs, index):
    """ransfs_read_tensors_device is synchronous and runs on its own streams:
    torch's queued work on the fresh (caching-allocator) memory ends first."""
    stream = torch.cuda.current_stream(index)
    stream.synchronize()
    dst = (ctypes.c_void_p * max(1, tl.n))(*ptrs)
    check(LIB.ransfs_read_tensors_device(img._handle(), img._cpath(path), tl.ptr, tl.n,
                                         dst, index, ctypes.c_void_p(stream.cuda_stream)),
          img._name(path))


def _cuda_index(torch, index):
    """The CUDA device to decode to; CudaUnavailableError before anything
    is allocated when libransfs or torch cannot do it."""
    if "cuda" not in LIB.ransfs_features().decode().split():
        raise _lib.CudaUnavailableError(_lib.E_NOCUDA, "cuda",
                                        "libransfs (%s) was built without CUDA" % LIB._name)
    if not torch.cuda.is_available():
        raise _lib.CudaUnavailableError(_lib.E_NOCUDA, "cuda",
                                        "torch %s sees no usable CUDA device" %
                                        torch.__version__)
    return torch.cuda.current_device() if index is None else index


def _load(img, path, framework, cuda, index, threads, hugepages):
    threads = 0 if threads is None else int(threads)
    with TensorList(img, path) as tl:
        infos = tl.info()
        if framework == "np":
            arrays = _alloc_np(infos, hugepages)
            _check_sizes(arrays, infos, lambda a: a.nbytes, img._name(path))
            _decode_host(img, path, tl, [_np_ptr(a) for a in arrays], threads)
        else:
            torch = _import_torch("device %r" % ("cuda" if index is None else "cuda:%d" % index)
                                  if cuda else "framework='pt'")
            device = "cpu"
            if cuda:
                index = _cuda_index(torch, index)
                device = torch.device("cuda", index)
            arrays = _alloc_torch(torch, infos, device)
            _check_sizes(arrays, infos, lambda a: a.numel() * a.element_size(),
                         img._name(path))
            ptrs = [a.data_ptr() for a in arrays]
            if device == "cpu":
                if not hugepages:
                    for a, p in zip(arrays, ptrs):
                        _no_hugepages(p, a.numel() * a.element_size())
                _decode_host(img, path, tl, ptrs, threads)
            else:
                _decode_cuda(torch, img, path, tl, ptrs, index)
    return {t.name: a for t, a in zip(infos, arrays)}


def load_file(image, path, device="cpu", threads=None, framework=None, hugepages=False):
    """Every tensor of safetensors file PATH inside IMAGE as a dict
    {name: array}, like safetensors.numpy.load_file (numpy arrays, the
    default) or safetensors.torch.load_file (torch tensors: framework='pt',
    or device 'cuda[:N]', which decodes straight into device memory).

    image: a path to an image, or an open ransfs.Image (reused, not closed).
    threads: decoding threads, None or <= 0 for all cores (host decode).
    hugepages: False (the default) backs host arrays of 4 MiB and more with
    4 KiB pages (MADV_NOHUGEPAGE before their first touch: cheaper to fault
    in on the VMs measured, docs/python.md); True leaves numpy's / torch's
    choice (numpy asks for transparent huge pages).
    BF16 / F8 tensors: ml_dtypes' bfloat16 / float8 arrays when ml_dtypes is
    importable (what safetensors.numpy returns), else uint16 / uint8 arrays
    holding the same bits; torch tensors have torch's own types.
    Errors: RansfsError subclasses (NotFoundError, NotSafetensorsError,
    CorruptImageError: no tensor is returned), CudaUnavailableError for
    CUDA without a CUDA build or GPU, ImportError when torch is needed.
    """
    framework, cuda, index = _parse_device(device, framework)
    if isinstance(image, Image):
        return _load(image, path, framework, cuda, index, threads, hugepages)
    with Image(image) as img:
        return _load(img, path, framework, cuda, index, threads, hugepages)
