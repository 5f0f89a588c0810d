#!/usr/bin/python3
"""Corruption sweep: damage real images every way we can think of and check
that ransfs-fsck names the damage, the mount refuses the image or fails
exactly the damaged ranges with EIO, and nothing ever crashes or returns
wrong bytes.

usage: corruption_sweep.py --bin BUILD/bin --src tests/data [--corpus DIR]

For each source tree (tests/data/human32-mini plus a random file stored RAW
and a text file stored as zstd blocks; the shared corpus's human32-st when
present) it packs an image and runs these cases:

  meta      a byte flipped in the superblock, the section table and three
            places of every metadata section: fsck and the mount refuse the
            image with the same one-line reason naming what failed;
  resealed  the same, but with every checksum recomputed afterwards
            (tests/hardening/hd_reseal), so the flip reaches the structural
            cross-checks: fsck either refuses with one line or accepts;
            never a crash, a hang or a sanitizer report; accepted images are
            mounted and read end to end (data or EIO, the daemon survives);
  truncate  the image cut at ~20 lengths, and extended: refused, one line;
  data      a byte flipped in a seeded sample of units (tiles and zstd
            blocks) and RAW extents, a few at a time in one copy: fsck
            reports each (unit, file, offset) and the problem count; a
            direct_io mount fails every read that overlaps a damaged range
            with EIO (at its first and last byte too), serves every other
            byte of every file correctly, logs each bad unit once and stays
            up; a buffered mount fails exactly the pages that overlap.

Prints the number of cases.  Random choices print their seed (RFS_TEST_SEED
replays one).  Exit 0 pass, 1 fail, 77 skip (no /dev/fuse or no numpy).
"""
import argparse
import errno
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from hd_common import Image  # noqa: E402
from rfs_testlib import (SKIP, Cleanup, Sanitizers, fuse_usable, is_mounted, log,  # noqa: E402
                         pid_state, ransfs_mount, ransfs_mount_fg, seed, unmount)

ARGS = None
CLEAN = Cleanup()
COUNTS = {}
TIMEOUT = 120  # generous: a loaded 2-core machine, sanitizer builds


def count(kind, n=1):
    COUNTS[kind] = COUNTS.get(kind, 0) + n


def tool(name):
    return os.path.join(ARGS.bin, name)


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT, **kw)


def flip(path, off, rng=None):
    with open(path, "r+b") as f:
        f.seek(off)
        old = f.read(1)[0]
        f.seek(off)
        f.write(bytes([old ^ (rng.randrange(1, 256) if rng else 0x5A)]))


def check_crash(what, r):
    """A tool exit by a signal, or with a sanitizer report, is a crash."""
    assert r.returncode >= 0, "%s: killed by signal %d\n%s" % (what, -r.returncode, r.stderr)
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, \
        "%s: sanitizer report\n%s" % (what, r.stderr)


def refused_lines(what, r, prefix):
    """The one line a refusing tool prints, without its prefix."""
    check_crash(what, r)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0, "%s: accepted (exit 0)" % what
    assert len(lines) == 1 and lines[0].startswith(prefix), \
        "%s: want one line starting %r, got %r" % (what, prefix, r.stderr)
    return lines[0][len(prefix):]


def try_mount(img, mnt, *opts):
    """Mount as a daemon; returns the CompletedProcess (refused or not)."""
    return ransfs_mount(CLEAN, tool("ransfs"), img, mnt, opts, timeout=TIMEOUT, check=False)


def expect_refused(img, tag, keyword=None):
    """fsck and the mount both refuse img with the same one-line reason."""
    r = run([tool("ransfs-fsck"), "-q", img])
    why = refused_lines("fsck " + tag, r, "ransfs-fsck: %s: " % img)
    assert r.returncode == 1, "fsck %s: exit %d" % (tag, r.returncode)
    if keyword:
        assert re.search(keyword, why), "fsck %s: %r does not name %r" % (tag, why, keyword)
    mnt = os.path.join(os.path.dirname(img), "mnt_refuse")
    m = try_mount(img, mnt)
    mwhy = refused_lines("mount " + tag, m, "ransfs: %s: " % img)
    assert not is_mounted(mnt), "mount %s: refused but left a mount" % tag
    assert mwhy == why, "mount %s: reason %r differs from fsck's %r" % (tag, mwhy, why)
    return why


