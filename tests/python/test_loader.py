#!/usr/bin/python3
"""Tests of the Python loader (python/: ctypes over libransfs, issue 13 §3).

usage: test_loader.py --venv DIR --lib LIBRANSFS --bin BUILD/bin --work DIR
                      --mini tests/data/human32-mini [--corpus DIR] [--preload SO] TEST

Two set-up tests (CTest FIXTURES_SETUP rfs_python) run under Debian's
/usr/bin/python3: `venv` creates DIR once (--system-site-packages, so numpy
is Debian's python3-numpy) and pip-installs safetensors and ml_dtypes from
PyPI into it; `images` packs the test trees with ransfs-mkimage into --work.
Every other test re-runs itself under the venv's python with
RANSFS_LIBRARY=LIBRANSFS (the build's library) and python/ first on
sys.path, and compares what the loader gives with safetensors.numpy and the
source files, bit for bit.  --preload (ASan builds): the sanitizer runtime
to LD_PRELOAD, since python itself is not instrumented.
Exit 0 pass, 1 fail, 2 usage, 77 skipped (a message says why).
"""
import argparse
import hashlib
import json
import os
import random
import re
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import threading

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(TOP, "tests", "pylib"))
from rfs_testlib import SKIP, Skip, list_if_asked, log, lookup, seed, test  # noqa: E402

PKG = os.path.join(TOP, "python")
FIXTURE = "rfs_python"
NEEDS = {"FIXTURES_REQUIRED": FIXTURE}
PYPI = ["safetensors", "ml_dtypes"]
ARGS = None


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def run(cmd, timeout=300, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if r.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s%s" % (" ".join(cmd), r.returncode,
                                                         r.stdout, r.stderr))
    return r


def work(*p):
    return os.path.join(ARGS.work, *p)


def venv_python():
    return os.path.join(ARGS.venv, "bin", "python")


# ------------------------------------------------------------ test data

def st_header(path):
    """(header dict without __metadata__, data start) of a safetensors file,
    parsed here so the tests do not trust the code under test."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    h.pop("__metadata__", None)
    return h, 8 + n


def st_write(path, tensors, metadata=None):
    """A safetensors file of {name: (dtype string, shape, raw bytes)}; the
    data goes in an order unlike the header's sorted names (reversed), as
    real files may have it."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors, reverse=True):
        dt, shape, raw = tensors[name]
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, sort_keys=True).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def real_values(mini):
    """Every F32 value and every I32 value of the real model, concatenated."""
    import numpy as np
    path = os.path.join(mini, "model.safetensors")
    h, base = st_header(path)
    with open(path, "rb") as f:
        data = f.read()
    f32 = [np.frombuffer(data, np.float32, (t["data_offsets"][1] - t["data_offsets"][0]) // 4,
                         base + t["data_offsets"][0]) for t in h.values() if t["dtype"] == "F32"]
    i32 = [np.frombuffer(data, np.int32, (t["data_offsets"][1] - t["data_offsets"][0]) // 4,
                         base + t["data_offsets"][0]) for t in h.values() if t["dtype"] == "I32"]
    return np.concatenate(f32), np.concatenate(i32)


