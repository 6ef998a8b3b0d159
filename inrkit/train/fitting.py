"""The single-signal fitting objective (`inrkit fit`) for the one training loop.

One step is one Adam update on the mean squared error, over the full grid (LoE supp. A: every pixel every
step; the fields' fast full-grid path) or over `batch_pixels` random pixels drawn from an explicit generator
(saved in the training state, so a resumed fit draws the same pixels). The learning rate is decayed once by
`lr_decay` after `lr_decay_at` of the steps (supp. A: 5e-3 -> 5e-4 halfway), as a LambdaLR schedule so its
position is resumable.

Precision (inrkit.core.precision): the field's forward runs under the objective's autocast and the squared
error is reduced in float32; `compile` compiles the forward the step uses (the full grid or random pixels).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from inrkit.core.precision import FP32, Precision, compiled
from inrkit.fields.grid import make_grid
from inrkit.metrics.image import psnr_of_mse


def step_decay(steps: int, lr_decay: float, lr_decay_at: float) -> Callable[[int], float]:
    """LambdaLR factor: 1 for the first int(steps * lr_decay_at) steps, then lr_decay."""
    decay_step = int(steps * lr_decay_at)
    return lambda done: 1.0 if done < decay_step else lr_decay


@dataclass
class FitObjective:
    field: torch.nn.Module          # the coordinate network
    target: torch.Tensor            # (*shape, C) in [0, 1], on the field's device
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    batch_pixels: int               # 0 (or >= all pixels): the full grid every step
    seed: int
    snapshot_hook: Callable[[dict], None]  # writes the artifact and pictures (the stage's)
    name: str = "fit"
    losses: tuple[str, ...] = ("loss", "psnr", "lr")
    generators: dict = field(default_factory=dict)
    precision: Precision = FP32     # autocast of the forward (inrkit.core.precision)
    compile: bool = False           # torch.compile the forward the step uses

    def __post_init__(self):
        shape = tuple(self.target.shape[:-1])
        self.total = self.target[..., 0].numel()
        self.full = self.batch_pixels <= 0 or self.batch_pixels >= self.total
        self.flat_target = self.target.reshape(self.total, -1)
        self.coords = None if self.full else make_grid(shape).reshape(self.total, -1).to(self.target.device)
        self.generators = dict(pixels=torch.Generator(device=self.target.device).manual_seed(self.seed))
        self.forward = compiled(self.field.forward_grid if self.full else self.field, self.target.device,
                                self.compile)

    @property
    def modules(self) -> dict:
        return dict(field=self.field)

    @property
    def optimizers(self) -> dict:
        return dict(adam=self.optimizer)

    @property
    def schedulers(self) -> dict:
        return dict(lr=self.scheduler)

    def loss(self) -> torch.Tensor:
        """The mean squared error, reduced in float32 whatever the forward computed in."""
        if self.full:
            with self.precision.autocast():
                pred = self.forward(tuple(self.target.shape[:-1]))
            return torch.mean((pred.float() - self.target) ** 2)
        idx = torch.randint(self.total, (self.batch_pixels,), generator=self.generators["pixels"],
                            device=self.target.device)
        with self.precision.autocast():
            pred = self.forward(self.coords[idx])
        return torch.mean((pred.float() - self.flat_target[idx]) ** 2)

    def step(self, batch, pos: dict) -> dict[str, torch.Tensor]:
        # made on the device (a fill, not a host-to-device copy the step would wait for)
        lr = torch.full((), self.optimizer.param_groups[0]["lr"], device=self.target.device)
        loss = self.loss()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return dict(loss=loss.detach(), psnr=psnr_of_mse(loss.detach()), lr=lr)

    def tick(self, pos: dict, record: dict) -> None:
        pass

    def snapshot(self, pos: dict) -> None:
        self.snapshot_hook(pos)


def repeat_forever():
    """Fitting has no data stream: every step sees the whole signal (or draws its own pixels)."""
    while True:
        yield None
