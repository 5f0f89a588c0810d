#!/usr/bin/python3
"""Tests of what a user installs: `cmake --install`, the man pages, each
tool's --version, and the Debian package (issue 13 section 2).

usage: install_test.py --build BUILD --src SOURCE_DIR --version V --cuda 0|1
                       --remote 0|1 --sanitize S --bindir D --mandir D
                       --libdir D --includedir D TEST

The directories are CMake's GNUInstallDirs, relative to the prefix.
Exit 0 = pass, 1 = fail, 77 = skipped (with the reason printed).

The deb test changes the system: it installs the package with dpkg -i,
mounts with the installed /usr/bin/ransfs (once through a line it adds to
/etc/fstab and takes out again right after `mount MNT`), and removes the
package with dpkg -r.  It refuses to touch a system where a ransfs package, or any file
the package would own, is already there (skip, 77), holds a lock so that
two checkouts on one machine take turns, and leaves a guardian process
(its own session, so a CTest timeout does not kill it) that unmounts and
removes the package and the fstab line if this process dies before it
has done so itself.
"""
import argparse
import fcntl
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from rfs_testlib import (SKIP, Skip, daemon_pid, fuse_usable, is_mounted,  # noqa: E402
                         list_if_asked, log, lookup, test)

ARGS = None
TOOLS = ["ransfs", "ransfs-mkimage", "ransfs-fsck", "ransfs-dump"]
# Where each tool's source and man page live (the page sits beside the code).
MAN_PAGES = {"ransfs": "fs/ransfs.1", "ransfs-mkimage": "mkimage/ransfs-mkimage.1",
             "ransfs-fsck": "mkimage/ransfs-fsck.1", "ransfs-dump": "mkimage/ransfs-dump.1"}
# Sections every page has; FILES where the tool reads or writes files of
# its own (ransfs-dump only reads the image it is given).
SECTIONS = ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "EXAMPLES", "SEE ALSO"]
FILES_SECTION = {"ransfs", "ransfs-mkimage", "ransfs-fsck"}
PACKAGE = "ransfs"
# Debian 12 packages the .deb must depend on (issue 13): the libraries the
# binaries link, and fuse3 for fusermount3 / mount.fuse3.
DEB_DEPENDS = ["libfuse3-3", "fuse3", "libzstd1", "libxxhash0", "libcjson1"]
LOCK = "/run/lock/ransfs-deb-test.lock"
LOCK_WAIT = 600     # seconds to wait for another checkout's deb test
DPKG_WAIT = 300     # seconds to wait for someone else's apt/dpkg run


class Tmp:
    """A temporary directory removed at exit (unless a guardian owns it)."""
    dirs = []

    @classmethod
    def make(cls, prefix="rfs_inst_"):
        d = tempfile.mkdtemp(prefix=prefix)
        cls.dirs.append(d)
        return d


def run(cmd, expect=0, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 300)
    r = subprocess.run(cmd, **kw)
    if expect is not None and r.returncode != expect:
        raise AssertionError("%s: exit %d, wanted %d\nstdout: %s\nstderr: %s" %
                             (" ".join(cmd), r.returncode, expect, r.stdout, r.stderr))
    return r


def have_fuse():
    return os.path.exists(os.path.join(ARGS.build, "bin", "ransfs"))


def have_lib():
    """Task C's libransfs (lib/): its files are expected once it exists."""
    return os.path.exists(os.path.join(ARGS.src, "lib", "ransfs.h"))


def expected_files():
    """Every file `cmake --install` must put under a prefix, relative to
    it.  This list is the contract: a new install() rule adds a line here."""
    tools = TOOLS if have_fuse() else TOOLS[1:]
    files = [os.path.join(ARGS.bindir, t) for t in tools]
    files += [os.path.join(ARGS.mandir, "man1", t + ".1.gz") for t in tools]
    if have_lib():
        v = ARGS.version
        files += [os.path.join(ARGS.includedir, "ransfs.h"),
                  os.path.join(ARGS.libdir, "pkgconfig", "ransfs.pc"),
                  os.path.join(ARGS.libdir, "libransfs.a"),
                  os.path.join(ARGS.libdir, "libransfs.so"),
                  os.path.join(ARGS.libdir, "libransfs.so.0"),
                  os.path.join(ARGS.libdir, "libransfs.so." + v)]
    return sorted(files)


def tree_files(root):
    """Files and symlinks under root, relative, sorted (directories left out)."""
    out = []
    for d, dirs, files in os.walk(root):
        for name in files + [x for x in dirs if os.path.islink(os.path.join(d, x))]:
            out.append(os.path.relpath(os.path.join(d, name), root))
    return sorted(out)


def cmake_install(prefix):
    run(["cmake", "--install", ARGS.build, "--prefix", prefix], timeout=120)
    return prefix


