"""Keypoints Prediction Loss (KPL), INR-GAN Sec. 4.2 / App. B.2, Algorithm 1: how linearly a generator's latent
codes determine the face keypoints of its images.

Fit (A, b) = argmin sum_i ||A w_i + b - k_i||^2 on N_tr generated samples (latent w_i, keypoints k_i of G(w_i)),
then score it on N_ts real faces embedded into the latent space (projection) with their detected keypoints.
KPL(random) fits the same model on randomly permuted training latents (each k_i paired with another sample's
latent) and scores it the same way: the loss of a model that can only learn the mean keypoints, which measures
how much the keypoints vary (App. B.2).

Normalisation. Algorithm 1 writes s as a sum of squared errors over test images; the magnitudes of Table 3
(KPL(random) 4.6e-4 to 4.7e-4 on FFHQ 256) fit a *mean over images, keypoints and both coordinates* of the
squared error with keypoints as (x, y) in [0, 1] image coordinates: a per-coordinate spread of about 0.02 image
sides (5 px at 256 px) for aligned FFHQ faces, whereas a per-image sum over the 136 coordinates would put it at
0.5 px. So KPL here is

    s = 1 / (N_ts * 68 * 2) * sum_j ||(A w_j + b) - k_j||^2,   k in [0, 1] units of the image side,

which does not depend on N_ts or on the resolution; s * 136 * N_ts is Algorithm 1's sum.
"""

from __future__ import annotations

import numpy as np


def fit_linear(latents: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least squares with a bias: latents (N, d), targets (N, k) -> A (d, k), b (k,) minimising
    ||latents A + b - targets||^2 (numpy lstsq on [latents, 1]; the minimum-norm solution when N <= d)."""
    x = np.asarray(latents, dtype=np.float64)
    design = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    solution, *_ = np.linalg.lstsq(design, np.asarray(targets, dtype=np.float64), rcond=None)
    return solution[:-1], solution[-1]


def predict(A: np.ndarray, b: np.ndarray, latents: np.ndarray) -> np.ndarray:
    return np.asarray(latents, dtype=np.float64) @ A + b


def kpl_score(train_latents: np.ndarray, train_keypoints: np.ndarray, test_latents: np.ndarray,
              test_keypoints: np.ndarray) -> tuple[float, np.ndarray]:
    """Algorithm 1: latents (N, d), keypoints (N, K, 2) in [0, 1] -> (mean squared error per test coordinate,
    predicted test keypoints (N_ts, K, 2))."""
    A, b = fit_linear(train_latents, _flat(train_keypoints))
    predicted = predict(A, b, test_latents).reshape(np.shape(test_keypoints))
    return float(np.mean((predicted - np.asarray(test_keypoints, dtype=np.float64)) ** 2)), predicted


def kpl_scores(train_latents: dict[str, np.ndarray], train_keypoints: np.ndarray,
               test_latents: dict[str, np.ndarray], test_keypoints: np.ndarray, *,
               seed: int = 0) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """KPL per latent space ({"z": ..., "w": ...}) and KPL(random) per space ("random_z", ...): the same fit on
    training latents permuted by a fixed-seed permutation, evaluated on the same test latents.
    Returns (scores, predicted test keypoints), both keyed by those names."""
    scores, predictions = {}, {}
    order = np.random.default_rng(seed).permutation(len(train_keypoints))
    for space, latents in train_latents.items():
        for name, x in ((space, np.asarray(latents)), (f"random_{space}", np.asarray(latents)[order])):
            scores[name], predictions[name] = kpl_score(x, train_keypoints, test_latents[space], test_keypoints)
    return scores, predictions


def _flat(keypoints: np.ndarray) -> np.ndarray:
    keypoints = np.asarray(keypoints, dtype=np.float64)
    return keypoints.reshape(len(keypoints), -1)
