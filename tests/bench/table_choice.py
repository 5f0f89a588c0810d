"""Per-tile vs per-tensor shared frequency tables, measured.

For every tensor of a safetensors model (as bf16 by round-to-nearest-even,
ROT1, exponent plane), in tiles of 128 Ki elements (256 KiB), the exponent
plane's coded size is estimated with: only per-tile tables (table bytes +
order-0 entropy with 12-bit normalised frequencies), only the tensor's
shared table (cross-entropy, no table bytes), and the encoder's rule (the
smaller of the two per tile).  Tensors of one tile are left out (the shared
table only pays across tiles).
Usage: /usr/bin/python3 tests/bench/table_choice.py MODEL.safetensors [--synthetic]
"""
import json, struct, sys
import numpy as np

TILE = 131072

def norm(c):
    tot = c.sum()
    f = np.where(c > 0, np.maximum(1, np.round(c * 4096 / tot)), 0).astype(np.int64)
    order = np.argsort(-c, kind="stable")
    d = 4096 - f.sum()
    if d > 0:
        f[order[0]] += d
    k = 0
    while d < 0:
        s = order[k % np.count_nonzero(c)]
        if f[s] > 1:
            f[s] -= 1
            d += 1
        else:
            k += 1
    return f

def table_bytes(f):
    return 32 + sum(1 if v < 128 else 2 for v in f if v)

def cost(c, f):
    nz = c > 0
    return (c[nz] * (12 - np.log2(f[nz]))).sum() / 8

def exponent_plane(x):
    u = x.view(np.uint32)
    b = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint32)
    return (((b << 1) | (b >> 15)) >> 8 & 0xFF).astype(np.uint8)

def tensors(path):
    if "--synthetic" in sys.argv:
        rng = np.random.default_rng(1234)
        for i in range(8):
            w = rng.normal(0, 0.02, (1024, 2048)).astype(np.float32)
            w[rng.random(1024) < 0.1] *= rng.uniform(0.1, 8)
            w[rng.random(w.shape) < 0.05] = 0
            yield w.ravel()
        return
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    for k, v in hdr.items():
        if k != "__metadata__" and v["dtype"] == "F32":
            a, b = v["data_offsets"]
            yield np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<f4")

tile_only = shared_only = chosen = 0.0
n_tiles = n_shared_wins = 0
for x in tensors(sys.argv[1]):
    if x.size <= TILE:
        continue
    p = exponent_plane(x)
    fs = norm(np.bincount(p, minlength=256))
    for off in range(0, p.size, TILE):
        c = np.bincount(p[off:off + TILE], minlength=256)
        t = cost(c, norm(c)) + table_bytes(norm(c))
        s = cost(c, fs)
        tile_only += t
        shared_only += s
        chosen += min(t, s)
        n_tiles += 1
        n_shared_wins += s < t
print(f"{n_tiles} tiles: per-tile tables only {tile_only/1e6:.4f} MB, shared only "
      f"{shared_only/1e6:.4f} MB, per-tile choice {chosen/1e6:.4f} MB "
      f"(shared chosen for {n_shared_wins} tiles; choice saves "
      f"{(1-chosen/tile_only)*100:.2f}% vs tile-only, {(1-chosen/shared_only)*100:.2f}% vs shared-only)")
