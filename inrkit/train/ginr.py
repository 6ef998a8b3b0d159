"""The GINR reconstruction objective (Lee et al. 2023, App. A) for the one training loop.

Each step: images (B, C, H, W) in [-1, 1] -> latent tokens by one encoder pass -> the decoder at the image's
pixel centres -> the mean over the batch of each image's MSE against the image in [0, 1]; Adam (the stage's
betas (0.9, 0.999), constant rate), gradients averaged over ranks by one all_reduce. With `fraction` < 1 each
image is supervised at its own random round(fraction * H * W) pixels (App. A: 10% for FFHQ 1024). Those pixels
are drawn from a generator seeded by (seed, the image's place in the global stream, the rank), so they are the
same on a resume and at any batch size, and no generator state has to be saved (they are drawn on the
training device, so a CUDA run draws other pixels than a CPU run of the same seed).

Shapes: targets (B, H*W, C) in [0, 1]; coordinates (H*W, 2) shared, or (B, n, 2) per image when subsampled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from inrkit.core import artifacts, runtime
from inrkit.core.precision import FP32, Precision, compile_module
from inrkit.metrics.image import mse_per_item, psnr_of_mse
from inrkit.models.ginr import LocalityAwareINR
from inrkit.models.ginr_family import MODEL_KIND
from inrkit.models.metalearn import image_targets
from inrkit.train.metalearn import save_sheet


def subsample(coords: torch.Tensor, targets: torch.Tensor, fraction: float,
              keys: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's own random pixels: coords (N, 2), targets (B, N, C) -> (B, n, 2), (B, n, C), n =
    max(1, round(fraction * N)); image b's pixels come from a generator seeded with keys[b]."""
    n, dev = max(1, round(fraction * coords.shape[0])), coords.device
    picks = torch.stack([torch.randperm(coords.shape[0], generator=torch.Generator(dev).manual_seed(k), device=dev)[:n]
                         for k in keys])  # (B, n), drawn where the pixels are (no host copy on CUDA)
    return coords[picks], torch.gather(targets, 1, picks[..., None].expand(-1, -1, targets.shape[-1]))


@dataclass
class GinrObjective:
    model: LocalityAwareINR
    optimizer: torch.optim.Optimizer
    fraction: float                 # of each image's pixels supervised per step (1: all)
    seed: int                       # with the stream position, seeds the pixel subsets
    out: Path                       # the ginr-model artifact
    run_dir: Path
    options: dict                   # the stage options, written into the artifact
    pictures: torch.Tensor          # (P, C, H, W) training images shown in every snapshot
    name: str = "meta ginr"
    losses: tuple[str, ...] = ("loss", "psnr")
    precision: Precision = FP32     # autocast of the forward passes (inrkit.core.precision)
    compile: bool = False           # torch.compile the decoder's forward
    modules: dict = field(default_factory=dict)      # what the training state saves: set from model ...
    optimizers: dict = field(default_factory=dict)   # ... and optimizer
    schedulers: dict = field(default_factory=dict)   # none: App. A's rate is constant
    generators: dict = field(default_factory=dict)   # none: the pixel subsets are seeded per image

    def __post_init__(self):
        self.modules, self.optimizers = dict(model=self.model), dict(adam=self.optimizer)
        compile_module(self.model.decoder, self.pictures.device, self.compile)

    def pixel_keys(self, batch: int, pos: dict) -> list[int]:
        """One seed per image of this rank's batch: (seed, stream position, rank, index) mixed into 63 bits."""
        first = pos["images"] + runtime.rank() * batch
        return [(self.seed * 1_000_003 + first + i) % 2**63 for i in range(batch)]

    def step(self, batch, pos: dict) -> dict[str, torch.Tensor]:
        images = batch[0].to(self.pictures.device, non_blocking=True)
        targets, coords = image_targets(images)
        if self.fraction < 1:
            coords, targets = subsample(coords, targets, self.fraction, self.pixel_keys(len(images), pos))
        with self.precision.autocast():
            mse = mse_per_item(self.model(self.model.encode(images), coords), targets)  # float32 targets promote
        loss = mse.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        runtime.average_gradients(self.model)
        self.optimizer.step()
        return dict(loss=loss.detach(), psnr=psnr_of_mse(mse.detach()).mean())

    def tick(self, pos: dict, record: dict) -> None:
        pass

    @torch.no_grad()
    def snapshot(self, pos: dict) -> None:
        metrics = dict(step=pos["step"], images=pos["images"])
        artifacts.save(self.out, artifacts.Artifact(kind=MODEL_KIND, tensors=self.model.state_dict(),
                                                    config=dict(model=self.model.config), options=self.options,
                                                    metrics=metrics))
        was_training = self.model.training
        self.model.eval()
        recon = self.model.render(self.model.encode(self.pictures)).float().clamp(0, 1)  # one forward pass
        self.model.train(was_training)
        save_sheet(self.run_dir, self.pictures, recon.permute(0, 3, 1, 2), pos["step"], "PSNR (dB)")
