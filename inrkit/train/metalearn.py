"""The meta-learning objective (functa; spatial functa App. A) for the one training loop.

Each step: the inner loop fits latents from zero with Meta-SGD for `inner_steps` steps, the outer Adam step
moves the shared parameters (SIREN, latent-to-modulation convolution, Meta-SGD rates) on the loss after it,
gradients averaged over ranks by one explicit all_reduce (DDP's hooks and the second-order inner loop's double
backward do not mix well), and the Meta-SGD rates are clipped after the step.

Precision: the inner and the outer loop run under the objective's autocast (its casts are differentiable, so
the second-order inner loop differentiates through them; tests/test_precision.py checks it on CPU bf16); the
per-image errors are reduced in float32, since the float32 targets promote the bf16 reconstructions before the
squares are summed. `compile` compiles the model's
forward in place: torch.compile cannot differentiate a compiled graph twice, so it needs --first-order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from inrkit.core import artifacts, runtime
from inrkit.core.errors import InrkitError
from inrkit.core.pictures import image_grid, plot_curve, save_png
from inrkit.core.precision import FP32, Precision, compile_module
from inrkit.models.functa_family import MODEL_KIND
from inrkit.models.metalearn import decode, encode, outer_loss


@dataclass
class MetaObjective:
    model: torch.nn.Module          # SpatialFuncta
    optimizer: torch.optim.Optimizer
    inner_steps: int
    first_order: bool
    checkpointed: bool
    out: Path                       # the functa-model artifact
    run_dir: Path
    options: dict                   # the stage options, written into the artifact
    pictures: torch.Tensor          # (P, C, H, W) training images shown in every snapshot
    name: str = "meta"
    losses: tuple[str, ...] = ("loss", "psnr", "psnr_start", "meta_lr")
    schedulers: dict = field(default_factory=dict)
    generators: dict = field(default_factory=dict)
    precision: Precision = FP32     # autocast of the inner and outer loop (inrkit.core.precision)
    compile: bool = False           # torch.compile the model's forward (first order only)

    def __post_init__(self):
        if self.compile and not self.first_order:
            raise InrkitError("--compile needs --first-order: torch.compile cannot differentiate the second-order "
                              "inner loop's compiled forward twice.")
        compile_module(self.model, self.pictures.device, self.compile)

    @property
    def modules(self) -> dict:
        return dict(model=self.model)

    @property
    def optimizers(self) -> dict:
        return dict(adam=self.optimizer)

    def step(self, batch, pos: dict) -> dict[str, torch.Tensor]:
        images = batch[0].to(self.pictures.device, non_blocking=True)
        with self.precision.autocast():
            loss, info = outer_loss(self.model, images, self.inner_steps, self.first_order, self.checkpointed)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        runtime.average_gradients(self.model)
        self.optimizer.step()
        self.model.clip_learning_rates()
        return dict(loss=loss.detach(), psnr=info["psnr"].mean(), psnr_start=info["psnr_start"].mean(),
                    meta_lr=self.model.meta_lr.detach().mean())

    def tick(self, pos: dict, record: dict) -> None:
        pass

    def snapshot(self, pos: dict) -> None:
        metrics = dict(step=pos["step"], images=pos["images"])
        artifacts.save(self.out, artifacts.Artifact(kind=MODEL_KIND, tensors=self.model.state_dict(),
                                                    config=dict(model=self.model.config), options=self.options,
                                                    metrics=metrics))
        save_reconstructions(self.run_dir, self.model, self.pictures, pos["step"], self.inner_steps)


def save_reconstructions(run_dir: Path, model, images: torch.Tensor, step: int, inner_steps: int) -> None:
    """Targets (top row) above their inner-loop reconstructions (bottom row), and the PSNR curve."""
    z, _ = encode(model, images, inner_steps)
    save_sheet(run_dir, images, decode(model, z), step, f"PSNR after {inner_steps} inner steps (dB)")


def save_sheet(run_dir: Path, images: torch.Tensor, recon: torch.Tensor, step: int, ylabel: str) -> None:
    """reconstructions-STEP.png: images (P, C, H, W) in [-1, 1] (top row) above recon (P, C, H, W) in [0, 1]
    (bottom row); and psnr.png, the PSNR of stats.jsonl against the step."""
    sheet = image_grid(torch.cat([(images + 1) / 2, recon]).permute(0, 2, 3, 1), columns=len(images), gap=0,
                       zoom_to=96)  # small images are enlarged so the picture is readable
    save_png(run_dir / f"reconstructions-{step:07d}.png", sheet)
    lines = (run_dir / "stats.jsonl").read_text().splitlines() if (run_dir / "stats.jsonl").is_file() else []
    history = [json.loads(line) for line in lines if line.strip()]
    if history:
        plot_curve(run_dir / "psnr.png", [h["step"] for h in history], [h["psnr"] for h in history], "outer step",
                   ylabel, "meta-learning")
