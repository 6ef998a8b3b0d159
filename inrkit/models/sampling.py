"""Sampling generative families: the `Sampler` record that `inrkit fid` scores, and INR-GAN's seeded samples.

Sample k of a generator draws z from numpy's default_rng([seed, k]) (as the data layer seeds its crops), and
every sample is rendered through the one render interface (`render_theta`: (B, H, W, C) in [0, 1]), so `inrkit
render --seeds`, `inrkit fid`, `inrkit kpl` and the training snapshots all show the same images, whatever the
batch they were drawn in. Images become uint8 as a PNG of them would (`quantize`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from inrkit.fields.grid import Range
from inrkit.models.inrgan import InrGanGenerator

RENDER_BUDGET = 2**26  # floats of one layer's activations (256 MB) above which a generator renders in chunks
SEED_BASE = 0  # the base seed of `inrkit render --seeds` (as `inrkit fid --seed 0`)


@dataclass(frozen=True)
class Sampler:
    """A source of samples to score (FID): `draw(start, count, side)` -> uint8 (count, C, side, side) on the CPU,
    samples start..start+count-1, each from its own random stream (so batching never changes an image); side
    None is the native `resolution`. A family provides one through `Family.sampler`."""

    resolution: int  # the native (training) side
    channels: int
    draw: Callable[[int, int, int | None], torch.Tensor]


def sample_latents(z_dim: int, start: int, count: int, seed: int) -> torch.Tensor:
    """z_k ~ N(0, I) for k in [start, start + count), each from its own stream: (count, z_dim) float32.
    (Not torch.Generator().manual_seed(f(seed, k)): its CPU generator keeps only 32 bits of the seed.)"""
    return torch.from_numpy(np.stack([np.random.default_rng([seed, k]).standard_normal(z_dim, dtype=np.float32)
                                      for k in range(start, start + count)]))


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] -> uint8 as a PNG stores them (rounded, clipped); the same numbers as the data layer's
    inverse ((x + 1) 127.5) of images in [-1, 1]: halving is exact in floating point."""
    return (images.float() * 255.0).round_().clamp_(0, 255).to(torch.uint8)


def render_theta(G: InrGanGenerator, theta: dict[str, torch.Tensor], shape: tuple[int, int],
                 ranges: list[Range] | None = None, chunk: int | None = None) -> torch.Tensor:
    """The render interface of a generator: INR parameters theta (a batch of B) on the (H, W) pixel-centre grid
    over `ranges` -> (B, H, W, C) in [0, 1] (unclamped). G.render keeps the training convention (B, C, H, W) in
    [-1, 1] that the GAN losses compare with images. float32, also from a bf16 autocast."""
    return ((G.render(theta, resolution=shape, ranges=ranges, chunk=chunk).float() + 1) / 2).permute(0, 2, 3, 1)


@torch.no_grad()
def render_w(G: InrGanGenerator, w: torch.Tensor, resolution: int | None = None) -> torch.Tensor:
    """w (count, hyper_hidden) -> uint8 (count, C, R, R) on the CPU, rendered in chunks when the grid is large."""
    count, r = len(w), resolution or G.config["resolution"]
    width = max(b[2] for b in G.config["blocks"])
    chunk = None if count * r * r * width <= RENDER_BUDGET else max(1024, RENDER_BUDGET // (count * width))
    return quantize(render_theta(G, G.inr_params(w), (r, r), chunk=chunk)).permute(0, 3, 1, 2).cpu()


@torch.no_grad()
def generate(G: InrGanGenerator, start: int, count: int, seed: int, psi: float = 1.0,
             resolution: int | None = None) -> torch.Tensor:
    """Samples start..start+count-1 as uint8 (count, C, R, R) on the CPU; R defaults to the training size."""
    z = sample_latents(G.config["z_dim"], start, count, seed).to(G.w_avg.device)
    return render_w(G, G.mapping(z, psi=psi, update_w_avg=False), resolution)


@torch.no_grad()
def seed_params(G: InrGanGenerator, seeds: list[int], psi: float) -> list[dict[str, torch.Tensor]]:
    """theta of each seed, each mapped alone (batch 1): the same numbers whatever else is drawn."""
    device = G.w_avg.device
    return [G.inr_params(G.mapping(sample_latents(G.config["z_dim"], s, 1, SEED_BASE).to(device), psi=psi,
                                   update_w_avg=False)) for s in seeds]


@torch.no_grad()
def render_params(G: InrGanGenerator, thetas: list[dict], shape: tuple[int, int], ranges: list[Range] | None,
                  chunk: int | None) -> torch.Tensor:
    """Each theta rendered alone -> (n, H, W, C) in [0, 1] on the CPU, clamped."""
    return torch.cat([render_theta(G, t, shape, ranges, chunk) for t in thetas]).clamp(0, 1).cpu()
