"""Input mappings gamma(p): NeRF positional encoding and random Fourier features."""

from __future__ import annotations

import math

import torch
from torch import nn


class PositionalEncoding(nn.Module):
    """NeRF-style gamma(p) = [p, sin(2^k pi p), cos(2^k pi p)] for k < L, per coordinate (Mildenhall et al.)."""

    def __init__(self, in_dim: int, frequencies: int, include_input: bool = True):
        super().__init__()
        self.in_dim, self.frequencies, self.include_input = in_dim, frequencies, include_input
        self.register_buffer("freqs", (2.0 ** torch.arange(frequencies)) * math.pi, persistent=False)
        self.out_dim = in_dim * (2 * frequencies + int(include_input))

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        angles = (p[..., None] * self.freqs).flatten(-2)  # (..., d * L)
        parts = [p] if self.include_input else []
        return torch.cat(parts + [torch.sin(angles), torch.cos(angles)], dim=-1)


class FourierFeatures(nn.Module):
    """Random Fourier features [sin(2 pi B p), cos(2 pi B p)], B ~ N(0, sigma^2) (Tancik et al. 2020).

    B is a persistent buffer, so a saved field renders identically without knowing the seed.
    """

    def __init__(self, in_dim: int, features: int, sigma: float, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("B", torch.randn(features, in_dim, generator=g) * sigma)
        self.out_dim = 2 * features

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        angles = 2 * math.pi * p @ self.B.T
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
