"""The fixed-pattern artifact of Levels-of-Experts Fig. 7 as a number, for any generator artifact (and real images).

A generator whose coordinate-dependent weights imprint the same texture on every image leaves that texture in
every sample's high-pass residual r_i = x_i - blur(x_i). Averaging N residuals keeps the shared part and shrinks
the rest by 1/N in power, so

    ratio = mean_pixels(mean_i r_i)^2 / mean_i mean_pixels(r_i^2)

is about 1/N for residuals that share nothing and 1 for a pattern identical in all samples. The blur is a
normalised 5x5 Gaussian (sigma 1 px, reflect padding); images are in [0, 1], samples as `inrkit fid` draws them
(sample k from its own seed stream, quantised to uint8). Real images (--data) give the ratio of the data itself,
which is not 1/N either: centred digits or faces share structure. A mode-collapsed generator shares its residual
too, so the per-pixel variance over the samples is printed alongside (the data's for comparison).

Usage: .venv/bin/python bench/gan_pattern.py out/lg/loe-gan.safetensors out/lg/pe-ce.safetensors \
           --data builtin:digits --n 1000 --png docs/img/loegan-pattern.png
Prints a markdown table, writes --json (default bench/results/gan_pattern.json) and, with --png, the mean
residual of each source side by side, each stretched to its own +-max (grey = 0).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from inrkit.core import artifacts
from inrkit.core.pictures import image_grid, save_png
from inrkit.data import open_dataset
from inrkit.models import registry

OUT = Path(__file__).resolve().parent / "results" / "gan_pattern.json"


def gaussian_blur(x: torch.Tensor, sigma: float = 1.0, size: int = 5) -> torch.Tensor:
    """(N, C, H, W) blurred per channel by a normalised separable Gaussian, reflect padding."""
    t = torch.arange(size, dtype=x.dtype) - (size - 1) / 2
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (size // 2,) * 4, mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, size).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, size, 1).repeat(c, 1, 1, 1), groups=c)


def pattern(images: torch.Tensor) -> tuple[float, float, torch.Tensor]:
    """uint8 (N, C, H, W) -> (ratio, per-pixel variance over the samples, mean residual (C, H, W))."""
    x = images.float() / 255.0
    r = x - gaussian_blur(x)
    mean = r.mean(0)
    return float(mean.pow(2).mean() / r.pow(2).mean()), float(x.var(0).mean()), mean


def samples(path: str, n: int, seed: int) -> torch.Tensor:
    """n samples of a generator artifact, as `inrkit fid` draws them."""
    family = registry.family_of(artifacts.kind_of(path), path)
    if family.sampler is None:
        raise SystemExit(f"{path} is a {family.name} artifact, which makes no samples.")
    sampler = family.sampler(registry.load(path), seed=seed)
    return torch.cat([sampler.draw(s, min(100, n - s), None) for s in range(0, n, 100)])


def real(spec: str, n: int, resolution: int, channels: int) -> torch.Tensor:
    ds = open_dataset(spec, resolution, channels, count=n)
    return torch.stack([torch.as_tensor(ds.pixels(i)[0]) for i in range(min(n, len(ds)))])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("generators", nargs="+")
    ap.add_argument("--data", help="real images to measure alongside (e.g. builtin:digits)")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=str(OUT))
    ap.add_argument("--png")
    args = ap.parse_args()
    rows, means = [], []
    sets = [(path, samples(path, args.n, args.seed)) for path in args.generators]
    if args.data:
        c, h = sets[0][1].shape[1:3] if sets else (3, 32)
        sets.append((args.data, real(args.data, args.n, h, c)))
    for source, x in sets:
        ratio, variance, mean = pattern(x)
        rows.append(dict(source=source, n=len(x), ratio=ratio, ratio_times_n=ratio * len(x), variance=variance))
        means.append(mean)
    # A mode-collapsed generator shares everything, its residual too: the variance column tells the two apart.
    print("| source | N | ratio | ratio x N (1 = nothing shared) | pixel variance over samples |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        cells = (r["source"], r["n"], f"{r['ratio']:.4f}", f"{r['ratio_times_n']:.1f}", f"{r['variance']:.4f}")
        print("| " + " | ".join(map(str, cells)) + " |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(dict(command=vars(args), rows=rows), indent=1) + "\n")
    if args.png:
        tiles = [(0.5 + 0.5 * m / m.abs().max().clamp_min(1e-8)) for m in means]
        up = [F.interpolate(t[None], scale_factor=4, mode="nearest")[0] for t in tiles]
        save_png(args.png, image_grid(torch.stack(up).permute(0, 2, 3, 1), columns=len(up)))


if __name__ == "__main__":
    main()
