"""Reconstruction metrics: PSNR (the one formula every stage uses) and SSIM.

PSNR = 10 log10(R^2 / MSE) dB, where R is the width of the range the values span: R = 1 for values in
[0, 1] (fields, functa targets), R = 2 for [-1, 1] (the data layer's and the generators' convention).
"""

from __future__ import annotations

import math

import numpy as np
import torch

MSE_FLOOR = 1e-12  # an exact reconstruction reads 120 dB (R = 1) instead of infinity, which JSON cannot hold


def mse_per_item(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, ...), (B, ...) -> (B,): the mean squared error of each item; differentiable (a training loss)."""
    return ((pred - target) ** 2).flatten(1).mean(dim=1)


def psnr_of_mse(mse: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean squared errors (any shape) -> PSNR in dB, elementwise, in mse's dtype."""
    db = -10.0 * torch.log10(mse.clamp_min(MSE_FLOOR))
    # 20 log10(R) is added only for R != 1, so R = 1 keeps the bits of -10 log10(MSE) (stored functaset psnr)
    return db if data_range == 1 else db + 20.0 * math.log10(data_range)


@torch.no_grad()
def psnr_per_item(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """(B, ...), (B, ...) -> (B,): each item's PSNR in dB (float32, no autograd graph)."""
    return psnr_of_mse(mse_per_item(pred.float(), target.float()), data_range)


@torch.no_grad()
def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> float:
    """One PSNR in dB over every value of pred (any shape) against target; the log is taken in float64."""
    mse = torch.mean((pred.float() - target.float()) ** 2)
    return psnr_of_mse(mse.double(), data_range).item()


def ssim(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean SSIM (Wang et al. 2004, Gaussian window sigma 1.5) over frames; inputs (..., H, W, C) in [0, 1]."""
    from skimage.metrics import structural_similarity

    p = pred.detach().cpu().float().numpy().reshape(-1, *pred.shape[-3:])
    t = target.detach().cpu().float().numpy().reshape(-1, *target.shape[-3:])
    scores = [
        structural_similarity(a, b, data_range=1.0, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False)
        for a, b in zip(p, t, strict=True)
    ]
    return float(np.mean(scores))
