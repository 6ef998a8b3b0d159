"""Projection of images into an INR-GAN generator's latent space: the official StyleGAN2 projector (Karras et al.
2020; NVlabs/stylegan2 projector.py, stylegan2-ada-pytorch projector.py) with its default hyper-parameters and
without noise maps, as INR-GAN's App. B.2 (the generator has no noise inputs to optimise).

What the official procedure does, and this module with it:
  - latent statistics from 10,000 samples z ~ N(0, I) (seed 123, as stylegan2-ada-pytorch): the start, which is
    the mean latent (w space: the mean of mapping(z), i.e. what G's w_avg buffer tracks, but always available;
    z space: 0, the mode of N(0, I)), and latent_std = sqrt(E |x - mean|^2), the official scalar (the RMS
    distance to the mean, not a per-dimension std);
  - Adam (betas 0.9, 0.999, eps 1e-8) on the latent alone, lr = 0.1 x cosine ramp-down over the last 25% of the
    steps x linear ramp-up over the first 5% (`learning_rate`);
  - before rendering at step t of T the latent is perturbed by N(0, I) * latent_std * noise *
    max(0, 1 - (t/T) / 0.75)^2 (`noise_strength`): exploration early, none in the last quarter; the result is
    the unperturbed latent.
Per-image independence: the loss is a sum of per-image losses and Adam is elementwise, so each latent only sees
its own image; the perturbation of image k comes from its own stream (seed, k). An image's result therefore
does not depend on the other images or on the batch size (up to float rounding in batched kernels).

Perceptual distance. The official projector uses LPIPS (VGG16), whose weights cannot be downloaded here. We use
the offline FID Inception-v3 (`load_inception`, TorchScript, frozen; gradients flow to its input) the way LPIPS
uses VGG without its learned linear heads (the "baseline" LPIPS): activations of four layers (conv_2, conv_4,
mixed_2, mixed_7: strides 2 to 16) are unit-normalised along channels, and the distance is the sum over layers
of the spatial mean of squared differences. The pooled 2048-d FID features are not used: global pooling makes
them blind to where things are, which a reconstruction must get right. Images are bilinearly resized
(differentiably) to a side S = min(299, max(128, R)) before the network: 299 is Inception's native input, but
forward + backward at 299 costs ~3.6 s per batch of 8 on one CPU thread against ~0.4 s at 128, and a 32x32
image has no detail that 128 would lose; 128 keeps mixed_7 at 6x6. The loss is this distance plus the pixel MSE
(images in [-1, 1]); `perceptual=False` leaves the pixel MSE alone. Grey images are repeated to 3 channels.

Reported errors are pixel MSEs of reconstructions clamped to [-1, 1], as displayed: `errors` of the final
(unperturbed) latents, `history[i]` the batch mean at step i, of the images rendered from the perturbed latents
before that step's update (what the optimiser saw; the official projector logs the same).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inrkit.core.errors import InrkitError
from inrkit.core.progress import progress_bar
from inrkit.metrics.image import mse_per_item

SPACES = ("z", "w")
STAT_SAMPLES = 10_000  # dlatent_avg_samples
STAT_SEED = 123  # stylegan2-ada-pytorch's seed for those samples
RAMPUP, RAMPDOWN, NOISE_RAMP = 0.05, 0.25, 0.75  # lr_rampup_length, lr_rampdown_length, noise_ramp_length
BETAS, EPS = (0.9, 0.999), 1e-8
TAPS = ("conv_2", "conv_4", "mixed_2", "mixed_7")  # Inception layers compared (strides 2, 4, 8, 16)
MIN_SIDE, MAX_SIDE = 128, 299  # perceptual input side S = min(MAX_SIDE, max(MIN_SIDE, R))


@dataclass
class Projection:
    latents: torch.Tensor  # (N, d) float32 on CPU, in the chosen space (z: z_dim values; w: the mapping output)
    errors: torch.Tensor  # (N,) final per-image pixel MSE of the reconstruction (images in [-1, 1])
    images: torch.Tensor  # (N, C, R, R) reconstructions in [-1, 1], CPU
    history: list[float]  # mean pixel MSE over the batch after/at each step


def learning_rate(t: float, lr: float) -> float:
    """The projector's schedule at progress t = step / steps in [0, 1)."""
    ramp = min(1.0, (1.0 - t) / RAMPDOWN)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return lr * ramp * min(1.0, t / RAMPUP)


def noise_strength(t: float, latent_std: float, noise: float) -> float:
    """Std of the additive latent noise at progress t."""
    return latent_std * noise * max(0.0, 1.0 - t / NOISE_RAMP) ** 2


@torch.no_grad()
def latent_stats(G, space: str) -> tuple[torch.Tensor, float]:
    """(start (d,), latent_std) from 10,000 samples, as the official projector."""
    gen = torch.Generator().manual_seed(STAT_SEED)
    z = torch.randn(STAT_SAMPLES, G.config["z_dim"], generator=gen).to(G.w_avg.device)
    samples = G.mapping(z, update_w_avg=False).float() if space == "w" else z
    start = samples.mean(0) if space == "w" else torch.zeros_like(samples[0])
    return start, float((samples - samples.mean(0)).square().sum(1).mean().sqrt())