def bf16_bits(f32):
    """float32 -> bfloat16 bits, round to nearest even (NaN stays NaN)."""
    import numpy as np
    u = f32.astype(np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(f32)
    r[nan] = (u[nan] >> 16).astype(np.uint16) | 0x40
    return r


def dtype_tensors(mini):
    """Real-valued tensors of every dtype the loader maps, derived from the
    real model: bf16/f16/f64 by rounding or widening its f32 weights, I64 by
    widening its I32 tensors, the narrow ints from the bf16 bits, BOOL from
    the signs; plus a scalar, an empty tensor and a multi-tile bf16 one."""
    import numpy as np
    f32, i32 = real_values(mini)
    bf = bf16_bits(f32[:300000])
    t = {
        "bf16.multi_tile": ("BF16", (300, 1000), bf.tobytes()),
        "bf16.odd_shape": ("BF16", (7, 11, 13), bf16_bits(f32[-1001:]).tobytes()),
        "f16.weight": ("F16", (250, 400), f32[:100000].astype(np.float16).tobytes()),
        "f64.weight": ("F64", (64, 500), f32[:32000].astype(np.float64).tobytes()),
        "f32.weight": ("F32", (333, 3), f32[5000:5999].tobytes()),
        "i64.index": ("I64", (i32.size,), i32.astype(np.int64).tobytes()),
        "i32.index": ("I32", (i32.size,), i32.tobytes()),
        "i16.bits": ("I16", (4096,), bf[:4096].view(np.int16).tobytes()),
        "u16.bits": ("U16", (64, 64), bf[4096:8192].tobytes()),
        "i8.bytes": ("I8", (1000,), bf[:500].view(np.int8).tobytes()),
        "u8.bytes": ("U8", (10, 100), bf[500:1000].view(np.uint8).tobytes()),
        "u32.bits": ("U32", (1000,), f32[:1000].view(np.uint32).tobytes()),
        "u64.bits": ("U64", (500,), f32[:1000].view(np.uint64).tobytes()),
        "bool.sign": ("BOOL", (3000,), (f32[:3000] > 0).tobytes()),
        "scalar.f32": ("F32", (), f32[42:43].tobytes()),
        "empty.f32": ("F32", (0, 4), b""),
        "empty.bf16": ("BF16", (5, 0), b""),
        # >= 4 MiB: numpy would ask for huge pages (load_file's hugepages=)
        "bf16.big": ("BF16", (2048, 1056), np.resize(bf, 2048 * 1056).tobytes()),
    }
    return t


def make_tree(root):
    """The tree the loader tests read: the real mini model, the dtype file,
    a nested directory, a symlink, an empty file, a non-safetensors file."""
    shutil.copytree(ARGS.mini, root)
    st_write(os.path.join(root, "dtypes.safetensors"), dtype_tensors(ARGS.mini),
             {"format": "np", "note": "derived from human32-mini"})
    os.makedirs(os.path.join(root, "sub", "deeper"))
    with open(os.path.join(root, "sub", "deeper", "notes.txt"), "w") as f:
        f.write("".join("line %d of a small text file\n" % i for i in range(2000)))
    open(os.path.join(root, "sub", "empty"), "w").close()
    os.symlink("../config.json", os.path.join(root, "sub", "config-link.json"))


def mkimage(src, img):
    tmp = img + ".tmp"
    run([os.path.join(ARGS.bin, "ransfs-mkimage"), "-q", "-f", src, tmp])
    os.replace(tmp, img)


def corpus_dir():
    d = ARGS.corpus
    if d and os.path.isdir(d):
        return d
    return None


# ------------------------------------------------------------ set-up tests

@test(FIXTURES_SETUP=FIXTURE, TIMEOUT=900)
def t_venv():
    """The venv: created once, reused while it imports what the tests need."""
    import numpy as np
    probe = ("import numpy, safetensors, ml_dtypes; "
             "assert numpy.__file__.startswith('/usr/lib/python3/'), numpy.__file__")
    py = venv_python()
    if os.path.exists(py) and subprocess.run([py, "-c", probe],
                                             capture_output=True).returncode == 0:
        log("venv %s: ready (reused)" % ARGS.venv)
        return
    shutil.rmtree(ARGS.venv, ignore_errors=True)
    run([sys.executable, "-m", "venv", "--system-site-packages", ARGS.venv])
    # numpy pinned to Debian's: pip keeps python3-numpy, picks ml_dtypes to match
    r = subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        *PYPI, "numpy==%s" % np.__version__], capture_output=True, text=True,
                       timeout=800)
    if r.returncode != 0:
        raise AssertionError("venv %s: pip install %s from PyPI failed:\n%s" %
                             (ARGS.venv, " ".join(PYPI), r.stdout + r.stderr))
    r = run([py, "-c", probe + "; print('numpy', numpy.__version__, 'safetensors', "
             "safetensors.__version__, 'ml_dtypes', ml_dtypes.__version__)"])
    log("venv %s: created: %s" % (ARGS.venv, r.stdout.strip()))


