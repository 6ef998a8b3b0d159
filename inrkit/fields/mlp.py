"""The Fourier-feature MLP baseline ("PE MLP", LoE Table 1): gamma(p) -> [Linear, LeakyReLU(0.2)]* -> Linear."""

from __future__ import annotations

import torch
from torch import nn

from inrkit.fields.base import Field, hidden_widths
from inrkit.fields.encoding import FourierFeatures, PositionalEncoding
from inrkit.fields.init import SLOPE, uniform_kaiming_linear_


class FourierMLP(Field):
    """depth linear layers in all. encoding 'pe' (NeRF, `frequencies`) or 'rff' (random Fourier features).
    `widths`: per-layer hidden widths (depth - 1 values, LoE supp. B), else `width` throughout. Subclasses feed
    the first layer `extra_inputs` more channels (their `features`)."""

    def __init__(self, in_dim=2, out_dim=1, width=64, depth=10, encoding="pe", frequencies=8,
                 rff_features=256, rff_sigma=10.0, seed=0, widths=None, extra_inputs=0):
        super().__init__()
        hidden = hidden_widths(width, depth, widths)
        self.config = dict(arch="pe", in_dim=in_dim, out_dim=out_dim, width=width, depth=depth,
                           encoding=encoding, frequencies=frequencies, rff_features=rff_features,
                           rff_sigma=rff_sigma, seed=seed)
        if widths is not None:  # an artifact without the key has `width` throughout
            self.config["widths"] = hidden
        if encoding == "pe":
            self.encoding = PositionalEncoding(in_dim, frequencies)
        else:
            self.encoding = FourierFeatures(in_dim, rff_features, rff_sigma, seed)
        dims = [self.encoding.out_dim + extra_inputs] + hidden + [out_dim]
        pairs = zip(dims[:-1], dims[1:], strict=True)
        self.linears = nn.ModuleList(uniform_kaiming_linear_(nn.Linear(a, b)) for a, b in pairs)
        self.act = nn.LeakyReLU(SLOPE)

    def features(self, coords: torch.Tensor) -> torch.Tensor:
        """What the first layer reads: the encoded coordinates."""
        return self.encoding(coords)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        x = self.features(coords)
        for layer in self.linears[:-1]:
            x = self.act(layer(x))
        return self.linears[-1](x)

    def macs_per_sample(self) -> int:
        return sum(m.in_features * m.out_features for m in self.linears)
