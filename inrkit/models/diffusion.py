"""Discrete-time diffusion (DDPM, Ho et al. 2020, as improved by Nichol & Dhariwal 2021) over functa latents.

Spatial functa App. C "Generation": T = 1000 steps, a linear or cosine noise schedule, epsilon prediction with the
simple loss (x0 prediction as an option), timesteps sampled with probability decreasing linearly in t (App. C.4.3:
the ratio p(0) / p(T-1) is an option, 1 = uniform; Fig. 10: >= 3 is best), classifier-free guidance (Ho & Salimans
2022) with a dummy-label proportion of 0.2, and latents standardised as z~ = (z - mu) / (gamma sigma) (App. C.4.1,
Eq. 1) with scalar, vector (per feature, the paper's) or array statistics.

Shapes: latents are (B, s, s, c) as functasets store them; a schedule's alpha_bar is (T,) float64; timesteps are
int64 (B,) in [0, T). Samplers (`ddpm`, `ddim`) are pure functions with one signature,
`sampler(eps_fn, x_T, alpha_bar, noise, *, steps, eta)`, where `noise(i)` returns the fresh noise of step i for
the whole batch, drawn per sample (`SampleNoise`), so sample k is the same at any batch size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

T_DEFAULT = 1000
SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("eps", "x0")
NORMALISATIONS = ("scalar", "vector", "array")


def alpha_bar_schedule(kind: str = "cosine", steps: int = T_DEFAULT) -> torch.Tensor:
    """prod_{s<=t} (1 - beta_s) for t = 0..T-1, float64 (T,). linear: beta from 1e-4 to 0.02 scaled by 1000/T
    (Ho et al.); cosine: Nichol & Dhariwal's f(t) = cos^2((t/T + 0.008) / 1.008 * pi/2); beta clipped at 0.999."""
    if kind == "linear":
        scale = 1000 / steps
        betas = torch.linspace(scale * 1e-4, scale * 0.02, steps, dtype=torch.float64).clamp(max=0.999)
    elif kind == "cosine":
        f = torch.cos((torch.arange(steps + 1, dtype=torch.float64) / steps + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    else:
        raise ValueError(f"unknown schedule {kind!r}")
    return torch.cumprod(1 - betas, dim=0)


def _at(values: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """values[t] (float64 (T,)) broadcast against x (B, ...), in x's dtype and device."""
    return values.to(x.device)[t].to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


def q_sample(alpha_bar: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_t ~ q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), given the noise: same shape as x0."""
    a = _at(alpha_bar, t, x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def timestep_probabilities(steps: int = T_DEFAULT, ratio: float = 1.0) -> torch.Tensor:
    """p(t) for t = 0..T-1, linear in t with p(0) / p(T-1) = ratio (App. C.4.3; 1: uniform): float64 (T,)."""
    if ratio <= 0:
        raise ValueError("ratio must be positive")
    w = torch.linspace(ratio, 1.0, steps, dtype=torch.float64)
    return w / w.sum()


def sample_timesteps(probs: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n timesteps (int64 (n,)) drawn from p (float64 (T,)) on the generator's device."""
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.multinomial(probs.to(device, torch.float32), n, replacement=True, generator=generator)


@dataclass
class Normaliser:
    """z~ = (z - mu) / (gamma sigma) (App. C.4.1, Eq. 1). mu, sigma broadcast against latents (B, *shape), e.g.
    spatial (B, s, s, c) or tokens (B, R, d): (1,) scalar, (c,) vector (per channel), shape array (per position or
    token and channel: the GINR paper's per-token standardisation, App. A.3); float64, so
    denormalise(normalise(z)) == z to float64 rounding."""

    mu: torch.Tensor
    sigma: torch.Tensor
    gamma: float = 1.0

    @classmethod
    def fit(cls, latents: torch.Tensor, kind: str = "vector", gamma: float = 1.0) -> Normaliser:
        """Statistics over a training set (N, *shape): all dims (scalar), all but the last (vector), over N
        (array)."""
        z = latents.double()
        dims = {"scalar": tuple(range(z.dim())), "vector": tuple(range(z.dim() - 1)), "array": (0,)}[kind]
        mu, sigma = z.mean(dim=dims), z.std(dim=dims)
        mu, sigma = (mu.reshape(1), sigma.reshape(1)) if kind == "scalar" else (mu, sigma)
        return cls(mu=mu, sigma=sigma.clamp(min=1e-12), gamma=float(gamma))

    def normalise(self, z: torch.Tensor) -> torch.Tensor:
        out = (z.double() - self.mu.to(z.device)) / (self.gamma * self.sigma.to(z.device))
        return out.to(z.dtype)

    def denormalise(self, z: torch.Tensor) -> torch.Tensor:
        out = z.double() * (self.gamma * self.sigma.to(z.device)) + self.mu.to(z.device)
        return out.to(z.dtype)


class SampleNoise:
    """Per-sample Gaussian streams: sample k (of `ids`) draws from numpy's default_rng([seed, k]); `initial()` is
    x_T (B, *shape) and `__call__(i)` the fresh noise of sampler step i, so the batch never changes a sample."""

    def __init__(self, seed: int, ids: list[int], shape: tuple[int, ...], device: torch.device | str = "cpu"):
        self.rngs = [np.random.default_rng([seed, k]) for k in ids]
        self.shape, self.device = tuple(shape), device

    def _draw(self) -> torch.Tensor:
        return torch.from_numpy(np.stack([r.standard_normal(self.shape, dtype=np.float32) for r in self.rngs]))

    def initial(self) -> torch.Tensor:
        return self._draw().to(self.device)

    def __call__(self, i: int) -> torch.Tensor:
        return self._draw().to(self.device)


def _timesteps(total: int, steps: int) -> list[int]:
    """`steps` timesteps from T-1 down to 0, evenly spaced (the full chain when steps == T)."""
    return sorted({int(round(v)) for v in np.linspace(0, total - 1, steps)}, reverse=True)


def _x0_from_eps(x: torch.Tensor, eps: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return (x - (1 - a).sqrt() * eps) / a.sqrt()


@torch.no_grad()
def ddim(eps_fn: Callable, x: torch.Tensor, alpha_bar: torch.Tensor, noise: Callable[[int], torch.Tensor], *,
         steps: int = 50, eta: float = 0.0) -> torch.Tensor:
    """DDIM (Song et al. 2021) over `steps` evenly spaced timesteps; eta = 0 deterministic, eta = 1 is ancestral
    DDPM on the subsequence. eps_fn(x (B, ...), t int64 (B,)) -> eps; x is x_T; returns x_0 (B, ...)."""
    ts = _timesteps(len(alpha_bar), steps)
    for i, t in enumerate(ts):
        tt = torch.full((len(x),), t, dtype=torch.int64, device=x.device)
        a = _at(alpha_bar, tt, x)
        a_prev = _at(alpha_bar, torch.full_like(tt, ts[i + 1]), x) if i + 1 < len(ts) else torch.ones_like(a)
        eps = eps_fn(x, tt)
        x0 = _x0_from_eps(x, eps, a)
        sigma = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).clamp(min=0).sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp(min=0).sqrt() * eps
        if eta > 0 and i + 1 < len(ts):
            x = x + sigma * noise(i)
    return x


@torch.no_grad()
def ddpm(eps_fn: Callable, x: torch.Tensor, alpha_bar: torch.Tensor, noise: Callable[[int], torch.Tensor], *,
         steps: int | None = None, eta: float = 1.0) -> torch.Tensor:
    """Ancestral DDPM (Ho et al. 2020, posterior variance beta~_t) over every step (steps None: all T), i.e. DDIM
    with eta = 1, which is the same update."""
    return ddim(eps_fn, x, alpha_bar, noise, steps=steps or len(alpha_bar), eta=1.0)


SAMPLERS = {"ddpm": ddpm, "ddim": ddim}


class Denoiser(torch.nn.Module):
    """The network wrapped with its parameterisation: owns the training loss and the guided epsilon.

    net(x (B, s, s, c), t int64 (B,), labels int64 (B,) | None) -> (B, s, s, c), epsilon or x0 by `prediction`.
    Labels use `classes` as the dummy (unconditional) label; `classes` 0 is an unconditional model."""

    def __init__(self, net: torch.nn.Module, alpha_bar: torch.Tensor, *, prediction: str = "eps", classes: int = 0,
                 label_dropout: float = 0.2, probs: torch.Tensor | None = None, clip: float | None = None):
        super().__init__()
        self.net, self.prediction, self.classes, self.label_dropout = net, prediction, classes, label_dropout
        self.clip = clip  # sampling: x0 predictions clamped to [-clip, clip] (ADM's clip_denoised; None: never)
        self.register_buffer("alpha_bar", alpha_bar.double(), persistent=False)
        self.register_buffer("probs", probs if probs is not None else timestep_probabilities(len(alpha_bar)),
                             persistent=False)

    def loss(self, x0: torch.Tensor, labels: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
        """The simple loss: mean squared error of the predicted epsilon (or x0), timesteps from `probs`, labels
        replaced by the dummy label with probability label_dropout (conditional models)."""
        t = sample_timesteps(self.probs, len(x0), generator).to(x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=generator.device).to(x0)
        if self.classes:
            drop = torch.rand(len(x0), generator=generator, device=generator.device).to(x0.device)
            labels = torch.where(drop < self.label_dropout, torch.full_like(labels, self.classes), labels)
        out = self.net(q_sample(self.alpha_bar, x0, t, noise), t, labels if self.classes else None)
        target = noise if self.prediction == "eps" else x0
        return F.mse_loss(out.float(), target.float())

    def eps(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        out = self.net(x, t, labels).to(x.dtype)
        if self.prediction == "eps":
            return out
        a = _at(self.alpha_bar, t, x)
        return (x - a.sqrt() * out) / (1 - a).sqrt()

    def clipped(self, eps_fn: Callable) -> Callable:
        """eps_fn with its implied x0 clamped to [-clip, clip] and eps recomputed from it. At large t, abar_t is
        tiny (cosine: 2e-9 at t = T-1), so x0 = (x - sqrt(1 - abar) eps) / sqrt(abar) multiplies any error of a
        learned eps by up to 2e4; the training latents' range bounds it (ADM clamps x0 to the pixel range)."""
        if self.clip is None:
            return eps_fn

        def fn(x, t):
            a = _at(self.alpha_bar, t, x)
            x0 = _x0_from_eps(x, eps_fn(x, t), a).clamp(-self.clip, self.clip)
            return (x - a.sqrt() * x0) / (1 - a).sqrt()
        return fn

    def guided(self, labels: torch.Tensor | None, scale: float | None) -> Callable:
        """eps_fn for a sampler: unconditional (labels None), conditional (scale None), or classifier-free guided
        eps_u + scale (eps_c - eps_u) (scale 0: unconditional, 1: conditional); x0 clipped (`clipped`)."""
        if not self.classes or labels is None:
            null = torch.full((1,), self.classes, dtype=torch.int64) if self.classes else None
            return self.clipped(lambda x, t: self.eps(x, t, None if null is None else null.to(x.device).expand(len(x))))
        if scale is None or scale == 1.0:
            return self.clipped(lambda x, t: self.eps(x, t, labels.to(x.device)))

        def eps_fn(x, t):
            both = self.eps(torch.cat([x, x]), torch.cat([t, t]),
                            torch.cat([labels.to(x.device), torch.full_like(labels.to(x.device), self.classes)]))
            cond, uncond = both.chunk(2)
            return uncond + scale * (cond - uncond)
        return self.clipped(eps_fn)
