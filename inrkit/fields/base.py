"""What every coordinate field is: an nn.Module from coordinates (..., d) to values (..., c)."""

from __future__ import annotations

import torch
from torch import nn

from inrkit.fields.grid import Range, grid_on


class Field(nn.Module):
    """Base of all fields. Subclasses set `self.config` (a JSON-able dict that rebuilds them through
    `inrkit.fields.build_field`) and implement `forward(coords)`.

    `forward_grid` evaluates the whole pixel-centre grid and returns (*shape, c) in raster order;
    subclasses may override it with a faster structured path (Levels-of-Experts uses Z-order).
    """

    config: dict

    def forward_grid(self, shape: tuple[int, ...], ranges: list[Range] | None = None) -> torch.Tensor:
        device = next(self.parameters()).device
        return self(grid_on(shape, ranges, device))

    def macs_per_sample(self) -> int:
        """Multiply-accumulates per evaluated coordinate (linear layers only, as the LoE paper counts)."""
        raise NotImplementedError
