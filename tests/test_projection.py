"""Latent projection (the StyleGAN2 projector on INR-GAN, App. B.2) and `inrkit encode GENERATOR IMAGES`: the
schedules, convergence on a generator's own samples in w and z, per-image independence, the Inception distance
and its gradients, the latents artifact and PNG, and one-sentence errors for wrong kinds and options.

The tiny generator uses fourier_scale 1: at random initialisation the default scale (10 rad per unit, with
frequencies predicted from w) makes the image an erratic function of w, a landscape no projector descends far;
a trained generator is smoother than its random initialisation."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inrkit.core import artifacts
from inrkit.core.errors import InrkitError
from inrkit.metrics import projection
from inrkit.metrics.projection import InceptionDistance, latent_stats, learning_rate, noise_strength, project
from inrkit.models import registry
from inrkit.models.inrgan import InrGanGenerator
from inrkit.models.sampling import sample_latents
from inrkit.stages.encode import encode_artifact
from inrkit.stages.project import encode_generator

ROOT = Path(__file__).resolve().parents[1]
R = 16
FAST = dict(perceptual=False, progress=False)


def tiny(channels: int = 3) -> InrGanGenerator:
    torch.manual_seed(0)
    return InrGanGenerator(dict(resolution=R, blocks=[[R // 2, 1, 16], [R, 1, 16]], z_dim=8, hyper_hidden=16,
                                hyper_layers=1, fmm_rank=2, fourier_scale=1.0, out_channels=channels)).eval()


@torch.no_grad()
def own_samples(G, count: int, seed: int = 5) -> torch.Tensor:
    return G(sample_latents(8, 0, count, seed), update_w_avg=False).clamp(-1, 1)


@pytest.fixture(scope="module")
def gen_files(tmp_path_factory) -> dict:
    """The tiny generator as an artifact, and a folder of 3 of its samples as PNGs."""
    root = tmp_path_factory.mktemp("proj")
    G = tiny()
    path = root / "gen.safetensors"
    artifacts.save(path, artifacts.Artifact(kind="generator", tensors=G.state_dict(), config={"generator": G.config}))
    folder = root / "images"
    folder.mkdir()
    for k, img in enumerate(own_samples(G, 3)):
        Image.fromarray(((img + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()).save(folder / f"{k}.png")
    return dict(gen=path, images=folder, root=root)


# ---------------------------------------------------------------- the projector


def test_schedules_follow_the_official_projector():
    assert learning_rate(0.0, 0.1) == 0.0  # ramp-up over the first 5% ...
    assert learning_rate(0.025, 0.1) == pytest.approx(0.05)
    assert learning_rate(0.05, 0.1) == learning_rate(0.5, 0.1) == learning_rate(0.75, 0.1) == pytest.approx(0.1)
    assert learning_rate(0.875, 0.1) == pytest.approx(0.05)  # ... cosine ramp-down over the last 25%
    assert learning_rate(0.999, 0.1) < 1e-5
    assert noise_strength(0.0, 2.0, 0.05) == pytest.approx(0.1)
    assert noise_strength(0.375, 2.0, 0.05) == pytest.approx(0.1 * 0.25)  # (1 - t / 0.75)^2
    assert noise_strength(0.75, 2.0, 0.05) == noise_strength(0.9, 2.0, 0.05) == 0.0


def test_latent_statistics():
    G = tiny()
    start, std = latent_stats(G, "z")
    assert torch.equal(start, torch.zeros(8)) and std == pytest.approx(math.sqrt(8), rel=0.03)  # RMS |z|
    start, std = latent_stats(G, "w")
    with torch.no_grad():
        w = G.mapping(torch.randn(20000, 8), update_w_avg=False)
    torch.testing.assert_close(start, w.mean(0), atol=0.05, rtol=0)
    assert std == pytest.approx((w - w.mean(0)).square().sum(1).mean().sqrt().item(), rel=0.03)


def test_w_projection_reconstructs_own_samples():
    G = tiny()
    targets = own_samples(G, 4)
    p = project(G, targets, space="w", steps=160, batch=4, **FAST)
    h = np.asarray(p.history)
    assert p.latents.shape == (4, 16) and p.latents.dtype == torch.float32 and p.latents.device.type == "cpu"
    assert p.images.shape == targets.shape and p.images.abs().max() <= 1.0 and len(h) == 160
    assert h[0] > 0.1 and h[-1] < h[0] / 10 and p.errors.mean() < 0.03  # small: from ~0.3 to ~0.01
    quarters = h.reshape(4, -1).mean(1)
    assert (np.diff(quarters) < 0).all()  # decreasing in expectation (noise makes single steps go up)
    with torch.no_grad():
        again = G.render(G.inr_params(p.latents)).clamp(-1, 1)
    torch.testing.assert_close(again, p.images)  # the latents are what the images come from
    torch.testing.assert_close(p.errors, (p.images - targets).square().flatten(1).mean(1))
    assert p.errors.mean().item() == pytest.approx(h[-1], abs=2e-3)  # the last step has no noise, a tiny lr


def test_z_projection():
    G = tiny()
    p = project(G, own_samples(G, 3, seed=9), space="z", steps=80, batch=2, **FAST)
    assert p.latents.shape == (3, 8) and p.errors.shape == (3,)
    assert p.history[-1] < p.history[0] / 2


def test_images_are_projected_independently():
    """Image k's result depends on image k alone: batch size and batch mates change nothing."""
    G = tiny()
    targets = own_samples(G, 3)
    together = project(G, targets, steps=30, batch=3, **FAST)
    split = project(G, targets, steps=30, batch=2, **FAST)
    alone = project(G, targets[:1], steps=30, batch=1, **FAST)
    torch.testing.assert_close(split.latents, together.latents, atol=1e-4, rtol=0)
    torch.testing.assert_close(alone.latents[0], together.latents[0], atol=1e-4, rtol=0)
    other_seed = project(G, targets[:1], steps=30, batch=1, seed=1, **FAST)
    assert not torch.allclose(other_seed.latents, alone.latents)  # the noise stream does matter


