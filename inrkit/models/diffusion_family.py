"""The diffusion family (kind `diffusion`): a denoiser over the latents of one spatial functa model, sampled with
DDPM or DDIM (classifier-free guided when conditional) and decoded through that model on any grid.

A diffusion artifact holds the denoiser's (EMA) weights under `denoiser.`, the latent normalisation statistics
(`norm.mu`, `norm.sigma`), and, embedded under `functa.`, the functa model its latents decode with; its config
holds the denoiser config, the diffusion settings (schedule, T, prediction, timestep ratio, label dropout, and
the x0 clip of sampling: the largest |z~| of the training set), the
normalisation (kind, gamma), the functa model's config, the sha256 of the model file the training functaset named
(`functa_sha256`) and of the embedded tensors (`functa_tensors_sha256`: a changed model is refused), and the class
names. Sample k draws its noise from default_rng([seed, k]) and, for FID of a conditional model, the label k mod
classes, so a sample does not depend on its batch (up to float
rounding of the batched convolutions). Registered in inrkit.models.registry.FAMILIES.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from inrkit.core import artifacts
from inrkit.core.checks import Value, check_config, require_suffix
from inrkit.core.errors import InrkitError
from inrkit.core.pictures import image_grid, save_png
from inrkit.core.runtime import parameters_sha256, pick_device, print0
from inrkit.fields.grid import output_shape
from inrkit.models import diffusion as D
from inrkit.models import functa_family
from inrkit.models.functa import SpatialFuncta, build_functa
from inrkit.models.sampling import Sampler, quantize
from inrkit.models.unet import build_denoiser
from inrkit.models.validate import check_diffusion_artifact

KIND = "diffusion"
DENOISER_PREFIX = "denoiser."
FUNCTA_PREFIX = "functa."
RENDER_OPTIONS = ("seeds", "steps", "label", "cfg", "sampler", "eta", "save_latents")
DEFAULT_SEEDS = 16
SAMPLE_BATCH = 64  # latents denoised together (results do not depend on it)


@dataclass
class DiffusionModel:
    """A diffusion artifact rebuilt: denoiser (eval), normaliser, functa model (eval), and how FID samples it."""

    denoiser: D.Denoiser
    normaliser: D.Normaliser
    functa: SpatialFuncta
    functa_sha256: str
    classes: list[str] = field(default_factory=list)
    sampling: dict = field(default_factory=lambda: dict(sampler="ddim", steps=50, eta=0.0, cfg=1.0))

    @property
    def latent(self) -> tuple[int, ...]:
        return tuple(self.denoiser.net.config["latent"])

    # The interface `draw`, `sampler` and train-diffusion's snapshots use, which a diffusion family over other
    # latents (inrkit.models.token_diffusion_family) provides for its own decoder.
    @property
    def resolution(self) -> tuple[int, int]:
        return (self.functa.resolution, self.functa.resolution)

    @property
    def channels(self) -> int:
        return self.functa.config["channels"]

    def decode(self, latents: torch.Tensor, shape: tuple[int, int], ranges=None,
               chunk: int = functa_family.MAX_CHUNK) -> torch.Tensor:
        """Latents (B, s, s, c) through the functa model -> (B, H, W, C) in [0, 1] (unclamped)."""
        return functa_family.render_codes(self.functa, latents.to(next(self.functa.parameters()).device), shape,
                                          ranges, chunk)

    def latents_artifact(self, latents: torch.Tensor, labels: torch.Tensor | None, options: dict):
        return latents_functaset(self, latents, labels, options)


def part_of(art: artifacts.Artifact, prefix: str) -> artifacts.Artifact:
    """The tensors under `prefix`, the prefix removed (an embedded module's state)."""
    tensors = {k[len(prefix):]: v for k, v in art.tensors.items() if k.startswith(prefix)}
    return artifacts.Artifact(kind=art.kind, tensors=tensors, config=art.config)


def build(art: artifacts.Artifact, path: str | Path, device: torch.device | str = "cpu") -> DiffusionModel:
    """The denoiser, normaliser and embedded functa model, checked against the recorded sha256, on `device`."""
    for key in ("denoiser", "diffusion", "normalisation", "functa", "functa_sha256", "functa_tensors_sha256"):
        if key not in art.config:
            raise InrkitError(f"{path} has no {key} config in its metadata; the file is damaged or foreign.")
    check_diffusion_artifact(art.config, art.tensors, path)  # before allocating
    denoiser, norm, functa = rebuilt_parts(art, path, device, "functa", "functa model",
                                           build_functa(art.config["functa"]), build_denoiser(art.config["denoiser"]))
    return DiffusionModel(denoiser=denoiser, normaliser=norm, functa=functa, functa_sha256=art.config["functa_sha256"],
                          classes=list(art.config.get("classes", [])), sampling=sampling_of(art.config, path))


def rebuilt_parts(art: artifacts.Artifact, path: str | Path, device, name: str, noun: str, decoder: torch.nn.Module,
                  net: torch.nn.Module) -> tuple[D.Denoiser, D.Normaliser, torch.nn.Module]:
    """(denoiser, normaliser, decoder) of an artifact already checked, in eval mode on `device`: `decoder` and
    `net` are the modules its config builds, loaded from the tensors under `NAME.` and `denoiser.`; the decoder
    must match the recorded `NAME_tensors_sha256` (a changed model is refused)."""
    decoder_part = part_of(art, name + ".")
    if not decoder_part.tensors:
        raise InrkitError(f"{path} does not hold the {noun} its latents decode with; retrain it.")
    decoder = artifacts.load_state(decoder, decoder_part, path)
    if parameters_sha256(decoder) != art.config[f"{name}_tensors_sha256"]:
        raise InrkitError(f"the {noun} inside {path} is not the one it was trained with (sha256 differs).")
    net = artifacts.load_state(net, part_of(art, DENOISER_PREFIX), path)
    dif = art.config["diffusion"]
    denoiser = D.Denoiser(net, D.alpha_bar_schedule(dif["schedule"], dif["steps"]), prediction=dif["prediction"],
                          classes=net.config["classes"], label_dropout=dif["label_dropout"], clip=dif.get("clip"),
                          probs=D.timestep_probabilities(dif["steps"], dif["ratio"]))
    norm = D.Normaliser(art.tensors["norm.mu"].double(), art.tensors["norm.sigma"].double(),
                        float(art.config["normalisation"]["gamma"]))
    return denoiser.to(device).eval(), norm, decoder.to(device).eval()


def sampling_of(config: dict, path: str | Path) -> dict:
    """How FID samples and the guidance `render` uses by default: DDIM 50 steps, eta 0, and the artifact's
    `guidance` (train-diffusion --guidance; 1: plain conditional; artifacts without one: 1)."""
    check_config({"guidance": config.get("guidance")}, dict(guidance=Value(float, 0, 1e6, optional=True)), path)
    guidance = config.get("guidance")
    return dict(sampler="ddim", steps=50, eta=0.0, cfg=1.0 if guidance is None else float(guidance))


def diffusion_artifact(denoiser: D.Denoiser, normaliser: D.Normaliser, norm_kind: str, diffusion: dict,
                       functa: SpatialFuncta, functa_sha256: str, **rest) -> artifacts.Artifact:
    """A `diffusion` artifact (see the module docstring); `rest`: assemble's keyword arguments."""
    return assemble(KIND, "functa", denoiser, normaliser, norm_kind, diffusion, functa, functa_sha256, **rest)


def assemble(kind: str, name: str, denoiser: D.Denoiser, normaliser: D.Normaliser, norm_kind: str,
             diffusion: dict, decoder: torch.nn.Module, decoder_sha256: str, *, classes: list[str], parents: dict,
             options: dict, metrics: dict, guidance: float = 1.0) -> artifacts.Artifact:
    """A diffusion artifact of `kind`: the denoiser under `denoiser.`, the decoder its latents decode with under
    `NAME.` (config `NAME`, `NAME_sha256` of its file, `NAME_tensors_sha256` of its tensors), the statistics, the
    schedule, the class names and the default guidance of render and fid."""
    tensors = {DENOISER_PREFIX + k: v for k, v in denoiser.net.state_dict().items()}
    tensors.update({f"{name}.{k}": v for k, v in decoder.state_dict().items()})
    tensors.update({"norm.mu": normaliser.mu.float(), "norm.sigma": normaliser.sigma.float()})
    config = {"denoiser": denoiser.net.config, "diffusion": diffusion,
              "normalisation": dict(kind=norm_kind, gamma=normaliser.gamma), name: decoder.config,
              f"{name}_sha256": decoder_sha256, f"{name}_tensors_sha256": parameters_sha256(decoder),
              "classes": classes, "guidance": float(guidance)}
    return artifacts.Artifact(kind=kind, tensors=tensors, config=config, parents=parents, options=options,
                              metrics=metrics)


def check_guidance(model: DiffusionModel, label: int | None, cfg: float | None) -> None:
    """Refuse a class or guidance the model cannot take, in one sentence."""
    n = model.denoiser.classes
    if cfg is not None and not n:
        raise InrkitError("--cfg needs a conditional diffusion model; this one is unconditional.")
    if label is not None and not n:
        raise InrkitError("--class needs a conditional diffusion model; this one is unconditional.")
    if label is not None and not 0 <= label < n:
        raise InrkitError(f"--class {label} is out of range; this model has classes 0-{n - 1}.")


@torch.no_grad()
def sample_latents(model: DiffusionModel, ids: list[int], seed: int, labels: torch.Tensor | None = None,
                   cfg: float | None = None, sampler: str = "ddim", steps: int | None = 50,
                   eta: float = 0.0) -> torch.Tensor:
    """Latents (len(ids), *latent) in the decoder's units (denormalised), sample k from its own noise stream;
    `labels` (len(ids),) for a conditional model (None: unconditional), guided by `cfg`."""
    dev = next(model.denoiser.parameters()).device
    out = []
    for i in range(0, len(ids), SAMPLE_BATCH):
        chunk = ids[i:i + SAMPLE_BATCH]
        noise = D.SampleNoise(seed, chunk, model.latent, dev)
        y = None if labels is None else labels[i:i + SAMPLE_BATCH].to(dev)
        x = D.SAMPLERS[sampler](model.denoiser.guided(y, cfg), noise.initial(), model.denoiser.alpha_bar, noise,
                                steps=steps, eta=eta)
        out.append(model.normaliser.denormalise(x).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def render_codes(model: DiffusionModel, latents: torch.Tensor, shape: tuple[int, int], ranges=None,
                 chunk: int = functa_family.MAX_CHUNK) -> torch.Tensor:
    """The render interface: latents (B, s, s, c) through the functa model -> (B, H, W, C) in [0, 1]."""
    return model.decode(latents, shape, ranges, chunk)


def sampler(model: DiffusionModel, *, seed: int = 0, psi: float = 1.0, estimate: bool = True) -> Sampler:
    """FID's sample source: `model.sampling` (DDIM 50 steps by default); a conditional model draws sample k of
    class k mod classes at guidance `cfg`; images rendered by the model's decoder at any side."""
    if psi != 1.0:
        raise InrkitError("--psi applies to generators, not to a diffusion model.")
    s = model.sampling
    n, res = model.denoiser.classes, model.resolution[0]

    def draw(start: int, count: int, side: int | None) -> torch.Tensor:
        ids = list(range(start, start + count))
        labels = torch.tensor([k % n for k in ids]) if n else None
        z = sample_latents(model, ids, seed, labels, s["cfg"] if n else None, s["sampler"], s["steps"], s["eta"])
        pixels = model.decode(z, (side or res, side or res))
        return quantize(pixels.clamp(0, 1)).permute(0, 3, 1, 2).cpu()
    return Sampler(resolution=res, channels=model.channels, draw=draw)


def latents_functaset(model: DiffusionModel, latents: torch.Tensor, labels: torch.Tensor | None,
                      options: dict) -> artifacts.Artifact:
    """Sampled latents as a functaset (the functa model embedded) that every functaset tool reads."""
    return sampled_set(functa_family.SET_KIND, model.functa, model.functa_sha256, model.classes, latents, labels,
                       options, steps=0)


def sampled_set(kind: str, decoder: torch.nn.Module, decoder_sha256: str, classes: list[str], latents: torch.Tensor,
                labels: torch.Tensor | None, options: dict, **extra) -> artifacts.Artifact:
    """Sampled latents as a set of `kind` (functaset, ginr-functaset), the decoder embedded under `model.`,
    labels -1 when unconditional, psnr NaN (no image was encoded); `extra` goes into the config."""
    tensors = dict(latents=latents.float(), psnr=torch.full((len(latents),), float("nan")))
    tensors["labels"] = labels.long() if labels is not None else torch.full((len(latents),), -1)
    tensors.update({functa_family.MODEL_PREFIX + k: v for k, v in decoder.state_dict().items()})
    config = dict(model=decoder.config, model_path="", model_sha256=decoder_sha256, embedded_model=True,
                  data=dict(classes=classes, sampled=options), **extra)
    return artifacts.Artifact(kind=kind, tensors=tensors, config=config, options=options)


def render(art: artifacts.Artifact, path: str | Path, out: str | Path, *, size=None, scale=None, grid=None,
           chunk: int = functa_family.MAX_CHUNK, device: str = "auto", seeds: list[int] | None = None,
           steps: int | None = None, label: int | None = None, cfg: float | None = None, sampler: str = "ddpm",
           eta: float | None = None, save_latents: str | Path | None = None, columns: int | None = None) -> Path:
    """`inrkit render` of a diffusion model: samples `seeds` (default 0-15) of class `label` (conditional
    models; default seed k gets class k mod classes, and the grid has one column per class) at guidance `cfg`
    (default: the artifact's --guidance), by `sampler` (ddpm: all T steps; ddim: `steps`, default 50, `eta`
    default 0), decoded on any grid; `save_latents` also writes them as a functaset."""
    out = require_suffix(out, ".png")
    if save_latents is not None:
        require_suffix(save_latents, ".safetensors", option="save-latents")
    if sampler not in D.SAMPLERS:
        raise InrkitError(f"--sampler must be ddpm or ddim, got {sampler!r}.")
    return draw(build(art, path, pick_device(device)), out, size=size, scale=scale, grid=grid, chunk=chunk,
                seeds=seeds, steps=steps, label=label, cfg=cfg, sampler=sampler, eta=eta, save_latents=save_latents,
                columns=columns)


def draw(model, out: Path, *, size=None, scale=None, grid=None, chunk: int = functa_family.MAX_CHUNK,
         seeds: list[int] | None = None, steps: int | None = None, label: int | None = None,
         cfg: float | None = None, sampler: str = "ddpm", eta: float | None = None,
         save_latents: str | Path | None = None, columns: int | None = None) -> Path:
    """`render`'s picture for any rebuilt diffusion model (DiffusionModel's interface: denoiser, normaliser,
    sampling, resolution, decode, latents_artifact); the options as render's, already checked for suffixes."""
    check_guidance(model, label, cfg)
    if cfg is None and model.denoiser.classes and model.sampling["cfg"] != 1.0:
        cfg = model.sampling["cfg"]
    seeds = list(range(DEFAULT_SEEDS)) if seeds is None else seeds
    n = model.denoiser.classes
    labels = (torch.tensor([label if label is not None else k % n for k in seeds]) if n else None)
    columns = columns or (n if n and label is None and n <= 32 else 8)
    if sampler == "ddpm" and (steps is not None or eta is not None):
        raise InrkitError("--steps and --eta apply to --sampler ddim; ddpm takes every one of the T steps.")
    steps = (steps or 50) if sampler == "ddim" else None
    start = time.perf_counter()
    z = sample_latents(model, seeds, 0, labels, cfg, sampler, steps, eta or 0.0)
    took = time.perf_counter() - start
    shape = output_shape(model.resolution, size, scale, grid)
    save_png(out, image_grid(model.decode(z, shape, grid, chunk).clamp(0, 1).cpu(), columns))
    if save_latents is not None:
        artifacts.save(save_latents, model.latents_artifact(z, labels, dict(seeds=seeds, sampler=sampler,
                                                                             steps=steps, cfg=cfg, eta=eta)))
    print0(f"sampled {len(seeds)} latents ({sampler}) in {took:.2f} s, rendered at {shape[0]}x{shape[1]} -> {out}")
    return out
