"""`inrkit encode GENERATOR IMAGES`: project images into a generator's latent space (INR-GAN App. B.2, the StyleGAN2
projector; see inrkit.metrics.projection) and write a latents artifact.

A latents artifact (kind `latents`: inrkit.models.inrgan_family.LATENTS_KIND) holds latents (N, d) float32 in the
chosen space (z: z_dim values; w: the mapping output) and errors (N,), the pixel MSE of each reconstruction (images
in [-1, 1]). Its config names the generator (path, sha256 and its full config, so the latents render without
guessing), the space, the images (spec, split, count, resolution, channels, fingerprint) and the projector's
settings; its metrics hold the mean error. Beside it, OUT with the .png suffix shows the targets (top row) over
their reconstructions (bottom row), the first 16 images.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from inrkit.core import artifacts
from inrkit.core.checks import require_at_least, require_choice, require_writable
from inrkit.core.errors import InrkitError
from inrkit.core.pictures import image_grid, save_png
from inrkit.core.precision import compile_module, resolve_precision
from inrkit.core.runtime import pick_device, print0
from inrkit.data import open_dataset
from inrkit.metrics.projection import SPACES, Projection, project
from inrkit.models import registry
from inrkit.models.inrgan_family import KIND as GENERATOR_KIND
from inrkit.models.inrgan_family import LATENTS_KIND

SHEET_IMAGES = 16  # images shown in the comparison PNG
GAP = 4  # white pixels between tiles and between the two rows


def comparison_sheet(targets: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """Targets over reconstructions, (N, C, R, R) in [-1, 1] each -> one (H, W, C) picture in [0, 1]."""
    n = min(len(targets), SHEET_IMAGES)
    both = torch.cat([targets[:n], reconstructions[:n]])
    return image_grid(((both.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1), n, gap=GAP)


def latents_artifact(G, generator: Path, result: Projection, *, data: dict, settings: dict,
                     metrics: dict) -> artifacts.Artifact:
    sha = artifacts.sha256(generator) if Path(generator).is_file() else ""
    config = dict(generator=G.config, generator_path=str(generator), generator_sha256=sha, data=data, **settings)
    return artifacts.Artifact(kind=LATENTS_KIND, tensors=dict(latents=result.latents, errors=result.errors),
                              config=config, options=dict(settings, generator=str(generator), data=data["spec"]),
                              parents={str(generator): sha} if sha else {}, metrics=metrics)


def _metrics(result: Projection, seconds: float, total_steps: int) -> dict:
    """Reconstruction errors (pixel MSE of images in [-1, 1], whose PSNR peak is 2^2) and speed."""
    mse = result.errors.mean().item()
    return dict(mse=mse, mse_median=result.errors.median().item(), mse_max=result.errors.max().item(),
                psnr=10 * math.log10(4.0 / max(mse, 1e-12)), mse_first_step=result.history[0],
                count=len(result.errors), seconds=seconds, steps_per_second=total_steps / max(seconds, 1e-9))


def encode_generator(
    generator: Path,                   # a generator artifact written by `inrkit train-gan`
    images: str,                       # images to project (see inrkit.data.DATA_HELP), at G's resolution/channels
    out: Path,                         # the latents artifact (.safetensors); the comparison PNG goes beside it
    *,
    space: str = "w",                  # "w" (mapping output, App. B.2) or "z"
    steps: int = 1000,                 # projector steps (official default 1000)
    lr: float = 0.1,                   # initial learning rate (official default)
    noise: float = 0.05,               # initial latent-noise factor (official default)
    perceptual: bool = True,           # Inception distance + pixel MSE; False: pixel MSE alone
    seed: int = 0,                     # latent-noise streams (image k uses (seed, k))
    batch: int = 16,                   # images optimised together (results do not depend on it)
    count: int | None = None,          # project the first `count` images (default: all)
    split: str = "train",              # built-in sets: train or heldout
    device: str = "auto",
    progress: bool = True,
    precision: str = "auto",           # autocast of the renders and the distance: auto | fp32 | bf16 | tf32
    compile: bool = False,             # torch.compile the generator's render
) -> dict:
    """Project `images` into `generator`'s latent space, write the latents artifact and PNG; return metrics."""
    out = require_writable(out, ".safetensors")
    require_choice("space", space, SPACES)
    require_at_least(0, seed=seed)
    dev = pick_device(device)
    autocast = resolve_precision(precision, dev).autocast()
    G = compile_module(registry.load(generator, GENERATOR_KIND, dev), dev, compile)
    R, C = G.config["resolution"], G.config["out_channels"]
    if C not in (1, 3):
        raise InrkitError(f"{generator} makes {C}-channel images; only RGB or grey images can be projected.")
    ds = open_dataset(images, R, C, split=split, count=count)
    targets = torch.stack([ds[i][0] for i in range(len(ds))])
    start = time.perf_counter()
    with autocast:  # around the optimiser too, harmlessly: autocast casts only matmuls, convolutions and the like
        result = project(G, targets, space=space, steps=steps, lr=lr, noise=noise, perceptual=perceptual,
                         seed=seed, batch=batch, progress=progress)
    seconds = time.perf_counter() - start
    metrics = _metrics(result, seconds, steps * -(-len(ds) // batch))
    mse = metrics["mse"]
    data = dict(spec=ds.spec, split=ds.split, count=len(ds), resolution=R, channels=C, fingerprint=ds.fingerprint)
    settings = dict(space=space, steps=steps, lr=lr, noise=noise, perceptual=perceptual, seed=seed, batch=batch)
    artifacts.save(out, latents_artifact(G, generator, result, data=data, settings=settings, metrics=metrics))
    picture = save_png(out.with_suffix(".png"), comparison_sheet(targets, result.images))
    print0(f"projected {len(ds)} images into {space} in {steps} steps: MSE {mse:.4f} (PSNR {metrics['psnr']:.2f} dB; "
           f"{result.history[0]:.4f} at the start), {seconds:.0f} s -> {out}, {picture}")
    return metrics