# ------------------------------------------------------------ install

def t_files():
    """`cmake --install BUILD --prefix P` installs exactly the expected
    files: the tools (executable), their man pages (gzip, no time stamp),
    and libransfs with its header and ransfs.pc once lib/ exists."""
    prefix = cmake_install(os.path.join(Tmp.make(), "prefix"))
    got, want = tree_files(prefix), expected_files()
    log("installed:", " ".join(got))
    extra, missing = sorted(set(got) - set(want)), sorted(set(want) - set(got))
    assert not extra and not missing, "unexpected: %s; missing: %s" % (extra, missing)
    for t in TOOLS if have_fuse() else TOOLS[1:]:
        path = os.path.join(prefix, ARGS.bindir, t)
        assert os.access(path, os.X_OK), path + " is not executable"
        run([path, "--version"])
        with open(os.path.join(prefix, ARGS.mandir, "man1", t + ".1.gz"), "rb") as f:
            head = f.read(10)
        # gzip -n: no name, mtime 0, so the package is reproducible.
        assert head[:2] == b"\x1f\x8b" and head[4:8] == b"\0\0\0\0", t + ".1.gz: " + repr(head)


def t_static_cuda():
    """With the CUDA decoder built, no installed binary needs the CUDA
    runtime's shared library (it is linked statically): `ldd` lists no
    libcudart.so, so the package runs on machines without the toolkit."""
    if ARGS.cuda != "1":
        log("skipped: this build has no CUDA decoder (nothing linked to check)")
        raise Skip()
    prefix = cmake_install(os.path.join(Tmp.make(), "prefix"))
    for rel in tree_files(prefix):
        path = os.path.join(prefix, rel)
        if not is_elf(path):
            continue
        libs = run(["ldd", path]).stdout
        log(rel + ":", " ".join(l.split()[0] for l in libs.splitlines() if "=>" in l))
        assert "libcudart" not in libs, "%s links the CUDA runtime dynamically:\n%s" % (rel, libs)


def is_elf(path):
    if os.path.islink(path) or not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


# ------------------------------------------------------------ --version

def t_version():
    """Every tool's --version: `TOOL VERSION[ (...)]`, then one features
    line, the same in all four (they print it from util/rfs_build), that
    says cuda=yes exactly when the CUDA decoder is built, and remote=yes
    exactly when remote/ is; the man pages carry the same version."""
    want = "features: cuda=%s avx2=yes avx512=yes remote=%s" % (
        "yes" if ARGS.cuda == "1" else "no", "yes" if ARGS.remote == "1" else "no")
    for t in TOOLS if have_fuse() else TOOLS[1:]:
        r = run([os.path.join(ARGS.build, "bin", t), "--version"])
        lines = r.stdout.splitlines()
        log("%s --version: %s" % (t, " | ".join(lines)))
        assert r.stderr == "", r.stderr
        assert len(lines) == 2, r.stdout
        assert re.fullmatch(re.escape(t + " " + ARGS.version) + r"( \(.+\))?", lines[0]), lines[0]
        assert lines[1] == want, "%r, wanted %r" % (lines[1], want)
        with open(os.path.join(ARGS.src, MAN_PAGES[t])) as f:
            th = [l for l in f if l.startswith(".TH ")][0]
        assert '"ransfs %s"' % ARGS.version in th, "%s: .TH names another version: %s" % (
            MAN_PAGES[t], th)
    if have_fuse():
        first = run([os.path.join(ARGS.build, "bin", "ransfs"), "--version"]).stdout
        gpu = "GPU decode: cuda" if ARGS.cuda == "1" else "GPU decode: not built"
        assert "libfuse 3." in first and gpu in first, first


# ------------------------------------------------------------ man pages

# One option at the start of an option line: `-o name[=...]`, `--long[=...]`
# or `-x`, each perhaps followed by an argument in capitals (N, DIR, ...).
OPT_RE = re.compile(r"(-o\s+[a-z0-9_]+(?:=\S*)?|--[a-z][a-z0-9-]*(?:=\S+)?|-[A-Za-z](?![\w-]))"
                    r"(?:\s[A-Z][A-Z_]*\b)?")


def line_options(line):
    """The options named at the start of one option line ('-j, --threads N
    text', '-o uid=N -o gid=N  text', '-d   -o debug  text'), normalised to
    '-j', '--threads', '-o uid': tokens separated by commas and blanks, up
    to the first word that is not an option."""
    out, pos = [], len(line) - len(line.lstrip())
    while True:
        m = OPT_RE.match(line, pos)
        if not m:
            return out
        tok = re.split(r"[=\s]", m.group(1).strip()) if not m.group(1).startswith("-o") else \
            ["-o " + m.group(1).split()[1].split("=")[0]]
        out.append(tok[0])
        pos = m.end()
        rest = re.match(r"[,\s]*", line[pos:])
        pos += rest.end()


