"""The fields family (kind `field`): one signal (an image or a video) fitted by one coordinate network.

A field has no codes: its batch is the one signal it holds, so `render_codes` returns (1, *grid_shape, C).
Registered in inrkit.models.registry.FAMILIES.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from inrkit.core import artifacts
from inrkit.core.checks import require_suffix
from inrkit.core.errors import InrkitError
from inrkit.core.pictures import save_gif, save_png
from inrkit.core.precision import compile_module
from inrkit.core.runtime import pick_device, print0
from inrkit.fields import build_field
from inrkit.fields.base import Field
from inrkit.fields.grid import Range, evaluate, output_shape, subframe_ranges
from inrkit.fields.validate import check_field_artifact

KIND = "field"
RENDER_OPTIONS = ("fps_scale",)  # `inrkit render` options beyond size, scale, grid, chunk and device


def build(art: artifacts.Artifact, path: str | Path, device: torch.device | str = "cpu") -> Field:
    """The field an artifact holds, in eval mode on `device`; `field.signal` is what it was fitted to (shape,
    channels, source, video)."""
    check_field_artifact(art.config, sum(t.numel() for t in art.tensors.values()), path)  # before allocating
    field = artifacts.load_state(build_field(art.config["field"]), art, path).to(device).eval()
    field.signal = art.config.get("signal", {})
    return field


@torch.no_grad()
def render_codes(field: Field, codes: None, shape: tuple[int, ...], ranges: list[Range] | None = None,
                 chunk: int = 2**16) -> torch.Tensor:
    """The render interface: the field on a pixel-centre grid, `chunk` points at a time -> (1, *shape, C) on
    the CPU, in [0, 1] for a fitted signal (unclamped)."""
    if codes is not None:
        raise InrkitError("a field has no codes to render; it holds one signal.")
    device = next(field.parameters()).device
    return evaluate(field, shape, ranges, chunk=chunk, device=device)[None]  # float32 under autocast too


def render(art: artifacts.Artifact, path: str | Path, out: str | Path, *, size: tuple[int, ...] | None = None,
           scale: float | None = None, grid: list[Range] | None = None, chunk: int = 2**16,
           device: str = "auto", compile: bool = False, fps_scale: int | None = None) -> Path:
    """`inrkit render` of a field: a PNG for an image; for a video a GIF (.gif) or a folder of PNG frames.
    `compile` compiles the field's forward (every chunk goes through it). `fps_scale` K renders a video's K
    times as many frames, the in-between times (grid.subframe_ranges; the GIF plays K times faster, to 50 fps)."""
    out = Path(out)
    check_field_artifact(art.config, sum(t.numel() for t in art.tensors.values()), path, need_signal=True)
    signal = art.config["signal"]
    video = signal.get("video", False)
    if fps_scale is not None and not video:
        raise InrkitError(f"--fps-scale renders the in-between frames of a video, but {path} holds an image "
                          f"({'x'.join(map(str, signal['shape']))}); leave it out.")
    if not video:
        require_suffix(out, ".png")
    dev = pick_device(device)
    field = compile_module(build(art, path, dev), dev, compile)
    shape = output_shape(tuple(signal["shape"]), size, scale, grid)
    ranges = ([(0.0, 1.0)] if video else []) + list(grid) if grid else None  # --grid is spatial: time stays
    start = time.perf_counter()
    k = fps_scale or 1
    passes = [render_codes(field, None, shape, r, chunk)[0] for r in subframe_ranges(shape, ranges, k)]
    values = (passes[0] if k == 1 else torch.stack(passes, dim=1).flatten(0, 1)).clamp(0, 1)
    shape = tuple(values.shape[:-1])
    seconds = time.perf_counter() - start
    if not video:
        save_png(out, values)
    elif out.suffix.lower() == ".gif":
        save_gif(out, values, fps=min(10.0 * k, 50.0))
    else:
        for t, frame in enumerate(values):
            save_png(out / f"frame_{t:04d}.png", frame)
    print0(f"rendered {'x'.join(map(str, shape))} in {seconds:.2f} s -> {out}")
    return out
