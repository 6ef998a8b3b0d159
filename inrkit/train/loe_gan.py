"""The LoE-GAN objective (Levels-of-Experts supp. E) for the one training loop.

Hinge losses (Eqs. 9-10: inrkit.models.loegan.hinge_d_loss / hinge_g_loss, each patch-logit map averaged and the
two discriminator scales added), no R1 (the discriminator's weights are spectrally normalised instead), one
generator step then one discriminator step per iteration, and an exponential moving average of G kept as the
INR-GAN trainer keeps it (inrkit.train.gan.update_ema: the artifact holds the EMA weights). The optimizers (Adam,
betas (0.9, 0.999) unless --loe-betas, lr 1e-4 for G and D) are made by the stage. Latents of step k come from
inrkit.train.gan.latents(seed, step, phase, ...), so a resumed run repeats an uninterrupted one exactly (on CPU);
the spectral norms' power-iteration vectors are buffers of D and travel in the training state.

Distributed: gradients are averaged by runtime.average_gradients after each backward, as INR-GAN's objective does
(the generator has no running buffers to average).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from inrkit.core import runtime
from inrkit.core.pictures import image_grid, save_png
from inrkit.core.precision import compiled
from inrkit.models.loegan import hinge_d_loss, hinge_g_loss
from inrkit.models.loegan_family import KIND, render_codes
from inrkit.models.sampling import sample_latents
from inrkit.train.gan import GRID, GRID_SEED, GanObjective, latents, update_ema


@dataclass
class HingeGanObjective(GanObjective):
    """INR-GAN's objective with supp. E's losses: the modules, optimizers, EMA, FID ticks and snapshots are the
    parent's (made with r1_gamma 0: no R1); the steps, the artifact kind and the sample grid are LoE-GAN's."""

    losses: tuple[str, ...] = ("loss_g", "loss_d")
    kind: ClassVar[str] = KIND

    def __post_init__(self):
        self.device = next(self.G.parameters()).device
        self.generate, self.discriminate = (compiled(m, self.device, self.compile) for m in (self.G, self.D))

    def _z(self, step: int, phase: int, n: int) -> torch.Tensor:
        return latents(self.seed, step, phase, n, self.G.config["z_dim"], self.device)

    def _generator_step(self, n: int, step: int) -> torch.Tensor:
        """G: Eq. 10, -E[D(G(z))]."""
        self.D.requires_grad_(False)
        with self.precision.autocast():
            logits = self.discriminate(self.precision.images(self.generate(self._z(step, 0, n))))
        loss_g = hinge_g_loss(logits)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        runtime.average_gradients(self.G)
        self.opt_g.step()
        self.D.requires_grad_(True)
        return loss_g.detach()

    def _discriminator_step(self, reals: torch.Tensor, step: int) -> torch.Tensor:
        """D: Eq. 9, -E[min(0, -1 + D(x))] - E[min(0, -1 - D(G(z)))]."""
        with torch.no_grad(), self.precision.autocast():
            fakes = self.precision.images(self.generate(self._z(step, 1, reals.shape[0])))
        with self.precision.autocast():
            real_logits = self.discriminate(self.precision.images(reals.detach()))
            fake_logits = self.discriminate(fakes)
        loss_d = hinge_d_loss(real_logits, fake_logits)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        runtime.average_gradients(self.D)
        self.opt_d.step()
        return loss_d.detach()

    def step(self, batch, pos: dict) -> dict[str, torch.Tensor]:
        reals = batch[0].to(self.device, non_blocking=True)
        loss_g = self._generator_step(reals.shape[0], pos["step"])
        loss_d = self._discriminator_step(reals, pos["step"])
        update_ema(self.G, self.G_ema, pos["images"] + self.batch, self.batch, self.ema_kimg, self.ema_rampup)
        return dict(loss_g=loss_g, loss_d=loss_d)

    def save_grid(self, path: Path) -> None:
        save_grid(path, self.G_ema)


@torch.no_grad()
def save_grid(path: Path, G_ema) -> None:
    """GRID samples of fixed latents (train.gan's GRID_SEED) from the EMA generator, as one PNG."""
    rows, cols = GRID
    side = G_ema.config["resolution"]
    z = sample_latents(G_ema.config["z_dim"], 0, rows * cols, GRID_SEED).to(next(G_ema.parameters()).device)
    images = render_codes(G_ema, z, (side, side)).clamp(0, 1).cpu()  # (N, R, R, C)
    save_png(path, image_grid(images, columns=cols, gap=0, zoom_to=64))