def help_options(tool):
    """Options `TOOL --help` lists: every line that starts with blanks and a
    dash (continuation lines of a description start with a word)."""
    r = run([os.path.join(ARGS.build, "bin", tool), "--help"])
    opts = set()
    for line in r.stdout.splitlines():
        if re.match(r"\s+-", line):
            opts.update(line_options(line))
    return opts


def render(page, width="80"):
    """man -l PAGE as plain ASCII text (C locale: no Unicode dashes); the
    warnings of man (groff's default set) and of groff -ww (all of them)
    must both be empty."""
    env = dict(os.environ, LC_ALL="C", MANWIDTH=width, MAN_KEEP_FORMATTING="")
    env.pop("MANPAGER", None)
    env.pop("PAGER", None)
    r = run(["man", "--warnings", "-l", page], env=env)
    assert r.stderr == "", "man -l %s warns:\n%s" % (page, r.stderr)
    r2 = run(["groff", "-man", "-ww", "-z", "-Tascii", page], env=env)
    assert r2.stderr == "", "groff -ww %s warns:\n%s" % (page, r2.stderr)
    return r.stdout


def man_sections(text):
    """{SECTION: [lines]} of rendered man text (headings at column 0)."""
    secs, cur = {}, None
    for line in text.splitlines():
        if re.match(r"[A-Z][A-Z ]+$", line):
            cur = line.strip()
            secs[cur] = []
        elif cur:
            secs[cur].append(line)
    return secs


def man_options(secs):
    """Options of the OPTIONS sections (OPTIONS, FUSE OPTIONS): the tags of
    their .TP entries, which man prints at the section's indent (7)."""
    opts = set()
    for name, lines in secs.items():
        if "OPTIONS" in name:
            for line in lines:
                if re.match(r" {7}-", line):
                    opts.update(line_options(line))
    return opts


@test("man_ransfs", arg="ransfs")
@test("man_mkimage", arg="ransfs-mkimage")
@test("man_fsck", arg="ransfs-fsck")
@test("man_dump", arg="ransfs-dump")
def t_man(tool):
    """The man page of TOOL renders without a warning, has a whatis line
    naming the tool, has the sections users look for, and lists exactly the
    options `TOOL --help` lists: every option of --help has an entry under
    OPTIONS (or FUSE OPTIONS) and every entry there is in --help, so the
    two cannot drift apart."""
    if tool == "ransfs" and not have_fuse():
        log("skipped: ransfs (the mount) is not built without libfuse3")
        raise Skip()
    page = os.path.join(ARGS.src, MAN_PAGES[tool])
    text = render(page)
    whatis = run(["lexgrog", page]).stdout
    assert ('"%s - ' % tool) in whatis, "lexgrog: " + whatis
    secs = man_sections(text)
    want = SECTIONS + (["FILES"] if tool in FILES_SECTION else [])
    missing = [s for s in want if s not in secs]
    assert not missing, "%s lacks the sections %s (has %s)" % (page, missing, list(secs))
    codes = {l.split()[0] for l in secs["EXIT STATUS"] if re.match(r" {7}\d+\s", l + " ")}
    assert {"0", "1", "2"} <= codes, "EXIT STATUS lists %s" % sorted(codes)
    h, m = help_options(tool), man_options(secs)
    log("%s --help: %s" % (tool, " ".join(sorted(h))))
    log("%s:   %s" % (os.path.basename(page), " ".join(sorted(m))))
    assert len(h) >= 3, "parsed almost nothing from --help: %s" % sorted(h)
    assert h == m, "--help only: %s; man page only: %s" % (sorted(h - m), sorted(m - h))
    # The narrowest terminal man is read in must not break the page.
    render(page, width="60")


def t_man_parser():
    """The option parser of the man test sees what it must: it finds the
    options of lines in every shape the tools use, and stops at the
    description (a drift check that sees nothing could never fail)."""
    cases = {
        "  -j, --threads N     decode threads, 1..256": ["-j", "--threads"],
        "    -o uid=N -o gid=N      owner of all files": ["-o uid", "-o gid"],
        "    -d   -o debug          enable debug output (implies -f)": ["-d", "-o debug"],
        "      --codec=rans|raw  raw stores tile planes": ["--codec"],
        "      --exclude PATTERN  leave out entries": ["--exclude"],
        "       --json Print the summary as JSON": ["--json"],
        "       -f     Stay in the foreground; -x is not read": ["-f"],
        "    -o gpu=auto|on|off     decode bulk reads": ["-o gpu"],
        "    -o max_idle_threads    the maximum number": ["-o max_idle_threads"],
        "    -o s3_region=REGION    S3 signing region": ["-o s3_region"],
        "  IMAGE - writes the image to standard output": [],
    }
    for line, want in cases.items():
        got = line_options(line)
        assert got == want, "%r: %s, wanted %s" % (line, got, want)
    secs = man_sections("OPTIONS\n       -a, --all\n              text -b\n"
                        "FUSE OPTIONS\n       -o x=N\n"
                        "SEE ALSO\n       -c\n")
    assert man_options(secs) == {"-a", "--all", "-o x"}, man_options(secs)


