"""ransfs: read ransfs images (compressed read-only model-weight images)
from Python, without a mount, through libransfs (ctypes; no compiled code).

    import ransfs
    with ransfs.open("model.rfs") as img:
        img.listdir()                      # ['config.json', 'model.safetensors']
        img.read("config.json")            # bytes
        img.tensors("model.safetensors")   # [TensorInfo(name, dtype, shape, offset, size)]
    weights = ransfs.load_file("model.rfs", "model.safetensors")  # {name: numpy array}

The library is found through $RANSFS_LIBRARY (a path to libransfs.so.0),
then a copy next to this package, then the system's loader (an installed
libransfs).  See docs/python.md.
"""
from . import _lib
from ._lib import (CorruptImageError, CudaUnavailableError, NotFoundError,  # noqa: F401
                   NotSafetensorsError, RansfsError, LIB as _LIB)
from ._image import Image, StatResult, TensorInfo  # noqa: F401
from ._load import load_file, numpy_dtype  # noqa: F401

__version__ = "0.1.0"


def open(image):  # noqa: A001 - the module's name for it, like gzip.open
    """Open image file IMAGE (a path); returns an Image."""
    return Image(image)


def library_version():
    """The version string of the loaded libransfs (ransfs_version())."""
    return _LIB.ransfs_version().decode()


def library_features():
    """The optional features libransfs was built with, e.g. 'cuda avx2 avx512'."""
    return _LIB.ransfs_features().decode()


def library_path():
    """The path of the loaded libransfs (dladdr of one of its functions)."""
    return _lib.loaded_path()
