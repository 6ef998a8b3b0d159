"""The Levels-of-Experts claim on its own toy image (LoE supp. A), at 256x256 so it runs on a CPU.

Fits builtin:camera resized to 256x256 with the supp. A network shape (10 linear layers, 64 channels,
L=8 positional encoding, Leaky ReLU 0.2) under the same step budget and the supp. A optimiser (Adam
(0.9, 0.995), lr 5e-3 decayed 10x halfway, full grid every step):
PE MLP, SIREN (same shape, its own lr), LoE nearest, LoE bilinear, LoE constant input (no PE).

Usage: .venv/bin/python bench/loe_fit.py [--steps 1000] [--only loe-nearest,pe]
Writes bench/results/loe_fit.json and the fitted artifacts under out/bench/loe_fit/.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from inrkit.stages.fit import fit

RUNS = {
    "pe": dict(arch="pe"),
    "siren": dict(arch="siren"),
    "loe-nearest": dict(arch="loe", blend="nearest"),
    "loe-bilinear": dict(arch="loe", blend="linear"),
    "loe-no-pe": dict(arch="loe", blend="nearest", frequencies=0),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--only", default=",".join(RUNS))
    args = ap.parse_args()
    out_dir = Path("out/bench/loe_fit")
    results = {}
    for name in args.only.split(","):
        torch.manual_seed(0)
        start = time.perf_counter()
        m = fit("builtin:camera", out_dir / f"{name}.safetensors", width=64, depth=10, steps=args.steps,
                size=(args.size, args.size), device="cpu", progress=False, **RUNS[name])
        m["seconds"] = time.perf_counter() - start  # wall time of the whole fit (the artifact keeps no clock)
        results[name] = {k: m[k] for k in ("psnr", "ssim", "params", "macs_per_sample", "seconds")}
        print(f"{name:13s} PSNR {m['psnr']:6.2f} dB  SSIM {m['ssim']:.4f}  params {m['params']:>9,}  "
              f"MACs {m['macs_per_sample']:>7,}  {m['seconds']:7.1f} s", flush=True)
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    path = Path("bench/results/loe_fit.json")
    old = json.loads(path.read_text()) if path.exists() else {}
    old.update({"steps": args.steps, "size": args.size, **results})
    path.write_text(json.dumps(old, indent=2) + "\n")


if __name__ == "__main__":
    main()
