"""SIREN (Sitzmann et al. 2020): sine activations sin(w0 (W x + b)) with the SIREN initialisation."""

from __future__ import annotations

import math

import torch
from torch import nn

from inrkit.fields.base import Field


class SineLayer(nn.Module):
    """sin(w0 (W x + b)). First layer: W ~ U(-1/n, 1/n); hidden: U(-sqrt(6/n)/w0, sqrt(6/n)/w0) (SIREN Sec. 3.2)."""

    def __init__(self, in_features: int, out_features: int, w0: float, first: bool):
        super().__init__()
        self.w0 = w0
        self.linear = nn.Linear(in_features, out_features)
        bound = 1.0 / in_features if first else math.sqrt(6.0 / in_features) / w0
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)
            self.linear.bias.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * self.linear(x))


class Siren(Field):
    """depth linear layers in all: depth-1 sine layers and a linear output layer."""

    def __init__(self, in_dim=2, out_dim=1, width=256, depth=5, w0_first=30.0, w0_hidden=30.0):
        super().__init__()
        self.config = dict(arch="siren", in_dim=in_dim, out_dim=out_dim, width=width, depth=depth,
                           w0_first=w0_first, w0_hidden=w0_hidden)
        dims = [in_dim] + [width] * (depth - 1)
        self.layers = nn.ModuleList(
            SineLayer(a, b, w0_first if i == 0 else w0_hidden, first=i == 0)
            for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True))
        )
        self.out = nn.Linear(width, out_dim)
        bound = math.sqrt(6.0 / width) / w0_hidden
        with torch.no_grad():
            self.out.weight.uniform_(-bound, bound)
            self.out.bias.zero_()

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        x = coords * 2 - 1  # SIREN's initialisation assumes inputs in [-1, 1]; fields take [0, 1]
        for layer in self.layers:
            x = layer(x)
        return self.out(x)

    def macs_per_sample(self) -> int:
        return sum(m.in_features * m.out_features for m in self.modules() if isinstance(m, nn.Linear))
