"""`inrkit encode GENERATOR IMAGES`: project images into a generator's latent space (INR-GAN App. B.2, the StyleGAN2
projector; see inrkit.metrics.projection) and write a latents artifact.

A latents artifact (kind `latents`) holds latents (N, d) float32 in the chosen space (z: z_dim values; w: the
mapping output) and errors (N,), the pixel MSE of each reconstruction (images in [-1, 1]). Its config names the
generator (path, sha256 and its full config, so the latents render without guessing), the space, the images
(spec, split, count, resolution, channels, fingerprint) and the projector's settings; its metrics hold the mean
error. Beside it, OUT with the .png suffix shows the targets (top row) over their reconstructions (bottom row),
the first 16 images.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from inrkit.core import artifacts
from inrkit.core.errors import InrkitError
from inrkit.core.pictures import save_png, side_by_side
from inrkit.core.runtime import pick_device, print0
from inrkit.metrics.projection import SPACES, Projection, project

SHEET_IMAGES = 16  # images shown in the comparison PNG
GAP = 4  # white pixels between tiles and between the two rows


def comparison_sheet(targets: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """Targets over reconstructions, (N, C, R, R) in [-1, 1] each -> one (H, W, C) picture in [0, 1]."""
    rows = []
    for images in (targets[:SHEET_IMAGES], reconstructions[:SHEET_IMAGES]):
        tiles = ((images.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1)
        rows.append(side_by_side(*tiles, gap=GAP))
    spacer = torch.ones(GAP, rows[0].shape[1], rows[0].shape[2])
    return torch.cat([rows[0], spacer, rows[1]], dim=0)


def latents_artifact(G, generator: Path, result: Projection, *, data: dict, settings: dict,
                     metrics: dict) -> artifacts.Artifact:
    sha = artifacts.sha256(generator) if Path(generator).is_file() else ""
    config = dict(generator=G.config, generator_path=str(generator), generator_sha256=sha, data=data, **settings)
    return artifacts.Artifact(kind="latents", tensors=dict(latents=result.latents, errors=result.errors),
                              config=config, options=dict(settings, generator=str(generator), data=data["spec"]),
                              parents={str(generator): sha} if sha else {}, metrics=metrics)


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
) -> dict:
    """Project `images` into `generator`'s latent space, write the latents artifact and PNG; return metrics."""
    from inrkit.data import open_dataset
    from inrkit.stages.fid import load_generator

    out = Path(out)
    if out.suffix != ".safetensors":
        raise InrkitError(f"--out {out} should end in .safetensors.")
    if space not in SPACES:
        raise InrkitError(f"unknown --space {space!r}; choose z or w.")
    if seed < 0:
        raise InrkitError(f"--seed must be zero or positive, got {seed}.")
    dev = pick_device(device)
    G = load_generator(generator, dev)
    R, C = G.config["resolution"], G.config["out_channels"]
    if C not in (1, 3):
        raise InrkitError(f"{generator} makes {C}-channel images; only RGB or grey images can be projected.")
    ds = open_dataset(images, R, C, split=split, count=count)
    targets = torch.stack([ds[i][0] for i in range(len(ds))])
    start = time.perf_counter()
    result = project(G, targets, space=space, steps=steps, lr=lr, noise=noise, perceptual=perceptual, seed=seed,
                     batch=batch, progress=progress)
    seconds = time.perf_counter() - start
    mse = result.errors.mean().item()
    metrics = dict(mse=mse, mse_median=result.errors.median().item(), mse_max=result.errors.max().item(),
                   psnr=10 * math.log10(4.0 / max(mse, 1e-12)), mse_first_step=result.history[0], count=len(ds),
                   seconds=seconds, steps_per_second=steps * -(-len(ds) // batch) / max(seconds, 1e-9))
    data = dict(spec=ds.spec, split=ds.split, count=len(ds), resolution=R, channels=C, fingerprint=ds.fingerprint)
    settings = dict(space=space, steps=steps, lr=lr, noise=noise, perceptual=perceptual, seed=seed, batch=batch)
    artifacts.save(out, latents_artifact(G, generator, result, data=data, settings=settings, metrics=metrics))
    picture = save_png(out.with_suffix(".png"), comparison_sheet(targets, result.images))
    print0(f"projected {len(ds)} images into {space} in {steps} steps: MSE {mse:.4f} (PSNR {metrics['psnr']:.2f} dB; "
           f"{result.history[0]:.4f} at the start), {seconds:.0f} s -> {out}, {picture}")
    return metrics