# ------------------------------------------------------------ the .deb

def dpkg_status(pkg):
    """dpkg's status of pkg ('install ok installed', ...), or None when
    dpkg knows no such package."""
    r = run(["dpkg-query", "-W", "-f=${Status}", pkg], expect=None)
    if r.returncode != 0 or "not-installed" in r.stdout:
        return None
    return r.stdout.strip()


def dpkg(*args):
    """dpkg ARGS, waiting (DPKG_WAIT) while someone else's apt or dpkg holds
    the lock.  Raises Skip when it stays locked."""
    t0 = time.time()
    while True:
        r = run(["dpkg", *args], expect=None, timeout=600,
                env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        locked = r.returncode != 0 and re.search(r"lock|locked", r.stderr, re.I)
        if not locked:
            return r
        if time.time() - t0 > DPKG_WAIT:
            log("skipped: the dpkg database stayed locked for %d s: %s" %
                (DPKG_WAIT, r.stderr.strip()))
            raise Skip()
        time.sleep(3)


def lock_machine():
    """An exclusive lock on this machine's deb test (another checkout may
    run its suite at the same time); returns the open descriptor, which the
    guardian inherits so the lock lasts until everything is cleaned up."""
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    t0 = time.time()
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.time() - t0 > LOCK_WAIT:
                log("skipped: another deb test has held %s for %d s" % (LOCK, LOCK_WAIT))
                raise Skip()
            time.sleep(2)


def build_deb(out):
    """cpack -G DEB of this build into out; returns the .deb's path."""
    r = run(["cpack", "-G", "DEB", "--config", os.path.join(ARGS.build, "CPackConfig.cmake"),
             "-B", out], timeout=600, cwd=ARGS.build)
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    deb = os.path.join(out, "%s_%s_%s.deb" % (PACKAGE, ARGS.version, arch))
    assert os.path.isfile(deb), "no %s after cpack:\n%s" % (deb, r.stdout)
    return deb


def deb_files(deb):
    """Absolute paths of the regular files and symlinks in the package."""
    out = []
    for line in run(["dpkg-deb", "-c", deb]).stdout.splitlines():
        f = line.split(None, 5)
        if f[0][0] in "-l":
            out.append(f[5].split(" -> ")[0].lstrip("."))
    return sorted(out)


def depends_names(deb):
    dep = run(["dpkg-deb", "-f", deb, "Depends"]).stdout.strip()
    log("Depends:", dep)
    return dep, {re.split(r"[\s(:]", d.strip())[0] for d in dep.split(",")}


def check_deb_contents(deb, work):
    """The package holds exactly what `cmake --install` installs (under
    /usr); it depends on the issue's Debian packages, and on every package
    that provides a library its binaries need (so the list is complete);
    no binary needs libcudart.so; the library sits in Debian's multiarch
    directory (/usr/lib/x86_64-linux-gnu), not /usr/lib."""
    files = deb_files(deb)
    want = sorted("/usr/" + f for f in expected_files())
    assert files == want, "package: %s\nwanted:  %s" % (files, want)
    libdir = "/usr/lib/" + run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"]).stdout.strip()
    wrong = [f for f in files if f.startswith("/usr/lib/") and not f.startswith(libdir + "/")]
    assert not wrong, "outside Debian's multiarch %s: %s" % (libdir, wrong)
    dep, names = depends_names(deb)
    missing = [d for d in DEB_DEPENDS if d not in names]
    assert not missing, "Depends lacks %s: %s" % (missing, dep)
    root = os.path.join(work, "x")
    run(["dpkg-deb", "-x", deb, root])
    for f in files:
        path = root + f
        if not is_elf(path):
            continue
        libs = run(["ldd", path]).stdout
        assert "libcudart" not in libs, "%s needs libcudart (CUDA must be static):\n%s" % (
            f, libs)
        for lib, where in ldd_libs(path):
            if lib.startswith("libransfs"):
                continue  # in this package
            owner = run(["dpkg", "-S", where], expect=None).stdout.split(":")[0].strip()
            assert owner in names, "%s needs %s (%s, package %s), not in Depends: %s" % (
                f, lib, where, owner or "?", dep)


def ldd_libs(path):
    """(soname, resolved path) of each shared library path needs itself
    (its DT_NEEDED: what its package must depend on; ldd also lists the
    libraries' own needs, which their packages bring)."""
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(\S+)\]",
                        run(["readelf", "-d", path]).stdout)
    where = {}
    for line in run(["ldd", path]).stdout.splitlines():
        assert "not found" not in line, "%s: %s" % (path, line.strip())
        m = re.match(r"\s*(\S+) => (\S+)", line)
        if m:
            where[m.group(1)] = m.group(2)
    out = []
    for lib in needed:
        if lib.startswith("ld-linux"):
            continue  # the dynamic loader, libc6's
        assert lib in where, "%s: ldd does not resolve %s" % (path, lib)
        # dpkg -S knows /lib/x86_64-linux-gnu/... as /usr/lib/... or not:
        # ask for the path dpkg recorded (usrmerge keeps both spellings).
        out.append((lib, dpkg_path(where[lib])))
    return out


