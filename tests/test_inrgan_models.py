"""INR-GAN generator and StyleGAN2 config-e discriminator: shapes, formulas, grids, counts."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
import torch.nn.functional as F

from inrkit.core.errors import InrkitError
from inrkit.fields.grid import make_grid
from inrkit.models.discriminator import Discriminator, channels_at, discriminator_config, minibatch_stddev
from inrkit.models.inrgan import (
    InrGanGenerator,
    block_shapes,
    count_macs,
    count_params,
    generator_config,
    generator_summary,
    lerp_params,
)
from inrkit.models.macs import measured_macs


def tiny(**kw) -> dict:
    """A 16x16 generator with two blocks (8 and 16) and small widths."""
    args = dict(resolution=16, blocks=[(8, 2, 16), (16, 2, 12)], z_dim=8, hyper_hidden=32, fmm_rank=3)
    return generator_config(**(args | kw))


def make(cfg: dict, seed: int = 0) -> InrGanGenerator:
    torch.manual_seed(seed)
    return InrGanGenerator(cfg).eval()


def z_batch(n: int, dim: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def _options() -> list[dict]:
    """Every weight source x Fourier on/off x {multi-scale nearest, multi-scale bilinear, single scale};
    coordinate skips alternate so both settings meet every other option."""
    sources = [dict(arch="inr-latent")] + [dict(modulation=m) for m in ("fmm", "fmm-linear", "full")]
    scales = [dict(upsample="nearest"), dict(upsample="bilinear"), dict(multiscale=False)]
    combos = itertools.product(sources, [True, False], scales)
    return [src | scale | dict(fourier=f, coord_skip=i % 2 == 0) for i, (src, f, scale) in enumerate(combos)]


OPTIONS = _options()


# ---------------------------------------------------------------------------------------------------------
# An explicit, unoptimised reference of the INR: concatenations, upsampling of activations, a loop over
# samples and the FMM weight written as a sum over the rank. The model must agree with it.


def reference_weight(G, theta, name: str, i: int):
    """(W (in, out), b (out,)) of one layer for sample i, from the paper's formulas."""
    key = name.replace(".", "_")
    kinds = {lay.name: lay for lay in G.layers}
    layer = kinds[name]
    if layer.kind == "fmm":
        A, B = theta[f"{name}.A"][i], theta[f"{name}.B"][i]
        low_rank = sum(torch.outer(A[:, r], B[r, :]) for r in range(A.shape[1]))  # A B, rank by rank
        mod = torch.sigmoid(low_rank) if G.config["modulation"] == "fmm" else low_rank
        return G.shared[f"{key}_weight"] * mod, theta[f"{name}.bias"][i]
    if layer.kind == "direct":
        return theta[f"{name}.weight"][i], theta[f"{name}.bias"][i]
    bias = G.shared[f"{key}_bias"]
    if layer.latent:
        bias = bias + theta["latent"][i] @ G.shared[f"{key}_latent"]
    return G.shared[f"{key}_weight"], bias


