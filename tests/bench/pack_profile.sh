#!/bin/bash
# pack_profile.sh - where ransfs-mkimage's CPU time goes, by phase.
#
#   tests/bench/pack_profile.sh SOURCE_DIR [BIN_DIR] [RUNS]
#
# Packs SOURCE_DIR RUNS times (default 10) with BIN_DIR/ransfs-mkimage -j2
# (JOBS), each with SOURCE_DIR dropped from the page cache first (COLD=0:
# warm), under `perf record -g`, and sorts every sample of the packer's
# threads into a phase by its call chain, the first that matches:
#   fresh memory  page faults: a buffer's first touch (also inside pread)
#   read          pread's copy out of the page cache, the readahead filling it
#   write         the image into the page cache
#   start, exit   exec, libraries, threads, opens, the final rename
#   plan          tree walk, safetensors headers, dedup
#   analyse       pair histograms of the tiles, transform choice, tables
#   encode        tile encoder (split, rANS), zstd of the other bytes
#   hash          XXH3 of tiles and units (libxxhash has no symbols)
#   other         the rest (futex, scheduling, malloc, ...)
# Call chains of code built without frame pointers stop early, so a
# sample whose chain names no phase goes by its leaf function.  Prints
# milliseconds of CPU per run (perf's own cost included) and the share of
# each phase.  Needs perf (linux-perf); not run by CTest.
set -euo pipefail
src=${1:?usage: pack_profile.sh SOURCE_DIR [BIN_DIR] [RUNS]}
bin=${2:-build/bin}
runs=${3:-10}
work=$(mktemp -d /tmp/rfs-pack-profile-XXXXXX)
trap 'rm -rf "$work"' EXIT
# The runs, under perf: only ransfs-mkimage's samples count (below), so the
# eviction (page_cache.sh) and the shell around it are left out.
cat >"$work/loop.sh" <<'SH'
set -eu
. "$1"
src=$2 mk=$3 img=$4 runs=$5 cold=$6 jobs=$7
for _ in $(seq "$runs"); do
    if [ "$cold" = 1 ]; then rfs_page_out "$src"; fi
    rm -f "$img"
    "$mk" -q "-j$jobs" "$src" "$img"
done
SH
perf record -q -F 20000 -g -o "$work/perf.data" -- /bin/bash "$work/loop.sh" \
    "$(dirname "$0")/page_cache.sh" "$src" "$bin/ransfs-mkimage" "$work/p.img" "$runs" \
    "${COLD:-1}" "${JOBS:-2}" 2>/dev/null
perf script -i "$work/perf.data" -F comm,period,ip,sym,dso 2>/dev/null | /usr/bin/python3 -c '
import sys, collections
runs = int(sys.argv[1])
PH = [  # (phase, frame names that put a sample in it), the first match wins
    ("fresh memory", {"asm_exc_page_fault", "exc_page_fault"}),  # also inside a pread
    ("read", {"__x64_sys_pread64", "ksys_pread64", "__x64_sys_fadvise64", "ksys_fadvise64_64",
              "generic_fadvise", "pk_src_read", "reader_main", "readahead_main"}),
    ("write", {"__x64_sys_writev", "do_writev", "__x64_sys_write", "ksys_write",
               "__x64_sys_pwrite64", "ksys_pwrite64", "writer_main"}),
    ("start, exit", {"__x64_sys_execve", "do_exit", "__x64_sys_exit_group", "__x64_sys_clone3",
                     "__x64_sys_munmap", "__x64_sys_mmap", "__x64_sys_mprotect",
                     "_dl_start_user", "_dl_relocate_object", "__x64_sys_renameat2",
                     "__x64_sys_close", "__x64_sys_openat"}),
    ("plan", {"pk_tree_walk", "files_dedup", "regions_plan", "rfs_st_parse", "chunks_plan"}),
    ("analyse", {"tile_analyse", "rfs_pair_histogram", "tensor_finish", "rfs_transform_choose_pairs",
                 "hist_entropy_bytes", "planes_estimate", "tensor_tables", "rfs_table_from_counts"}),
    ("encode", {"phase_b_job", "rfs_tile_encode", "rfs_rans_encode_steps_avx2",
                "rfs_split_planes_avx2", "blob_compress", "tile_counts"}),
]
LEAF = {"analyse": {"rfs_pair_to_bytes", "__log2_fma", "ent_term"}}
DSO = {"libzstd": "encode", "libcjson": "plan", "libxxhash": "hash"}  # no symbols: by library
ns = collections.Counter()
other = collections.Counter()  # leaf functions of "other"
total = 0
def flush(comm, period, frames):
    global total
    if comm != "ransfs-mkimage" or period is None:
        return
    ph = "other"
    for name, syms in PH:
        if any(f in syms for f, _ in frames):
            ph = name
            break
    else:
        for name, syms in PH:  # the leaf alone (call chains of code without frame pointers)
            if frames and frames[0][0] in syms | LEAF.get(name, set()):
                ph = name
                break
        for f, d in frames[:1] if ph == "other" else []:
            for k, v in DSO.items():
                if k in d:
                    ph = v
    ns[ph] += period
    total += period
    if ph == "other":
        sc = [f for f, _ in frames if f.startswith("__x64_sys_")]
        other[sc[0] if sc else frames[0][0] if frames else "?"] += period
comm = period = None
frames = []
for line in sys.stdin:
    if not line.strip():
        flush(comm, period, frames)
        comm, period, frames = None, None, []
    elif not line.startswith((" ", "\t")):
        parts = line.split()
        comm, period = parts[0], int(parts[1])
    else:
        p = line.split()
        frames.append((p[1].split("+")[0] if len(p) > 1 else "?", p[-1]))
flush(comm, period, frames)
print("%-14s %8s %6s" % ("phase", "ms/run", "share"))
for ph, v in ns.most_common():
    print("%-14s %8.1f %5.1f%%" % (ph, v / 1e6 / runs, 100.0 * v / total))
print("%-14s %8.1f" % ("total", total / 1e6 / runs))
print("other, by system call or leaf function:", ", ".join("%s %.1f%%" % (f, 100.0 * v / total)
                                           for f, v in other.most_common(8)))
' "$runs"