def dpkg_path(p):
    for cand in (p, os.path.realpath(p), p.replace("/usr/lib/", "/lib/", 1),
                 p.replace("/lib/", "/usr/lib/", 1)):
        if run(["dpkg", "-S", cand], expect=None).returncode == 0:
            return cand
    return p


def refuse_foreign(deb):
    """Skip (touching nothing) when a ransfs package is installed, or a
    file the package would own already exists, or a ransfs earlier than
    /usr/bin on mount.fuse3's PATH would serve `mount -t fuse.ransfs`."""
    st = dpkg_status(PACKAGE)
    if st is not None:
        ver = run(["dpkg-query", "-W", "-f=${Version}", PACKAGE], expect=None).stdout
        log("skipped: a %s package is already installed (%s, version %s): not touching it" %
            (PACKAGE, st, ver))
        raise Skip()
    there = [f for f in deb_files(deb) if os.path.lexists(f)]
    if there:
        log("skipped: files the package would own already exist: %s" % " ".join(there))
        raise Skip()
    for d in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin"):
        if os.path.lexists(os.path.join(d, "ransfs")):
            log("skipped: %s/ransfs would serve `mount -t fuse.ransfs` instead of "
                "/usr/bin/ransfs" % d)
            raise Skip()


GUARD_SCRIPT = r"""
import os, shutil, subprocess, sys, time
work = sys.argv[1]
sys.stdin.buffer.read()           # EOF: the test process is gone
def cleanup():
    try:
        with open(os.path.join(work, "mounts")) as f:
            for m in f.read().split():
                subprocess.run(["umount", "-l", m], capture_output=True)
    except OSError:
        pass
    if os.path.exists(os.path.join(work, "fstab-added")):
        with open("/etc/fstab") as f:
            keep = [l for l in f.read().splitlines(True) if work not in l]
        with open("/etc/fstab.rfs-install-test", "w") as f:
            f.writelines(keep)
        shutil.copymode("/etc/fstab", "/etc/fstab.rfs-install-test")
        os.rename("/etc/fstab.rfs-install-test", "/etc/fstab")
        sys.stderr.write("install_test guardian: removed the /etc/fstab line the test left\n")
    if os.path.exists(os.path.join(work, "installed")):
        for _ in range(100):
            r = subprocess.run(["dpkg", "--purge", "ransfs"], capture_output=True, text=True)
            if r.returncode == 0 or "lock" not in r.stderr:
                break
            time.sleep(3)
        sys.stderr.write("install_test guardian: removed the ransfs package the test left\n")
    shutil.rmtree(work, ignore_errors=True)
cleanup()
"""


def start_guardian(work, lock_fd):
    """A process in its own session that waits for this one to end (its
    stdin is a pipe only this process can write), then undoes whatever the
    files in work say is left: mounts, its /etc/fstab line, the installed
    package.  It holds the
    machine lock until then.  Returns the pipe's write end (keep it open)."""
    r, w = os.pipe()
    subprocess.Popen([sys.executable, "-c", GUARD_SCRIPT, work], stdin=r, pass_fds=(lock_fd,),
                     stdout=subprocess.DEVNULL, stderr=None, start_new_session=True)
    os.close(r)
    return w


def note_mount(work, mnt):
    with open(os.path.join(work, "mounts"), "a") as f:
        f.write(mnt + "\n")


