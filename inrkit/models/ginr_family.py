"""The locality-aware generalizable INR family (Lee et al. 2023): the trained encoder + decoder (kind
`ginr-model`, written by `inrkit meta --arch ginr`) and the latent tokens it encodes images to (kind
`ginr-functaset`, a token functaset: `inrkit encode GINR_MODEL` and meta's final sets), rebuilt through the
registry and rendered through its one interface: latent tokens (B, R, d) evaluated on any pixel-centre grid.

A token functaset is laid out as a spatial functaset (inrkit.models.functa_family), so the tools that read
functasets' records read it the same way (`inrkit info` shows its model and checks its sha256): latents (N, R, d)
floats, labels (N,) (-1 when unlabelled), psnr (N,) of each one-pass reconstruction, the model's tensors embedded
under `model.` unless told otherwise, and a config naming the model's config, path and sha256. It is a kind of its
own because its latents are a set of tokens, not an (s, s, c) grid, and its model is no functa-model: the tools
built on spatial functa latents (train-classifier, train-diffusion, classify) refuse it by kind in one sentence
instead of misreading it.

`inrkit render TOKEN_FUNCTASET` draws its items on any grid; with locality=K it draws Sec. 4.3's locality
analysis instead (locality_maps). Registered in inrkit.models.registry.FAMILIES.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from inrkit.core import artifacts
from inrkit.core.checks import Value, check_config, require_suffix
from inrkit.core.errors import InrkitError
from inrkit.core.pictures import image_grid, save_png
from inrkit.core.precision import compile_module
from inrkit.core.runtime import pick_device, print0
from inrkit.fields.grid import Range, grid_points, output_shape
from inrkit.models.functa_family import MODEL_PREFIX, chosen_items, functaset_model
from inrkit.models.ginr import LocalityAwareINR

MODEL_KIND = "ginr-model"
SET_KIND = "ginr-functaset"
RENDER_OPTIONS = ("index", "model", "locality")
MAX_CHUNK = 2**14  # points per evaluation chunk at most: the (B, heads, chunk, R) attention is the large term

SIZE = Value(int, 1, 2**14)
GINR = dict(arch=Value(str, choices=("ginr",)), resolution=Value(list, 2, 2, items=SIZE),
            channels=Value(int, 1, 4), patch=SIZE, tokens=SIZE, width=SIZE, depth=Value(int, 1, 1024), heads=SIZE,
            dim=SIZE, features=SIZE, sigmas=Value(list, 1, 64, items=Value(float, 1, 1e6)),
            sigma_q=Value(float, 1, 1e6), decoder_heads=SIZE, selective=Value(bool), multiband=Value(bool))


def parameter_count(config: dict) -> int:
    """Stored values of the model a config builds, counted on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        return sum(t.numel() for t in LocalityAwareINR(config).state_dict().values())


def check_ginr_config(config, held: int, path: str | Path) -> dict:
    """A GINR model config (types, ranges, the model's own checks) that builds exactly `held` stored values."""
    check_config(config, GINR, path, "GINR model config")
    try:
        expected = parameter_count(config)
    except InrkitError as err:
        raise InrkitError(f"{path} has a GINR model config its model refuses ({str(err).rstrip('.')}); the file is "
                          "damaged or foreign.") from None
    if expected != held:
        raise InrkitError(f"{path} has a GINR model config that needs {expected:,} stored values but the file holds "
                          f"{held:,}; the file is damaged or foreign.")
    return config


@dataclass
class TokenFunctaset:
    """A token functaset rebuilt: its model (eval mode) and latents (N, R, d), labels (N,), psnr (N,) on the CPU."""

    model: LocalityAwareINR
    latents: torch.Tensor
    labels: torch.Tensor | None = None
    psnr: torch.Tensor | None = None


def build_model(art: artifacts.Artifact, path: str | Path, device: torch.device | str = "cpu") -> LocalityAwareINR:
    """A ginr-model artifact as its LocalityAwareINR, in eval mode on `device`."""
    if "model" not in art.config:
        raise InrkitError(f"{path} has no model config in its metadata; the file is damaged or foreign.")
    check_ginr_config(art.config["model"], sum(t.numel() for t in art.tensors.values()), path)
    return artifacts.load_state(LocalityAwareINR(art.config["model"]), art, path).to(device).eval()


def build(art: artifacts.Artifact, path: str | Path, device: torch.device | str = "cpu"):
    """The object either kind holds: the LocalityAwareINR of a ginr-model, the TokenFunctaset of a ginr-functaset."""
    if art.kind == MODEL_KIND:
        return build_model(art, path, device)
    check_token_functaset(art.config, art.tensors, path)
    return TokenFunctaset(token_model(art, path, None, device), art.tensors["latents"], art.tensors.get("labels"),
                          art.tensors.get("psnr"))


