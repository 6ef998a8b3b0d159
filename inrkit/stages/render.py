"""`inrkit render`: evaluate a stored INR on any grid: any size, denser (--scale) or wider (--grid)."""

from __future__ import annotations

import time
from pathlib import Path

from inrkit.core import artifacts
from inrkit.core.errors import InrkitError
from inrkit.core.pictures import save_gif, save_png
from inrkit.core.runtime import pick_device, print0
from inrkit.fields.grid import Range, evaluate


def output_shape(base: tuple[int, ...], size: tuple[int, ...] | None, scale: float | None,
                 ranges: list[Range] | None) -> tuple[int, ...]:
    """The grid to evaluate. Without --size the pixel pitch follows the training grid: --scale 2 doubles
    the density, and a wider --grid adds pixels rather than shrinking them (zoom-out shows more)."""
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


def render(
    artifact: Path,                    # a field, functaset or generator artifact
    out: Path,                         # .png for images; .gif or a folder of PNG frames for video
    size: tuple[int, ...] | None = None,   # output (H, W); default: training size x scale
    scale: float | None = None,        # grid density relative to training (2 = superresolution)
    grid: list[Range] | None = None,   # spatial coordinate ranges in axis order (y, x); training range is [0, 1]
    chunk: int = 2**16,                # points per evaluation chunk (bounds memory at any size)
    device: str = "auto",
    index: list[int] | None = None,    # functaset: items to draw (default: the first 16)
    model: Path | None = None,         # functaset: its functa-model, when not embedded
    perturb: int | None = None,        # functaset: latent feature dimension for the perturbation picture
    seeds: list[int] | None = None,    # generator: samples to draw (default 0-15)
    psi: float | None = None,          # generator: truncation (App. B.3), default 1
    interpolate: list[int] | None = None,  # generator: two seeds to interpolate between (Fig. 5)
    steps: int | None = None,          # generator: images in the interpolation row (default 8)
    space: str | None = None,          # generator: interpolate "inr" parameters (default) or "pixel"s
    frequencies: bool = False,         # generator: write the Fourier frequency histogram (Fig. 16)
) -> Path:
    """Draw any INR artifact; options that belong to another kind are refused in one sentence."""
    out = Path(out)
    kind = artifacts.kind_of(artifact)
    options = dict(generator=dict(seeds=seeds, psi=psi, interpolate=interpolate, steps=steps, space=space,
                                  frequencies=frequencies or None),
                   functaset=dict(index=index, model=model, perturb=perturb))
    for owner, given in options.items():
        names = [f"--{k}" for k, v in given.items() if v is not None]
        if names and kind != owner:
            raise InrkitError(f"{', '.join(names)} apply to {owner}s, not to a {kind} artifact.")
    if kind == "generator":
        from inrkit.stages.render_generator import render_generator

        return render_generator(artifact, out, seeds=seeds, psi=1.0 if psi is None else psi, size=size,
                                scale=scale, grid=grid, interpolate=interpolate, steps=8 if steps is None else steps,
                                space=space or "inr", frequencies=frequencies, chunk=chunk, device=device)
    if kind == "functaset":
        from inrkit.stages.render_functa import render_functaset

        return render_functaset(artifact, out, index=index, size=size, scale=scale, grid=grid, model=model,
                                perturb=perturb, chunk=min(chunk, 2**14), device=device)
    if kind != "field":
        raise InrkitError(f"{artifact} is a {kind} artifact; `render` draws field, functaset and generator "
                          "artifacts.")
    return _render_field(artifact, out, size, scale, grid, chunk, device)


def _render_field(artifact: Path, out: Path, size, scale, grid, chunk: int, device: str) -> Path:
    """A field on the requested grid: a PNG for images; a GIF or a folder of PNG frames for video."""
    field = artifacts.load(artifact, kind="field")
    base = tuple(field.signal["shape"])
    video = field.signal.get("video", False)
    if not video and out.suffix.lower() != ".png":
        raise InrkitError(f"--out {out} should end in .png for an image field.")
    shape = output_shape(base, size, scale, grid)
    ranges = ([(0.0, 1.0)] if video else []) + list(grid) if grid else None
    dev = pick_device(device)
    start = time.perf_counter()
    values = evaluate(field.to(dev), shape, ranges, chunk=chunk, device=dev).clamp(0, 1)
    seconds = time.perf_counter() - start
    if not video:
        save_png(out, values)
    elif out.suffix.lower() == ".gif":
        save_gif(out, values)
    else:
        for t, frame in enumerate(values):
            save_png(out / f"frame_{t:04d}.png", frame)
    print0(f"rendered {'x'.join(map(str, shape))} in {seconds:.2f} s -> {out}")
    return out
