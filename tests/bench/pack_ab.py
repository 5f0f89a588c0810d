#!/usr/bin/python3
"""pack_ab.py RUNS SOURCE_DIR MKIMAGE... : alternating cold packs, nothing else between.

Packs SOURCE_DIR with each ransfs-mkimage binary in turn, RUNS rounds,
dropping SOURCE_DIR's pages from the page cache before every pack (the
rule of page_cache.sh, which bench_pack.sh uses too) and removing the image after it, and prints per binary
the median, mean and quartiles of the wall times in ms.  Unlike
bench_pack.sh no other program runs between the packs, so the binaries
compared see the same memory state in turn; each round runs them in the
order of order() (for two: A B, B A, ...), so that each follows each other
equally often; bench_pack.sh takes its rounds' order from it too.  Not run
by CTest.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time


def page_out(root):
    """The packing benchmarks' one cold-cache rule: page_cache.sh's rfs_page_out."""
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run(["bash", "-c", '. "$0/page_cache.sh" && rfs_page_out "$1"', here, root],
                   check=True)


def order(n, r):
    """The indices 0..n-1 in round r's order, a Williams design: over n
    rounds (2n where n is odd) each index comes right after each other one
    equally often.  Row 0 is 0, 1, n-1, 2, n-2, ...; row r adds r (mod n);
    an odd n's rows n..2n-1 are rows 0..n-1 backwards."""
    row = [(0 if j == 0 else (j + 1) // 2 if j % 2 else n - j // 2) for j in range(n)]
    r %= 2 * n if n % 2 else n
    out = [(k + r) % n for k in row]
    return out[::-1] if r >= n else out


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__.strip().splitlines()[0])
    runs, src, bins = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    walls = {b: [] for b in bins}
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/var/tmp")) as work:
        img = os.path.join(work, "ab.img")
        for r in range(runs):
            for b in (bins[k] for k in order(len(bins), r)):
                page_out(src)
                t0 = time.perf_counter()
                subprocess.run([b, "-q", src, img], check=True)
                walls[b].append((time.perf_counter() - t0) * 1e3)
                os.unlink(img)
    for b in bins:
        w = sorted(walls[b])
        print("%-48s median %.1f mean %.1f p25 %.1f p75 %.1f ms" %
              (b, statistics.median(w), statistics.mean(w), w[len(w) // 4], w[3 * len(w) // 4]))


if __name__ == "__main__":
    main()