# ---------------------------------------------------------------- cases

def meta_cases(img, lay, work, rng):
    """Flips in the superblock and every section: refused at open."""
    sb = [(0, "magic"), (8, "version"), (12, "feature"), (16, "superblock"),
          (20, "superblock"), (32, "superblock"), (56, "superblock"), (64 + 8, "superblock"),
          (64 + 7 * 32 + 24, "superblock"), (320, "superblock"), (503, "superblock"),
          (504, "superblock"), (511, "superblock")]
    cases = [(off, kw, "superblock+%d" % off) for off, kw in sb]
    for name, off, ln, _ in lay.sections:
        if ln == 0:
            continue
        for at in sorted({off, off + rng.randrange(ln), off + ln - 1}):
            cases.append((at, re.escape(name) + " checksum mismatch",
                          "%s+%d" % (name, at - off)))
    bad = os.path.join(work, "meta.rfs")
    for at, kw, tag in cases:
        shutil.copy(img, bad)
        flip(bad, at)
        why = expect_refused(bad, tag, kw)
        log("  meta %-26s -> %s" % (tag, why))
        count("meta")


def resealed_cases(img, lay, work, rng, per_section, mounts):
    """Flips with checksums recomputed: the structural checks must hold."""
    cases = [(rng.randrange(8, 504), "superblock") for _ in range(per_section * 2)]
    for name, off, ln, _ in lay.sections:
        cases += [(off + rng.randrange(ln), name) for _ in range(per_section if ln else 0)]
    bad = os.path.join(work, "resealed.rfs")
    accepted = refused = 0
    for at, where in cases:
        shutil.copy(img, bad)
        flip(bad, at, rng)
        subprocess.run([tool("hd_reseal"), bad], check=True, timeout=TIMEOUT)
        tag = "resealed %s byte %d" % (where, at)
        r = run([tool("ransfs-fsck"), bad])
        check_crash("fsck " + tag, r)
        assert r.returncode in (0, 1), "fsck %s: exit %d\n%s" % (tag, r.returncode, r.stderr)
        count("resealed")
        lines = r.stderr.strip().splitlines()
        assert all(l.startswith("ransfs-fsck: %s: " % bad) for l in lines), r.stderr
        if r.returncode == 1 and len(lines) == 1:   # refused at open
            refused += 1
            m = try_mount(bad, os.path.join(work, "mnt_refuse"))
            mwhy = refused_lines("mount " + tag, m, "ransfs: %s: " % bad)
            assert mwhy == lines[0][len("ransfs-fsck: %s: " % bad):], (mwhy, lines)
            continue
        accepted += 1  # opens: names, modes, mtimes or unit refs may differ now
        log("  %s: accepted by open (fsck exit %d%s)" %
            (tag, r.returncode, ": " + lines[0] if lines else ""))
        if mounts > 0:
            mounts -= 1
            read_everything(bad, work, tag)
    log("  resealed: %d refused at open, %d opened (and then checked)" % (refused, accepted))


def read_everything(img, work, tag):
    """Mount img and read every file: data or EIO, and the daemon survives."""
    mnt = os.path.join(work, "mnt_walk")
    p = start_fg(img, mnt, work, "direct_io")
    n = 0
    for root, dirs, files in os.walk(mnt):
        for name in files:
            path = os.path.join(root, name)
            try:
                with open(path, "rb", buffering=0) as f:
                    while f.read(1 << 20):
                        pass
                n += 1
            except OSError as e:
                assert e.errno in (errno.EIO, errno.EACCES, errno.ENOENT), (tag, path, e)
    assert p.poll() is None, "%s: daemon died (exit %s)" % (tag, p.returncode)
    stop_fg(p, mnt)
    count("mount")


