"""The GAN objective (INR-GAN App. A, the StyleGAN2 framework) for the one training loop.

Non-saturating logistic loss, zero-centred R1 on reals (gamma every `r1_every` steps; > 1 is StyleGAN2's lazy
form: the penalty scaled by N, D's Adam rate and betas adjusted by N / (N + 1) where D's optimizer is made),
and an EMA of G whose weights are the result. Latents of step k come from their own stream, a function of
(seed, rank, step, phase) only, so a resumed run repeats an uninterrupted one exactly.

Distributed: gradients are averaged by one explicit all_reduce of a flat buffer after each backward (the R1
double backward and G/D requires_grad toggling do not mix well with DDP's hooks; StyleGAN2-ADA does the same),
and the generator's w_avg buffer is averaged after each update, so the ranks stay identical.

Precision (inrkit.core.precision): G's and D's forwards run under the objective's autocast, the logits are
turned to float32 before the losses reduce them, and D sees its images in the memory format its convolutions
want (channels-last on CUDA tensor cores). R1 runs under autocast too (its double backward differentiates
through autocast's casts), but always through the uncompiled D: torch.compile cannot differentiate a compiled
graph twice, so `compile` compiles G and the D forwards without R1 only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from inrkit.core import artifacts, runtime
from inrkit.core.pictures import image_grid, save_png
from inrkit.core.precision import FP32, Precision, compiled
from inrkit.models.inrgan_family import KIND as GENERATOR_KIND
from inrkit.models.sampling import sample_latents

GRID = (4, 8)     # rows x columns of the snapshot sample grid
GRID_SEED = 123   # the grid's latents: the same in every snapshot and every run


def latents(seed: int, step: int, phase: int, count: int, z_dim: int, device) -> torch.Tensor:
    """z ~ N(0, I) for one phase of one step on this rank: a function of (seed, rank, step, phase) only."""
    rng = np.random.default_rng([seed, runtime.rank(), step, phase])
    return runtime.to_device(torch.from_numpy(rng.standard_normal((count, z_dim), dtype=np.float32)), device)


@torch.no_grad()
def update_ema(G, G_ema, images: int, batch: int, ema_kimg: float, ema_rampup: float | None) -> None:
    """StyleGAN2's EMA: beta = 0.5 ** (batch / half-life in images); buffers (w_avg) are copied."""
    half_life = ema_kimg * 1000
    if ema_rampup is not None:
        half_life = min(half_life, images * ema_rampup)
    beta = 0.5 ** (batch / max(half_life, 1e-8))
    for p_ema, p in zip(G_ema.parameters(), G.parameters(), strict=True):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
        b_ema.copy_(b)


