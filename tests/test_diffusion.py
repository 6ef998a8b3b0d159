"""Diffusion maths, samplers, guidance, normalisation and the denoisers (inrkit/models/diffusion.py, unet.py)."""

import math

import pytest
import torch

from inrkit.models import diffusion as D
from inrkit.models.unet import build_denoiser, unet_config


class Wrap(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x, t, y):
        return self.fn(x, t, y)


def tiny_unet(classes=3, latent=(4, 4, 8)):
    torch.manual_seed(0)
    net = build_denoiser(unet_config(latent=latent, classes=classes, channels=16, res_blocks=1,
                                     channel_mult=(1, 2), attention=(2,), heads=2))
    for p in net.parameters():  # zero-initialised outputs would make every test trivially pass
        torch.nn.init.normal_(p, std=0.05)
    return net.eval()


@pytest.mark.parametrize("kind", D.SCHEDULES)
def test_schedule_endpoints(kind):
    a = D.alpha_bar_schedule(kind)
    assert a.shape == (1000,) and a.dtype == torch.float64
    assert bool((a[1:] < a[:-1]).all())
    assert a[0] > 0.999 and a[-1] < 1e-4
    if kind == "linear":
        assert a[0].item() == pytest.approx(1 - 1e-4)
        assert a[-1].item() == pytest.approx(math.prod(1 - (1e-4 + (0.02 - 1e-4) * i / 999) for i in range(1000)))


def test_forward_process_statistics():
    a = D.alpha_bar_schedule("cosine")
    gen = torch.Generator().manual_seed(0)
    x0 = torch.full((200_000,), 1.5, dtype=torch.float64)
    for t in (0, 300, 700, 999):
        tt = torch.full((len(x0),), t)
        xt = D.q_sample(a, x0, tt, torch.randn(x0.shape, generator=gen, dtype=torch.float64))
        assert xt.mean().item() == pytest.approx(1.5 * a[t].sqrt().item(), abs=0.01)
        assert xt.var().item() == pytest.approx(1 - a[t].item(), abs=0.01)