def truncate_cases(img, lay, work, rng):
    size = lay.size
    lens = {0, 1, 8, 511, 512, 513, lay.data_off + lay.data_len // 3,
            lay.data_off + lay.data_len // 2, lay.meta_off - 1, lay.meta_off,
            size - 1, size - 8, size - 33}
    for _, off, ln, _ in lay.sections:
        lens.add(off + 1)
    while len(lens) < 20:
        lens.add(rng.randrange(size))
    bad = os.path.join(work, "trunc.rfs")
    with open(img, "rb") as f:
        blob = f.read()
    for n in sorted(lens) + [size + 1, size + 4096]:
        with open(bad, "wb") as f:
            f.write(blob[:n] if n <= size else blob + bytes(n - size))
        kw = "trailing" if n > size else ("shorter|truncated" if n >= 8 else "")
        why = expect_refused(bad, "truncated at %d" % n, kw)
        log("  length %-10d -> %s" % (n, why))
        count("truncate")


# ---------------------------------------------------------------- data damage

def start_fg(img, mnt, work, *opts):
    return ransfs_mount_fg(CLEAN, tool("ransfs"), img, mnt, ("cache=16M",) + opts,
                           os.path.join(work, "daemon.err"))


def stop_fg(p, mnt):
    subprocess.run(["fusermount3", "-u", mnt], capture_output=True, timeout=30)
    unmount(mnt)
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        raise AssertionError("daemon did not exit after unmount")
    assert p.returncode == 0, "daemon exit %d" % p.returncode
    p.errfile.seek(0)
    return p.errfile.read()


def pread_eio(fd, n, off, what):
    try:
        os.pread(fd, n, off)
    except OSError as e:
        assert e.errno == errno.EIO, "%s: %s" % (what, e)
        return
    raise AssertionError("%s: read of damaged bytes succeeded" % what)


def merge(ranges):
    out = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return out


def good_intervals(size, bad):
    pos, out = 0, []
    for s, e in bad:
        if s > pos:
            out.append((pos, s))
        pos = max(pos, e)
    if pos < size:
        out.append((pos, size))
    return out


def check_direct(mnt, p, src, lay, damaged):
    """damaged: path -> merged [start, end) ranges."""
    n_eio = 0
    for path, bad in sorted(damaged.items()):
        fd = os.open(os.path.join(mnt, path), os.O_RDONLY)
        try:
            for s, e in bad:
                w = "%s [%d, %d)" % (path, s, e)
                pread_eio(fd, e - s, s, w)
                pread_eio(fd, 1, s, w + " first byte")
                pread_eio(fd, 1, e - 1, w + " last byte")
                if s > 0:
                    pread_eio(fd, 4097, max(0, s - 4096), w + " from before")
                pread_eio(fd, 8192, e - 1, w + " into after")
                n_eio += 5
                assert p.poll() is None, "daemon died after EIO on " + w
        finally:
            os.close(fd)
    # Every other byte of every file.
    nbytes = 0
    for ino, (path, size, _) in sorted(lay.files.items()):
        with open(os.path.join(src, path), "rb") as fa, \
                open(os.path.join(mnt, path), "rb", buffering=0) as fb:
            for s, e in good_intervals(size, damaged.get(path, [])):
                for o in range(s, e, 1 << 20):
                    n = min(1 << 20, e - o)
                    got = os.pread(fb.fileno(), n, o)
                    want = os.pread(fa.fileno(), n, o)
                    assert got == want, "%s: wrong bytes in [%d, %d)" % (path, o, o + n)
                    nbytes += n
    assert p.poll() is None, "daemon died"
    return n_eio, nbytes