class InceptionDistance(nn.Module):
    """Baseline-LPIPS distance on the FID Inception's layers (see the module docstring): (B,) per image pair."""

    def __init__(self, device: torch.device | str, resolution: int):
        super().__init__()
        from inrkit.metrics.fid import load_inception

        children = list(load_inception(str(device)).net.net.layers.named_children())
        last = max(i for i, (name, _) in enumerate(children) if name in TAPS)
        self.stages = children[: last + 1]  # a plain list: the frozen shared network is not registered here
        self.side = min(MAX_SIDE, max(MIN_SIDE, resolution))

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images (B, 1|3, R, R) in [-1, 1] -> unit-normalised activations of each tapped layer."""
        x = images.expand(-1, 3, -1, -1)
        if x.shape[-1] != self.side:
            x = F.interpolate(x, size=(self.side, self.side), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self.side)
        h, out = ((x + 1.0) * 127.5 - 128.0) / 128.0, []  # [-1, 1] -> [0, 255] -> the network's input scaling
        for name, stage in self.stages:
            h = stage(h)
            if name in TAPS:
                out.append(h / (h.square().sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, images: torch.Tensor, target_features: list[torch.Tensor]) -> torch.Tensor:
        return sum((a - b).square().sum(1).mean((1, 2)) for a, b in zip(self.features(images), target_features,
                                                                          strict=True))


def _check(G, targets: torch.Tensor, space: str, steps: int, lr: float, noise: float, batch: int,
           perceptual: bool) -> None:
    cfg = G.config
    want = (cfg["out_channels"], cfg["resolution"], cfg["resolution"])
    if targets.ndim != 4 or tuple(targets.shape[1:]) != want or len(targets) == 0:
        raise InrkitError(f"targets must be (N, {want[0]}, {want[1]}, {want[2]}) images for this generator, "
                          f"got {tuple(targets.shape)}.")
    if not torch.isfinite(targets).all() or targets.abs().max() > 1.0 + 1e-4:
        raise InrkitError("targets must be finite images in [-1, 1].")
    if space not in SPACES:
        raise InrkitError(f"unknown --space {space!r}; choose z or w.")
    if steps < 1 or batch < 1:
        raise InrkitError(f"--steps and --batch must be at least 1, got {steps} and {batch}.")
    if not (lr > 0 and noise >= 0 and math.isfinite(lr) and math.isfinite(noise)):
        raise InrkitError(f"--lr must be positive and --noise zero or positive, got {lr} and {noise}.")
    if perceptual and want[0] not in (1, 3):
        raise InrkitError(f"the perceptual distance needs RGB or grey images, not {want[0]} channels; "
                          "pass --no-perceptual.")


def _render(G, latents: torch.Tensor, space: str) -> torch.Tensor:
    w = G.mapping(latents, update_w_avg=False) if space == "z" else latents
    return G.render(G.inr_params(w))


def _project_batch(G, targets, indices: range, start, latent_std: float, distance, *, space, steps, lr, noise,
                   seed, update) -> tuple[torch.Tensor, list[float]]:
    """One batch: the optimised latents (B, d) and the summed (not averaged) clamped-pixel MSE at each step."""
    latents = start.expand(len(targets), -1).clone().requires_grad_(True)
    opt = torch.optim.Adam([latents], lr=lr, betas=BETAS, eps=EPS)
    streams = [np.random.default_rng([seed, k]) for k in indices]
    with torch.no_grad():
        target_features = distance.features(targets) if distance is not None else None
    sums = []
    for step in range(steps):
        t = step / steps
        for group in opt.param_groups:
            group["lr"] = learning_rate(t, lr)
        draws = np.stack([s.standard_normal(latents.shape[1], dtype=np.float32) for s in streams])
        shift = torch.from_numpy(draws).to(latents.device) * noise_strength(t, latent_std, noise)
        images = _render(G, latents + shift, space)
        loss = mse_per_item(images, targets)
        if distance is not None:
            loss = loss + distance(images, target_features)
        (latents.grad,) = torch.autograd.grad(loss.sum(), [latents])  # the latents only, not G's weights
        opt.step()
        mse = mse_per_item(images.detach().clamp(-1, 1), targets).sum().item()
        sums.append(mse)
        update(1, mse=mse / len(targets))
    return latents.detach(), sums


def project(G, targets: torch.Tensor, *, space: str = "w", steps: int = 1000, lr: float = 0.1, noise: float = 0.05,
            perceptual: bool = True, seed: int = 0, batch: int = 16, progress: bool = True) -> Projection:
    """Find latents whose renderings reproduce `targets` (N, C, R, R) in [-1, 1] at G's training resolution.

    space: "w" (mapping output, App. B.2's W space) or "z"; steps, lr, noise: the projector's num_steps,
    initial_learning_rate, initial_noise_factor; perceptual: add the Inception distance to the pixel MSE;
    seed: the latent-noise streams (image k uses (seed, k)); batch: images optimised together (results do not
    depend on it)."""
    _check(G, targets, space, steps, lr, noise, batch, perceptual)
    device = G.w_avg.device
    targets = targets.float().to(device)
    start, latent_std = latent_stats(G, space)
    distance = InceptionDistance(device, G.config["resolution"]) if perceptual else None
    parts, totals = [], np.zeros(steps)
    batches = range(0, len(targets), batch)
    with progress_bar(f"project {len(targets)} images ({space})", steps * len(batches), enabled=progress,
                      unit="step") as update:
        for first in batches:
            indices = range(first, min(first + batch, len(targets)))
            found, sums = _project_batch(G, targets[first : indices.stop], indices, start, latent_std, distance,
                                         space=space, steps=steps, lr=lr, noise=noise, seed=seed, update=update)
            parts.append(found)
            totals += np.asarray(sums)
    latents = torch.cat(parts)
    with torch.no_grad():
        images = torch.cat([_render(G, latents[i : i + batch], space).clamp(-1, 1)
                            for i in range(0, len(latents), batch)])
    errors = mse_per_item(images, targets)
    return Projection(latents=latents.float().cpu(), errors=errors.float().cpu(), images=images.float().cpu(),
                      history=(totals / len(targets)).tolist())
