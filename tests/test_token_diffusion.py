"""Diffusion on GINR latent tokens (GINR Sec. 4.4, App. A.3): the Transformer denoiser (inrkit.models.
token_diffusion), per-token standardisation, `train-diffusion --arch transformer` on a token functaset into a
`ginr-diffusion` artifact (inrkit.models.token_diffusion_family), render and the FID sampler through the registry,
resume, and the refusals of latents and architectures that do not go together."""

import fuzz
import numpy as np
import pytest
import torch
from PIL import Image
from test_train_diffusion import functaset as spatial_functaset

from inrkit.core import artifacts
from inrkit.models import diffusion as D
from inrkit.models import registry, token_diffusion_family
from inrkit.models.ginr import LocalityAwareINR, ginr_config
from inrkit.models.ginr_family import SET_KIND, TokenFunctaset
from inrkit.models.token_diffusion import TokenTransformer, transformer_config
from inrkit.stages.encode import encode_artifact, functaset_artifact
from inrkit.stages.meta import meta
from inrkit.stages.render import render
from inrkit.stages.train_diffusion import train_diffusion

R, DIM = 4, 8  # tokens, token width
TINY = dict(arch="transformer", width=16, depth=1, heads=2, batch=8, steps=6, tick=3, snapshot=3, samples=3,
            sample_steps=3, lr=1e-3, schedule="linear", prediction="x0", normalisation="array", gamma=1.0,
            label_dropout=0.1, guidance=2.5, timestep_ratio=1.0, device="cpu", progress=False)


def ginr_model(tmp_path):
    torch.manual_seed(0)
    model = LocalityAwareINR(ginr_config(resolution=8, channels=1, patch=4, tokens=R, width=8, depth=1, heads=2,
                                         dim=DIM, features=4, sigmas=(4.0, 2.0), sigma_q=2.0, decoder_heads=2))
    path = tmp_path / "ginr.safetensors"
    artifacts.save(path, artifacts.Artifact(kind="ginr-model", tensors=model.state_dict(),
                                            config=dict(model=model.config)))
    return model.eval(), path


def token_set(tmp_path, n: int = 24):
    """A labelled token functaset of 3 classes whose tokens differ in mean per token, class and channel."""
    model, path = ginr_model(tmp_path)
    y = torch.arange(n) % 3
    z = 0.3 * torch.randn(n, R, DIM) + torch.arange(R)[None, :, None] + y[:, None, None]
    out = tmp_path / "tokens.safetensors"
    artifacts.save(out, functaset_artifact(model, path, z, y, torch.zeros(n), data=dict(classes=["a", "b", "c"]),
                                           steps=None, kind=SET_KIND))
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("tokdiff")
    out = d / "tok.safetensors"
    metrics = train_diffusion(str(token_set(d)), out, **TINY)
    return d, out, metrics


def png(path):
    return np.asarray(Image.open(path).convert("L"))


def random_net(**kw):
    """A denoiser with every parameter random (its zero-initialised output layer would hide everything)."""
    torch.manual_seed(1)
    net = TokenTransformer(transformer_config(latent=[5, 6], width=16, depth=2, heads=4, **kw)).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.3)
    return net


def test_denoiser_maps_tokens_to_tokens_and_starts_at_zero():
    net = TokenTransformer(transformer_config(latent=[5, 6], classes=3, width=16, depth=2, heads=4))
    x, t = torch.randn(2, 5, 6), torch.tensor([0, 999])
    assert net(x, t, torch.tensor([0, 3])).shape == (2, 5, 6)
    # adaLN-Zero: every block starts as the identity and the output layer at zero (the mean of standardised tokens)
    assert torch.equal(net(x, t, None), torch.zeros(2, 5, 6))
    net = random_net(classes=3)
    assert not torch.allclose(net(x, t, torch.tensor([0, 1])), net(x, t, torch.tensor([2, 1])))  # labels matter
    assert not torch.allclose(net(x, t, None), net(x, torch.tensor([500, 999]), None))  # so does t


