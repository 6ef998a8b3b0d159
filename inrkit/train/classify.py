"""The classification objective on functasets (spatial functa App. C.1-C.3, Table 5; App. B.1) for the one loop.

Cross-entropy with label smoothing l (the one-hot target becomes 1 - l + l/n on the class and l/n elsewhere, as
App. B.1 writes it: torch's `label_smoothing`), AdamW with decoupled weight decay on the weight matrices, a linear
warm-up then cosine decay of the learning rate (the paper leaves the schedule open; this is the common ViT one),
and an EMA of the weights (App. B.1: decay 0.9999) that is evaluated and saved. The EMA's decay is warmed up as
min(decay, (1 + t) / (10 + t)) at step t (TensorFlow's ExponentialMovingAverage with num_updates): without it, a
run much shorter than 1 / (1 - decay) steps would evaluate weights still dominated by the initialisation.
Gradients are averaged over ranks by one all_reduce, like the other objectives.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from inrkit.core import runtime
from inrkit.core.precision import FP32, Precision, compile_module


def warmup_cosine(steps: int, warmup: int) -> Callable[[int], float]:
    """LambdaLR factor: linear from 1/warmup to 1 over `warmup` steps, then cosine to 0 at `steps`."""
    def factor(done: int) -> float:
        if done < warmup:
            return (done + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (done - warmup) / max(steps - warmup, 1))))
    return factor


def ema_decay_at(step: int, decay: float) -> float:
    """The EMA decay used after `step` updates: min(decay, (1 + step) / (10 + step))."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_ema(net: torch.nn.Module, ema: torch.nn.Module, decay: float) -> None:
    for p_ema, p in zip(ema.parameters(), net.parameters(), strict=True):
        p_ema.lerp_(p.detach(), 1 - decay)


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int = 5) -> tuple[float, float]:
    """(top-1, top-k accuracy) of logits (N, classes) against labels (N,)."""
    hits = logits.topk(min(k, logits.shape[1]), dim=1).indices == labels[:, None]
    return hits[:, 0].float().mean().item(), hits.any(dim=1).float().mean().item()


@torch.no_grad()
def accuracy(net: torch.nn.Module, latents: torch.Tensor, labels: torch.Tensor, batch: int = 512,
             k: int = 5) -> tuple[float, float, torch.Tensor]:
    """(top-1, top-k accuracy, logits (N, classes)) of `net` in eval mode on a whole set."""
    device = next(net.parameters()).device
    logits = torch.cat([net(latents[i:i + batch].to(device)).float().cpu() for i in range(0, len(latents), batch)])
    return (*topk_accuracy(logits, labels, k), logits)


@dataclass
class ClassifierObjective:
    net: torch.nn.Module            # FunctaClassifier (train mode)
    ema: torch.nn.Module            # its EMA (eval mode): what is evaluated and saved
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    label_smoothing: float
    ema_decay: float
    snapshot_hook: Callable[[dict], None]           # the stage's: writes the classifier artifact (rank 0)
    evaluate: Callable[[torch.nn.Module], dict] | None = None  # held-out top-1/top-5 of the EMA at ticks
    precision: Precision = FP32     # autocast of the forward (inrkit.core.precision); the loss reduces in fp32
    compile: bool = False           # torch.compile the classifier's forward
    name: str = "train-classifier"
    losses: tuple[str, ...] = ("loss", "top1", "lr")
    generators: dict = field(default_factory=dict)

    def __post_init__(self):
        compile_module(self.net, next(self.net.parameters()).device, self.compile)

    @property
    def modules(self) -> dict:
        return dict(net=self.net, ema=self.ema)

    @property
    def optimizers(self) -> dict:
        return dict(adamw=self.optimizer)

    @property
    def schedulers(self) -> dict:
        return dict(lr=self.scheduler)

    def step(self, batch, pos: dict) -> dict[str, torch.Tensor]:
        device = next(self.net.parameters()).device
        latents, labels = (t.to(device, non_blocking=True) for t in batch)
        lr = torch.full((), self.optimizer.param_groups[0]["lr"], device=device)  # no host sync
        with self.precision.autocast():
            logits = self.net(latents)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        runtime.average_gradients(self.net)
        self.optimizer.step()
        self.scheduler.step()
        update_ema(self.net, self.ema, ema_decay_at(pos["step"], self.ema_decay))
        top1 = (logits.detach().argmax(dim=1) == labels).float().mean()
        return dict(loss=loss.detach(), top1=top1, lr=lr)

    def tick(self, pos: dict, record: dict) -> None:
        if self.evaluate is not None:
            result = self.evaluate(self.ema)
            record.update(result)
            pos.update(result)

    def snapshot(self, pos: dict) -> None:
        self.snapshot_hook(pos)