def compare_tree(src, mnt):
    """Names, types, modes and bytes of src and the mount agree; returns
    the number of files compared."""
    n = 0
    for d, dirs, files in os.walk(src):
        rel = os.path.relpath(d, src)
        m = os.path.join(mnt, rel)
        assert sorted(os.listdir(m)) == sorted(dirs + files), "listing of %s differs" % rel
        for name in files:
            a, b = os.path.join(d, name), os.path.join(m, name)
            sa, sb = os.lstat(a), os.lstat(b)
            assert stat.S_IMODE(sa.st_mode) == stat.S_IMODE(sb.st_mode), a
            assert sa.st_size == sb.st_size, a
            if stat.S_ISLNK(sa.st_mode):
                assert os.readlink(a) == os.readlink(b), a
                continue
            with open(a, "rb") as fa, open(b, "rb") as fb:
                assert fa.read() == fb.read(), "%s: bytes differ through the mount" % a
            n += 1
    return n


def check_mount(mnt, src):
    """The mount at mnt is served by the installed /usr/bin/ransfs, is a
    read-only fuse.ransfs mount, and reads back src byte for byte."""
    exe = os.readlink("/proc/%d/exe" % daemon_pid(mnt))
    assert exe == "/usr/bin/ransfs", "served by %s, not the package's /usr/bin/ransfs" % exe
    with open("/proc/self/mounts") as f:
        line = [l for l in f if l.split()[1] == os.path.realpath(mnt)]
    assert len(line) == 1, line
    fields = line[0].split()
    assert fields[2] == "fuse.ransfs" and "ro" in fields[3].split(","), line[0]
    n = compare_tree(src, mnt)
    log("  %s: %d files byte-exact (%s)" % (mnt, n, line[0].strip()))
    assert n > 0


def check_installed(work):
    """What a user does with the package: --version, man, pack, check,
    mount -t fuse.ransfs and an /etc/fstab line (`mount MNT`), read back,
    unmount; a C program (pkg-config) and a Python script against the
    installed libransfs."""
    src = os.path.join(ARGS.src, "tests", "data")
    r = run(["ransfs", "--version"], env=dict(os.environ, PATH="/usr/bin:/bin"))
    log("installed: " + " | ".join(r.stdout.splitlines()))
    assert r.stdout.startswith("ransfs %s " % ARGS.version) and "\nfeatures: " in r.stdout
    env = dict(os.environ, MANPAGER="cat", PAGER="cat", LC_ALL="C", MANWIDTH="80")
    for t in TOOLS:
        where = run(["man", "-w", t], env=env).stdout.strip()
        assert where == "/usr/share/man/man1/%s.1.gz" % t, where
        out = run(["man", t], env=env).stdout
        assert re.search(r"^ +%s +- " % re.escape(t), out, re.M) and "SEE ALSO" in out, \
            "man %s:\n%s" % (t, out[:400])
    img = os.path.join(work, "data.rfs")
    run(["/usr/bin/ransfs-mkimage", "-q", src, img])
    run(["/usr/bin/ransfs-fsck", "-q", img])
    run(["/usr/bin/ransfs-fsck", "-q", "--compare", src, img])
    # mount(8) runs mount.fuse3 with no PATH of ours: it finds /usr/bin/ransfs.
    clean_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
    mnt = os.path.join(work, "mnt")
    os.makedirs(mnt)
    note_mount(work, mnt)
    run(["mount", "-t", "fuse.ransfs", img, mnt, "-o", "cache=64M"], env=clean_env)
    check_mount(mnt, src)
    run(["umount", mnt])
    assert not is_mounted(mnt)
    # An /etc/fstab line and `mount MNT`, as a user writes it; the line goes
    # again right after (and the guardian removes it if this process dies).
    mnt2 = os.path.join(work, "mnt_fstab")
    os.makedirs(mnt2)
    note_mount(work, mnt2)
    fstab_add(work, "%s %s fuse.ransfs ro,nosuid,nodev,nofail,cache=64M 0 0" % (img, mnt2))
    try:
        run(["mount", mnt2], env=clean_env)
    finally:
        fstab_remove(work)
    check_mount(mnt2, src)
    run(["umount", mnt2])
    assert not is_mounted(mnt2)
    check_installed_c(work, img, src, clean_env)
    check_installed_python(work, img, src, clean_env)


FSTAB = "/etc/fstab"


def fstab_lines_without(work):
    """/etc/fstab's lines less the ones this test added (they name work)."""
    with open(FSTAB) as f:
        return [l for l in f.read().splitlines(True) if work not in l]


def fstab_add(work, line):
    """Append LINE, after a comment naming work, to /etc/fstab; the file
    work/fstab-added tells the guardian to take them out again."""
    open(os.path.join(work, "fstab-added"), "w").close()
    keep = fstab_lines_without(work)
    if keep and not keep[-1].endswith("\n"):
        keep[-1] += "\n"
    fstab_write(keep + ["# added by ransfs install_test (%s), removed by it\n" % work,
                        line + "\n"])


def fstab_remove(work):
    fstab_write(fstab_lines_without(work))
    os.unlink(os.path.join(work, "fstab-added"))


