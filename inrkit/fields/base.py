"""What every coordinate field is: an nn.Module from coordinates (..., d) to values (..., c)."""

from __future__ import annotations

import torch
from torch import nn

from inrkit.core.errors import InrkitError
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


def hidden_widths(width: int, depth: int, widths: list[int] | None) -> list[int]:
    """The output channels of layers 1 .. depth-1 (the last layer outputs the signal's channels): `widths` when
    given (LoE supp. B: 512, 384, 256, ...), else `width` for every hidden layer."""
    if widths is None:
        return [width] * (depth - 1)
    widths = [int(w) for w in widths]
    if len(widths) != depth - 1 or min(widths, default=1) < 1:
        raise InrkitError(f"per-layer widths need depth - 1 = {depth - 1} positive values (the last layer outputs "
                          f"the signal's channels), got {len(widths)}: {widths}.")
    return widths
