"""The PE + CE baseline (LoE Table 1 and 2, after [3]): the PE MLP whose first layer also reads a learnable
coordinate embedding, interpolated at the point and concatenated with the encoded coordinates.

Images (supp. B): 128 channels on a 256 x 256 grid, bilinear; video (supp. C): 64 channels on 64^3, trilinear.
The embedding's samples sit on a regular grid whose first and last samples are at 0 and 1 on every axis, so
inside [0, 1]^d a point gets the (bi-/tri-)linear blend of its cell's corners, and outside it the value at the
nearest point of [0, 1]^d (coordinates clamped): a zoom-out renders the border embedding beyond the edges.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from inrkit.fields.mlp import FourierMLP

# The paper's embedding per input dimension: (channels, samples per axis) (supp. B: 128 x 256^2; supp. C: 64 x 64^3)
PAPER_EMBEDDING = {2: (128, 256), 3: (64, 64)}


class CoordinateEmbedding(nn.Module):
    """A learnable grid (1, C, n, ..., n) of `dim` axes, read by linear interpolation at coordinates (..., dim)
    in axis order (y, x) or (t, y, x); linear inside [0, 1], clamped outside. Starts at zero: the PE + CE
    field starts as the PE MLP (the paper gives no initialisation for the embedding)."""

    def __init__(self, dim: int, channels: int, size: int):
        super().__init__()
        self.dim, self.channels, self.size = dim, channels, size
        self.grid = nn.Parameter(torch.zeros(1, channels, *[size] * dim))

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        lead = coords.shape[:-1]
        # grid_sample reads (x, y[, z]) in [-1, 1]; with align_corners the corner samples sit at -1 and 1,
        # i.e. at 0 and 1 in field coordinates, and border padding clamps what lies outside
        where = (coords.reshape(-1, self.dim).flip(-1) * 2 - 1).to(self.grid.dtype)
        where = where.view(1, -1, *[1] * (self.dim - 1), self.dim)
        out = F.grid_sample(self.grid, where, mode="bilinear", padding_mode="border", align_corners=True)
        return out.reshape(self.channels, -1).T.reshape(*lead, self.channels)


class PECEField(FourierMLP):
    """PE MLP (NeRF encoding, `frequencies`) + a `ce_channels` x `ce_size`^in_dim coordinate embedding."""

    def __init__(self, in_dim=2, out_dim=1, width=64, depth=10, frequencies=8, ce_channels=128, ce_size=256,
                 widths=None):
        super().__init__(in_dim, out_dim, width, depth, "pe", frequencies, widths=widths, extra_inputs=ce_channels)
        self.embedding = CoordinateEmbedding(in_dim, ce_channels, ce_size)
        self.config = dict(self.config, arch="pe-ce", ce_channels=ce_channels, ce_size=ce_size)
        for key in ("encoding", "rff_features", "rff_sigma", "seed"):  # a PE encoding; nothing is drawn
            self.config.pop(key)

    def features(self, coords: torch.Tensor) -> torch.Tensor:
        """[gamma(p), CE(p)]: the encoded coordinates and the interpolated embedding (supp. B)."""
        return torch.cat([self.encoding(coords), self.embedding(coords).to(coords.dtype)], dim=-1)
