#!/usr/bin/python3
"""ZipNN on the data of `ransfs-bench codec FILE --from-f32`, for the codec
figures in docs/benchmarks.md (ZipNN is a Python package, so it is not a
row of the C bench; run both on the same file in one session).

  bench_zipnn.py FILE.f32 --dtype bf16|fp16|f32 [--chunk N] [--min-time S]

FILE.f32 holds raw little-endian f32 values (tests/bench/extract_f32.py
makes it); bf16 and fp16 are rounded from them to nearest even, as
`--from-f32` does.  Prints one line: zipnn, dtype, ratio (compressed /
original), decode MB/s (the process's CPU time, fastest of repeated whole
passes, one thread); the decoded bytes are compared with the input.

ZipNN is not a Debian package: run this with a venv's python that has it
(`python3 -m venv V && V/bin/pip install zipnn`).
"""
import argparse
import sys
import time

import numpy as np


def to_dtype(x, dtype):
    if dtype == 'f32':
        return x.tobytes()
    if dtype == 'fp16':
        return x.astype('<f2').tobytes()
    u = x.view('<u4').astype(np.uint64)
    return ((u + 0x7fff + ((u >> 16) & 1)) >> 16).astype('<u2').tobytes()


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument('file')
    ap.add_argument('--dtype', required=True, choices=('bf16', 'fp16', 'f32'))
    ap.add_argument('--chunk', type=int, default=262144)
    ap.add_argument('--min-time', type=float, default=0.3)
    a = ap.parse_args(argv)
    import zipnn
    data = to_dtype(np.fromfile(a.file, dtype='<f4'), a.dtype)
    zdt = {'bf16': 'bfloat16', 'fp16': 'float16', 'f32': 'float32'}[a.dtype]
    z = zipnn.ZipNN(input_format='byte', bytearray_dtype=zdt, threads=1,
                    compression_chunk=a.chunk)
    comp = z.compress(bytes(bytearray(data)))  # a copy: it rotates its input in place
    if bytes(z.decompress(comp)) != data:
        print('bench_zipnn: decoded bytes differ from the input', file=sys.stderr)
        return 1
    best, start = 1e30, time.process_time()
    while True:
        t0 = time.process_time()
        z.decompress(comp)
        t = time.process_time() - t0
        best = min(best, t)
        if time.process_time() - start >= a.min_time:
            break
    print('%-16s %-5s %8.4f %12.1f' % ('zipnn', a.dtype, len(comp) / len(data),
                                        len(data) / best / 1e6))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
