"""Coordinate grids at pixel centres, for any size, range and dimension.

Convention: coordinate axis k follows tensor axis k, so an image grid is (..., [y, x]) and a video
grid is (..., [t, y, x]). The training range is [0, 1] on every axis (Levels-of-Experts supp. A:
p in [0, 1]^2); pixel i of n sits at lo + (hi - lo) * (i + 0.5) / n.
"""

from __future__ import annotations

import functools

import torch

from inrkit.core.errors import InrkitError

Range = tuple[float, float]


def axis(n: int, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    """Pixel-centre coordinates of n samples spanning [lo, hi]."""
    return lo + (hi - lo) * (torch.arange(n, dtype=torch.float64) + 0.5) / n


def make_grid(shape: tuple[int, ...], ranges: list[Range] | None = None) -> torch.Tensor:
    """Grid of shape (*shape, len(shape)) in float32; ranges default to [0, 1] per axis."""
    ranges = ranges or [(0.0, 1.0)] * len(shape)
    if len(ranges) != len(shape):
        raise InrkitError(f"a {len(shape)}-D grid needs {len(shape)} ranges, got {len(ranges)}.")
    axes = [axis(n, lo, hi) for n, (lo, hi) in zip(shape, ranges, strict=True)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).float()


@torch.compiler.disable  # a compiled caller takes the cached grid as an input instead of tracing its making
def grid_on(shape: tuple[int, ...], ranges: list[Range] | None, device, dtype=torch.float32) -> torch.Tensor:
    """make_grid on a device, built once per (shape, ranges, device, dtype) while it is in use: a fit evaluates
    the same grid every step, and building it again would copy it from the host each time (on CUDA, a copy
    that waits for the GPU). The grid is shared: read it, never write into it."""
    key = tuple(tuple(float(v) for v in r) for r in ranges) if ranges else None
    return _grid_on(tuple(int(n) for n in shape), key, torch.device(device), dtype)


@functools.lru_cache(maxsize=2)  # the grid of the fit in progress (and one other); small next to its activations
def _grid_on(shape: tuple[int, ...], ranges, device: torch.device, dtype) -> torch.Tensor:
    return make_grid(shape, [tuple(r) for r in ranges] if ranges else None).to(device, dtype)


def output_shape(base: tuple[int, ...], size: tuple[int, ...] | None, scale: float | None,
                 ranges: list[Range] | None) -> tuple[int, ...]:
    """The grid a renderer evaluates: `base` (the training shape, e.g. (H, W) or (T, H, W)) with its last two
    axes replaced. Without a size the pixel pitch follows the training grid: scale 2 doubles the density, and
    wider ranges add pixels rather than shrinking them (zoom-out shows more)."""
    if scale is not None and not scale > 0:
        raise InrkitError(f"--scale must be positive, got {scale}.")
    spatial = base[-2:]
    if size is not None:
        if len(size) != 2:
            raise InrkitError("--size takes HxW for images and for the frames of a video.")
        spatial = size
    else:
        widths = [hi - lo for lo, hi in (ranges or [(0.0, 1.0)] * 2)[-2:]]
        spatial = tuple(max(1, round(n * (scale or 1.0) * w)) for n, w in zip(spatial, widths, strict=True))
    return tuple(base[:-2]) + tuple(spatial)


def grid_points(shape: tuple[int, ...], ranges: list[Range] | None, start: int, stop: int) -> torch.Tensor:
    """Coordinates of flat (raster-order) grid indices [start, stop), without building the whole grid."""
    ranges = ranges or [(0.0, 1.0)] * len(shape)
    flat = torch.arange(start, stop, dtype=torch.int64)
    coords = []
    for n in reversed(shape):  # the last axis varies fastest in raster order
        coords.append(flat % n)
        flat = flat // n
    idx = torch.stack(coords[::-1], dim=-1).double()
    lo = torch.tensor([r[0] for r in ranges], dtype=torch.float64)
    hi = torch.tensor([r[1] for r in ranges], dtype=torch.float64)
    return (lo + (hi - lo) * (idx + 0.5) / torch.tensor(shape, dtype=torch.float64)).float()


@torch.no_grad()
def evaluate(field, shape: tuple[int, ...], ranges: list[Range] | None = None, chunk: int = 2**16,
             device: torch.device | str = "cpu") -> torch.Tensor:
    """Evaluate a field on a pixel-centre grid in chunks, so memory stays bounded at any size.

    Returns (*shape, C) on the CPU. Peak memory is the output plus one chunk of activations.
    """
    total = 1
    for n in shape:
        total *= n
    out = None
    for start in range(0, total, chunk):
        values = field(grid_points(shape, ranges, start, min(start + chunk, total)).to(device)).float().cpu()
        if out is None:
            out = torch.empty(total, values.shape[-1])
        out[start : start + values.shape[0]] = values
    return out.view(*shape, -1)


def subframe_ranges(shape: tuple[int, ...], ranges: list[Range] | None, fps_scale: int) -> list[list[Range] | None]:
    """The K = fps_scale grids whose frames, interleaved, make a video K times as dense in time (temporal
    superresolution): grid i is the video grid `shape` (T, H, W) over `ranges` moved i / K of a frame later, so
    frame K t + i of the interleaving sits at time lo + (hi - lo) (t + 0.5 + i / K) / T. Grid 0 is the plain grid
    itself (every K-th frame is exactly a plain render's frame t); the others lie between the frames, the last
    K - 1 up to 1 - 1/K of a frame past the last one. fps_scale 1: [ranges] unchanged."""
    if fps_scale == 1:
        return [ranges]
    base = list(ranges) if ranges else [(0.0, 1.0)] * len(shape)
    (lo, hi), step = base[0], (base[0][1] - base[0][0]) / (shape[0] * fps_scale)
    return [[(lo + i * step, hi + i * step), *base[1:]] for i in range(fps_scale)]
