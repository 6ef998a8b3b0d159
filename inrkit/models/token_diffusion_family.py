"""The GINR token diffusion family (kind `ginr-diffusion`): a Transformer denoiser (inrkit.models.token_diffusion)
over the R x d latent tokens of one locality-aware GINR model (Lee et al. 2023, Sec. 4.4, App. A.3), sampled
with DDIM or DDPM (classifier-free guided when conditional) and decoded through that GINR decoder on any grid.

Written by `inrkit train-diffusion --arch transformer --data TOKEN_FUNCTASET` (a ginr-functaset). Laid out as the
spatial `diffusion` artifact (inrkit.models.diffusion_family, whose sampling, render and FID code it shares through
DiffusionModel's interface): the denoiser's EMA weights under `denoiser.`, the per-token per-channel statistics
`norm.mu`, `norm.sigma` ((R, d) for the paper's standardisation; (d,) or (1,) for the other kinds), the GINR model
embedded under `ginr.` with its config (`ginr`), the sha256 of the model file the functaset named
(`ginr_sha256`) and of the embedded tensors (`ginr_tensors_sha256`: a changed model is refused), the schedule,
the class names and the default guidance (`guidance`) of `inrkit render` and `inrkit fid`. A kind of its own:
its latents are tokens, not an (s, s, c) grid, and its decoder is no functa model. Registered in
inrkit.models.registry.FAMILIES.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from inrkit.core import artifacts
from inrkit.core.checks import Value, check_config, require_suffix
from inrkit.core.errors import InrkitError
from inrkit.core.runtime import pick_device
from inrkit.models import diffusion as D
from inrkit.models import diffusion_family, ginr_family
from inrkit.models.ginr import LocalityAwareINR
from inrkit.models.token_diffusion import TokenTransformer
from inrkit.models.validate import DIFFUSION, meta_numel

KIND = "ginr-diffusion"
NAME = "ginr"  # the decoder's config key and tensor prefix
RENDER_OPTIONS = diffusion_family.RENDER_OPTIONS
SIZE = Value(int, 1, 2**14)
DENOISER = dict(latent=Value(list, 2, 2, items=SIZE), classes=Value(int, 0, 2**20),
                arch=Value(str, choices=("transformer",)), width=SIZE, depth=Value(int, 0, 1024),
                heads=Value(int, 1, 1024), dropout=Value(float, 0, 1))


@dataclass
class TokenDiffusionModel:
    """A ginr-diffusion artifact rebuilt: denoiser (eval), normaliser, GINR model (eval), how FID samples it."""

    denoiser: D.Denoiser
    normaliser: D.Normaliser
    ginr: LocalityAwareINR
    ginr_sha256: str
    classes: list[str] = field(default_factory=list)
    sampling: dict = field(default_factory=lambda: diffusion_family.sampling_of({}, ""))

    @property
    def latent(self) -> tuple[int, ...]:
        return tuple(self.denoiser.net.config["latent"])

    @property
    def resolution(self) -> tuple[int, int]:
        return tuple(self.ginr.resolution)

    @property
    def channels(self) -> int:
        return self.ginr.config["channels"]

    def decode(self, latents: torch.Tensor, shape: tuple[int, int], ranges=None,
               chunk: int = ginr_family.MAX_CHUNK) -> torch.Tensor:
        """Tokens (B, R, d) through the GINR decoder -> (B, H, W, C) in [0, 1] (unclamped)."""
        return ginr_family.render_codes(self.ginr, latents.to(next(self.ginr.parameters()).device), shape, ranges,
                                        chunk)

    def latents_artifact(self, latents: torch.Tensor, labels: torch.Tensor | None, options: dict):
        """Sampled tokens as a token functaset (the GINR model embedded) that `inrkit render` draws."""
        return diffusion_family.sampled_set(ginr_family.SET_KIND, self.ginr, self.ginr_sha256, self.classes,
                                            latents, labels, options)


def check_artifact(config: dict, tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """Before anything is allocated: the denoiser config (its size as stored under `denoiser.`), the schedule,
    the normalisation (mu and sigma (1,), (d,) or (R, d)), the embedded GINR model (its size, and its R and d
    those of the denoiser) and the records."""
    for key in ("denoiser", "diffusion", "normalisation", NAME, "ginr_sha256", "ginr_tensors_sha256"):
        if key not in config:
            raise InrkitError(f"{path} has no {key} config in its metadata; the file is damaged or foreign.")
    net = check_config(config["denoiser"], DENOISER, path, "denoiser config")
    check_config(config["diffusion"], DIFFUSION, path, "diffusion config", extra=True)
    check_config(config["normalisation"], dict(kind=Value(str), gamma=Value(float, 1e-12, 1e12)), path,
                 "normalisation config", extra=True)
    check_config({k: config.get(k) for k in ("ginr_sha256", "ginr_tensors_sha256", "classes")},
                 dict(ginr_sha256=Value(str), ginr_tensors_sha256=Value(str),
                      classes=Value(list, 0, 2**20, items=Value(str), optional=True)), path)
    held = _held(tensors, NAME + ".")
    damaged = "; the file is damaged or foreign."
    if not held:
        raise InrkitError(f"{path} does not hold the GINR model its latents decode with; retrain it.")
    ginr = ginr_family.check_ginr_config(config[NAME], held, path)
    tokens, dim = net["latent"]
    if (ginr["tokens"], ginr["dim"]) != (tokens, dim):
        raise InrkitError(f"{path} has a denoiser for {tokens}x{dim} tokens but a GINR model of "
                          f"{ginr['tokens']}x{ginr['dim']}{damaged}")
    for name in ("norm.mu", "norm.sigma"):
        t = tensors.get(name)
        if t is None or not t.is_floating_point() or tuple(t.shape) not in ((1,), (dim,), (tokens, dim)):
            raise InrkitError(f"{path} has no {name} of shape (1,), ({dim},) or ({tokens}, {dim}) in floats{damaged}")
    expected = meta_numel(lambda: TokenTransformer(net), path, "denoiser")
    if expected != _held(tensors, diffusion_family.DENOISER_PREFIX):
        raise InrkitError(f"{path} has a denoiser config that needs {expected:,} stored values but the file holds "
                          f"{_held(tensors, diffusion_family.DENOISER_PREFIX):,}{damaged}")


def _held(tensors: dict[str, torch.Tensor], prefix: str) -> int:
    return sum(t.numel() for k, t in tensors.items() if k.startswith(prefix))


def build(art: artifacts.Artifact, path: str | Path, device: torch.device | str = "cpu") -> TokenDiffusionModel:
    """The denoiser, normaliser and embedded GINR model, checked against the recorded sha256, on `device`."""
    check_artifact(art.config, art.tensors, path)
    sampling = diffusion_family.sampling_of(art.config, path)
    denoiser, norm, ginr = diffusion_family.rebuilt_parts(art, path, device, NAME, "GINR model",
                                                          LocalityAwareINR(art.config[NAME]),
                                                          TokenTransformer(art.config["denoiser"]))
    return TokenDiffusionModel(denoiser=denoiser, normaliser=norm, ginr=ginr, ginr_sha256=art.config["ginr_sha256"],
                               classes=list(art.config.get("classes", [])), sampling=sampling)


def diffusion_artifact(denoiser: D.Denoiser, normaliser: D.Normaliser, norm_kind: str, diffusion: dict,
                       ginr: LocalityAwareINR, ginr_sha256: str, **rest) -> artifacts.Artifact:
    """A `ginr-diffusion` artifact (see the module docstring); `rest`: diffusion_family.assemble's keywords."""
    return diffusion_family.assemble(KIND, NAME, denoiser, normaliser, norm_kind, diffusion, ginr, ginr_sha256,
                                     **rest)


