"""The diffusion objective on functasets (spatial functa App. C "Generation") for the one loop.

Each step: normalised latents (B, s, s, c) and labels (B,) -> the denoiser's simple loss (inrkit.models.diffusion.
Denoiser.loss: timesteps from the non-uniform distribution, fresh noise, dummy labels at the label-dropout rate),
all drawn from one seeded torch.Generator that the training state saves; Adam (default betas, App. C.1); an EMA
of the weights (its decay warmed up as min(decay, (1 + step) / (10 + step)), as the classifier's), which is
what is sampled and saved. Gradients are averaged over ranks by one all_reduce.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from inrkit.core import runtime
from inrkit.models.diffusion import Denoiser
from inrkit.train.classify import ema_decay_at, update_ema


@dataclass
class DiffusionObjective:
    denoiser: Denoiser              # the trained network with its schedule (train mode)
    ema: Denoiser                   # its EMA (eval mode): what is sampled and saved
    optimizer: torch.optim.Optimizer
    ema_decay: float
    conditional: bool
    noise: torch.Generator          # timesteps, noise and label dropout
    snapshot_hook: Callable[[dict], None]   # the stage's: artifact and sample grid (rank 0)
    name: str = "train-diffusion"
    losses: tuple[str, ...] = ("loss",)
    generators: dict = field(default_factory=dict)

    def __post_init__(self):
        self.generators = dict(noise=self.noise)

    @property
    def modules(self) -> dict:
        return dict(net=self.denoiser.net, ema=self.ema.net)

    @property
    def optimizers(self) -> dict:
        return dict(adam=self.optimizer)

    @property
    def schedulers(self) -> dict:
        return {}

    def step(self, batch, pos: dict) -> dict[str, torch.Tensor]:
        device = next(self.denoiser.net.parameters()).device
        latents, labels = (t.to(device, non_blocking=True) for t in batch)
        loss = self.denoiser.loss(latents, labels if self.conditional else None, self.noise)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        runtime.average_gradients(self.denoiser.net)
        self.optimizer.step()
        update_ema(self.denoiser.net, self.ema.net, ema_decay_at(pos["step"], self.ema_decay))
        return dict(loss=loss.detach())

    def tick(self, pos: dict, record: dict) -> None:
        pass

    def snapshot(self, pos: dict) -> None:
        self.snapshot_hook(pos)