@pytest.mark.parametrize("ratio", [1.0, 3.0, 7.0])
def test_timestep_sampling_ratio(ratio):
    p = D.timestep_probabilities(1000, ratio)
    assert p.sum().item() == pytest.approx(1.0) and (p[0] / p[-1]).item() == pytest.approx(ratio)
    t = D.sample_timesteps(p, 400_000, torch.Generator().manual_seed(1))
    counts = torch.bincount(t // 100, minlength=10).double()
    assert (counts[0] / counts[-1]).item() == pytest.approx((p[:100].sum() / p[-100:].sum()).item(), rel=0.05)


@pytest.mark.parametrize("kind", D.NORMALISATIONS)
def test_normalisation_round_trip(kind):
    z = torch.randn(50, 4, 4, 8, dtype=torch.float64) * torch.linspace(0.1, 3, 8) + torch.linspace(-2, 2, 8)
    n = D.Normaliser.fit(z, kind, gamma=2.0)
    assert n.mu.shape == {"scalar": (1,), "vector": (8,), "array": (4, 4, 8)}[kind]
    zn = n.normalise(z)
    assert torch.allclose(n.denormalise(zn), z, rtol=0, atol=1e-12)
    assert zn.std().item() == pytest.approx(0.5, rel=0.1)
    if kind == "vector":
        assert torch.allclose(zn.std(dim=(0, 1, 2)), torch.full((8,), 0.5, dtype=torch.float64))


def test_ddim_eta0_deterministic_and_batch_independent():
    den = D.Denoiser(tiny_unet(), D.alpha_bar_schedule("cosine"), classes=3)
    labels = torch.tensor([0, 1, 2, 0, 1])

    def draw(ids, eta, seed=7):
        noise = D.SampleNoise(seed, ids, (4, 4, 8))
        return D.ddim(den.guided(labels[ids], 2.0), noise.initial(), den.alpha_bar, noise, steps=10, eta=eta)
    for eta in (0.0, 1.0):
        every = draw([0, 1, 2, 3, 4], eta)
        assert torch.equal(every, draw([0, 1, 2, 3, 4], eta))
        # random weights make large x0: agreement up to float rounding, relative
        assert torch.allclose(draw([3], eta), every[3:4], rtol=1e-4, atol=1e-4)
        assert torch.allclose(draw([2, 4], eta), every[[2, 4]], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(draw([0], 0.0), draw([0], 1.0), atol=1e-3)
    assert not torch.allclose(draw([0], 0.0), draw([0], 0.0, seed=8), atol=1e-3)


def test_ddpm_is_ancestral_ddim_on_every_step():
    den = D.Denoiser(tiny_unet(classes=0), D.alpha_bar_schedule("cosine", 20))
    noise_a, noise_b = D.SampleNoise(1, [0, 1], (4, 4, 8)), D.SampleNoise(1, [0, 1], (4, 4, 8))
    a = D.ddpm(den.guided(None, None), noise_a.initial(), den.alpha_bar, noise_a)
    b = D.ddim(den.guided(None, None), noise_b.initial(), den.alpha_bar, noise_b, steps=20, eta=1.0)
    assert torch.equal(a, b)


def test_cfg_scales():
    den = D.Denoiser(tiny_unet(), D.alpha_bar_schedule("linear"), classes=3)
    x, t, labels = torch.randn(4, 4, 4, 8), torch.tensor([5, 100, 500, 900]), torch.tensor([0, 1, 2, 1])
    uncond = den.guided(None, None)(x, t)
    cond = den.eps(x, t, labels)
    assert torch.allclose(den.guided(labels, 0.0)(x, t), uncond, atol=1e-5)
    assert torch.allclose(den.guided(labels, 1.0)(x, t), cond, atol=1e-5)
    assert not torch.allclose(cond, uncond, atol=1e-3)
    four = den.guided(labels, 4.0)(x, t)
    assert torch.allclose(four, uncond + 4 * (cond - uncond), atol=1e-4)


def test_x0_prediction_converts_to_eps():
    a = D.alpha_bar_schedule("cosine")
    x0, eps = torch.randn(3, 4, 4, 8, dtype=torch.float64), torch.randn(3, 4, 4, 8, dtype=torch.float64)
    t = torch.tensor([10, 400, 800])
    xt = D.q_sample(a, x0, t, eps)
    oracle = D.Denoiser(Wrap(lambda x, tt, y: x0), a, prediction="x0")  # a perfect x0 predictor
    assert torch.allclose(oracle.eps(xt, t, None), eps, atol=1e-8)


def test_loss_drops_labels():
    den = D.Denoiser(tiny_unet(), D.alpha_bar_schedule("cosine"), classes=3, label_dropout=0.2)
    seen, net = [], den.net
    den.net = Wrap(lambda x, t, y: (seen.append(y.clone()), net(x, t, y))[1])
    x0, labels = torch.randn(2000, 4, 4, 8), torch.zeros(2000, dtype=torch.int64)
    loss = den.loss(x0, labels, torch.Generator().manual_seed(0))
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert (seen[0] == 3).float().mean().item() == pytest.approx(0.2, abs=0.03)
    assert set(seen[0].tolist()) == {0, 3}


def test_residual_mlp_and_unet_shapes():
    mlp = build_denoiser(unet_config(latent=(1, 1, 32), arch="mlp", classes=0, mlp_width=64))
    assert mlp(torch.randn(5, 1, 1, 32), torch.arange(5)).shape == (5, 1, 1, 32)
    net = build_denoiser(unet_config(latent=(8, 8, 16), classes=10, channels=16, channel_mult=(1, 2, 2),
                                     attention=(8, 4), heads=2))
    assert net(torch.randn(2, 8, 8, 16), torch.tensor([0, 999]), torch.tensor([3, 10])).shape == (2, 8, 8, 16)


def mixture_eps(alpha_bar, means, weights, std):
    """The exact epsilon of a Gaussian mixture's forward marginals: eps = -sqrt(1 - abar) grad log p_t(x)."""
    def eps_fn(x, t):
        a = alpha_bar[t].to(x.dtype).reshape(-1, 1)
        flat = x.reshape(len(x), -1)
        var = a * std**2 + 1 - a                                                  # (B, 1)
        diff = flat[:, None, :] - a.sqrt()[:, None] * means[None]                 # (B, K, d)
        logits = weights.log()[None] - (diff**2).sum(-1) / (2 * var)              # (B, K)
        score = -(logits.softmax(dim=1)[..., None] * diff).sum(1) / var           # (B, d)
        return (-(1 - a).sqrt() * score).reshape(x.shape)
    return eps_fn


@pytest.mark.parametrize("sampler, steps", [("ddpm", None), ("ddim", 50)])
def test_samplers_draw_a_mixture_from_its_exact_epsilon(sampler, steps):
    """DDPM (1000 steps) and DDIM (50, eta 0) given the exact epsilon of a 2-component mixture sample its weights,
    means and spread: the samplers' maths, separated from any training."""
    a = D.alpha_bar_schedule("cosine")
    means, weights, std = torch.tensor([[1.5, 1.0], [-1.5, -0.5]]), torch.tensor([0.7, 0.3]), 0.25
    noise = D.SampleNoise(0, list(range(1000)), (1, 1, 2))
    x = D.SAMPLERS[sampler](mixture_eps(a, means, weights, std), noise.initial(), a, noise, steps=steps, eta=0.0)
    x = x.reshape(-1, 2)
    near = torch.cdist(x, means).argmin(dim=1)
    assert (near == 0).float().mean().item() == pytest.approx(0.7, abs=0.05)
    for k in range(2):
        assert torch.allclose(x[near == k].mean(0), means[k], atol=0.06)
        assert x[near == k].std(0).mean().item() == pytest.approx(std, rel=0.15)


@pytest.mark.slow
def test_gaussian_mixture_is_sampled():
    """A denoiser trained on a 2-component mixture in 1x1x2 latents samples its means and weights: DDPM within
    0.05 of the weights and 0.1 of the means, DDIM (100 steps) within 0.1 and 0.2 (measured: 0.731 and 0.774 for
    the 0.7 component, means within 0.08)."""
    torch.manual_seed(0)
    means, weights = torch.tensor([[2.0, 2.0], [-2.0, -1.0]]), torch.tensor([0.7, 0.3])
    comp = torch.multinomial(weights, 20_000, replacement=True)
    data = (means[comp] + 0.3 * torch.randn(20_000, 2)).reshape(-1, 1, 1, 2)
    net = build_denoiser(unet_config(latent=(1, 1, 2), arch="mlp", mlp_width=128, mlp_blocks=3))
    den = D.Denoiser(net, D.alpha_bar_schedule("cosine"), probs=D.timestep_probabilities(1000, 3.0),
                     clip=float(data.abs().max()))
    opt, gen = torch.optim.Adam(net.parameters(), lr=1e-3), torch.Generator().manual_seed(0)
    for _ in range(6000):
        loss = den.loss(data[torch.randint(0, len(data), (256,))], None, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for sampler, steps, tol_w, tol_m in (("ddpm", None, 0.05, 0.1), ("ddim", 100, 0.1, 0.2)):
        noise = D.SampleNoise(0, list(range(2000)), (1, 1, 2))
        x = D.SAMPLERS[sampler](den.guided(None, None), noise.initial(), den.alpha_bar, noise, steps=steps)
        x = x.reshape(-1, 2)
        near = torch.cdist(x, means).argmin(dim=1)
        assert (near == 0).float().mean().item() == pytest.approx(0.7, abs=tol_w), sampler
        for k in range(2):
            assert torch.allclose(x[near == k].mean(0), means[k], atol=tol_m), sampler


def test_clip_bounds_the_implied_x0_and_leaves_small_ones():
    a = D.alpha_bar_schedule("cosine")
    den = D.Denoiser(Wrap(lambda x, t, y: torch.full_like(x, 0.3)), a, clip=2.0)
    x, t = torch.randn(4, 1, 1, 3, dtype=torch.float64), torch.tensor([999, 990, 500, 5])  # float64: 1/sqrt(abar)
    eps = den.guided(None, None)(x, t)                                                    # at t = 999 is 2e4
    x0 = (x - (1 - D._at(a, t, x)).sqrt() * eps) / D._at(a, t, x).sqrt()
    assert x0.abs().max().item() <= 2.0 + 1e-8
    raw = (x - (1 - D._at(a, t, x)).sqrt() * 0.3) / D._at(a, t, x).sqrt()
    small = raw.abs() < 2.0
    assert bool(small.any()) and torch.allclose(eps[small], torch.full_like(eps[small], 0.3), atol=1e-5)
    assert (raw.abs() > 2.0).any()  # t = 999 would have been far outside without the clip
