"""Capacity probe for the CPU-sized LoE-GAN / PE + CE generators: fit 64 builtin:digits at 32x32 from 64 fixed
noise vectors by MSE (Adam 1e-3, no discriminator) and print the PSNR every 200 steps. A generator that cannot
memorise 64 digits in the steps a short GAN run gives it cannot be expected to draw them.

Usage: OMP_NUM_THREADS=1 .venv/bin/python bench/loegan_memorise.py ARCH FREQUENCIES WIDTH HIDDEN [--steps 600]
       e.g. loe-gan 8 128 64   (tiles 2,2,4, grid 2,8,32, z 32: the CPU comparison's generator at width 128)
"""

from __future__ import annotations

import argparse
import time

import torch

from inrkit.data import open_dataset
from inrkit.models import loegan


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("arch", choices=loegan.ARCHS)
    ap.add_argument("frequencies", type=int)
    ap.add_argument("width", type=int)
    ap.add_argument("hidden", type=int)
    ap.add_argument("--steps", type=int, default=600)
    args = ap.parse_args()
    torch.manual_seed(0)
    data = open_dataset("builtin:digits", 32, 1)
    targets = torch.stack([data[i][0] for i in range(64)])  # (64, 1, 32, 32): datasets are in [-1, 1], as G's output
    cfg = loegan.generator_config(arch=args.arch, resolution=32, z_dim=32, width=args.width, hidden=args.hidden,
                                  tiles=(2, 2, 4), grid_resolutions=(2, 8, 32), frequencies=args.frequencies,
                                  embedding_size=32, out_channels=1)
    G = loegan.LoeGanGenerator(cfg)
    params = sum(p.numel() for p in G.parameters())
    z = torch.randn(64, 32)
    opt = torch.optim.Adam(G.parameters(), lr=1e-3)
    start = time.time()
    for step in range(1, args.steps + 1):
        loss = (G(z) - targets).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 200 == 0:
            psnr = 10 * torch.log10(4 / loss.detach()).item()  # peak-to-peak 2 in [-1, 1]
            print(f"{args.arch} width {args.width} hidden {args.hidden} ({params:,} params) L {args.frequencies}: "
                  f"step {step} PSNR {psnr:.2f} dB, {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