def reference_image(G, theta, i: int, resolution, ranges=None) -> torch.Tensor:
    cfg, slope = G.config, G.config["negative_slope"]
    freqs = G.fourier_matrices(theta)
    h, prev = None, None
    for k, (shape, (_, depth, _)) in enumerate(zip(block_shapes(cfg, resolution), cfg["blocks"], strict=True)):
        p = make_grid(shape, ranges).view(-1, 2)
        enc = torch.cat([torch.sin(p @ freqs[k][i].T), torch.cos(p @ freqs[k][i].T)], 1) if freqs else p
        x = enc
        if h is not None:  # upsample the activations themselves, then concatenate (Sec. 3.3)
            mode = "nearest-exact" if cfg["upsample"] == "nearest" else "bilinear"
            grid = h.T.reshape(1, -1, *prev)
            up = F.interpolate(grid, size=shape, mode=mode, **({} if mode != "bilinear" else {"align_corners": False}))
            x = torch.cat([up.reshape(h.shape[1], -1).T, enc], 1)
        for j in range(depth):
            if j > 0 and cfg["coord_skip"]:
                x = torch.cat([x, p], 1)
            W, b = reference_weight(G, theta, f"b{k}.l{j}", i)
            x = F.leaky_relu(x @ W + b, slope)
        h, prev = x, shape
    W, b = reference_weight(G, theta, "rgb", i)
    return (h @ W + b).T.reshape(-1, *block_shapes(cfg, resolution)[-1])


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_every_option_matches_reference_shapes_params_and_macs(options):
    cfg = tiny(**options)
    G = make(cfg)
    z = z_batch(2)
    with torch.no_grad():
        theta = G.inr_params(G.mapping(z))
        img = G.render(theta)
        assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
        for i in range(2):
            torch.testing.assert_close(img[i], reference_image(G, theta, i, 16), rtol=1e-4, atol=1e-4)
    assert G.num_params() == count_params(cfg)["total"]
    assert measured_macs(lambda: G(z[:1])) == G.macs_per_image()


def test_paper_equation_fmm_weight_and_which_layers_are_factorized():
    G = make(tiny(fourier=False))
    theta = G.inr_params(G.mapping(z_batch(2)))
    weights = G.layer_weights(theta)
    kinds = {lay.name: lay.kind for lay in G.layers}
    # Sec. 3.2: FMM everywhere but the first (coordinate-input) and last layers, which are predicted.
    assert kinds == {"b0.l0": "direct", "b0.l1": "fmm", "b1.l0": "fmm", "b1.l1": "fmm", "rgb": "direct"}
    for name in ("b0.l1", "b1.l0"):
        for i in range(2):
            W_s, A, B = G.shared[name.replace(".", "_") + "_weight"], theta[f"{name}.A"][i], theta[f"{name}.B"][i]
            explicit = torch.empty_like(W_s)
            for a, c in itertools.product(range(W_s.shape[0]), range(W_s.shape[1])):
                explicit[a, c] = W_s[a, c] * torch.sigmoid(sum(A[a, r] * B[r, c] for r in range(A.shape[1])))
            torch.testing.assert_close(weights[name][0][i], explicit)
    assert theta["b0.l1.A"].shape == (2, 16 + 2, 3)  # (in = width 16 + coordinate skip (y, x), rank)


