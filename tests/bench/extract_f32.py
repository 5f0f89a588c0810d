#!/usr/bin/python3
"""Make raw little-endian f32 files for `ransfs-bench codec`.

  extract_f32.py MODEL.safetensors OUT.f32     all F32 tensors, concatenated
  extract_f32.py --synthetic OUT.f32 [--mib N] [--seed S]
      a realistic weight-like tensor (default 64 MiB): rows of normal(0, 0.02)
      values, some rows scaled by 0.1-8x, ~3% of rows and ~5% of single
      weights pruned to exact zero.  Seeded, so the file is reproducible.

Standard library + numpy (Debian python3-numpy) only.
"""
import json
import struct
import sys

import numpy as np


def extract(model, out):
    with open(model, 'rb') as f:
        (hlen,) = struct.unpack('<Q', f.read(8))
        header = json.loads(f.read(hlen))
        base = 8 + hlen
        tensors = sorted((v['data_offsets'][0], v['data_offsets'][1], k)
                         for k, v in header.items()
                         if k != '__metadata__' and v['dtype'] == 'F32')
        total = 0
        with open(out, 'wb') as o:
            for start, end, _ in tensors:
                f.seek(base + start)
                o.write(f.read(end - start))
                total += end - start
    print(f'{out}: {len(tensors)} F32 tensors, {total} bytes', file=sys.stderr)


def synthetic(out, mib, seed):
    rng = np.random.default_rng(seed)
    cols = 4096
    rows = mib * (1 << 20) // 4 // cols
    x = rng.normal(0.0, 0.02, size=(rows, cols)).astype(np.float32)
    scaled = rng.random(rows) < 0.10
    x[scaled] *= rng.uniform(0.1, 8.0, size=(int(scaled.sum()), 1)).astype(np.float32)
    x[rng.random(rows) < 0.03] = 0.0
    x[rng.random((rows, cols)) < 0.05] = 0.0
    x.astype('<f4').tofile(out)
    print(f'{out}: synthetic {rows}x{cols} f32 (seed {seed})', file=sys.stderr)


def main(argv):
    if len(argv) >= 2 and argv[0] == '--synthetic':
        mib, seed = 64, 1234
        rest = argv[2:]
        while rest:
            if rest[0] == '--mib' and len(rest) > 1:
                mib = int(rest[1])
            elif rest[0] == '--seed' and len(rest) > 1:
                seed = int(rest[1])
            else:
                break
            rest = rest[2:]
        if not rest:
            synthetic(argv[1], mib, seed)
            return 0
    elif len(argv) == 2:
        extract(argv[0], argv[1])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