def r1_penalty(D, reals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(D's logits on reals, |grad_x D(x)|^2 averaged over the batch), differentiable for the D update."""
    reals = reals.detach().requires_grad_(True)
    logits = D(reals)
    (grad,) = torch.autograd.grad(logits.sum(), reals, create_graph=True)
    return logits, grad.square().sum(dim=(1, 2, 3)).mean()


@dataclass
class GanObjective:
    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    seed: int
    batch: int                      # images per step over all ranks (the EMA counts global images)
    r1_gamma: float
    r1_every: int
    ema_kimg: float
    ema_rampup: float | None
    out: Path                       # the generator artifact (EMA weights)
    run_dir: Path
    artifact_config: dict           # generator, discriminator and training configs written into the artifact
    options: dict                   # the stage options, written into the artifact
    keep_snapshots: bool = False    # also keep RUN/generator-KIMG.safetensors at every snapshot
    fid: Callable | None = None     # fid(G_ema, pos) -> float on rank 0, when FID is due at a tick
    fid_ticks: int = 0
    name: str = "train-gan"
    losses: tuple[str, ...] = ("loss_g", "loss_d", "r1")
    schedulers: dict = field(default_factory=dict)
    generators: dict = field(default_factory=dict)
    precision: Precision = FP32     # autocast of G's and D's forwards (inrkit.core.precision)
    compile: bool = False           # torch.compile G and D (R1 keeps the uncompiled D)
    kind: ClassVar[str] = GENERATOR_KIND  # the artifact kind of the snapshots (a subclass's family may differ)

    def __post_init__(self):
        device = self.G.w_avg.device
        self.generate, self.discriminate = (compiled(m, device, self.compile) for m in (self.G, self.D))

    @property
    def modules(self) -> dict:
        return dict(G=self.G, D=self.D, G_ema=self.G_ema)

    @property
    def optimizers(self) -> dict:
        return dict(adam_g=self.opt_g, adam_d=self.opt_d)

    def _generator_step(self, n: int, step: int, device) -> torch.Tensor:
        """G: the non-saturating loss softplus(-D(G(z)))."""
        self.D.requires_grad_(False)
        with self.precision.autocast():
            fakes = self.generate(latents(self.seed, step, 0, n, self.G.config["z_dim"], device))
            logits = self.discriminate(self.precision.images(fakes))
        loss_g = F.softplus(-logits.float()).mean()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        runtime.average_gradients(self.G)
        self.opt_g.step()
        runtime.average_buffer(self.G.w_avg)
        self.D.requires_grad_(True)
        return loss_g.detach()

    def _discriminator_step(self, reals: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """D: softplus(D(fake)) + softplus(-D(real)), + gamma/2 |grad_x D(x)|^2 on reals when due (lazily scaled)."""
        with torch.no_grad(), self.precision.autocast():
            z = latents(self.seed, step, 1, reals.shape[0], self.G.config["z_dim"], reals.device)
            fakes = self.precision.images(self.generate(z, update_w_avg=False))
        regularise = self.r1_gamma > 0 and step % self.r1_every == 0
        with self.precision.autocast():
            if regularise:  # the uncompiled D: R1's double backward
                real_logits, r1 = r1_penalty(self.D, self.precision.images(reals))
            else:
                real_logits = self.discriminate(self.precision.images(reals.detach()))
                r1 = torch.zeros((), device=reals.device)
            fake_logits = self.discriminate(fakes)
        loss_d = F.softplus(fake_logits.float()).mean() + F.softplus(-real_logits.float()).mean()
        total = loss_d + r1 * (self.r1_gamma / 2 * self.r1_every) if regularise else loss_d
        self.opt_d.zero_grad(set_to_none=True)
        total.backward()
        runtime.average_gradients(self.D)
        self.opt_d.step()
        return loss_d.detach(), r1.detach()

    def step(self, batch, pos: dict) -> dict[str, torch.Tensor]:
        reals = batch[0].to(self.G.w_avg.device, non_blocking=True)
        loss_g = self._generator_step(reals.shape[0], pos["step"], reals.device)
        loss_d, r1 = self._discriminator_step(reals, pos["step"])
        update_ema(self.G, self.G_ema, pos["images"] + self.batch, self.batch, self.ema_kimg, self.ema_rampup)
        return dict(loss_g=loss_g, loss_d=loss_d, r1=r1)

    def tick(self, pos: dict, record: dict) -> None:
        """FID of the EMA generator every `fid_ticks` ticks (and at the last tick of a run)."""
        if self.fid is not None and self.fid_ticks and pos["tick"] % self.fid_ticks == 0:
            pos["fid"] = self.fid(self.G_ema, pos)
            record["fid"] = pos["fid"]

    def save_grid(self, path: Path) -> None:
        save_grid(path, self.G_ema)

    def snapshot(self, pos: dict) -> None:
        metrics = dict(kimg=pos["images"] / 1000, step=pos["step"])
        if pos.get("fid") is not None:
            metrics["fid"] = pos["fid"]
        generator = artifacts.Artifact(kind=self.kind, tensors=self.G_ema.state_dict(),
                                       config=self.artifact_config, options=self.options, metrics=metrics)
        artifacts.save(self.out, generator)
        if self.keep_snapshots:
            artifacts.save(self.run_dir / f"generator-{pos['images'] / 1000:010.3f}.safetensors", generator)
        self.save_grid(self.run_dir / f"samples-{pos['images'] / 1000:010.3f}.png")


@torch.no_grad()
def save_grid(path: Path, G_ema) -> None:
    """GRID samples of fixed latents from the EMA generator, as one PNG (small images enlarged)."""
    rows, cols = GRID
    z = sample_latents(G_ema.config["z_dim"], 0, rows * cols, GRID_SEED).to(G_ema.w_avg.device)
    images = ((G_ema(z, update_w_avg=False) + 1) / 2).clamp(0, 1).cpu()  # (N, C, R, R)
    save_png(path, image_grid(images.permute(0, 2, 3, 1), columns=cols, gap=0, zoom_to=64))