def test_batch_consistency_sample_k_does_not_depend_on_batch():
    G = make(tiny())
    z = z_batch(5)
    with torch.no_grad():
        full = G(z)
        for k in range(5):
            torch.testing.assert_close(G(z[k:k + 1])[0], full[k], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(G(z[1:4]), full[1:4], rtol=1e-4, atol=1e-4)


def test_chunked_render_equals_whole_grid_render():
    for upsample in ("nearest", "bilinear"):
        G = make(tiny(upsample=upsample))
        grads = []
        for chunk in (7, None):
            G.zero_grad()
            img = G.render(G.inr_params(G.mapping(z_batch(2))), chunk=chunk)
            img.square().mean().backward()
            grads.append((img.detach(), G.head.weight.grad.clone(), G.shared["b1_l0_weight"].grad.clone()))
        for chunked, whole in zip(*grads, strict=True):
            torch.testing.assert_close(chunked, whole, rtol=1e-4, atol=1e-5)


def test_superresolution_and_zoom_out_shapes_and_coinciding_centre():
    G = make(tiny())
    with torch.no_grad():
        theta = G.inr_params(G.mapping(z_batch(2)))
        base = G.render(theta)
        assert G.render(theta, resolution=32).shape == (2, 3, 32, 32)  # scale 2
        assert G.render(theta, resolution=(20, 12), ranges=[(-0.3, 1.3), (0.0, 1.0)]).shape == (2, 3, 20, 12)
        # [-0.5, 1.5] at 32 px keeps 16 px per unit: every block's pixel centres inside [0, 1] coincide with
        # the training grid's, and nearest upsampling picks the same coarse cells: the centre is identical.
        wide = G.render(theta, resolution=32, ranges=[(-0.5, 1.5)] * 2)
        torch.testing.assert_close(wide[..., 8:24, 8:24], base, rtol=1e-5, atol=1e-5)
        assert (wide[..., :8, :] - wide[..., 8:16, :]).abs().max() > 1e-3  # the outside is not a copy


def test_zoom_out_with_bilinear_upsampling_matches_away_from_the_border():
    G = make(tiny(upsample="bilinear"))
    with torch.no_grad():
        theta = G.inr_params(G.mapping(z_batch(2)))
        base = G.render(theta)
        wide = G.render(theta, resolution=32, ranges=[(-0.5, 1.5)] * 2)[..., 8:24, 8:24]
        # Bilinear clamps at the training grid's border but interpolates outside features in the wide one:
        # one coarse pixel (2 fine pixels) at the border differs, the interior is identical.
        torch.testing.assert_close(wide[..., 2:-2, 2:-2], base[..., 2:-2, 2:-2], rtol=1e-5, atol=1e-5)
        assert (wide[..., 0, :] - base[..., 0, :]).abs().max() > 1e-4


def test_low_res_rendering_is_subsampling_only_without_multiscale():
    # Pixel centres of an R/3 grid are centres of the R grid (pixel 3i+1), so a single-resolution INR
    # (every block on the output grid) renders exactly the subsampled image, 9x cheaper per pixel.
    flat = make(tiny(resolution=24, blocks=[(24, 2, 16), (24, 2, 12)], multiscale=False))
    with torch.no_grad():
        theta = flat.inr_params(flat.mapping(z_batch(2)))
        torch.testing.assert_close(flat.render(theta, 8), flat.render(theta)[..., 1::3, 1::3], rtol=1e-5,
                                   atol=1e-5)
    # Multi-scale: blocks run on grids 3x coarser too, so a pixel's coarse context is a 3x larger cell
    # centred elsewhere. The low-res image is a faithful evaluation of the same INR on coarser grids (App. G)
    # but not a subsampling of the full-resolution image.
    ms = make(tiny(resolution=24, blocks=[(12, 2, 16), (24, 2, 12)]))
    with torch.no_grad():
        theta = ms.inr_params(ms.mapping(z_batch(2)))
        low, full = ms.render(theta, 8), ms.render(theta)
    assert low.shape == (2, 3, 8, 8) and (low - full[..., 1::3, 1::3]).abs().max() > 1e-3
    assert block_shapes(ms.config, 8) == [(4, 4), (8, 8)]
    assert count_macs(ms.config, 8)["inr"] * 9 == count_macs(ms.config)["inr"]  # 9x fewer pixels per block


def test_truncation_and_w_avg():
    G = make(tiny())
    G.w_avg.normal_()
    z = z_batch(4)
    with torch.no_grad():
        torch.testing.assert_close(G(z, psi=1.0), G.render(G.inr_params(G.mapping(z))))
        collapsed = G(z, psi=0.0)  # every sample at w_avg
        torch.testing.assert_close(collapsed, collapsed[:1].expand_as(collapsed))
        w = G.mapping(z)
        torch.testing.assert_close(G.mapping(z, psi=0.5), G.w_avg + 0.5 * (w - G.w_avg))
    G.train()
    before = G.w_avg.clone()
    G(z)  # training mode tracks the EMA of w (StyleGAN2)
    assert not torch.equal(G.w_avg, before)
    G.estimate_w_avg(num_samples=64)
    torch.testing.assert_close(G.w_avg, G.mapping(torch.randn(64, 8, generator=torch.Generator().manual_seed(0)))
                               .mean(0).detach())


def test_theta_interpolation_and_it_being_affine_in_w():
    G = make(tiny())
    with torch.no_grad():
        w1, w2 = G.mapping(z_batch(2, seed=3)), G.mapping(z_batch(2, seed=4))
        t1, t2 = G.inr_params(w1), G.inr_params(w2)
        torch.testing.assert_close(G.render(lerp_params(t1, t2, 1.0)), G.render(t1))
        mixed = G.render(lerp_params(t1, t2, 0.3))
        # theta is a linear projection of w, so interpolating theta is interpolating w (Fig. 5).
        torch.testing.assert_close(mixed, G.render(G.inr_params(0.3 * w1 + 0.7 * w2)), rtol=1e-4, atol=1e-4)


def test_fourier_frequencies_per_block():
    G = make(tiny(fourier_features=[5, 3]))
    theta = G.inr_params(G.mapping(z_batch(4)))
    freqs = G.fourier_frequencies(theta)
    assert [f.shape for f in freqs] == [(4, 5), (4, 3)]
    torch.testing.assert_close(freqs[1], theta["b1.fourier"].norm(dim=-1))
    latent = make(tiny(arch="inr-latent"))
    shared = latent.fourier_frequencies(latent.inr_params(latent.mapping(z_batch(3))))
    assert shared[0].shape == (3, 8) and torch.equal(shared[0][0], shared[0][2])  # learned, not predicted


def test_gradients_reach_every_parameter():
    for options in (dict(), dict(arch="inr-latent"), dict(modulation="full", upsample="bilinear")):
        G = make(tiny(**options)).train()
        G(z_batch(2)).square().mean().backward()
        missing = [n for n, p in G.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not missing, missing


def test_bf16_autocast_forward_and_backward():
    # CPU autocast exercises the same dtype handling as CUDA bf16: fp32 head and Fourier angles, bf16 GEMMs.
    for options in (dict(), dict(upsample="bilinear", modulation="full"), dict(arch="inr-latent")):
        G = make(tiny(**options))
        z = z_batch(2)
        reference = G(z).detach()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            img = G(z)
            theta = G.inr_params(G.mapping(z))
            assert all(t.dtype == torch.float32 for k, t in theta.items() if k != "latent")
        img.float().square().mean().backward()
        error = (img.float() - reference).square().mean() / reference.square().mean()
        assert img.dtype == torch.bfloat16 and error.sqrt() < 0.1
    D = Discriminator(discriminator_config(resolution=16, channel_base=256, channel_max=32))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(D(torch.randn(3, 3, 16, 16)).float()).all()


def test_config_round_trip_rebuilds_the_same_model():
    cfg = tiny(modulation="fmm-linear", fourier_features=[4, 2], upsample="bilinear")
    assert json.loads(json.dumps(cfg)) == cfg and generator_config(**cfg) == cfg
    G = make(cfg)
    G.w_avg.normal_()
    H = InrGanGenerator(json.loads(json.dumps(G.config)))
    assert H.config == cfg
    H.load_state_dict(G.state_dict())
    z = z_batch(2)
    with torch.no_grad():
        torch.testing.assert_close(H.eval()(z, psi=0.7), G(z, psi=0.7))


def test_config_errors_are_one_sentence():
    with pytest.raises(InrkitError, match="arch"):
        generator_config(arch="stylegan")
    with pytest.raises(InrkitError, match="must not decrease"):
        generator_config(resolution=64, blocks=[(32, 2, 8), (16, 2, 8)])
    with pytest.raises(InrkitError, match="fourier_features"):
        generator_config(resolution=16, blocks=[(16, 2, 8)], fourier_features=[2, 2])
    with pytest.raises(InrkitError, match="unknown generator config keys: kind"):
        InrGanGenerator(tiny() | {"kind": "generator"})
    with pytest.raises(InrkitError, match="unknown discriminator"):
        Discriminator(discriminator_config(resolution=16) | {"fmaps": 1})


def test_param_count_of_a_tiny_config_by_hand():
    cfg = generator_config(resolution=8, blocks=[(4, 2, 6), (8, 1, 4)], z_dim=5, hyper_hidden=7, hyper_layers=2,
                           fmm_rank=2, fourier_features=[3, 2], out_channels=3)
    mapping = (5 * 7 + 7) + (7 * 7 + 7)
    # per-sample theta: Fourier W (f x 2) per block; FMM layers A (in x r) + B (r x out) + bias; rgb direct.
    b0 = 3 * 2 + (6 * 2 + 2 * 6 + 6) + ((6 + 2) * 2 + 2 * 6 + 6)  # l0: in = 2*3 Fourier; l1: in = 6 + (y, x)
    b1 = 2 * 2 + ((6 + 4) * 2 + 2 * 4 + 4)  # l0: in = 6 (from block 0) + 2*2 Fourier
    rgb = 4 * 3 + 3
    theta = b0 + b1 + rgb
    shared = 6 * 6 + 8 * 6 + 10 * 4  # W_s of the three FMM layers
    assert count_params(cfg) == dict(mapping=mapping, output_projection=(7 + 1) * theta, inr_shared=shared,
                                     total=mapping + 8 * theta + shared, theta_per_sample=theta)
    G = make(cfg)
    assert G.num_params() == mapping + 8 * theta + shared
    groups = G.parameter_groups()
    assert sum(p.numel() for p in groups["inr_shared"]) == shared
    assert sum(p.numel() for p in groups["hypernetwork"]) == mapping + 8 * theta


def test_paper_recipes_resolve_and_count_without_building():
    s256 = generator_summary(generator_config(resolution=256))
    assert json.loads(json.dumps(s256)) == s256
    assert s256["config"]["blocks"] == [[128, 4, 512], [256, 4, 512]]
    params = s256["params_by_component"]
    assert params["output_projection"] / params["total"] > 0.9  # "90-99% of parameters" (Sec. 4.1)
    s1024 = generator_summary(generator_config(resolution=1024))
    assert [b[2] for b in s1024["config"]["blocks"]] == [512, 512, 128, 32]
    assert 80 < s256["gmacs_per_image"] < 100 and 80 < s1024["gmacs_per_image"] < 100


# ---------------------------------------------------------------------------------------------------------
# Discriminator


def test_discriminator_config_e_channels():
    cfg = discriminator_config(resolution=1024)
    assert [channels_at(cfg, r) for r in (1024, 512, 256, 128, 64, 32, 16, 8, 4)] == \
        [16, 32, 64, 128, 256, 512, 512, 512, 512]
    with pytest.raises(InrkitError, match="power-of-two"):
        discriminator_config(resolution=48)


@pytest.mark.parametrize("resolution", [32, 64, 256])
def test_discriminator_shapes_macs_and_gradients(resolution):
    D = Discriminator(discriminator_config(resolution=resolution, channel_base=256, channel_max=32))
    x = torch.randn(2, 3, resolution, resolution, requires_grad=True)
    logits = D(x)
    assert logits.shape == (2,) and torch.isfinite(logits).all()
    assert len(D.blocks) == {32: 3, 64: 4, 256: 6}[resolution]
    logits.sum().backward()  # R1 needs gradients with respect to the images
    assert x.grad.abs().sum() > 0 and all(p.grad is not None for p in D.parameters())
    if resolution < 256:
        assert measured_macs(lambda: D(x[:1].detach())) == D.macs_per_image()


def test_discriminator_full_config_e_runs_at_32():
    D = Discriminator(discriminator_config(resolution=32)).eval()
    assert [b.conv1.weight.shape[:2] for b in D.blocks] == [(512, 512)] * 3
    with torch.no_grad():
        assert D(torch.randn(1, 3, 32, 32)).shape == (1,)


def test_minibatch_stddev_groups():
    x = torch.randn(6, 4, 2, 2)
    y = minibatch_stddev(x, group=4, channels=1)  # 6 is not divisible by 4: groups of gcd(4, 6) = 2
    assert y.shape == (6, 5, 2, 2)
    # samples n and n + 3 form a group; their stddev feature is the same constant map
    expected = x.view(2, 3, 4, 2, 2).std(dim=0, unbiased=False).mean(dim=(1, 2, 3))
    torch.testing.assert_close(y[:3, 4, 0, 0], expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(y[3:, 4], y[:3, 4])
