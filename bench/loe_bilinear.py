"""Linear-blend LoE on random points: the fused one-sort kernel against the per-corner path it replaced.

The per-corner path (before this kernel) ran `sorted_linear` once per cell corner and layer: 2**dim sorts,
block matmuls and unsorts, summed with the corner coefficients. The fused path (`LoEField.forward`) sorts
once per layer by the cell's own candidate and blends the corners inside one matmul per segment
(`_SegmentBlendedMatmul`). Both are timed forward + backward on the same field and points, alternating,
next to the nearest-blend field of the same shape; they must agree to round-off.

Usage: OMP_NUM_THREADS=1 .venv/bin/python bench/loe_bilinear.py [--reps 5]
Writes bench/results/loe_bilinear.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from inrkit.fields import loe as L

# (name, field options, points): Table 1's x1/8 widths (bench/loe_tables.py) and Table 2's 3-D tiles
CASES = [
    ("Table 1 x1/8 (64,48,32..., 4x4 tiles, table6)", dict(
        in_dim=2, out_dim=3, depth=8, widths=[64, 48, 32, 32, 32, 32, 32], tile=4, arrangement="table6",
        resolution=512, frequencies=9), 65536),
    ("64 wide, 4x4 tiles, table6", dict(
        in_dim=2, out_dim=3, width=64, depth=8, tile=4, arrangement="table6", resolution=512, frequencies=9), 65536),
    ("Table 2 x1/8 (32 wide, tiles 2,4,4,4,4 ^3)", dict(
        in_dim=3, out_dim=3, width=32, depth=6, tiles=[2, 4, 4, 4, 4], arrangement="coarse-to-fine",
        resolution=64, frequencies=6), 32768),
]


def per_corner_forward(field: L.LoEField, flat: torch.Tensor) -> torch.Tensor:
    """The replaced path: one sorted_linear per corner and layer."""
    x = field._input(flat)
    for layer in field.loe:
        index, weight = layer.blend(flat)
        out = layer.bias
        for k in range(index.shape[1]):
            out = out + weight[:, k : k + 1] * L.sorted_linear(x, layer.weight, index[:, k])
        x = F.leaky_relu(out, L.SLOPE)
    return field._head(x)


def step(fn) -> float:
    t = time.perf_counter()
    fn().square().mean().backward()
    return time.perf_counter() - t


def time_case(name: str, options: dict, points: int, reps: int) -> dict:
    torch.manual_seed(0)
    linear = L.LoEField(blend="linear", **options)
    nearest = L.LoEField(blend="nearest", **options)
    coords = torch.rand(points, options["in_dim"])
    paths = {"fused": lambda: linear(coords), "per-corner": lambda: per_corner_forward(linear, coords),
             "nearest": lambda: nearest(coords)}
    with torch.no_grad():
        diff = (paths["fused"]() - paths["per-corner"]()).abs().max().item()
    times = {k: [] for k in paths}
    for fn in paths.values():  # warm-up
        step(fn)
    for _ in range(reps):
        for k, fn in paths.items():
            times[k].append(step(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    row = dict(case=name, points=points, median_s=med, min_s={k: min(v) for k, v in times.items()},
               fused_speedup=med["per-corner"] / med["fused"], fused_over_nearest=med["fused"] / med["nearest"],
               max_abs_diff=diff)
    print(f"{name:48s} {points:>7,} pts  per-corner {med['per-corner']:.3f} s  fused {med['fused']:.3f} s  "
          f"({row['fused_speedup']:.2f}x faster)  nearest {med['nearest']:.3f} s  fused/nearest "
          f"{row['fused_over_nearest']:.2f}  max |diff| {diff:.1e}")
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", type=Path, default=Path("bench/results/loe_bilinear.json"))
    args = ap.parse_args()
    rows = [time_case(name, options, points, args.reps) for name, options, points in CASES]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(dict(threads=torch.get_num_threads(), reps=args.reps, cpu=platform.processor(),
                                         torch=torch.__version__, rows=rows), indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