def test_inception_distance_and_its_gradient():
    dist = InceptionDistance("cpu", R)
    assert dist.side == 128 and InceptionDistance("cpu", 1024).side == 299
    x = own_samples(tiny(channels=1), 2)  # grey: repeated to RGB
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1).requires_grad_(True)
    with torch.no_grad():
        target = dist.features(x)
        assert dist(x, target).abs().max() < 1e-5
    d = dist(y, target)
    assert d.shape == (2,) and (d > 1e-3).all()
    (grad,) = torch.autograd.grad(d.sum(), [y])  # flows through the TorchScript network to its input
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert all(not p.requires_grad for _, stage in dist.stages for p in stage.parameters())


def test_perceptual_projection_on_grey_images():
    G = tiny(channels=1)
    p = project(G, own_samples(G, 2), steps=12, batch=2, perceptual=True, progress=False)
    assert p.images.shape == (2, 1, R, R) and np.isfinite(p.history).all()
    assert p.history[-1] < p.history[0]


def test_bad_targets_and_settings():
    G = tiny()
    good = own_samples(G, 1)
    cases = [(dict(targets=good[:, :1]), r"must be \(N, 3, 16, 16\)"),
             (dict(targets=torch.zeros(1, 3, 32, 32)), "must be"),
             (dict(targets=good * 3), r"in \[-1, 1\]"),
             (dict(space="y"), "unknown --space 'y'"),
             (dict(steps=0), "at least 1"),
             (dict(lr=0.0), "--lr must be positive")]
    for kwargs, message in cases:
        with pytest.raises(InrkitError, match=message):
            project(G, kwargs.pop("targets", good), progress=False, **kwargs)
    assert projection.SPACES == ("z", "w")


# ---------------------------------------------------------------- `inrkit encode GENERATOR IMAGES`


def test_latents_artifact_round_trip(gen_files, tmp_path):
    out = tmp_path / "lat.safetensors"
    metrics = encode_generator(gen_files["gen"], str(gen_files["images"]), out, steps=60, count=2, device="cpu",
                               **FAST)
    art = artifacts.read(out, kind="latents")
    latents, errors = art.tensors["latents"], art.tensors["errors"]
    assert latents.shape == (2, 16) and latents.dtype == torch.float32 and errors.shape == (2,)
    G = registry.load(gen_files["gen"])
    assert art.config["generator"] == G.config and art.config["space"] == "w" and art.config["steps"] == 60
    assert art.config["generator_path"] == str(gen_files["gen"]) and art.parents == {
        str(gen_files["gen"]): artifacts.sha256(gen_files["gen"])}
    assert art.config["data"]["count"] == 2 and art.config["data"]["resolution"] == R
    assert art.metrics["mse"] == pytest.approx(errors.mean().item()) == pytest.approx(metrics["mse"])
    from inrkit.data import open_dataset

    targets = torch.stack([open_dataset(str(gen_files["images"]), R, count=2)[i][0] for i in range(2)])
    with torch.no_grad():
        images = G.render(G.inr_params(latents)).clamp(-1, 1)
    torch.testing.assert_close((images - targets).square().flatten(1).mean(1), errors, atol=1e-5, rtol=0)
    sheet = np.asarray(Image.open(out.with_suffix(".png")))
    assert sheet.shape == (2 * R + 4, 2 * R + 4, 3)  # targets over reconstructions