def check_token_functaset(config: dict, tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """A token functaset's model config, its embedded model (when any: exactly the size its config builds), its
    latents (N, R, d) floats with the model's R and d, and labels and psnr (N,)."""
    model = check_config(config.get("model"), GINR, path, "GINR model config")
    embedded = sum(t.numel() for k, t in tensors.items() if k.startswith(MODEL_PREFIX))
    if embedded:
        check_ginr_config(model, embedded, path)
    check_config({k: config.get(k) for k in ("model_path", "model_sha256")},
                 dict(model_path=Value(str, optional=True), model_sha256=Value(str, optional=True)), path)
    latents, shape = tensors.get("latents"), (model["tokens"], model["dim"])
    if latents is None or not latents.is_floating_point() or tuple(latents.shape[1:]) != shape:
        raise InrkitError(f"{path} has no latent tokens of shape (N, {shape[0]}, {shape[1]}) in floats; the file is "
                          "damaged or foreign.")
    for name in ("labels", "psnr"):
        if name in tensors and tuple(tensors[name].shape) != (len(latents),):
            raise InrkitError(f"{path} has {name} that do not match its {len(latents)} latents; the file is damaged "
                              "or foreign.")


def token_model(art: artifacts.Artifact, path: str | Path, model: str | Path | None,
                device: torch.device | str) -> LocalityAwareINR:
    """The token functaset's GINR model: the ginr-model file named (checked against the set), else the embedded
    one, else the file the set records (functa_family.functaset_model, with this family's kind)."""
    return functaset_model(art, path, model, device, kind=MODEL_KIND, load=build_model, make=LocalityAwareINR)


@torch.no_grad()
def render_codes(net: LocalityAwareINR | TokenFunctaset, tokens: torch.Tensor, shape: tuple[int, int],
                 ranges: list[Range] | None = None, chunk: int = MAX_CHUNK) -> torch.Tensor:
    """The render interface: tokens (B, R, d) on the (H, W) pixel-centre grid -> (B, H, W, C) in [0, 1]
    (unclamped), `chunk` points at a time; float32, also from a bf16 autocast."""
    net = net.model if isinstance(net, TokenFunctaset) else net
    return net.render(tokens, shape, ranges, min(chunk, MAX_CHUNK)).float()


def render(art: artifacts.Artifact, path: str | Path, out: str | Path, *, size: tuple[int, ...] | None = None,
           scale: float | None = None, grid: list[Range] | None = None, chunk: int = MAX_CHUNK,
           device: str = "auto", index: list[int] | None = None, model: str | Path | None = None,
           locality: int | None = None, columns: int = 8, compile: bool = False) -> Path:
    """`inrkit render` of a token functaset: the items `index` (default: the first 16) side by side in rows of
    `columns` on any grid, or their locality picture for token `locality` (locality_picture, one row each);
    `model` names its ginr-model file when it does not embed one; `compile` compiles the model's forward."""
    out = require_suffix(out, ".png")
    check_token_functaset(art.config, art.tensors, path)
    latents = art.tensors["latents"]
    index = chosen_items(latents, index, path)
    dev = pick_device(device)
    net = compile_module(token_model(art, path, model, dev), dev, compile)
    shape = output_shape(net.resolution, size, scale, grid)
    chosen, chunk, start = latents[index].to(dev), min(chunk, MAX_CHUNK), time.perf_counter()
    if locality is None:
        picture = image_grid(render_codes(net, chosen, shape, grid, chunk).clamp(0, 1), columns)
    else:
        picture = locality_picture(net, chosen, locality, shape, grid, chunk)
    save_png(out, picture)
    print0(f"rendered {len(index)} items at {shape[0]}x{shape[1]} in {time.perf_counter() - start:.2f} s -> {out}")
    return out


# ---- the locality analysis (Sec. 4.3)

@torch.no_grad()
def locality_maps(net: LocalityAwareINR, tokens: torch.Tensor, token: int, shape: tuple[int, int],
                  ranges: list[Range] | None = None, chunk: int = MAX_CHUNK) -> dict[str, torch.Tensor]:
    """Where each latent token acts, for tokens (B, R, d) on the (H, W) grid, from the decoder's selective token
    aggregation (Eq. 5) with its attention averaged over the heads:
      nearest (B, H, W)    the token each pixel attends to most;
      attention (B, H, W)  each pixel's attention to `token` (in [0, 1]; over all tokens it sums to 1);
      spread (B, R)        each token's spatial spread: the root mean square distance of the pixels from their
                           centre, weighted by their attention to it, in coordinates (the image's side is 1;
                           uniform attention over the image: sqrt(1/6) = 0.41; a compact region: far less);
      zeroed (B, H, W, C)  the change of the output when `token` is replaced by zeros (Fig. 5's analysis).
    A decoder without selective token aggregation (selective=False, IPC's composer) has only `zeroed`."""
    if not 0 <= token < tokens.shape[1]:
        raise InrkitError(f"--locality {token} is not a latent token; these latents have tokens "
                          f"0-{tokens.shape[1] - 1}.")
    blank = tokens.clone()
    blank[:, token] = 0
    maps = dict(zeroed=render_codes(net, blank, shape, ranges, chunk) - render_codes(net, tokens, shape, ranges, chunk))
    if not net.config["selective"]:
        return maps
    total, b = shape[0] * shape[1], tokens.shape[0]
    nearest, attention, moments = [], [], torch.zeros(b, tokens.shape[1], 4, dtype=torch.float64, device=tokens.device)
    for a in range(0, total, chunk):
        coords = grid_points(shape, ranges, a, min(a + chunk, total)).to(tokens.device)
        weights = net.decoder.attention(tokens, coords).float().mean(dim=1)  # (B, n, R), averaged over heads
        nearest.append(weights.argmax(dim=-1))
        attention.append(weights[..., token])
        v = coords.double()
        terms = torch.stack([torch.ones_like(v[:, 0]), v[:, 0], v[:, 1], (v * v).sum(-1)], dim=-1)  # (n, 4)
        moments += weights.double().transpose(1, 2) @ terms  # sums of w, w y, w x, w |v|^2 per token
    mass = moments[..., 0].clamp_min(1e-30)
    centre = moments[..., 1:3] / mass[..., None]
    spread = (moments[..., 3] / mass - (centre * centre).sum(-1)).clamp_min(0).sqrt()
    maps.update(nearest=torch.cat(nearest, 1).view(b, *shape), attention=torch.cat(attention, 1).view(b, *shape),
                spread=spread.float())
    return maps


def token_colours(count: int) -> torch.Tensor:
    """(count, 3) distinct colours in [0, 1]: hues a golden angle apart, in three brightnesses, so that
    neighbouring token numbers differ."""
    k = torch.arange(count, dtype=torch.float64)
    hue, value = (k * 0.6180339887) % 1.0, 1.0 - 0.25 * (k % 3)
    n = torch.tensor([5.0, 3.0, 1.0], dtype=torch.float64)  # HSV -> RGB at saturation 0.85
    ramp = (n + hue[:, None] * 6) % 6
    return (value[:, None] * (1 - 0.85 * torch.minimum(ramp, 4 - ramp).clamp(0, 1))).float()


def locality_picture(net: LocalityAwareINR, tokens: torch.Tensor, token: int, shape: tuple[int, int],
                     ranges: list[Range] | None, chunk: int) -> torch.Tensor:
    """One row per item: the reconstruction; each pixel coloured by the token it attends to most
    (token_colours); its attention to `token` (black 0, white the item's largest); and the change when `token`
    is zeroed (Fig. 5; mid-grey no change, scaled so the largest change over the picture reaches black or white).
    Without selective token aggregation only the first and last. Prints how compact the tokens' regions are."""
    maps = locality_maps(net, tokens, token, shape, ranges, chunk)
    rgb = lambda x: x if x.shape[-1] == 3 else x.mean(-1, keepdim=True).expand(*x.shape[:-1], 3)  # noqa: E731
    recon, diff = rgb(render_codes(net, tokens, shape, ranges, chunk).clamp(0, 1)), rgb(maps["zeroed"])
    gain = 0.5 / max(diff.abs().max().item(), 1e-8)
    panels = [recon]
    if "nearest" in maps:
        heat = maps["attention"] / maps["attention"].flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
        panels += [token_colours(tokens.shape[1]).to(tokens.device)[maps["nearest"]], heat[..., None].expand_as(recon)]
        used = [len(torch.unique(n)) for n in maps["nearest"]]
        print0(f"token {token}: spread {maps['spread'][:, token].mean():.3f} (all tokens: mean "
               f"{maps['spread'].mean():.3f}; uniform attention: {math.sqrt(1 / 6):.3f}); tokens some pixel attends "
               f"to most: {sum(used) / len(used):.1f} of {tokens.shape[1]} per item")
    panels.append((0.5 + gain * diff).clamp(0, 1))
    print0(f"zeroing token {token}: RMSE {diff.pow(2).mean().sqrt().item():.4f} (difference scaled x{gain:.3g})")
    rows = torch.stack(panels, dim=1).flatten(0, 1)  # item-major: the panels of item 0, then item 1, ...
    return image_grid(rows, len(panels), gap=(2, 4))