def test_denoiser_is_permutation_equivariant_up_to_its_positional_embedding():
    net, x, t = random_net(), torch.randn(3, 5, 6), torch.tensor([3, 300, 900])
    perm = torch.tensor([4, 2, 0, 1, 3])
    out = net(x, t)
    # permuting the tokens alone changes the prediction: token k has its own positional embedding
    assert not torch.allclose(net(x[:, perm], t), out[:, perm], atol=1e-4)
    # permuting the positional embeddings with them permutes the output
    with torch.no_grad():
        net.position.copy_(net.position[perm])
    assert torch.allclose(net(x[:, perm], t), out[:, perm], atol=1e-5)


def test_per_token_per_channel_standardisation_round_trips():
    z = torch.randn(50, 4, 3, dtype=torch.float64) * torch.rand(4, 3) * 5 + torch.randn(4, 3) * 10
    norm = D.Normaliser.fit(z, "array")
    assert norm.mu.shape == (4, 3) and norm.sigma.shape == (4, 3)
    zn = norm.normalise(z)
    assert torch.allclose(zn.mean(0), torch.zeros(4, 3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(zn.std(0), torch.ones(4, 3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(norm.denormalise(zn), z, atol=1e-12)
    assert D.Normaliser.fit(z, "vector").mu.shape == (3,) and D.Normaliser.fit(z, "scalar").mu.shape == (1,)


def test_train_diffusion_on_tokens_writes_a_ginr_diffusion_artifact(trained):
    d, out, metrics = trained
    art = artifacts.read(out)
    assert art.kind == token_diffusion_family.KIND and metrics["step"] == 6
    assert art.config["denoiser"]["arch"] == "transformer" and art.config["denoiser"]["classes"] == 3
    assert art.config["diffusion"]["prediction"] == "x0" and art.config["diffusion"]["schedule"] == "linear"
    assert art.config["guidance"] == 2.5 and art.config["classes"] == ["a", "b", "c"]
    # the per-token per-channel statistics of the training tokens are stored
    train = artifacts.read(d / "tokens.safetensors").tensors["latents"].double()
    assert torch.allclose(art.tensors["norm.mu"].double(), train.mean(0), atol=1e-5)
    assert torch.allclose(art.tensors["norm.sigma"].double(), train.std(0), atol=1e-5)
    assert sorted(p.name for p in out.with_suffix("").glob("samples-*.png")) == ["samples-0000003.png",
                                                                                 "samples-0000006.png"]
    model = registry.load(out)
    assert isinstance(model, token_diffusion_family.TokenDiffusionModel) and model.sampling["cfg"] == 2.5
    assert model.latent == (R, DIM) and not model.denoiser.training


def test_render_draws_samples_through_the_ginr_decoder_on_any_grid(trained, tmp_path):
    _, out, _ = trained
    plain, wide, lat = tmp_path / "s.png", tmp_path / "w.png", tmp_path / "lat.safetensors"
    render(out, plain, seeds=[0, 1, 2], sampler="ddim", steps=4, save_latents=lat, device="cpu")
    assert png(plain).shape == (8, 3 * 8 + 2 * 2)  # one column per class, the training 8x8
    render(out, wide, seeds=[0], sampler="ddim", steps=4, scale=2, grid=[(-0.5, 1.5), (-0.5, 1.5)], device="cpu")
    assert png(wide).shape == (32, 32)  # the 2x pitch over a grid twice as wide
    # the sampled tokens are a token functaset: class k mod 3, guided by the artifact's 2.5 by default
    fs = registry.load(lat)
    assert isinstance(fs, TokenFunctaset) and fs.latents.shape == (3, R, DIM) and fs.labels.tolist() == [0, 1, 2]
    model = registry.load(out)
    again = token_diffusion_family.diffusion_family.sample_latents(model, [1], 0, torch.tensor([1]), 2.5, "ddim", 4)
    assert torch.allclose(again[0], fs.latents[1], atol=1e-5)
    decoded = model.decode(fs.latents[:1], model.resolution).clamp(0, 1)
    assert np.abs(png(plain)[:, :8].astype(int) - (decoded[0, ..., 0] * 255).round().numpy()).max() <= 1


def test_fid_sampler_is_batch_independent(trained):
    model = registry.load(trained[1])
    s = registry.family_of(token_diffusion_family.KIND).sampler(model, seed=0)
    three = s.draw(0, 3, None)
    assert three.dtype == torch.uint8 and three.shape == (3, 1, 8, 8) and s.draw(0, 1, 16).shape == (1, 1, 16, 16)
    assert (s.draw(1, 1, None)[0].int() - three[1].int()).abs().max().item() <= 1


def test_resume_is_bit_identical(tmp_path):
    data = token_set(tmp_path)
    whole = train_diffusion(str(data), tmp_path / "a.safetensors", **TINY)
    train_diffusion(str(data), tmp_path / "b.safetensors", **dict(TINY, steps=3))
    resumed = train_diffusion(str(data), tmp_path / "b.safetensors", **TINY)
    assert resumed["parameters_sha256"] == whole["parameters_sha256"]


@pytest.mark.parametrize("data, arch, said", [
    ("spatial", "transformer", "--arch transformer does not take spatial functa latents"),
    ("tokens", "unet", "--arch unet does not take GINR latent tokens"),
    ("tokens", "mlp", "--arch mlp does not take GINR latent tokens"),
    ("model", "transformer", "is a ginr-model artifact, but train-diffusion trains on a functaset or a "
                             "ginr-functaset artifact"),
])
def test_latents_and_arch_that_do_not_go_together_are_refused(tmp_path_factory, tmp_path, monkeypatch, data, arch,
                                                              said):
    d = tmp_path_factory.mktemp("inputs")
    inputs = dict(spatial=spatial_functaset(d), tokens=token_set(d), model=d / "ginr.safetensors")
    monkeypatch.chdir(tmp_path)
    code, err = fuzz.run_cli("train-diffusion", "--data", str(inputs[data]), "--arch", arch, "--steps", "2",
                             "--device", "cpu", "--out", "d.safetensors")
    lines = err.strip().splitlines()
    assert code not in (0, None) and len(lines) == 1 and lines[0].startswith("inrkit: error: "), err
    assert said in lines[0], lines[0]
    assert list(tmp_path.iterdir()) == []


def test_meta_encode_train_render_chain_on_digits(tmp_path):
    """The Makefile's chain at tiny size: meta --arch ginr on labelled digits, encode, train-diffusion, render."""
    model = tmp_path / "ginr.safetensors"
    meta("builtin:digits?count=12", model, arch="ginr", resolution=8, channels=1, patch=4, tokens=4,
         encoder_width=16, encoder_depth=1, encoder_heads=2, dim=8, features=4, sigmas="4,2", sigma_q=2.0, batch=4,
         steps=2, snapshot=2, tick=2, workers=0, progress=False, device="cpu", heldout_count=2)
    tokens = tmp_path / "tokens.safetensors"
    encode_artifact(model, data="builtin:digits?count=12", out=tokens, functa=dict(workers=0, labels=True),
                    steps=None, batch=None, count=None, split="train", device="cpu", progress=False)
    out = tmp_path / "d.safetensors"
    train_diffusion(str(tokens), out, **dict(TINY, steps=2, snapshot=2, tick=2))
    assert registry.load(out).classes == [str(k) for k in range(10)]
    code, err = fuzz.run_cli("render", str(out), "--seeds", "0-9", "--sampler", "ddim", "--steps", "3", "--size",
                             "12x12", "--device", "cpu", "--out", str(tmp_path / "s.png"))
    assert code == 0, err
    assert png(tmp_path / "s.png").shape == (12, 10 * 12 + 9 * 2)
