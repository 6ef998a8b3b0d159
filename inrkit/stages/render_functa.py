"""Rendering functasets: reconstructions on any grid, and the perturbation analysis of App. C.5 (Fig. 12).

`render_functaset` draws the chosen items side by side (rows of `columns`). With `perturb=DIM` it draws,
for each item, the reconstruction (top row), the reconstruction after adding `strength` to latent feature
DIM at every spatial location (middle row), and their difference (bottom row, mid-grey = no change, scaled
so the largest change over the picture reaches black or white). The difference repeats with the patch
size d/s for spatial functa and spreads over the whole image for flat functa (App. B.3, C.5).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from inrkit.core import artifacts
from inrkit.core.errors import InrkitError
from inrkit.core.pictures import save_png
from inrkit.core.runtime import pick_device, print0
from inrkit.fields.grid import Range
from inrkit.models.functa import SpatialFuncta, build_functa
from inrkit.stages.encode import MODEL_PREFIX, load_model
from inrkit.stages.render import output_shape

DEFAULT_ITEMS = 16  # items drawn when no index is given




def functaset_model(art: artifacts.Artifact, path: str | Path, model: str | Path | None,
                    device: torch.device) -> SpatialFuncta:
    """The functaset's model: the one named (checked against the functaset), else the embedded one, else the
    file the functaset records."""
    config, sha = art.config.get("model"), art.config.get("model_sha256", "")
    if config is None:
        raise InrkitError(f"{path} has no model config in its metadata; the file is damaged or foreign.")
    if model is not None:
        if not Path(model).is_file():
            raise InrkitError(f"the model {model} named for {path} does not exist.")
        net = load_model(model, device)
        if net.config != config or (sha and artifacts.sha256(model) != sha):
            raise InrkitError(f"{model} is not the model {path} was encoded with (its config or sha256 differs).")
        return net
    embedded = {k[len(MODEL_PREFIX):]: v for k, v in art.tensors.items() if k.startswith(MODEL_PREFIX)}
    if embedded:
        net = build_functa(config)
        artifacts.load_state(net, artifacts.Artifact(kind="functaset", tensors=embedded, config=config), path)
        return net.to(device).eval()
    recorded = art.config.get("model_path", "")
    if not recorded or not Path(recorded).is_file():
        raise InrkitError(f"the model of {path} ({recorded or 'unrecorded'}) is missing and the functaset does "
                          "not embed one; name it with --model.")
    return functaset_model(art, path, recorded, device)


def tile(images: torch.Tensor, columns: int, gap: int = 2) -> torch.Tensor:
    """(n, H, W, C) in [0, 1] -> one (rows*H + gaps, columns*W + gaps, C) picture on white, row-major."""
    n, h, w, c = images.shape
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    sheet = torch.ones(rows * (h + gap) - gap, columns * (w + gap) - gap, c)
    for k, image in enumerate(images):
        r, q = divmod(k, columns)
        sheet[r * (h + gap) : r * (h + gap) + h, q * (w + gap) : q * (w + gap) + w] = image.cpu()
    return sheet


def perturbation(net: SpatialFuncta, latents: torch.Tensor, dim: int, strength: float, shape, ranges,
                 chunk: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """App. C.5: add `strength` to feature `dim` at every one of the s x s locations.
    Returns (original, perturbed, difference), each (n, H, W, C); the images are clamped to [0, 1]."""
    shifted = latents.clone()
    shifted[..., dim] += strength
    original = net.render(latents, shape, ranges, chunk).clamp(0, 1)
    perturbed = net.render(shifted, shape, ranges, chunk).clamp(0, 1)
    return original, perturbed, perturbed - original


def render_functaset(
    artifact: Path,                    # a functaset artifact written by `inrkit encode` or `inrkit meta`
    out: Path,                         # .png: the items side by side
    index: list[int] | None = None,    # items to draw (default: the first 16)
    size: tuple[int, ...] | None = None,   # output (H, W) per item; default: training size x scale
    scale: float | None = None,        # grid density relative to training (2 = superresolution)
    grid: list[Range] | None = None,   # coordinate ranges in axis order (y, x); training range is [0, 1]
    model: Path | None = None,         # the functa-model; default: the embedded one (or the recorded file)
    perturb: int | None = None,        # latent feature dimension to perturb (App. C.5, Fig. 12)
    strength: float | None = None,     # added to that dimension everywhere; default 2 std of it over the set
    columns: int = 8,                  # items per row (reconstructions; perturbation pictures use one row)
    chunk: int = 2**14,                # points per evaluation chunk (bounds memory)
    device: str = "auto",
) -> Path:
    """Draw reconstructions (or the perturbation analysis) of functaset items; return the PNG path."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise InrkitError(f"--out {out} should end in .png for a functaset.")
    art = artifacts.read(artifact, kind="functaset")
    if "latents" not in art.tensors:
        raise InrkitError(f"{artifact} holds no latents; the file is damaged or foreign.")
    latents = art.tensors["latents"]
    index = list(range(min(DEFAULT_ITEMS, len(latents)))) if index is None else index
    if not index:
        raise InrkitError(f"{artifact} holds no items to render.")
    bad = [i for i in index if not 0 <= i < len(latents)]
    if bad:
        raise InrkitError(f"--index {bad[0]} is outside {artifact}, which holds items 0-{len(latents) - 1}.")
    dev = pick_device(device)
    net = functaset_model(art, artifact, model, dev)
    base = (net.resolution, net.resolution)
    shape = output_shape(base, size, scale, grid)
    chosen = latents[index].to(dev)
    start = time.perf_counter()
    if perturb is None:
        picture = tile(net.render(chosen, shape, grid, chunk).clamp(0, 1), columns)
    else:
        picture = _perturbation_picture(net, latents, chosen, perturb, strength, shape, grid, chunk)
    save_png(out, picture)
    print0(f"rendered {len(index)} items at {shape[0]}x{shape[1]} in {time.perf_counter() - start:.2f} s -> {out}")
    return out


def _perturbation_picture(net: SpatialFuncta, latents, chosen, dim: int, strength: float | None, shape, grid,
                          chunk: int) -> torch.Tensor:
    """Rows: reconstructions, perturbed reconstructions, signed differences (grey = 0)."""
    c = latents.shape[-1]
    if not 0 <= dim < c:
        raise InrkitError(f"--perturb {dim} is not a latent feature dimension; this functaset has 0-{c - 1}.")
    if strength is None:
        strength = 2 * latents[..., dim].float().std().item() if len(latents) > 1 else 0.1
    original, perturbed, diff = perturbation(net, chosen, dim, strength, shape, grid, chunk)
    gain = 0.5 / max(diff.abs().max().item(), 1e-8)
    rmse = diff.pow(2).mean().sqrt().item()
    print0(f"perturbing feature {dim} by {strength:+.4g} at every location: RMSE {rmse:.4f} "
           f"(difference row scaled x{gain:.3g})")
    rows = [tile(x, len(x)) for x in (original, perturbed, (0.5 + gain * diff).clamp(0, 1))]
    spacer = torch.ones(4, rows[0].shape[1], rows[0].shape[2])
    return torch.cat([rows[0], spacer, rows[1], spacer, rows[2]], dim=0)
