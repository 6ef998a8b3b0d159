"""LoE-GAN and PE + CE (Levels-of-Experts Sec. 4.4, supp. E): generator, discriminator, hinge losses, sizes."""

import pytest
import torch

from inrkit.core.errors import InrkitError
from inrkit.fields.grid import make_grid
from inrkit.models import loegan
from inrkit.models.macs import measured_macs

TABLE4 = {"loe-gan": (19.6e6, 1.26e6), "pe-ce": (19.9e6, 1.39e6)}  # (#params, MACs per pixel)
SMALL = dict(resolution=16, z_dim=8, width=16, hidden=8, tiles=(2, 4, 2), grid_resolutions=(2, 4, 16),
             embedding_channels=4, embedding_size=8)


def small_generator(arch: str, seed: int = 0) -> loegan.LoeGanGenerator:
    torch.manual_seed(seed)
    return loegan.LoeGanGenerator(loegan.generator_config(arch=arch, **SMALL))


def sn_convs(D):
    return [m for m in D.modules() if isinstance(m, torch.nn.Conv2d)]


def top_singular_value(weight: torch.Tensor) -> float:
    """sigma_max of the (out, in * k * k) matrix that spectral normalisation divides by (Miyato et al.), from the
    smaller Gram matrix (an SVD of the 512 x 2304 weights is slow on a busy CPU)."""
    w = weight.detach().flatten(1).double()
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    return torch.linalg.eigvalsh(gram).max().sqrt().item()


def test_spectral_norm_keeps_top_singular_value_near_one():
    torch.manual_seed(0)
    D = loegan.MultiScalePatchDiscriminator(loegan.discriminator_config(32)).train()
    with torch.no_grad():
        for _ in range(10):  # one power iteration per training forward (15 more ran at construction)
            D(torch.randn(1, 3, 32, 32))
    D.eval()
    convs = sn_convs(D)
    assert len(convs) == 2 * 5
    raw = [top_singular_value(c.parametrizations.weight.original) for c in convs]
    assert max(abs(s - 1) for s in raw) > 0.3  # the stored weights themselves are not normalised
    for conv in convs:
        assert abs(top_singular_value(conv.weight) - 1) < 0.03


def test_hinge_losses_match_eqs_9_and_10():
    real = torch.tensor([2.0, 0.5, -1.0])  # -min(0, -1 + D(x)) = 0, 0.5, 2 -> mean 5/6
    fake = torch.tensor([-2.0, 0.0, 1.0])  # -min(0, -1 - D(G(z))) = 0, 1, 2 -> mean 1
    assert loegan.hinge_d_loss(real, fake).item() == pytest.approx(5 / 6 + 1)
    assert loegan.hinge_g_loss(fake).item() == pytest.approx(1 / 3)  # -mean(D(G(z))), mean -1/3
    # two scales: each map averaged over samples and patches, the scales added
    real2, fake2 = torch.full((2, 1, 2, 2), 3.0), torch.full((2, 1, 2, 2), -0.5)  # 0 and 0.5
    assert loegan.hinge_d_loss([real, real2], [fake, fake2]).item() == pytest.approx(5 / 6 + 1 + 0 + 0.5)
    assert loegan.hinge_g_loss([fake, fake2]).item() == pytest.approx(1 / 3 + 0.5)


def test_coordinate_embedding_is_exact_at_texel_centres_and_clamped_outside():
    G = small_generator("pe-ce")
    size, channels = SMALL["embedding_size"], SMALL["embedding_channels"]
    texels = G.embedding.detach()[0].permute(1, 2, 0)  # (y, x, c)
    centres = make_grid((size, size)).reshape(-1, 2)
    with torch.no_grad():
        assert torch.allclose(G.coordinate_embedding(centres), texels.reshape(-1, channels), atol=1e-6)
        between = G.coordinate_embedding(torch.tensor([[0.5 / size, 1.0 / size]]))  # halfway along x
        assert torch.allclose(between[0], (texels[0, 0] + texels[0, 1]) / 2, atol=1e-6)
        outside = G.coordinate_embedding(torch.tensor([[-0.3, 1.4], [1.2, 0.5 / size]]))
    assert torch.allclose(outside[0], texels[0, -1], atol=1e-6)
    assert torch.allclose(outside[1], texels[-1, 0], atol=1e-6)


