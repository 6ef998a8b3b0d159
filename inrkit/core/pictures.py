"""Pictures people look at: PNGs (written atomically), image grids, side-by-side comparisons and curve plots."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from inrkit.core.artifacts import atomic_write_bytes


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(H, W, C) floats in [0, 1] -> uint8 array (H, W) or (H, W, 3), rounded after clamping."""
    a = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return a[..., 0] if a.shape[-1] == 1 else a


def save_png(path: str | Path, image: torch.Tensor | np.ndarray) -> Path:
    a = image if isinstance(image, np.ndarray) else to_uint8(image)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def save_gif(path: str | Path, frames: torch.Tensor, fps: float = 10.0) -> Path:
    """frames (T, H, W, C) in [0, 1] -> animated GIF."""
    images = [Image.fromarray(to_uint8(f)) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def zoom_factor(side: int, zoom_to: int | None) -> int:
    """The whole factor that enlarges a `side`-pixel image to at most `zoom_to` pixels (at least 1; None: 1)."""
    return max(1, zoom_to // side) if zoom_to else 1


def image_grid(images: torch.Tensor, columns: int, gap: int | tuple[int, int] = 2,
               zoom_to: int | None = None) -> torch.Tensor:
    """(N, H, W, C) floats in [0, 1] -> one (H', W', C) picture on white, row-major (image k in row
    k // columns, column k % columns), on the CPU.

    gap: white pixels between neighbouring tiles, an int or (between rows, between columns); none around the
    edge. zoom_to: small images are enlarged (nearest, by zoom_factor(max(H, W), zoom_to)) so that an 8x8
    digit can be seen. columns beyond N are dropped: H' = rows * (zH + gap) - gap, W' = cols * (zW + gap) - gap.
    """
    row_gap, column_gap = (gap, gap) if isinstance(gap, int) else gap
    zoom = zoom_factor(max(images.shape[1:3]), zoom_to)
    images = images.detach().float().cpu()
    if zoom > 1:
        images = images.repeat_interleave(zoom, 1).repeat_interleave(zoom, 2)
    n, h, w, c = images.shape
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    sheet = torch.ones(rows * (h + row_gap) - row_gap, columns * (w + column_gap) - column_gap, c)
    for k, image in enumerate(images):
        top, left = (k // columns) * (h + row_gap), (k % columns) * (w + column_gap)
        sheet[top : top + h, left : left + w] = image
    return sheet


def side_by_side(*images: torch.Tensor, gap: int = 4) -> torch.Tensor:
    """(H, W_i, C) images of equal height (widths may differ) -> one (H, sum W_i + gaps, C) row, white gaps."""
    h, c = images[0].shape[0], images[0].shape[-1]
    spacer = torch.ones(h, gap, c)
    parts = [p for im in images for p in (im.cpu().float(), spacer)][:-1]
    return torch.cat(parts, dim=1)


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display is ever needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(path: str | Path, fig) -> Path:
    """Lay out a matplotlib figure, write it as a PNG (atomically) and close it."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def plot_curve(path: str | Path, xs, ys, xlabel: str, ylabel: str, title: str = "") -> Path:
    fig, ax = pyplot().subplots(figsize=(5, 3.2), dpi=120)
    ax.plot(xs, ys)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return save_figure(path, fig)