@test(FIXTURES_SETUP=FIXTURE)
def t_images():
    """Pack the test tree (and the corpus when present) into --work."""
    shutil.rmtree(work("tree"), ignore_errors=True)
    os.makedirs(ARGS.work, exist_ok=True)
    make_tree(work("tree"))
    mkimage(work("tree"), work("tree.rfs"))
    log("packed %s -> %s (%d bytes)" % (work("tree"), work("tree.rfs"),
                                        os.path.getsize(work("tree.rfs"))))
    c = corpus_dir()
    if c:
        mkimage(c, work("corpus.rfs"))
        log("packed %s -> %s" % (c, work("corpus.rfs")))
    else:
        log("no corpus at %s: the corpus test will skip" % ARGS.corpus)


# ------------------------------------------------------------ helpers (venv side)

def same_arrays(got, want, where):
    """Same names, dtypes, shapes and bytes; each array owns C-contiguous
    memory (decoded into place, not a view of a file-sized buffer)."""
    import numpy as np
    check(sorted(got) == sorted(want), "%s: names differ: %s" %
          (where, sorted(set(got) ^ set(want))[:5]))
    for name, w in want.items():
        g = got[name]
        check(isinstance(g, np.ndarray), "%s: %s is a %s" % (where, name, type(g)))
        check(g.dtype == w.dtype and g.shape == w.shape,
              "%s: %s: %s %s, want %s %s" % (where, name, g.dtype, g.shape, w.dtype, w.shape))
        check(g.tobytes() == w.tobytes(), "%s: %s: bytes differ" % (where, name))
        check(g.flags.c_contiguous and g.flags.writeable and g.base is None,
              "%s: %s: not an array of its own" % (where, name))


def safetensor_files(root):
    out = []
    for d, _, files in os.walk(root):
        out += [os.path.relpath(os.path.join(d, f), root) for f in files
                if f.endswith(".safetensors") and not os.path.islink(os.path.join(d, f))]
    return sorted(out)


def compare_loads(img_path, src_root, threads=(None,)):
    import ransfs
    from safetensors.numpy import load_file as st_load
    files = safetensor_files(src_root)
    check(files, "no safetensors file under %s" % src_root)
    dtypes = set()
    for rel in files:
        want = st_load(os.path.join(src_root, rel))
        for th in threads:
            got = ransfs.load_file(img_path, rel, threads=th)
            same_arrays(got, want, "%s:%s threads=%s" % (img_path, rel, th))
        dtypes |= {st_header(os.path.join(src_root, rel))[0][n]["dtype"] for n in want}
        log("%s: %d tensors bit-exact vs safetensors.numpy (threads %s)" %
            (rel, len(want), list(threads)))
    return dtypes


# ------------------------------------------------------------ loader tests

@test(**NEEDS)
def t_load_mini():
    """Every tensor of the real mini model (F32, I32), 1, 2 and all threads."""
    dtypes = compare_loads(work("tree.rfs"), ARGS.mini, threads=(1, 2, None))
    check({"F32", "I32"} <= dtypes, "mini model dtypes: %s" % dtypes)


@test(**NEEDS)
def t_load_dtypes():
    """Every dtype (BF16, I64, I32, F16, F64, ...; scalars, empty tensors)."""
    import ml_dtypes
    import numpy as np
    import ransfs
    dtypes = compare_loads(work("tree.rfs"), work("tree"), threads=(1, 2))
    check({"BF16", "I32", "I64", "F16", "F64", "BOOL", "U8"} <= dtypes, "dtypes %s" % dtypes)
    got = ransfs.load_file(work("tree.rfs"), "dtypes.safetensors")
    check(got["bf16.multi_tile"].dtype == np.dtype(ml_dtypes.bfloat16), "bf16 dtype")
    check(got["scalar.f32"].shape == () and got["empty.bf16"].shape == (5, 0), "shapes")
    check(ransfs.numpy_dtype("BF16") == np.dtype(ml_dtypes.bfloat16), "numpy_dtype")


def vma_flags(ptr):
    """The VmFlags of the mapping of this process that holds address ptr."""
    with open("/proc/self/smaps") as f:
        inside = False
        for line in f:
            m = re.match(r"([0-9a-f]+)-([0-9a-f]+) ", line)
            if m:
                inside = int(m.group(1), 16) <= ptr < int(m.group(2), 16)
            elif inside and line.startswith("VmFlags:"):
                return line.split()[1:]
    raise AssertionError("no mapping holds %#x" % ptr)


