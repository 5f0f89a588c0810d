#!/usr/bin/python3
"""page_folios.py - which page-cache folios back a file: large or order-0.

    tests/bench/page_folios.py FILE [BYTES]

Maps the first BYTES of FILE (default: all of it) shared and read-only,
touches every page, then looks each page up in /proc/self/pagemap (its PFN)
and /proc/kpageflags (KPF_COMPOUND_HEAD 15, KPF_COMPOUND_TAIL 16, KPF_THP
22) and prints how many of the pages are part of a large folio.  Needs root
(PFNs are hidden from others).  docs/benchmarks.md uses it to check whether
the kernel gives a FUSE mapping large folios (6.18: no; ext4 here: yes),
which decides what the page-cache fill of a loader's faults costs.
Not run by CTest.
"""
import ctypes
import mmap
import os
import struct
import sys

PAGE = os.sysconf("SC_PAGE_SIZE")


class PyBuffer(ctypes.Structure):
    """CPython's Py_buffer, for the address of a read-only mapping."""
    _fields_ = [("buf", ctypes.c_void_p), ("obj", ctypes.c_void_p), ("len", ctypes.c_ssize_t),
                ("itemsize", ctypes.c_ssize_t), ("readonly", ctypes.c_int),
                ("ndim", ctypes.c_int), ("format", ctypes.c_char_p),
                ("shape", ctypes.c_void_p), ("strides", ctypes.c_void_p),
                ("suboffsets", ctypes.c_void_p), ("internal", ctypes.c_void_p)]


def buffer_address(obj):
    """The start address of obj's buffer (buffer protocol)."""
    get = ctypes.pythonapi.PyObject_GetBuffer
    get.argtypes = [ctypes.py_object, ctypes.POINTER(PyBuffer), ctypes.c_int]
    release = ctypes.pythonapi.PyBuffer_Release
    release.argtypes = [ctypes.POINTER(PyBuffer)]
    b = PyBuffer()
    if get(obj, ctypes.byref(b), 0) != 0:
        raise OSError("PyObject_GetBuffer failed")
    addr = b.buf
    release(ctypes.byref(b))
    return addr


def main():
    path = sys.argv[1]
    size = os.path.getsize(path)
    n = (min(int(sys.argv[2]), size) if len(sys.argv) > 2 else size) // PAGE
    if n == 0:
        sys.exit(f"page_folios.py: {path}: smaller than one page")
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), n * PAGE, mmap.MAP_SHARED, mmap.PROT_READ)
    for i in range(0, n * PAGE, PAGE):  # fault every page in
        m[i]
    addr = buffer_address(m)
    heads = tails = thp = absent = 0
    with open("/proc/self/pagemap", "rb") as pm, open("/proc/kpageflags", "rb") as kf:
        pm.seek(addr // PAGE * 8)
        for e in struct.unpack(f"<{n}Q", pm.read(8 * n)):
            if not e >> 63:
                absent += 1
                continue
            kf.seek((e & ((1 << 55) - 1)) * 8)
            (flags,) = struct.unpack("<Q", kf.read(8))
            heads += (flags >> 15) & 1
            tails += (flags >> 16) & 1
            thp += (flags >> 22) & 1
    m.close()
    large = heads + tails
    print(f"{path}: {n} pages, {absent} not present, {large} in large folios "
          f"({heads} heads, {tails} tails, {thp} THP-flagged), {n - absent - large} order-0")


if __name__ == "__main__":
    main()
