"""Reconstruction metrics on values in [0, 1]."""

from __future__ import annotations

import math

import numpy as np
import torch


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for data range 1."""
    mse = torch.mean((pred.float() - target.float()) ** 2).item()
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def ssim(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean SSIM (Wang et al. 2004, Gaussian window sigma 1.5) over frames; inputs (..., H, W, C)."""
    from skimage.metrics import structural_similarity

    p = pred.detach().cpu().float().numpy().reshape(-1, *pred.shape[-3:])
    t = target.detach().cpu().float().numpy().reshape(-1, *target.shape[-3:])
    scores = [
        structural_similarity(a, b, data_range=1.0, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False)
        for a, b in zip(p, t, strict=True)
    ]
    return float(np.mean(scores))