def fstab_write(lines):
    """Replace /etc/fstab whole (a new file renamed over it, same mode)."""
    tmp = FSTAB + ".rfs-install-test"
    with open(tmp, "w") as f:
        f.writelines(lines)
    shutil.copymode(FSTAB, tmp)
    os.rename(tmp, FSTAB)


def installed_lib():
    """The path of the package's libransfs.so.0 (dpkg -L)."""
    libs = [f for f in run(["dpkg", "-L", PACKAGE]).stdout.split()
            if os.path.basename(f) == "libransfs.so.0"]
    assert len(libs) == 1, "the package holds libransfs.so.0 %d times" % len(libs)
    return os.path.realpath(libs[0])


def check_installed_c(work, img, src, env):
    """tests/lib/lib_example.c built the way a user builds it against the
    package (pkg-config, no path of ours) runs against the installed
    libransfs.so.0: every entry of img listed, every file read and every
    tensor decoded byte-exact against src."""
    flags = run(["pkg-config", "--cflags", "--libs", "ransfs"], env=env).stdout.split()
    exe = os.path.join(work, "lib_example")
    run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-o", exe,
         os.path.join(ARGS.src, "tests", "lib", "lib_example.c")] + flags, env=env)
    m = re.search(r"libransfs\.so\.0 => (\S+)", run(["ldd", exe], env=env).stdout)
    assert m and os.path.realpath(m.group(1)) == installed_lib(), \
        "lib_example resolves libransfs.so.0 to %s" % (m and m.group(1))
    out = run([exe, img, src], env=env).stdout.splitlines()
    got = sorted(l for l in out if l[:2] in ("d ", "l ", "f "))
    want = []
    for d, dirs, files in os.walk(src):
        for name in dirs + files:
            p = os.path.join(d, name)
            kind = "l" if os.path.islink(p) else "d" if os.path.isdir(p) else "f"
            want.append("%s /%s" % (kind, os.path.relpath(p, src)))
    assert got == sorted(want), "lib_example lists %s, the tree %s" % (got, sorted(want))
    tensors = [l for l in out if re.match(r"t \S+ [1-9]", l)]
    assert tensors, "lib_example decoded no tensors:\n" + "\n".join(out)
    log("  C program (pkg-config ransfs, %s): %d entries, %s" % (
        m.group(1), len(got), "; ".join(tensors)))


PY_SCRIPT = r"""
import json, os, struct, sys
import numpy as np
import ransfs
img, src, lib = sys.argv[1:4]
assert ransfs.library_path() == lib, "loaded %s, not %s" % (ransfs.library_path(), lib)
files = tensors = 0
with ransfs.open(img) as im:
    for d, dirs, names in os.walk(src):
        for name in names:
            p = os.path.join(d, name)
            rel = os.path.relpath(p, src)
            if os.path.islink(p):
                continue
            with open(p, "rb") as f:
                data = f.read()
            assert im.read(rel) == data, rel
            files += 1
            if not name.endswith(".safetensors"):
                continue
            n = struct.unpack("<Q", data[:8])[0]
            head = json.loads(data[8:8 + n])
            head.pop("__metadata__", None)
            got = ransfs.load_file(im, rel, threads=2)
            assert sorted(got) == sorted(head), rel
            for k, t in head.items():
                a0, a1 = t["data_offsets"]
                a = got[k]
                assert list(a.shape) == t["shape"] and a.dtype == ransfs.numpy_dtype(t["dtype"]), k
                assert a.tobytes() == data[8 + n + a0:8 + n + a1], "%s: %s differs" % (rel, k)
                tensors += 1
print("%s: %d files, %d tensors byte-exact" % (ransfs.library_path(), files, tensors))
"""


def check_installed_python(work, img, src, env):
    """The Python package (python/ of the source tree, on PYTHONPATH; no
    RANSFS_LIBRARY, no LD_LIBRARY_PATH) under Debian's python3 finds the
    installed libransfs.so.0 through the dynamic loader (ld.so.cache, which
    the package's ldconfig trigger updates): every file of img read and
    every tensor of its safetensors files loaded byte-exact against src."""
    pkg = os.path.join(ARGS.src, "python")
    assert not os.path.exists(os.path.join(pkg, "ransfs", "libransfs.so.0")), \
        "python/ransfs holds a libransfs.so.0 of its own: it would be loaded instead"
    r = run(["/usr/bin/python3", "-c", PY_SCRIPT, img, src, installed_lib()],
            env=dict(env, PYTHONPATH=pkg, PYTHONDONTWRITEBYTECODE="1"))
    log("  Python script (/usr/bin/python3, the default loader): " + r.stdout.strip())


