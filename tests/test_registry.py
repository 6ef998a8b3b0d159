"""The registry of model families: every kind has one owner, unknown kinds are refused in one sentence, `load`
rebuilds each kind, and every family's render_codes has the one layout (B, *grid, C) in [0, 1]."""

from __future__ import annotations

import pytest
import torch

import inrkit
from inrkit.core import artifacts
from inrkit.core.errors import InrkitError
from inrkit.fields.grid import make_grid
from inrkit.fields.mlp import FourierMLP
from inrkit.models import functa_family, inrgan_family, registry
from inrkit.models.functa import SpatialFuncta
from inrkit.models.inrgan import InrGanGenerator, generator_config
from inrkit.stages.render import render


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A field, a functa-model, a functaset embedding it, a generator and a latents artifact."""
    d = tmp_path_factory.mktemp("families")
    torch.manual_seed(0)
    f = FourierMLP(in_dim=2, out_dim=3, width=8, depth=2, frequencies=2).eval()
    artifacts.save(d / "field.safetensors", artifacts.Artifact(
        kind="field", tensors=f.state_dict(), config={"field": f.config, "signal": {"shape": [6, 5], "channels": 3}}))
    net = SpatialFuncta((2, 2, 3), 8, 3, 8, 2, 10.0, "nearest", 1)
    artifacts.save(d / "model.safetensors", artifacts.Artifact(kind=functa_family.MODEL_KIND,
                                                               tensors=net.state_dict(), config=dict(model=net.config)))
    tensors = {"latents": torch.randn(3, 2, 2, 3), **{"model." + k: v for k, v in net.state_dict().items()}}
    artifacts.save(d / "set.safetensors", artifacts.Artifact(kind=functa_family.SET_KIND, tensors=tensors,
                                                             config=dict(model=net.config)))
    G = InrGanGenerator(generator_config(resolution=8, blocks=[[4, 1, 8], [8, 1, 8]], z_dim=4, hyper_hidden=8,
                                         hyper_layers=1, fmm_rank=2)).eval()
    artifacts.save(d / "gen.safetensors", artifacts.Artifact(kind=inrgan_family.KIND, tensors=G.state_dict(),
                                                             config=dict(generator=G.config)))
    artifacts.save(d / "latents.safetensors", artifacts.Artifact(kind=inrgan_family.LATENTS_KIND,
                                                                 tensors=dict(latents=torch.zeros(2, 8)), config={}))
    return dict(dir=d, field=f, net=net, G=G)


def test_every_kind_has_one_owner_and_rendered_kinds_are_owned():
    kinds = registry.known_kinds()
    assert len(kinds) == len(set(kinds)) and {"field", "functa-model", "functaset", "generator"} <= set(kinds)
    for family in registry.FAMILIES:
        assert set(family.render_kinds) <= set(family.kinds), family.name
        assert all(registry.family_of(k) is family for k in family.kinds)
    assert registry.family_for(InrGanGenerator(generator_config(resolution=8, blocks=[[8, 1, 8]], z_dim=4,
                                                                hyper_hidden=8, hyper_layers=1))).name == "INR-GAN"


def test_load_rebuilds_each_kind_in_eval_mode(files):
    d = files["dir"]
    x = torch.rand(5, 2)
    field = inrkit.load(d / "field.safetensors")
    assert torch.equal(field(x), files["field"](x)) and not field.training
    model = inrkit.load(d / "model.safetensors", kind=functa_family.MODEL_KIND)
    assert isinstance(model, SpatialFuncta) and not model.training
    fs = registry.load(d / "set.safetensors")
    assert isinstance(fs, functa_family.Functaset) and fs.latents.shape == (3, 2, 2, 3)
    assert all(torch.equal(a, b) for a, b in zip(fs.model.state_dict().values(), files["net"].state_dict().values(),
                                                 strict=True))
    G = inrkit.load(d / "gen.safetensors")
    assert isinstance(G, InrGanGenerator) and not G.training


def test_unknown_and_wrong_kinds_are_one_sentence(files):
    d = files["dir"]
    with pytest.raises(InrkitError, match=r"latents artifact, which this version of inrkit cannot rebuild \(it "
                                          r"knows field, functa-model, functaset, generator, classifier, "
                                          r"diffusion, ginr-model, ginr-functaset, loe-generator, "
                                          r"ginr-diffusion\)\.$"):
        registry.load(d / "latents.safetensors")
    with pytest.raises(InrkitError, match="is a field artifact, but a generator artifact is needed here"):
        registry.load(d / "field.safetensors", kind=inrgan_family.KIND)
    with pytest.raises(InrkitError, match="latents artifact; `render` draws field, functaset, generator, "
                                          "diffusion, ginr-functaset, loe-generator and ginr-diffusion"):
        render(d / "latents.safetensors", d / "x.png", device="cpu")
    with pytest.raises(InrkitError, match="--perturb apply to functasets, not to a generator artifact"):
        render(d / "gen.safetensors", d / "x.png", perturb=1, device="cpu")
    assert not (d / "x.png").exists()


def test_render_codes_share_one_layout(files):
    """(B, *grid, C) for every family, on a grid other than the training one, equal to the model's own call in
    its training convention (field: (..., C); functa: (B, N, C); generator: (B, C, H, W) in [-1, 1])."""
    d, shape, ranges = files["dir"], (3, 4), [(-0.5, 1.5), (0.0, 1.0)]
    coords = make_grid(shape, ranges)
    field = registry.load(d / "field.safetensors")
    out = registry.family_of("field").render_codes(field, None, shape, ranges, chunk=5)
    torch.testing.assert_close(out, field(coords)[None])
    fs = registry.load(d / "set.safetensors")
    out = registry.family_of("functaset").render_codes(fs, fs.latents, shape, ranges, chunk=5)
    torch.testing.assert_close(out, fs.model(fs.latents, coords.view(-1, 2)).view(3, *shape, 3))
    G = registry.load(d / "gen.safetensors")
    theta = G.inr_params(G.mapping(torch.randn(2, 4)))
    out = registry.family_of("generator").render_codes(G, theta, shape, ranges, chunk=5)
    torch.testing.assert_close(out, (G.render(theta, shape, ranges) + 1).permute(0, 2, 3, 1) / 2)
    assert out.shape == (2, *shape, 3)


def test_generator_sampler_estimates_w_avg_only_when_drawing_truncated_samples(files):
    """FID's source of samples: checks made with the Sampler come before the 10,000-sample w_avg estimate, an
    object handed over (estimate=False) is never changed, and draws are the seeded samples of `generate`."""
    from inrkit.models.sampling import generate

    G = registry.load(files["dir"] / "gen.safetensors")
    assert not G.w_avg.any()  # trained without tracking it
    kept = inrgan_family.sampler(G, seed=1, psi=0.5, estimate=False)
    kept.draw(0, 1, None)
    assert not G.w_avg.any()
    S = inrgan_family.sampler(G, seed=1, psi=0.5)
    assert (S.resolution, S.channels) == (8, 3) and not G.w_avg.any()
    first = S.draw(0, 2, 12)
    assert G.w_avg.any() and first.shape == (2, 3, 12, 12) and first.dtype == torch.uint8
    assert torch.equal(first, generate(G, 0, 2, seed=1, psi=0.5, resolution=12))