@pytest.mark.parametrize("arch", loegan.ARCHS)
def test_generator_renders_any_grid_and_samples_independently(arch):
    G = small_generator(arch)
    z = G.sample_z(3, torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert G(z).shape == (3, 3, 16, 16)
        assert G.render(z, (5, 7), [(-0.5, 1.5), (-0.5, 1.5)]).shape == (3, 5, 7, 3)
        assert G.render(z, (40, 24), chunk=100).shape == (3, 40, 24, 3)
        assert G.field(z, torch.rand(11, 2) * 3 - 1).shape == (3, 11, 3)
        wide = G.render(z, (9, 6), [(-1.0, 2.0), (0.2, 0.7)])
        alone = G.render(z[1:2], (9, 6), [(-1.0, 2.0), (0.2, 0.7)])
    assert torch.allclose(alone[0], wide[1], atol=1e-6)
    assert not torch.allclose(wide[0], wide[1])  # z matters


def test_loe_fast_grid_path_matches_the_generic_path():
    G = small_generator("loe-gan")
    z = torch.randn(2, SMALL["z_dim"], requires_grad=True)
    fast = G.render(z, (16, 16))
    assert G.plans[(16, 16)] is not None  # the full grid took the structured path
    generic = G.field(z, make_grid((16, 16)).reshape(-1, 2)).view(2, 16, 16, 3)
    assert torch.allclose(fast, generic, atol=1e-5)
    fast.square().sum().backward()
    assert z.grad is not None and all(p.grad is not None for p in G.inner.parameters())


@pytest.mark.parametrize("arch", loegan.ARCHS)
def test_closed_form_counts_match_the_model(arch):
    G = small_generator(arch)
    z = torch.randn(1, SMALL["z_dim"])
    assert loegan.count_params(G.config)["total"] == G.num_params()
    assert measured_macs(lambda: G.render(z, (16, 16))) == G.macs_per_image()
    assert measured_macs(lambda: G.render(z, (5, 7), [(-0.5, 1.5)] * 2)) == G.macs_per_image((5, 7))
    D = loegan.MultiScalePatchDiscriminator(loegan.discriminator_config(64))
    assert measured_macs(lambda: D(torch.randn(1, 3, 64, 64))) == D.macs_per_image()


@pytest.mark.parametrize("arch", loegan.ARCHS)
def test_256_models_match_table_4_within_3_percent(arch):
    cfg = loegan.generator_config(arch=arch)
    summary = loegan.generator_summary(cfg)
    params, macs = TABLE4[arch]
    assert summary["params"] == pytest.approx(params, rel=0.03)
    assert summary["macs_per_pixel"] == pytest.approx(macs, rel=0.03)
    assert loegan.LoeGanGenerator(cfg).num_params() == summary["params"]  # the closed form is the built model


def test_patch_discriminator_scales_and_refused_resolutions():
    D = loegan.MultiScalePatchDiscriminator(loegan.discriminator_config(64))
    maps = D(torch.randn(2, 3, 64, 64))
    assert [tuple(m.shape) for m in maps] == [(2, 1, 2, 2), (2, 1, 1, 1)]
    for bad in (48, 16, 100):
        with pytest.raises(InrkitError, match="multiple of 32"):
            loegan.discriminator_config(bad)
    with pytest.raises(InrkitError, match="architecture"):
        loegan.generator_config(arch="inrgan")


@pytest.mark.parametrize("arch", loegan.ARCHS)
def test_artifact_round_trip_render_interface_and_sampler(tmp_path, arch):
    import inrkit
    from inrkit.core import artifacts
    from inrkit.models import loegan_family, registry

    G = small_generator(arch, seed=3)
    path = artifacts.save(tmp_path / "gen.safetensors", artifacts.Artifact(
        kind=loegan_family.KIND, tensors=G.state_dict(), config={"generator": G.config}))
    loaded = inrkit.load(path)
    assert isinstance(loaded, loegan.LoeGanGenerator) and not loaded.training
    z = torch.randn(2, SMALL["z_dim"])
    with torch.no_grad():
        images = registry.family_for(loaded).render_codes(loaded, z, (6, 10), [(-0.5, 1.5)] * 2)
        assert torch.equal(images, (G.render(z, (6, 10), [(-0.5, 1.5)] * 2) + 1) / 2)
    S = loegan_family.sampler(loaded, seed=5)
    batch = S.draw(0, 3, None)
    assert batch.dtype == torch.uint8 and batch.shape == (3, 3, 16, 16)
    assert torch.equal(S.draw(2, 1, None)[0], batch[2])  # sample k is the same drawn alone
    assert S.draw(0, 1, 32).shape == (1, 3, 32, 32)  # any side (UpsampledFID)
    with pytest.raises(InrkitError, match="psi"):
        loegan_family.sampler(loaded, seed=5, psi=0.7)
    bad = dict(G.config, hidden=SMALL["hidden"] * 2)  # asks for more than the file holds
    artifacts.save(tmp_path / "bad.safetensors", artifacts.Artifact(
        kind=loegan_family.KIND, tensors=G.state_dict(), config={"generator": bad}))
    with pytest.raises(InrkitError, match="damaged or foreign"):
        inrkit.load(tmp_path / "bad.safetensors")


def test_discriminator_base_scales_every_convolution():
    """--loe-d-base sets the first convolution's channels and doubles them per layer; supp. E's is the default."""
    def channels(config):
        D = loegan.MultiScalePatchDiscriminator(config)
        return [[m.out_channels for m in disc.modules() if isinstance(m, torch.nn.Conv2d)] for disc in D.scales]

    assert channels(dict(resolution=32, in_channels=1)) == [[64, 128, 256, 512, 1]] * 2
    assert channels(dict(resolution=32, in_channels=1, base=16)) == [[16, 32, 64, 128, 1]] * 2
    with pytest.raises(InrkitError, match="base channels"):
        loegan.discriminator_config(32, 1, base=0)