@test(TIMEOUT=1500)
def t_deb():
    """The .deb end to end, as root: cpack builds ransfs_VERSION_ARCH.deb
    holding exactly what cmake --install installs, with the right Depends;
    dpkg -i installs it; the installed tools and man pages work, and
    `mount -t fuse.ransfs` and an /etc/fstab line mount with /usr/bin/ransfs
    and read every file back byte-exact; a C program built with pkg-config
    and a Python script (Debian's python3, the package from python/) read
    the image through the installed libransfs.so.0; dpkg -r removes it and
    leaves none of its files.  Never touches a system that already has ransfs installed."""
    if os.geteuid() != 0:
        log("skipped: needs root (dpkg -i)")
        raise Skip()
    if ARGS.sanitize:
        log("skipped: a sanitizer build (%s) is not what gets packaged" % ARGS.sanitize)
        raise Skip()
    if not have_fuse():
        log("skipped: no ransfs (the mount) without libfuse3: nothing to package it with")
        raise Skip()
    for prog in ("cpack", "dpkg-deb", "dpkg-shlibdeps", "dpkg-architecture", "mount.fuse3",
                 "man"):
        if shutil.which(prog) is None:
            log("skipped: %s is not installed" % prog)
            raise Skip()
    why = fuse_usable()
    if why:
        log("skipped:", why)
        raise Skip()
    lock_fd = lock_machine()
    work = tempfile.mkdtemp(prefix="rfs_deb_")
    os.chmod(work, 0o755)
    guard = start_guardian(work, lock_fd)
    try:
        deb = build_deb(os.path.join(work, "pkg"))
        log("built", os.path.basename(deb), "(%d bytes)" % os.path.getsize(deb))
        check_deb_contents(deb, work)
        refuse_foreign(deb)
        open(os.path.join(work, "installed"), "w").close()  # the guardian's cue
        # Minimal Debian images exclude /usr/share/man from every package
        # (dpkg path-exclude); ask for the pages the test reads.
        r = dpkg("--path-include=/usr/share/man/man1/ransfs*", "-i", deb)
        assert r.returncode == 0, "dpkg -i: " + r.stdout + r.stderr
        assert dpkg_status(PACKAGE) == "install ok installed", dpkg_status(PACKAGE)
        check_installed(work)
        r = dpkg("-r", PACKAGE)
        assert r.returncode == 0, "dpkg -r: " + r.stdout + r.stderr
        left = [f for f in deb_files(deb) if os.path.lexists(f)]
        assert not left and not os.path.lexists("/usr/bin/ransfs"), "left behind: %s" % left
        r = run(["man", "-w", "ransfs"], expect=None)
        assert r.returncode != 0, "man still finds ransfs: " + r.stdout
        # With the library inside, the package has maintainer scripts
        # (ldconfig), so dpkg keeps a config-files record until purged; it
        # must own no conffile, though: nothing of it is left on disk.
        st = dpkg_status(PACKAGE)
        assert st in (None, "deinstall ok config-files"), "after dpkg -r: %s" % st
        conf = run(["dpkg-query", "-W", "-f=${Conffiles}", PACKAGE], expect=None).stdout.strip()
        assert conf == "", "conffiles: " + conf
        r = dpkg("--purge", PACKAGE)
        assert r.returncode == 0 and dpkg_status(PACKAGE) is None, r.stdout + r.stderr
        os.unlink(os.path.join(work, "installed"))
        log("dpkg -r: nothing left (%s before the purge)" % (st or "no record"))
    finally:
        # Undo here what can be undone (the guardian does it again if this
        # process dies first), then let the guardian go.
        for m in ("mnt", "mnt_fstab"):
            p = os.path.join(work, m)
            if is_mounted(p):
                run(["umount", "-l", p], expect=None)
        if os.path.exists(os.path.join(work, "installed")):
            dpkg("--purge", PACKAGE)
            os.unlink(os.path.join(work, "installed"))
        os.close(guard)
        os.close(lock_fd)


def main():
    global ARGS
    list_if_asked(globals())
    ap = argparse.ArgumentParser()
    for a in ("--build", "--src", "--version", "--cuda", "--remote", "--bindir", "--mandir",
              "--libdir", "--includedir"):
        ap.add_argument(a, required=True)
    ap.add_argument("--sanitize", default="")
    ap.add_argument("test")
    ARGS = ap.parse_args()
    ARGS.build, ARGS.src = os.path.abspath(ARGS.build), os.path.abspath(ARGS.src)
    fn, arg = lookup(globals(), ARGS.test)
    rc = 0
    try:
        fn(arg) if arg is not None else fn()
        log("PASS", ARGS.test)
    except Skip:
        rc = SKIP
    finally:
        for d in Tmp.dirs:
            shutil.rmtree(d, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