@test(**NEEDS)
def t_hugepages():
    """hugepages=False (the default) marks the fresh arrays of 4 MiB and up
    MADV_NOHUGEPAGE before decoding into them; True leaves numpy's choice;
    the bytes are the same either way."""
    import ransfs
    from safetensors.numpy import load_file as st_load
    want = st_load(os.path.join(work("tree"), "dtypes.safetensors"))
    kept = []  # each load's arrays stay alive: the next cannot reuse their memory
    for hp in (False, True):
        got = ransfs.load_file(work("tree.rfs"), "dtypes.safetensors", hugepages=hp)
        kept.append(got)
        same_arrays(got, want, "hugepages=%s" % hp)
        big = got["bf16.big"]
        check(big.nbytes >= 1 << 22, "bf16.big is %d bytes" % big.nbytes)
        flags = vma_flags(big.ctypes.data + big.nbytes // 2)
        check(("nh" in flags) == (not hp), "hugepages=%s: VmFlags %s" % (hp, flags))
        log("hugepages=%s: bf16.big's mapping has VmFlags %s" % (hp, " ".join(flags)))


@test(**NEEDS)
def t_load_corpus():
    """Every safetensors file of ../shared/corpus/human32-st (skips without it)."""
    c = corpus_dir()
    if not c:
        log("skipped: no corpus at %s (tests/data is tested by load_mini)" % ARGS.corpus)
        raise Skip
    compare_loads(work("corpus.rfs"), c, threads=(2,))


@test(**NEEDS)
def t_load_open_image():
    """load_file on an open Image reuses it (and leaves it open); Path objects."""
    import pathlib
    import ransfs
    from safetensors.numpy import load_file as st_load
    want = st_load(os.path.join(ARGS.mini, "model.safetensors"))
    with ransfs.open(pathlib.Path(work("tree.rfs"))) as img:
        for _ in range(2):
            same_arrays(ransfs.load_file(img, pathlib.PurePosixPath("/model.safetensors")),
                        want, "open image")
        check(img.listdir() != [], "image closed by load_file")


@test(**NEEDS)
def t_tensors():
    """img.tensors(): names, dtypes, shapes, file offsets and sizes in file order."""
    import ransfs
    src = os.path.join(work("tree"), "dtypes.safetensors")
    h, base = st_header(src)
    want = sorted((base + t["data_offsets"][0], n, t["dtype"], tuple(t["shape"]),
                   t["data_offsets"][1] - t["data_offsets"][0]) for n, t in h.items())
    with ransfs.open(work("tree.rfs")) as img:
        got = img.tensors("dtypes.safetensors")
        # file order: offsets never go down (ties, e.g. empty tensors, in any order)
        check([t.offset for t in got] == sorted(t.offset for t in got), "not in file order")
        check(sorted((t.offset, t.name, t.dtype, t.shape, t.size) for t in got) == want,
              "tensors: %s\nwant %s" % (got[:3], want[:3]))
        with open(src, "rb") as f:
            data = f.read()
        for t in got:  # each byte range is the tensor's bytes
            check(img.read("dtypes.safetensors", t.offset, t.size) ==
                  data[t.offset:t.offset + t.size], "range of %s" % t.name)
        log("%d tensors, offsets and sizes match the header" % len(got))


@test(**NEEDS)
def t_tree():
    """listdir / stat / readlink / read of every path against the source tree."""
    import ransfs
    root = work("tree")
    rng = random.Random(seed())
    n = 0
    with ransfs.open(work("tree.rfs")) as img:
        check(img.listdir("") == img.listdir("/") == sorted(os.listdir(root)), "root listing")
        for d, dirs, files in os.walk(root):
            rel = os.path.relpath(d, root)
            rel = "" if rel == "." else rel
            check(img.listdir(rel) == sorted(dirs + files), "listdir %r" % rel)
            for name in dirs + files:
                p = os.path.join(rel, name) if rel else name
                ls, st = os.lstat(os.path.join(root, p)), img.stat(p)
                check(stat.S_IFMT(st.st_mode) == stat.S_IFMT(ls.st_mode) and
                      stat.S_IMODE(st.st_mode) == stat.S_IMODE(ls.st_mode), "mode of %s" % p)
                check(st.st_mtime_ns == ls.st_mtime_ns, "mtime of %s: %d vs %d" %
                      (p, st.st_mtime_ns, ls.st_mtime_ns))
                if stat.S_ISLNK(ls.st_mode):
                    check(img.readlink(p) == os.readlink(os.path.join(root, p)), "link %s" % p)
                elif stat.S_ISREG(ls.st_mode):
                    check(st.st_size == ls.st_size, "size of %s" % p)
                    n += check_file(img, p, os.path.join(root, p), rng)
        log("%d files read whole and in random ranges, byte-exact" % n)


def check_file(img, path, src, rng):
    """Whole, readinto, and random ranges (across tiles, past the end)."""
    with open(src, "rb") as f:
        data = f.read()
    check(img.read(path) == data, "read %s" % path)
    buf = bytearray(len(data) + 10)
    check(img.readinto(path, buf) == len(data) and buf[:len(data)] == data, "readinto " + path)
    for _ in range(20):
        off = rng.randrange(len(data) + 2)
        size = rng.choice([0, 1, 7, 4096, 262145, len(data)])
        check(img.read(path, off, size) == data[off:off + size],
              "read %s offset %d size %d" % (path, off, size))
    check(img.read(path, len(data) + 100, 10) == b"", "read past the end")
    return 1


@test(**NEEDS)
def t_threads():
    """Python threads sharing one Image: loads and reads at the same time."""
    import ransfs
    from safetensors.numpy import load_file as st_load
    want = st_load(os.path.join(work("tree"), "dtypes.safetensors"))
    with open(os.path.join(ARGS.mini, "model.safetensors"), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    errors = []

    def worker(k):
        try:
            for _ in range(3):
                if k % 2:
                    same_arrays(ransfs.load_file(img, "dtypes.safetensors", threads=2), want,
                                "thread %d" % k)
                else:
                    b = img.read("model.safetensors")
                    check(hashlib.sha256(b).hexdigest() == digest, "thread %d read" % k)
        except Exception as e:  # noqa - reported below
            errors.append(e)

    with ransfs.open(work("tree.rfs")) as img:
        th = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in th:
            t.start()
        for t in th:
            t.join()
    check(not errors, "threads: %s" % errors)


# ------------------------------------------------------------ errors

def raises(exc, fn, *words):
    """fn() raises exc, and its one-line message holds every word."""
    try:
        fn()
    except exc as e:
        msg = str(e)
        check("\n" not in msg and all(w in msg for w in words),
              "%s: message %r lacks %s" % (exc.__name__, msg, words))
        log("  %s: %s" % (type(e).__name__, msg))
        return e
    raise AssertionError("no %s raised (want one naming %s)" % (exc.__name__, words))


@test(**NEEDS)
def t_errors():
    """Clear exceptions: missing image, not an image, missing paths, not
    safetensors, wrong kinds, bad arguments, torch or CUDA asked for without
    torch, a closed image."""
    import ransfs
    img_path, cfg = work("tree.rfs"), os.path.join(ARGS.mini, "config.json")
    missing = work("no-such.rfs")
    e = raises(ransfs.NotFoundError, lambda: ransfs.open(missing), missing)
    check(isinstance(e, FileNotFoundError), "missing image is a FileNotFoundError")
    raises(ransfs.RansfsError, lambda: ransfs.open(cfg), cfg)
    raises(ransfs.RansfsError, lambda: ransfs.load_file(missing, "model.safetensors"), missing)
    with ransfs.open(img_path) as img:
        raises(ransfs.NotFoundError, lambda: img.stat("nope"), "nope")
        raises(ransfs.NotFoundError, lambda: img.read("sub/nope.txt"), "sub/nope.txt")
        raises(ransfs.NotFoundError, lambda: ransfs.load_file(img, "x.safetensors"),
               "x.safetensors")
        e = raises(ransfs.NotSafetensorsError, lambda: ransfs.load_file(img, "config.json"),
                   "config.json")
        check(isinstance(e, ValueError), "NotSafetensorsError is a ValueError")
        raises(ransfs.NotSafetensorsError, lambda: img.tensors("sub/deeper/notes.txt"),
               "notes.txt")
        raises(ransfs.RansfsError, lambda: img.listdir("config.json"), "config.json")
        raises(ransfs.RansfsError, lambda: img.read("sub"), "sub")
        raises(ValueError, lambda: ransfs.load_file(img, "model.safetensors", device="tpu"),
               "tpu")
        raises(ValueError, lambda: ransfs.load_file(img, "model.safetensors", device="cuda",
                                                    framework="np"), "framework")
        raises(ValueError, lambda: img.read("config.json", -1, 1), "negative")
        no_torch(img)
    raises(ValueError, lambda: img.listdir(), "closed")


def no_torch(img):
    """Where torch is not importable (here always: None in sys.modules makes
    `import torch` raise ImportError, whether or not it is installed),
    torch tensors and CUDA devices are a clear ImportError naming torch."""
    import ransfs
    had, saved = "torch" in sys.modules, sys.modules.get("torch")
    sys.modules["torch"] = None
    try:
        raises(ImportError, lambda: ransfs.load_file(img, "model.safetensors", framework="pt"),
               "framework='pt'", "torch")
        for dev in ("cuda", "cuda:0", 0):
            raises(ImportError, lambda: ransfs.load_file(img, "model.safetensors", device=dev),
                   "cuda", "torch")
    finally:
        if had:
            sys.modules["torch"] = saved
        else:
            del sys.modules["torch"]


@test(**NEEDS)
def t_corrupt():
    """A flipped byte in a tile of the model: load_file and read raise
    CorruptImageError (or an I/O error), never return wrong bytes."""
    import ransfs
    sys.path.insert(0, os.path.join(TOP, "tests", "hardening"))
    import hd_common
    lay = hd_common.Image(work("tree.rfs"))
    users = [(u, ranges) for u, ranges in sorted(lay.unit_users.items())
             if any(p == "model.safetensors" for p, _, _ in ranges)]
    check(users, "no coded unit in model.safetensors")
    u, ranges = users[len(users) // 2]
    off, enc, _, _ = lay.units[u]
    bad = work("corrupt.rfs")
    shutil.copy(work("tree.rfs"), bad)
    with open(bad, "r+b") as f:
        f.seek(off + enc // 2)
        b = f.read(1)
        f.seek(off + enc // 2)
        f.write(bytes([b[0] ^ 0x10]))
    with ransfs.open(bad) as img:
        e = raises(ransfs.RansfsError, lambda: ransfs.load_file(img, "model.safetensors"),
                   "model.safetensors")
        check(e.code in (3, 2), "corrupt unit: code %d (%s)" % (e.code, e))
        _, s, n = ranges[0]
        raises(ransfs.RansfsError, lambda: img.read("model.safetensors", s, n),
               "model.safetensors")
        # what the damage does not touch still reads back exactly
        check(img.read("config.json") == open(os.path.join(ARGS.mini, "config.json"),
                                              "rb").read(), "undamaged file")
        log("unit %d damaged: %s" % (u, e))


@test(**NEEDS)
def t_library_lookup():
    """RANSFS_LIBRARY first (a bad one: ImportError naming it), then a copy
    next to the package, then the default loader (LD_LIBRARY_PATH)."""
    env = clean_env()
    code = "import ransfs; print(ransfs.library_path()); print(ransfs.library_version())"
    bad = dict(env, RANSFS_LIBRARY=work("no-such-lib.so"), PYTHONPATH=PKG)
    r = subprocess.run([venv_python(), "-c", code], env=bad, capture_output=True, text=True)
    check(r.returncode != 0 and "no-such-lib.so" in r.stderr and "RANSFS_LIBRARY" in r.stderr,
          "bad RANSFS_LIBRARY: %d %s" % (r.returncode, r.stderr))
    d = tempfile.mkdtemp(prefix="rfs_py_", dir=ARGS.work)
    try:
        shutil.copytree(os.path.join(PKG, "ransfs"), os.path.join(d, "ransfs"))
        shutil.copy(ARGS.lib, os.path.join(d, "ransfs", "libransfs.so.0"))
        r = run([venv_python(), "-c", code], env=dict(env, PYTHONPATH=d))
        check(r.stdout.split("\n")[0] ==
              os.path.realpath(os.path.join(d, "ransfs", "libransfs.so.0")),
              "next to the package: %s" % r.stdout)
        os.remove(os.path.join(d, "ransfs", "libransfs.so.0"))
        ld = os.path.dirname(os.path.realpath(ARGS.lib))
        r = run([venv_python(), "-c", code], env=dict(env, PYTHONPATH=d, LD_LIBRARY_PATH=ld))
        check(r.stdout.split("\n")[0].startswith(ld), "default loader: %s" % r.stdout)
        log("lookup: RANSFS_LIBRARY, next to the package, LD_LIBRARY_PATH: ok (%s)" %
            r.stdout.split("\n")[1])
    finally:
        shutil.rmtree(d, ignore_errors=True)


def clean_env(preload=True):
    """The test's environment without RANSFS_LIBRARY/PYTHONPATH; the
    sanitizer preload only for pythons that load libransfs (cmake, for one,
    hangs under an ASan LD_PRELOAD)."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    for k in ("RANSFS_LIBRARY", "PYTHONPATH", "LD_LIBRARY_PATH") + \
            (() if preload else ("LD_PRELOAD",)):
        env.pop(k, None)
    return env


@test(**NEEDS)
def t_pip_install():
    """`pip install ./python` into the venv; the installed package (run from
    elsewhere, no PYTHONPATH) imports and loads bit-exact, with the build's
    library (RANSFS_LIBRARY) and with one from `cmake --install`."""
    d = tempfile.mkdtemp(prefix="rfs_pip_", dir=ARGS.work)
    try:
        src = os.path.join(d, "python")  # a copy: setuptools writes build/ into it
        shutil.copytree(PKG, src, ignore=shutil.ignore_patterns("build", "*.egg-info",
                                                               "__pycache__"))
        run([venv_python(), "-m", "pip", "install", "-q", "--disable-pip-version-check",
             "--no-build-isolation", "--no-deps", "--force-reinstall", src],
            env=clean_env(preload=False))
        code = ("import ransfs, sys; from safetensors.numpy import load_file as s; "
                "a = ransfs.load_file(sys.argv[1], 'dtypes.safetensors'); "
                "b = s(sys.argv[2]); "
                "assert sorted(a) == sorted(b) and all(a[k].tobytes() == b[k].tobytes() and "
                "a[k].dtype == b[k].dtype for k in b); print(ransfs.__file__, len(a))")
        env = dict(clean_env(), RANSFS_LIBRARY=ARGS.lib)
        r = run([venv_python(), "-c", code, work("tree.rfs"),
                 os.path.join(work("tree"), "dtypes.safetensors")], env=env, cwd=d)
        check(r.stdout.startswith(os.path.realpath(ARGS.venv)) or
              r.stdout.startswith(ARGS.venv), "not the installed copy: %s" % r.stdout)
        log("installed: %s" % r.stdout.strip())
        # and against an installed libransfs (cmake --install), found by the loader
        prefix = os.path.join(d, "prefix")
        run([ARGS.cmake, "--install", os.path.dirname(ARGS.bin), "--prefix", prefix],
            env=clean_env(preload=False))
        libdir = [dp for dp, _, fs in os.walk(prefix) if "libransfs.so.0" in fs]
        check(len(libdir) == 1, "cmake --install: libransfs.so.0 in %s" % libdir)
        r = run([venv_python(), "-c", code + "; print(ransfs.library_path())", work("tree.rfs"),
                 os.path.join(work("tree"), "dtypes.safetensors")], cwd=d,
                env=dict(clean_env(), LD_LIBRARY_PATH=libdir[0]))
        check(r.stdout.split()[-1].startswith(os.path.realpath(libdir[0])),
              "not the installed library: %s" % r.stdout)
        log("with the installed library: %s" % r.stdout.split()[-1])
    finally:
        subprocess.run([venv_python(), "-m", "pip", "uninstall", "-q", "-y", "ransfs"],
                       capture_output=True, env=clean_env(preload=False))
        shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------ torch

def need_torch():
    try:
        import torch
    except ImportError:
        log("skipped: torch is not importable in %s (pip install torch there to run it)" %
            ARGS.venv)
        raise Skip
    return torch


@test(**NEEDS)
def t_torch_cpu():
    """framework='pt': torch tensors equal to safetensors.torch.load_file."""
    torch = need_torch()
    import ransfs
    from safetensors.torch import load_file as st_load
    for rel in ("model.safetensors", "dtypes.safetensors"):
        want = st_load(os.path.join(work("tree"), rel))
        got = ransfs.load_file(work("tree.rfs"), rel, framework="pt")
        same_torch(torch, got, want, rel)


def same_torch(torch, got, want, where):
    check(sorted(got) == sorted(want), "%s: names differ" % where)
    for k, w in want.items():
        g = got[k]
        check(g.dtype == w.dtype and tuple(g.shape) == tuple(w.shape),
              "%s: %s: %s %s vs %s %s" % (where, k, g.dtype, g.shape, w.dtype, w.shape))
        gb = g.cpu().contiguous().view(-1).view(torch.uint8) if g.numel() else g.cpu()
        wb = w.contiguous().view(-1).view(torch.uint8) if w.numel() else w
        check(torch.equal(gb, wb), "%s: %s: bytes differ" % (where, k))
    log("%s: %d torch tensors bit-exact" % (where, len(want)))


@test(**NEEDS)
def t_torch_cuda():
    """device='cuda': decoded straight into device memory; or, without a
    CUDA build of libransfs, a clear CudaUnavailableError."""
    torch = need_torch()
    import ransfs
    from safetensors.torch import load_file as st_load
    if "cuda" not in ransfs.library_features().split() or not torch.cuda.is_available():
        raises(ransfs.CudaUnavailableError,
               lambda: ransfs.load_file(work("tree.rfs"), "model.safetensors", device="cuda"),
               "CUDA")
        log("skipped: no CUDA build or GPU here (features '%s'); the error is clear" %
            ransfs.library_features())
        raise Skip
    for rel in ("model.safetensors", "dtypes.safetensors"):
        want = st_load(os.path.join(work("tree"), rel))
        got = ransfs.load_file(work("tree.rfs"), rel, device="cuda:0")
        check(all(t.device.type == "cuda" for t in got.values()), "not on the GPU")
        torch.cuda.synchronize()
        same_torch(torch, got, want, rel + " cuda")


# ------------------------------------------------------------ main

SETUP = ("venv", "images")


def reexec_in_venv():
    """Run this test again under the venv's python with the build's library."""
    py = venv_python()
    if not os.path.exists(py):
        sys.exit("test_loader: no venv at %s (the python_venv set-up test failed?)" % ARGS.venv)
    env = dict(os.environ, RFS_PY_IN_VENV="1", RANSFS_LIBRARY=ARGS.lib,
               PYTHONDONTWRITEBYTECODE="1")
    if ARGS.preload:  # an ASan libransfs in an uninstrumented python
        env["LD_PRELOAD"] = ARGS.preload
        env["ASAN_OPTIONS"] = ":".join(filter(None, [env.get("ASAN_OPTIONS"),
                                                     "detect_leaks=0"]))
    os.execve(py, [py, "-B", os.path.abspath(__file__)] + sys.argv[1:], env)


def main():
    global ARGS
    list_if_asked(globals())
    ap = argparse.ArgumentParser()
    for a in ("--venv", "--lib", "--bin", "--work", "--mini"):
        ap.add_argument(a, required=True)
    ap.add_argument("--corpus")
    ap.add_argument("--cmake", default="cmake")
    ap.add_argument("--preload", default="")
    ap.add_argument("test")
    ARGS = ap.parse_args()
    fn, _ = lookup(globals(), ARGS.test)
    if ARGS.test not in SETUP:
        if not os.environ.get("RFS_PY_IN_VENV"):
            reexec_in_venv()
        sys.path.insert(0, PKG)
    try:
        fn()
    except Skip:
        return SKIP
    log("PASS", ARGS.test)
    return 0


if __name__ == "__main__":
    sys.exit(main())
