#!/usr/bin/env bash
# make demo: the main job end to end.
#   1. build a synthetic safetensors model (~300 MB, bf16 + f32, realistic
#      weight statistics, config.json), seeded, in a temporary directory;
#   2. pack it with ransfs-mkimage;
#   3. mount it with ransfs;
#   4. load every tensor back through the mount with a plain loader (the
#      safetensors format read with numpy) and compare with the source;
#   5. print ratio, throughput and the daemon's cache statistics; unmount.
# usage: tests/demo.sh BUILD_DIR      (needs root or FUSE rights, /dev/fuse)
set -euo pipefail

BUILD=${1:-build}
BIN=$(cd "$BUILD/bin" && pwd)
PY=/usr/bin/python3          # Debian's python3 with numpy (not a pyenv one)
SIZE_MB=${RFS_DEMO_MB:-300}

for t in ransfs ransfs-mkimage; do
  [[ -x $BIN/$t ]] || { echo "demo: $BIN/$t is missing (build first)" >&2; exit 1; }
done
$PY -c 'import numpy' 2>/dev/null || { echo "demo: $PY has no numpy (apt-get install python3-numpy)" >&2; exit 1; }
[[ -w /dev/fuse ]] || { echo "demo: /dev/fuse is not usable (need root or FUSE rights)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/ransfs-demo.XXXXXX)
MNT=$TMP/mnt
cleanup() {
  if mountpoint -q "$MNT" 2>/dev/null; then fusermount3 -u -z "$MNT" || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
mkdir -p "$TMP/model" "$MNT"

echo "== 1. synthetic model (${SIZE_MB} MB, seed 2024) in $TMP/model"
$PY - "$TMP/model" "$SIZE_MB" <<'EOF'
import json, os, struct, sys
import numpy as np
out, mb = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(2024)

def to_bf16(w):  # round to nearest even
    u = w.astype(np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)

def weight(rows, cols):
    w = rng.normal(0.0, 0.02, size=(rows, cols)).astype(np.float32)
    w[rng.random(rows) < 0.02] *= 6.0                 # a few scaled rows
    w[rng.random((rows, cols)) < 0.02] = 0.0          # pruned weights
    return w

hidden, inter, vocab = 1024, 2816, 16384
tensors = {"model.embed_tokens.weight": ("BF16", to_bf16(weight(vocab, hidden)))}
total, layer = tensors["model.embed_tokens.weight"][1].nbytes, 0
while total < (mb << 20) - (2 * vocab * hidden):
    p = "model.layers.%d." % layer
    for name, shape in (("self_attn.q_proj", (hidden, hidden)), ("self_attn.k_proj", (hidden, hidden)),
                        ("self_attn.v_proj", (hidden, hidden)), ("self_attn.o_proj", (hidden, hidden)),
                        ("mlp.gate_proj", (inter, hidden)), ("mlp.up_proj", (inter, hidden)),
                        ("mlp.down_proj", (hidden, inter))):
        tensors[p + name + ".weight"] = ("BF16", to_bf16(weight(*shape)))
    for n in ("input_layernorm.weight", "post_attention_layernorm.weight"):
        tensors[p + n] = ("F32", (1.0 + rng.normal(0, 0.05, hidden)).astype(np.float32))
    total = sum(t.nbytes for _, t in tensors.values())
    layer += 1
tensors["lm_head.weight"] = ("F32", weight(vocab // 4, hidden))      # an f32 matrix too
tensors["model.norm.weight"] = ("F32", np.ones(hidden, np.float32))

header, off = {"__metadata__": {"format": "pt"}}, 0
for name, (dt, a) in tensors.items():
    header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
    off += a.nbytes
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
with open(os.path.join(out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    for _, a in tensors.values():
        f.write(a.tobytes())
with open(os.path.join(out, "config.json"), "w") as f:
    json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
               "intermediate_size": inter, "num_hidden_layers": layer, "vocab_size": vocab,
               "torch_dtype": "bfloat16"}, f, indent=2)
print("   %d tensors, %d layers, %.1f MB" % (len(tensors), layer, (8 + len(h) + off) / 1e6))
EOF

echo "== 2. pack: ransfs-mkimage $TMP/model $TMP/model.rfs"
"$BIN/ransfs-mkimage" "$TMP/model" "$TMP/model.rfs"

echo "== 3. mount: ransfs $TMP/model.rfs $MNT"
"$BIN/ransfs" "$TMP/model.rfs" "$MNT"
ls -l "$MNT"

echo "== 4. load every tensor through the mount and compare with the source"
$PY - "$TMP/model" "$MNT" "$TMP/model.rfs" <<'EOF'
import json, os, struct, sys, time
import numpy as np
src, mnt, img = sys.argv[1:4]
DT = {"BF16": np.uint16, "F16": np.float16, "F32": np.float32, "I32": np.int32}

def load(path):
    """A plain safetensors loader: 8-byte length, JSON header, data."""
    out = {}
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        for name, t in hdr.items():
            if name == "__metadata__":
                continue
            a, b = t["data_offsets"]
            f.seek(8 + n + a)
            arr = np.empty((b - a) // np.dtype(DT[t["dtype"]]).itemsize, DT[t["dtype"]])
            f.readinto(memoryview(arr).cast("B"))
            out[name] = arr.reshape(t["shape"])
    return out

size = os.path.getsize(os.path.join(src, "model.safetensors"))
t0 = time.time()
got = load(os.path.join(mnt, "model.safetensors"))
dt = time.time() - t0
want = load(os.path.join(src, "model.safetensors"))
bad = [k for k in want if k not in got or not np.array_equal(got[k], want[k])]
same_cfg = open(os.path.join(src, "config.json"), "rb").read() == open(os.path.join(mnt, "config.json"), "rb").read()
src_bytes = size + os.path.getsize(os.path.join(src, "config.json"))
print("   %d tensors loaded through the mount: %s; config.json %s"
      % (len(got), "all identical to the source" if not bad else "%d DIFFER" % len(bad),
         "identical" if same_cfg else "DIFFERS"))
print("   ratio: image %.1f MB / source %.1f MB = %.3f"
      % (os.path.getsize(img) / 1e6, src_bytes / 1e6, os.path.getsize(img) / src_bytes))
print("   load throughput (cold mount, decode included): %.0f MB/s (%.2f s)" % (size / dt / 1e6, dt))
sys.exit(1 if bad or not same_cfg else 0)
EOF

echo "== 5. live statistics: getfattr -n user.ransfs.stats $MNT"
getfattr --absolute-names -n user.ransfs.stats --only-values "$MNT" | $PY -c '
import json, sys
s = json.load(sys.stdin)
for k in ("bytes_served", "tiles_decoded", "cache_hits", "cache_waits", "cache_misses", "evictions",
          "prefetch_hits", "prefetched_tiles", "cache_bytes", "cache_budget", "decode_us_p50",
          "decode_us_p99", "decode_threads", "gpu", "gpu_batches"):
    print("   %-18s %s" % (k, s[k]))'

echo "== 6. unmount"
fusermount3 -u "$MNT"
echo "demo: OK"