def test_cli_encode_generator(gen_files, tmp_path):
    out = tmp_path / "z.safetensors"
    r = subprocess.run([sys.executable, "-m", "inrkit.cli", "encode", gen_files["gen"], gen_files["images"],
                        "--space", "z", "--steps", "5", "--no-perceptual", "--out", out, "--device", "cpu"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    art = artifacts.read(out, kind="latents")
    assert art.tensors["latents"].shape == (3, 8) and art.config["space"] == "z"
    assert np.asarray(Image.open(out.with_suffix(".png"))).shape == (2 * R + 4, 3 * R + 2 * 4, 3)
    assert "projected 3 images into z" in r.stderr


def test_encode_kind_and_option_errors(gen_files, tmp_path):
    gen, images = gen_files["gen"], str(gen_files["images"])
    field, functa = tmp_path / "field.safetensors", tmp_path / "functa.safetensors"
    artifacts.save(field, artifacts.Artifact(kind="field", tensors={"w": torch.zeros(1)}, config={}))
    artifacts.save(functa, artifacts.Artifact(kind="functa-model", tensors={"w": torch.zeros(1)}, config={}))
    out = tmp_path / "x.safetensors"
    cases = [
        (dict(artifact=field, images=images), "is a field artifact; `encode` takes a functa-model or a generator"),
        (dict(artifact=gen, images=images, functa=dict(bits=6)), "--bits applies to functa-model artifacts, not to "
                                                                 "a generator artifact"),
        (dict(artifact=gen, images=images, functa=dict(workers=2, embed_model=False)), "--workers, --embed-model "
                                                                                        "apply to functa-model"),
        (dict(artifact=functa, images=images, generator=dict(space="w")), "--space applies to generator artifacts"),
        (dict(artifact=gen, images=images, data=images), "give the images once"),
        (dict(artifact=gen), "no images to encode"),
        (dict(artifact=gen, images=images, out=tmp_path / "x.npz"), "should end in .safetensors"),
        (dict(artifact=gen, images=images, generator=dict(space="y")), "unknown --space 'y'"),
        (dict(artifact=gen, images=images, count=9), "9 images were asked for"),
    ]
    for kwargs, message in cases:
        kwargs.setdefault("out", out)
        with pytest.raises(InrkitError, match=message):
            encode_artifact(kwargs.pop("artifact"), kwargs.pop("images", None), device="cpu", **kwargs)
    assert not out.exists()


def test_cli_encode_error_is_one_line(gen_files, monkeypatch, capsys):
    from inrkit import cli

    monkeypatch.setattr(sys, "argv", ["inrkit", "encode", str(gen_files["gen"]), str(gen_files["images"]),
                                      "--bits", "6"])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 1 and "\n" not in err
    assert err == "inrkit: error: --bits applies to functa-model artifacts, not to a generator artifact."


def test_functa_models_still_encode_through_the_dispatch(gen_files, tmp_path):
    """A functa-model dispatches to the functa encoder, images as IMAGES or --data alike (functa defaults)."""
    from inrkit.models.functa import SpatialFuncta

    torch.manual_seed(0)
    model = SpatialFuncta(latent=(4, 4, 4), resolution=R, channels=3, width=8, depth=2)
    path = tmp_path / "functa.safetensors"
    artifacts.save(path, artifacts.Artifact(kind="functa-model", tensors=model.state_dict(),
                                            config=dict(model=model.config)))
    images = str(gen_files["images"])
    outs = [tmp_path / "a.safetensors", tmp_path / "b.safetensors"]
    first = encode_artifact(path, images, out=outs[0], device="cpu", progress=False, functa=dict(workers=0))
    second = encode_artifact(path, data=images, out=outs[1], device="cpu", progress=False, functa=dict(workers=0))
    a, b = (artifacts.read(p, kind="functaset") for p in outs)
    assert a.tensors["latents"].shape == (3, 4, 4, 4) and a.config["steps"] == 3 and a.options["batch"] == 64
    torch.testing.assert_close(a.tensors["latents"], b.tensors["latents"])
    assert first["count"] == second["count"] == 3
