#!/usr/bin/env python3
"""Compares two scalegpt-train runs: every metrics line (loss, val_loss, grad_norm) and every tensor
of the final checkpoints (parameters and AdamW moments), within a relative tolerance.

    compare_runs.py RUN_A RUN_B LABEL [--tol 1e-5]

Exit status 1 with the first difference named when they differ."""
import json
import struct
import sys


def tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        a, b = info["data_offsets"]
        out[name] = struct.unpack(f"<{(b - a) // 4}f", data[a:b])
    return out


def main():
    a, b, label = sys.argv[1:4]
    tol = float(sys.argv[sys.argv.index("--tol") + 1]) if "--tol" in sys.argv else 1e-5
    ma = [json.loads(l) for l in open(f"{a}/metrics.jsonl")]
    mb = [json.loads(l) for l in open(f"{b}/metrics.jsonl")]
    assert len(ma) == len(mb), f"{label}: {len(ma)} metrics lines vs {len(mb)}"
    worst = 0.0
    for x, y in zip(ma, mb):
        for key in ("loss", "val_loss", "grad_norm"):
            if key in x:
                rel = abs(x[key] - y[key]) / abs(x[key])
                worst = max(worst, rel)
                assert rel < tol, f"{label}: step {x['step']}: {key} {x[key]} vs {y[key]}"
    ta, tb = tensors(f"{a}/checkpoint.safetensors"), tensors(f"{b}/checkpoint.safetensors")
    assert ta.keys() == tb.keys(), f"{label}: the checkpoints hold different tensors"
    worst_t = 0.0
    for name in ta:
        for u, v in zip(ta[name], tb[name]):
            d = abs(u - v) / (1.0 + abs(u))
            if d > worst_t:
                worst_t = d
            assert d < tol, f"{label}: checkpoint tensor {name}: {u} vs {v}"
    print(f"{label}: {len(ma)} metrics lines and {len(ta)} checkpoint tensors agree (largest relative "
          f"difference {worst:.1e} in the metrics, {worst_t:.1e} in the tensors)")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAIL: {e}")
        sys.exit(1)