@torch.no_grad()
def render_codes(model: TokenDiffusionModel, latents: torch.Tensor, shape: tuple[int, int], ranges=None,
                 chunk: int = ginr_family.MAX_CHUNK) -> torch.Tensor:
    """The render interface: tokens (B, R, d) through the GINR decoder -> (B, H, W, C) in [0, 1]."""
    return model.decode(latents, shape, ranges, chunk)


def render(art: artifacts.Artifact, path: str | Path, out: str | Path, *, size=None, scale=None, grid=None,
           chunk: int = ginr_family.MAX_CHUNK, device: str = "auto", sampler: str = "ddpm",
           save_latents: str | Path | None = None, **options) -> Path:
    """`inrkit render` of a token diffusion model: diffusion_family.draw's samples (seeds, class, guidance
    (default the artifact's), sampler, steps, eta) decoded by the GINR model on any grid; `save_latents` writes
    the sampled tokens as a token functaset."""
    out = require_suffix(out, ".png")
    if save_latents is not None:
        require_suffix(save_latents, ".safetensors", option="save-latents")
    if sampler not in D.SAMPLERS:
        raise InrkitError(f"--sampler must be ddpm or ddim, got {sampler!r}.")
    return diffusion_family.draw(build(art, path, pick_device(device)), out, size=size, scale=scale, grid=grid,
                                 chunk=min(chunk, ginr_family.MAX_CHUNK), sampler=sampler,
                                 save_latents=save_latents, **options)


sampler = diffusion_family.sampler  # FID: DDIM samples of class k mod classes at the artifact's guidance
