"""`inrkit render`: evaluate a stored INR on any grid: any size, denser (--scale) or wider (--grid).

The artifact's kind picks its family (inrkit.models.registry), whose renderer draws it; options that belong to
another family are refused in one sentence. `precision` (inrkit.core.precision) puts the whole renderer under
its autocast, whatever the family; `compile` is passed to the families whose renderer takes it.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from inrkit.core import artifacts
from inrkit.core.checks import flag, require_writable
from inrkit.core.errors import InrkitError
from inrkit.core.precision import resolve_precision
from inrkit.core.runtime import pick_device
from inrkit.fields.grid import Range
from inrkit.models import registry


def render(
    artifact: Path,                    # a field, functaset or generator artifact
    out: Path,                         # .png for images; .gif or a folder of PNG frames for video
    size: tuple[int, ...] | None = None,   # output (H, W); default: training size x scale
    scale: float | None = None,        # grid density relative to training (2 = superresolution)
    fps_scale: int | None = None,      # video field: K times as many frames, the in-between times (default 1)
    grid: list[Range] | None = None,   # spatial coordinate ranges in axis order (y, x); training range is [0, 1]
    chunk: int = 2**16,                # points per evaluation chunk (bounds memory at any size)
    device: str = "auto",
    index: list[int] | None = None,    # functaset: items to draw (default: the first 16)
    model: Path | None = None,         # functaset: its functa-model, when not embedded
    perturb: int | None = None,        # functaset: latent feature dimension for the perturbation picture
    locality: int | None = None,       # GINR token functaset: the token of the locality picture (Sec. 4.3)
    seeds: list[int] | None = None,    # generator: samples to draw (default 0-15)
    psi: float | None = None,          # generator: truncation (App. B.3), default 1
    interpolate: list[int] | None = None,  # generator: two seeds to interpolate between (Fig. 5)
    steps: int | None = None,          # generator: images in the interpolation row (default 8)
    space: str | None = None,          # generator: interpolate "inr" parameters (default) or "pixel"s
    frequencies: bool = False,         # generator: write the Fourier frequency histogram (Fig. 16)
    label: int | None = None,          # diffusion: the class to sample (conditional models)
    cfg: float | None = None,          # diffusion: classifier-free guidance scale
    sampler: str | None = None,        # diffusion: ddpm (default, all T steps) | ddim
    eta: float | None = None,          # diffusion: DDIM eta (default 0)
    save_latents: Path | None = None,  # diffusion: also write the sampled latents as a functaset
    precision: str = "auto",           # auto | fp32 | bf16 | tf32 (inrkit.core.precision)
    compile: bool = False,             # torch.compile the model's forward
) -> Path:
    """Draw any INR artifact through its family's renderer; return the path written."""
    if fps_scale is not None and (type(fps_scale) is not int or fps_scale < 1):  # a bool is no frame count
        raise InrkitError(f"--fps-scale must be a whole number of at least 1, got {fps_scale}.")
    options = dict(fps_scale=fps_scale, index=index, model=model, perturb=perturb, locality=locality, seeds=seeds,
                   psi=psi,
                   interpolate=interpolate, steps=steps, space=space, frequencies=frequencies or None, label=label,
                   cfg=cfg, sampler=sampler, eta=eta, save_latents=save_latents)
    options = {k: v for k, v in options.items() if v is not None}  # not given: the family's default
    require_writable(out, folder=not Path(out).suffix)  # a video's frames go to a folder
    kind = artifacts.kind_of(artifact)
    family = _renderer(kind, artifact, options)
    art = artifacts.read(artifact, kind)
    if compile:
        if "compile" not in inspect.signature(family.render).parameters:
            raise InrkitError(f"--compile is not available for {kind} artifacts; render without it.")
        options["compile"] = True
    with resolve_precision(precision, pick_device(device)).autocast():
        return family.render(art, Path(artifact), Path(out), size=size, scale=scale, grid=grid, chunk=chunk,
                             device=device, **options)


def _renderer(kind: str, artifact: Path, options: dict) -> registry.Family:
    """The family that draws `kind`, after refusing options that belong to another family."""
    own = {k for f in registry.FAMILIES if kind in f.render_kinds for k in f.render_options}
    for family in registry.FAMILIES:
        names = [flag(k) for k in family.render_options if k in options and k not in own]
        if names and kind not in family.render_kinds:
            owners = " and ".join(f"{k}s" for k in family.render_kinds)
            raise InrkitError(f"{', '.join(names)} apply to {owners}, not to a {kind} artifact.")
    drawn = registry.known_kinds(lambda f: f.render_kinds)
    if kind not in drawn:
        raise InrkitError(f"{artifact} is a {kind} artifact; `render` draws {', '.join(drawn[:-1])} and "
                          f"{drawn[-1]} artifacts.")
    return registry.family_of(kind, artifact)
