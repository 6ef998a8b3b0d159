"""The Fourier-feature MLP baseline ("PE MLP", LoE Table 1): gamma(p) -> [Linear, LeakyReLU(0.2)]* -> Linear."""

from __future__ import annotations

import torch
from torch import nn

from inrkit.fields.base import Field
from inrkit.fields.encoding import FourierFeatures, PositionalEncoding


def kaiming_uniform_(layer: nn.Linear) -> nn.Linear:
    """Uniform Kaiming weights and zero biases (LoE supp. A), gain for Leaky ReLU 0.2."""
    nn.init.kaiming_uniform_(layer.weight, a=0.2, nonlinearity="leaky_relu")
    nn.init.zeros_(layer.bias)
    return layer


class FourierMLP(Field):
    """depth linear layers in all. encoding 'pe' (NeRF, `frequencies`) or 'rff' (random Fourier features)."""

    def __init__(self, in_dim=2, out_dim=1, width=64, depth=10, encoding="pe", frequencies=8,
                 rff_features=256, rff_sigma=10.0, seed=0):
        super().__init__()
        self.config = dict(arch="pe", in_dim=in_dim, out_dim=out_dim, width=width, depth=depth,
                           encoding=encoding, frequencies=frequencies, rff_features=rff_features,
                           rff_sigma=rff_sigma, seed=seed)
        if encoding == "pe":
            self.encoding = PositionalEncoding(in_dim, frequencies)
        else:
            self.encoding = FourierFeatures(in_dim, rff_features, rff_sigma, seed)
        dims = [self.encoding.out_dim] + [width] * (depth - 1) + [out_dim]
        pairs = zip(dims[:-1], dims[1:], strict=True)
        self.linears = nn.ModuleList(kaiming_uniform_(nn.Linear(a, b)) for a, b in pairs)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        x = self.encoding(coords)
        for layer in self.linears[:-1]:
            x = self.act(layer(x))
        return self.linears[-1](x)

    def macs_per_sample(self) -> int:
        return sum(m.in_features * m.out_features for m in self.linears)
