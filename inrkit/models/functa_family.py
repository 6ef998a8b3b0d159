"""The spatial functa family (Bauer et al. 2023): the meta-learned model (kind `functa-model`) and the latents it
encodes images to (kind `functaset`), with `inrkit render`'s pictures of a functaset: reconstructions on any
grid, and the perturbation analysis of App. C.5 (Fig. 12).

A functaset holds latents (N, s, s, c), labels (N,) and psnr (N,); unless told otherwise it embeds its model's
tensors under `model.` (MODEL_PREFIX), so it renders with no other file; its config names the model's config and
sha256 either way (inrkit.stages.encode writes it). With perturb=DIM the picture shows, for each item, the
reconstruction (top row), the reconstruction after adding `strength` to latent feature DIM at every spatial
location (middle row), and their difference (bottom row, mid-grey = no change, scaled so the largest change over
the picture reaches black or white). The difference repeats with the patch size d/s for spatial functa and
spreads over the whole image for flat functa (App. B.3, C.5). Registered in inrkit.models.registry.FAMILIES.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from inrkit.core import artifacts
from inrkit.core.checks import require_suffix
from inrkit.core.errors import InrkitError
from inrkit.core.pictures import image_grid, save_png
from inrkit.core.precision import compile_module
from inrkit.core.runtime import pick_device, print0
from inrkit.fields.grid import Range, output_shape
from inrkit.models.functa import SpatialFuncta, build_functa
from inrkit.models.validate import check_functa_config, check_functaset

MODEL_KIND = "functa-model"
SET_KIND = "functaset"
MODEL_PREFIX = "model."  # embedded model tensors in a functaset
RENDER_OPTIONS = ("index", "model", "perturb")
DEFAULT_ITEMS = 16  # items drawn when no index is given
MAX_CHUNK = 2**14  # points per evaluation chunk at most: (B, chunk, width) activations per layer


@dataclass
class Functaset:
    """A functaset rebuilt: its model (eval mode) and latents (N, s, s, c), labels (N,), psnr (N,) on the CPU."""

    model: SpatialFuncta
    latents: torch.Tensor
    labels: torch.Tensor | None = None
    psnr: torch.Tensor | None = None


def build_model(art: artifacts.Artifact, path: str | Path, device: torch.device | str = "cpu") -> SpatialFuncta:
    """A functa-model artifact (weights and Meta-SGD rates), in eval mode on `device`."""
    if "model" not in art.config:
        raise InrkitError(f"{path} has no model config in its metadata; the file is damaged or foreign.")
    check_functa_config(art.config["model"], sum(t.numel() for t in art.tensors.values()), path)  # before allocating
    return artifacts.load_state(build_functa(art.config["model"]), art, path).to(device).eval()


def build(art: artifacts.Artifact, path: str | Path, device: torch.device | str = "cpu"):
    """The object either kind holds: the SpatialFuncta of a functa-model, the Functaset of a functaset."""
    if art.kind == MODEL_KIND:
        return build_model(art, path, device)
    if "latents" not in art.tensors:
        raise InrkitError(f"{path} holds no latents; the file is damaged or foreign.")
    check_functaset(art.config, art.tensors, MODEL_PREFIX, path)
    return Functaset(functaset_model(art, path, None, device), art.tensors["latents"], art.tensors.get("labels"),
                     art.tensors.get("psnr"))


def functaset_model(art: artifacts.Artifact, path: str | Path, model: str | Path | None,
                    device: torch.device | str, *, kind: str = MODEL_KIND, load: Callable = build_model,
                    make: Callable = build_functa) -> SpatialFuncta:
    """The functaset's model: the one named (checked against the functaset), else the embedded one, else the
    file the functaset records. `kind`, `load` (art, path, device -> model) and `make` (config -> module) are
    spatial functa's; the GINR family's token functasets pass their own."""
    config, sha = art.config.get("model"), art.config.get("model_sha256", "")
    if config is None:
        raise InrkitError(f"{path} has no model config in its metadata; the file is damaged or foreign.")
    if model is not None:
        if not Path(model).is_file():
            raise InrkitError(f"the model {model} named for {path} does not exist.")
        net = load(artifacts.read(model, kind=kind), model, device)
        if net.config != config or (sha and artifacts.sha256(model) != sha):
            raise InrkitError(f"{model} is not the model {path} was encoded with (its config or sha256 differs).")
        return net
    embedded = {k[len(MODEL_PREFIX):]: v for k, v in art.tensors.items() if k.startswith(MODEL_PREFIX)}
    if embedded:
        net = make(config)
        artifacts.load_state(net, artifacts.Artifact(kind=art.kind, tensors=embedded, config=config), path)
        return net.to(device).eval()
    recorded = art.config.get("model_path", "")
    if not recorded or not Path(recorded).is_file():
        raise InrkitError(f"the model of {path} ({recorded or 'unrecorded'}) is missing and the functaset does "
                          "not embed one; name it with --model.")
    return functaset_model(art, path, recorded, device, kind=kind, load=load, make=make)


@torch.no_grad()
def render_codes(net: SpatialFuncta | Functaset, latents: torch.Tensor, shape: tuple[int, int],
                 ranges: list[Range] | None = None, chunk: int = MAX_CHUNK) -> torch.Tensor:
    """The render interface: latents (B, s, s, c) on the (H, W) pixel-centre grid -> (B, H, W, C) in [0, 1]
    (the SIREN output + 0.5, unclamped), `chunk` points at a time; float32, also from a bf16 autocast."""
    net = net.model if isinstance(net, Functaset) else net
    return net.render(latents, shape, ranges, chunk).float()


def perturbation(net: SpatialFuncta, latents: torch.Tensor, dim: int, strength: float, shape, ranges,
                 chunk: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """App. C.5: add `strength` to feature `dim` at every one of the s x s locations.
    Returns (original, perturbed, difference), each (n, H, W, C); the images are clamped to [0, 1]."""
    shifted = latents.clone()
    shifted[..., dim] += strength
    original = render_codes(net, latents, shape, ranges, chunk).clamp(0, 1)
    perturbed = render_codes(net, shifted, shape, ranges, chunk).clamp(0, 1)
    return original, perturbed, perturbed - original


def chosen_items(latents: torch.Tensor, index: list[int] | None, path) -> list[int]:
    index = list(range(min(DEFAULT_ITEMS, len(latents)))) if index is None else index
    if not index:
        raise InrkitError(f"{path} holds no items to render.")
    bad = [i for i in index if not 0 <= i < len(latents)]
    if bad:
        raise InrkitError(f"--index {bad[0]} is outside {path}, which holds items 0-{len(latents) - 1}.")
    return index


def render(art: artifacts.Artifact, path: str | Path, out: str | Path, *, size: tuple[int, ...] | None = None,
           scale: float | None = None, grid: list[Range] | None = None, chunk: int = MAX_CHUNK,
           device: str = "auto", index: list[int] | None = None, model: str | Path | None = None,
           perturb: int | None = None, strength: float | None = None, columns: int = 8,
           compile: bool = False) -> Path:
    """`inrkit render` of a functaset: the items `index` (default: the first 16) side by side in rows of
    `columns`, or their perturbation analysis (perturb=DIM, one row each); `model` names its functa-model file
    when it does not embed one (default: the embedded one, else the file it records); `compile` compiles the
    model's forward."""
    out = require_suffix(out, ".png")
    if "latents" not in art.tensors:
        raise InrkitError(f"{path} holds no latents; the file is damaged or foreign.")
    check_functaset(art.config, art.tensors, MODEL_PREFIX, path)
    latents = art.tensors["latents"]
    index = chosen_items(latents, index, path)
    dev = pick_device(device)
    net = compile_module(functaset_model(art, path, model, dev), dev, compile)
    shape = output_shape((net.resolution, net.resolution), size, scale, grid)
    chosen, chunk = latents[index].to(dev), min(chunk, MAX_CHUNK)
    start = time.perf_counter()
    if perturb is None:
        picture = image_grid(render_codes(net, chosen, shape, grid, chunk).clamp(0, 1), columns)
    else:
        picture = _perturbation_picture(net, latents, chosen, perturb, strength, shape, grid, chunk)
    save_png(out, picture)
    print0(f"rendered {len(index)} items at {shape[0]}x{shape[1]} in {time.perf_counter() - start:.2f} s -> {out}")
    return out


def _perturbation_picture(net: SpatialFuncta, latents, chosen, dim: int, strength: float | None, shape, grid,
                          chunk: int) -> torch.Tensor:
    """Rows: reconstructions, perturbed reconstructions, signed differences (grey = 0), 4 white pixels apart."""
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
    rows = torch.cat([original, perturbed, (0.5 + gain * diff).clamp(0, 1)])
    return image_grid(rows, len(chosen), gap=(4, 2))
