"""`inrkit meta --arch ginr`: the locality-aware generalizable INR (Lee et al. 2023) trained by reconstruction.

The meta stage (inrkit/stages/meta.py) hands --arch ginr here for its checks and its objective; the loop, the
run folder, resume, torchrun and the progress line are the meta stage's. App. A: MSE, Adam (0.9, 0.999) at a
constant rate (the recipes set 1e-4 and batch 16), optionally a random fraction of each image's pixels.
"""

from __future__ import annotations

from pathlib import Path

import torch

from inrkit.core.errors import InrkitError
from inrkit.core.precision import resolve_precision
from inrkit.core.runtime import seed_all
from inrkit.models.ginr import LocalityAwareINR, ginr_config
from inrkit.train.ginr import GinrObjective

BETAS = (0.9, 0.999)  # App. A
PICTURE_ITEMS = 8  # training images shown in each snapshot picture


def parse_sigmas(text: str) -> list[float]:
    """'128,32' -> [128.0, 32.0]: the bandwidths sigma_1, ..., sigma_L, each at least 1."""
    try:
        sigmas = [float(v) for v in str(text).split(",")]
    except ValueError:
        raise InrkitError(f"--sigmas {text!r} is not a list of bandwidths; write e.g. 128,32.") from None
    if not all(s >= 1 for s in sigmas):
        raise InrkitError(f"--sigmas {text!r}: every bandwidth must be at least 1.")
    return sigmas


def model_config(cfg) -> dict:
    """The GINR model config of a MetaConfig (one sentence for sizes that cannot work)."""
    if not 0 < cfg.fraction <= 1:
        raise InrkitError(f"--fraction must be in (0, 1], got {cfg.fraction}.")
    if not 1 <= cfg.patch <= cfg.resolution:
        raise InrkitError(f"--patch {cfg.patch} cannot tile {cfg.resolution}x{cfg.resolution} images; choose a "
                          f"patch side from 1 to {cfg.resolution}.")
    config = ginr_config(resolution=cfg.resolution, channels=cfg.channels, patch=cfg.patch, tokens=cfg.tokens,
                         width=cfg.encoder_width, depth=cfg.encoder_depth, heads=cfg.encoder_heads, dim=cfg.dim,
                         features=cfg.features, sigmas=parse_sigmas(cfg.sigmas), sigma_q=cfg.sigma_q,
                         decoder_heads=cfg.decoder_heads, selective=cfg.selective, multiband=cfg.multiband)
    with torch.device("meta"):  # the model's own checks (widths against heads, feature sizes), nothing allocated
        LocalityAwareINR(config)
    return config


def setup(cfg, dev: torch.device, options: dict, dataset) -> GinrObjective:
    """The model (seeded), Adam and the snapshot pictures, as the objective."""
    seed_all(cfg.seed)
    model = LocalityAwareINR(model_config(cfg)).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=BETAS)
    pictures = torch.stack([dataset[i][0] for i in range(min(PICTURE_ITEMS, len(dataset)))]).to(dev)
    return GinrObjective(model=model, optimizer=optimizer, fraction=cfg.fraction, seed=cfg.seed, out=Path(cfg.out),
                         run_dir=Path(cfg.out).with_suffix(""), options=options, pictures=pictures,
                         precision=resolve_precision(cfg.precision, dev), compile=cfg.compile)