def check_buffered(mnt, src, damaged, rng):
    """Page cache path: pages overlapping damage fail, the others read."""
    pages = 0
    for path, bad in sorted(damaged.items()):
        fb = os.open(os.path.join(mnt, path), os.O_RDONLY)
        fa = os.open(os.path.join(src, path), os.O_RDONLY)
        try:
            os.posix_fadvise(fb, 0, 0, os.POSIX_FADV_DONTNEED)
            size = os.fstat(fa).st_size
            for s, e in bad:
                lo, hi = max(0, (s // 4096 - 3) * 4096), min(size, (e // 4096 + 4) * 4096)
                for o in list(range(lo, s, 4096)) + list(range(e // 4096 * 4096, hi, 4096)) + \
                        [s // 4096 * 4096 + rng.randrange(0, max(1, e - s)) // 4096 * 4096]:
                    hit = any(o < be and o + 4096 > bs for bs, be in bad)
                    if hit:
                        pread_eio(fb, 4096, o, "%s buffered page %d" % (path, o))
                    else:
                        assert os.pread(fb, 4096, o) == os.pread(fa, 4096, o), \
                            "%s: buffered page %d wrong" % (path, o)
                    pages += 1
        finally:
            os.close(fa)
            os.close(fb)
    return pages


def data_batch(img, lay, src, work, units, raws, rng, tag):
    bad = os.path.join(work, "data.rfs")
    shutil.copy(img, bad)
    damaged, want_fsck = {}, []
    for u in units:
        off, enc, _, kind = lay.units[u]
        flip(bad, off + rng.randrange(enc), rng)
        for path, s, n in lay.unit_users[u]:
            damaged.setdefault(path, []).append((s, s + n))
        want_fsck.append(("unit", u))
    for path, foff, ln, at in raws:
        flip(bad, at + rng.randrange(ln), rng)
        for p2, f2, l2, a2 in lay.raw:
            if a2 == at:  # every file sharing the extent
                damaged.setdefault(p2, []).append((f2, f2 + l2))
                want_fsck.append(("raw", p2, f2, l2))
    damaged = {k: merge(v) for k, v in damaged.items()}
    # fsck: one line per problem naming unit/file/offset, then the total.
    r = run([tool("ransfs-fsck"), bad])
    check_crash("fsck " + tag, r)
    assert r.returncode == 1, "fsck %s: exit %d\n%s" % (tag, r.returncode, r.stderr)
    err = r.stderr
    for w in want_fsck:
        if w[0] == "unit":
            u = w[1]
            pat = r"unit %d \([^)]*\) in (.+) at offset (\d+): checksum mismatch" % u
            m = re.search(pat, err)
            assert m, "fsck %s: unit %d not reported:\n%s" % (tag, u, err)
            assert (m.group(1), int(m.group(2))) in \
                [(pp, s) for pp, s, _ in lay.unit_users[u]], "fsck: unit %d: wrong place %r" \
                % (u, m.group(0))
        else:
            line = "%s: raw extent at file offset %d (%d bytes): checksum mismatch" % w[1:]
            assert line in err, "fsck %s: raw extent not reported: %r\n%s" % (tag, line, err)
    assert "%d problem(s) found" % len(want_fsck) in err, "fsck %s: count:\n%s" % (tag, err)
    count("fsck")
    # A direct_io mount: exact byte ranges.
    mnt = os.path.join(work, "mnt_data")
    p = start_fg(bad, mnt, work, "direct_io")
    n_eio, nbytes = check_direct(mnt, p, src, lay, damaged)
    pid = p.pid
    assert pid_state(pid) not in (None, "Z"), "daemon gone"
    out = stop_fg(p, mnt)
    for u in units:
        lines = [l for l in out.splitlines() if re.search(r"\bunit %d \(" % u, l)]
        assert len(lines) == 1, "unit %d: logged %d times:\n%s" % (u, len(lines), out)
    count("mount")
    # A buffered mount (page cache, kernel readahead): page granularity.
    p = start_fg(bad, mnt, work)
    pages = check_buffered(mnt, src, damaged, rng)
    assert p.poll() is None, "daemon died (buffered)"
    stop_fg(p, mnt)
    count("mount")
    nranges = sum(len(v) for v in damaged.values())
    log("  %s: %d units + %d raw extents damaged (%d file ranges): fsck named each; "
        "%d EIO reads, %d good bytes compared, %d buffered pages"
        % (tag, len(units), len(raws), nranges, n_eio, nbytes, pages))
    count("data", len(units) + len(raws))


def data_cases(img, lay, src, work, rng, n_units, batches):
    used = sorted(lay.unit_users)
    tiles = [u for u in used if lay.units[u][3] == 0]
    zstd = [u for u in used if lay.units[u][3] == 1]
    pick = set(rng.sample(zstd, min(len(zstd), max(2, n_units // 5))))
    pick |= set(rng.sample(tiles, min(len(tiles), n_units - len(pick))))
    pick = sorted(pick)
    rng.shuffle(pick)
    raws = sorted({(p, f, l, a) for p, f, l, a in lay.raw}, key=lambda r: r[3])
    raws = [r for i, r in enumerate(raws) if r[3] not in [x[3] for x in raws[:i]]]
    raws = rng.sample(raws, min(len(raws), 3))
    log("  sample: %d tiles, %d zstd blocks of %d units; %d of %d RAW extents"
        % (len([u for u in pick if u in tiles]), len([u for u in pick if u in zstd]),
           len(lay.units), len(raws), len(lay.raw)))
    for b in range(batches):
        data_batch(img, lay, src, work, pick[b::batches], [], rng, "batch %d" % b)
    for r in raws:  # RAW extents (verified by XXH3 on each read), one per copy
        data_batch(img, lay, src, work, [], [r], rng, "raw %s+%d" % (r[0], r[1]))


# ---------------------------------------------------------------- driver

def build_tree(base, rng):
    src = os.path.join(base, "src")
    shutil.copytree(os.path.join(ARGS.src, "human32-mini"), os.path.join(src, "human32-mini"))
    with open(os.path.join(src, "random.bin"), "wb") as f:   # incompressible: RAW
        f.write(rng.randbytes(3 * 262144 + 4321))
    with open(os.path.join(src, "notes.txt"), "w") as f:     # compressible: zstd blocks
        for i in range(60000):
            f.write("line %d of a text file that zstd squeezes %d\n" % (i, rng.randrange(99)))
    shutil.copy(os.path.join(src, "random.bin"), os.path.join(src, "random-copy.bin"))
    return src


def sweep(label, src, work, rng, heavy):
    img = os.path.join(work, "good.rfs")
    r = run([tool("ransfs-mkimage"), "-q", src, img])
    assert r.returncode == 0, "mkimage: " + r.stderr
    r = run([tool("ransfs-fsck"), "-q", img])
    assert r.returncode == 0, "fsck of the good image: " + r.stderr
    lay = Image(img)
    log("%s: image %d bytes, %d files, %d units, %d RAW extents, sections %s"
        % (label, lay.size, len(lay.files), len(lay.units), len(lay.raw),
           ", ".join("%s %d" % (n, ln) for n, _, ln, _ in lay.sections)))
    t0 = time.time()
    meta_cases(img, lay, work, rng)
    resealed_cases(img, lay, work, rng, per_section=12 if heavy else 6, mounts=4 if heavy else 2)
    truncate_cases(img, lay, work, rng)
    data_cases(img, lay, src, work, rng, n_units=20 if heavy else 12, batches=4 if heavy else 3)
    log("%s: done in %.1f s" % (label, time.time() - t0))


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--src", required=True, help="tests/data")
    ap.add_argument("--corpus")
    ARGS = ap.parse_args()
    ARGS.bin = os.path.abspath(ARGS.bin)
    why = fuse_usable()
    if why:
        log("skipped:", why)
        return SKIP
    rng = random.Random(seed())
    san = Sanitizers()
    rc, t0 = 1, time.time()
    base = tempfile.mkdtemp(prefix="rfs_hd_sweep_")
    CLEAN.push(lambda: shutil.rmtree(base, ignore_errors=True))
    try:
        work = os.path.join(base, "mini")
        os.makedirs(work)
        sweep("human32-mini+raw+zstd", build_tree(work, rng), work, rng, heavy=True)
        corpus = ARGS.corpus and os.path.join(ARGS.corpus, "human32-st")
        if corpus and os.path.isdir(corpus):
            work = os.path.join(base, "corpus")
            os.makedirs(work)
            src = os.path.join(work, "src")
            shutil.copytree(corpus, os.path.join(src, "human32-st"))
            sweep("human32-st", src, work, rng, heavy=False)
        else:
            log("shared corpus human32-st absent: swept the mini image only")
        rc = 0
    except AssertionError as e:
        log("FAIL:", e)
    finally:
        CLEAN.close()
        if san.finish():
            rc = 1
    log("cases tried: %d (%s) in %.1f s" % (sum(COUNTS.values()) - COUNTS.get("mount", 0)
                                              - COUNTS.get("fsck", 0),
                                              ", ".join("%s %d" % kv for kv in sorted(COUNTS.items())),
                                              time.time() - t0))
    log("PASS" if rc == 0 else "FAIL")
    return rc


if __name__ == "__main__":
    sys.exit(main())
