"""Pictures people look at: PNGs (written atomically), side-by-side comparisons and curve plots."""

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


def side_by_side(*images: torch.Tensor, gap: int = 4) -> torch.Tensor:
    """Concatenate (H, W, C) images of equal height left to right with a white gap."""
    h, c = images[0].shape[0], images[0].shape[-1]
    spacer = torch.ones(h, gap, c)
    parts = [p for im in images for p in (im.cpu().float(), spacer)][:-1]
    return torch.cat(parts, dim=1)


def plot_curve(path: str | Path, xs, ys, xlabel: str, ylabel: str, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.plot(xs, ys)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
