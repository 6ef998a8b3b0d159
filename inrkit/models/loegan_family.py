"""The LoE-GAN family (kind `loe-generator`: Levels-of-Experts supp. E, `loe-gan` and its `pe-ce` baseline):
rebuilding a generator, the render interface and its source of samples for FID.

An artifact holds `config["generator"]` (the keyword arguments of inrkit.models.loegan.generator_config) and the
model's state dict. The family's codes are the noise vectors z themselves (the INR is f(., z); there is no
hypernetwork and no w space, hence no truncation). Sample k draws z from inrkit.models.sampling.sample_latents
and is rendered on its own, so an image depends on its seed and index only. Registered in
inrkit.models.registry.FAMILIES. Not yet wired: `inrkit render`'s pictures and `train-gan --arch loe-gan`
(/tmp/helperC-plan.md, issue 14).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from inrkit.core import artifacts
from inrkit.core.checks import Value, check_config
from inrkit.core.errors import InrkitError
from inrkit.fields.grid import Range
from inrkit.models.loegan import ARCHS, LoeGanGenerator, count_params, generator_config
from inrkit.models.sampling import Sampler, quantize, sample_latents

KIND = "loe-generator"
GRID_BUFFERS = 2 * 2 + 2  # each LoE layer stores its grid transform A (2x2) and b (2) with the weights
SIDE, WIDTH = Value(int, 1, 2**14), Value(int, 1, 2**14)  # far above any real model, as inrkit.models.validate
GENERATOR = dict(  # a rule for every keyword of loegan.generator_config
    arch=Value(str, choices=ARCHS), resolution=SIDE, z_dim=WIDTH, width=WIDTH, hidden=WIDTH,
    frequencies=Value(int, 1, 64), tiles=Value(list, 1, 64, items=Value(int, 2, 2**8)),
    grid_resolutions=Value(list, 1, 64, items=Value(int, 1, 2**20)), embedding_channels=WIDTH,
    embedding_size=SIDE, out_channels=Value(int, 1, 4),
)


def stored_elements(cfg: dict) -> int:
    """Elements of the state dict a config implies: the parameters and the LoE layers' grid transforms."""
    return count_params(cfg)["total"] + (GRID_BUFFERS * len(cfg["tiles"]) if cfg["arch"] == "loe-gan" else 0)


def checked_config(config, held: int, path: str | Path) -> dict:
    """The resolved config if every value is of its type and range and it implies exactly the `held` stored
    elements (so a crafted config cannot ask for more memory than the file holds); otherwise one sentence."""
    check_config(config, GENERATOR, path, "LoE-GAN generator config")
    try:
        cfg = generator_config(**config)
    except InrkitError as err:
        raise InrkitError(f"{path} has a LoE-GAN generator config that does not build ({err}); the file is "
                          "damaged or foreign.") from None
    if stored_elements(cfg) != held:
        raise InrkitError(f"{path} holds {held:,} tensor elements but its LoE-GAN config implies "
                          f"{stored_elements(cfg):,}; the file is damaged or foreign.")
    return cfg


def build(art: artifacts.Artifact, path: str | Path, device: torch.device | str = "cpu") -> LoeGanGenerator:
    """The generator an artifact holds, in eval mode on `device`."""
    config = art.config.get("generator")
    if not isinstance(config, dict):
        raise InrkitError(f"{path} is a {KIND} artifact without its generator config; the file is damaged or "
                          "foreign.")
    cfg = checked_config(config, sum(t.numel() for t in art.tensors.values()), path)
    return artifacts.load_state(LoeGanGenerator(cfg), art, path).to(device).eval()


def render_codes(G: LoeGanGenerator, z: torch.Tensor, shape: tuple[int, int], ranges: list[Range] | None = None,
                 chunk: int | None = None) -> torch.Tensor:
    """The render interface: noise vectors z (B, z_dim) on the pixel-centre grid of `shape` over `ranges` ->
    (B, H, W, C) in [0, 1] (unclamped), float32 also from a bf16 autocast."""
    return (G.render(z, shape, ranges, chunk).float() + 1) / 2


def sampler(G: LoeGanGenerator, *, seed: int, psi: float = 1.0, estimate: bool = True) -> Sampler:
    """G's samples for FID: sample k from sample_latents(z_dim, k, 1, seed), each rendered alone (batch 1, so the
    numbers never depend on which other samples were drawn with it)."""
    if not math.isclose(psi, 1.0):
        raise InrkitError(f"--psi {psi:g}: a LoE-GAN generator has no w space to truncate in (supp. E); use psi 1.")
    device = G.first.weight.device

    @torch.no_grad()
    def draw(start: int, count: int, side: int | None) -> torch.Tensor:
        side = side or G.config["resolution"]
        z = sample_latents(G.config["z_dim"], start, count, seed).to(device)
        images = [quantize(render_codes(G, z[k : k + 1], (side, side))) for k in range(count)]
        return torch.cat(images).permute(0, 3, 1, 2).cpu()

    return Sampler(G.config["resolution"], G.config["out_channels"], draw)
