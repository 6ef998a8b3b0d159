"""Spatial functa: reads and coordinates against a direct reference, the inner and outer loops, the meta and
encode stages, functaset rendering, resume, and answers to bad input."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from inrkit.core import artifacts
from inrkit.core.config import load_recipe as _load_recipe
from inrkit.core.errors import InrkitError
from inrkit.core.parse import parse_index
from inrkit.fields.grid import make_grid
from inrkit.metrics.image import mse_per_item
from inrkit.models import functa as functa_mod
from inrkit.models.functa import SpatialFuncta, binary_coords, build_functa, parse_latent
from inrkit.models.metalearn import encode, image_targets, inner_loop, outer_loss
from inrkit.stages.configs import MetaConfig
from inrkit.stages.encode import encode as encode_stage
from inrkit.stages.encode import quantize
from inrkit.stages.meta import meta
from inrkit.stages.render import render


def load_recipe(text):
    return _load_recipe(text, MetaConfig)


ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # 2 threads on a busy 2-core machine are slower than one


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(interp="nearest", latent=(4, 4, 6), resolution=8, kernel=1, width=12, depth=3, channels=3):
    torch.manual_seed(0)
    return SpatialFuncta(latent, resolution, channels, width, depth, 10.0, interp, kernel)


# ---------------------------------------------------------------- a direct reference implementation

def reference_forward(model: SpatialFuncta, z: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Per point, with explicit loops: conv lambda, the read rule of App. C, the coordinate input, the SIREN."""
    s, _, c = model.latent
    weight, bias = model.to_modulation.weight, model.to_modulation.bias  # (C, c, k, k), (C,)
    k = weight.shape[-1]
    pad = k // 2
    padded = torch.zeros(z.shape[0], s + 2 * pad, s + 2 * pad, c)
    padded[:, pad : pad + s, pad : pad + s] = z
    m = torch.zeros(z.shape[0], s, s, weight.shape[0])
    for i in range(s):
        for j in range(s):
            m[:, i, j] = bias
            for di in range(k):
                for dj in range(k):
                    m[:, i, j] += padded[:, i + di, j + dj] @ weight[:, :, di, dj].T
    d, bits = model.resolution, max(1, math.ceil(math.log2(model.resolution)))
    outs = []
    for y, x in coords.tolist():
        if model.interp == "nearest":
            ci, cj = min(max(int(math.floor(y * s)), 0), s - 1), min(max(int(math.floor(x * s)), 0), s - 1)
            m_x = m[:, ci, cj]
            h = torch.tensor([y * s - ci, x * s - cj])
        else:
            py, px = y * s - 0.5, x * s - 0.5
            i0, j0 = math.floor(py), math.floor(px)
            ty, tx = py - i0, px - j0
            def at(i, j):
                return m[:, min(max(i, 0), s - 1), min(max(j, 0), s - 1)]
            m_x = ((1 - ty) * (1 - tx) * at(i0, j0) + (1 - ty) * tx * at(i0, j0 + 1)
                   + ty * (1 - tx) * at(i0 + 1, j0) + ty * tx * at(i0 + 1, j0 + 1))
            code = format(int(math.floor(y * d)) % 2**bits, f"0{bits}b") + format(int(math.floor(x * d)) % 2**bits,
                                                                                 f"0{bits}b")
            h = torch.tensor([float(b) for b in code])
        h = (h * 2 - 1 if model.coords == "signed" else h).expand(z.shape[0], -1)
        for li, layer in enumerate(model.layers):
            shift = m_x[:, li * model.width : (li + 1) * model.width]
            h = torch.sin(model.w0 * (h @ layer.weight.T + layer.bias + shift))
        outs.append(h @ model.out.weight.T + model.out.bias + 0.5)
    return torch.stack(outs, dim=1)


def test_siren_inputs_are_app_c_as_written_and_biases_start_at_zero():
    # App. C: per-patch coordinates in [0, 1]^2 (nearest) and {0, 1} bits (bilinear); B.1: zero SIREN biases.
    coords = make_grid((8, 8)).reshape(-1, 2)
    near, bil = tiny("nearest"), tiny("bilinear")
    x = near.coordinate_inputs(coords)
    assert set(x.unique().tolist()) == {0.25, 0.75}  # 2x2-pixel patches: pixel centres at 1/4 and 3/4
    assert set(bil.coordinate_inputs(coords).unique().tolist()) == {0.0, 1.0}
    assert all(bool((layer.bias == 0).all()) for layer in near.layers)
    old = SpatialFuncta((4, 4, 6), 8, 3, 16, 3, coords="signed", siren_bias="uniform")
    assert old.coordinate_inputs(coords).min() < 0 and old.layers[1].bias.abs().sum() > 0
    assert near.config["coords"] == "unit" and "siren_bias" not in near.config


def test_an_artifact_without_coords_rebuilds_with_signed_inputs():
    from inrkit.models.functa import build_functa

    config = dict(tiny("nearest").config)
    del config["coords"]
    assert build_functa(config).coords == "signed"


def test_binary_code_matches_the_paper_example():
    # App. C: at 32x32, the coordinate (3/32, 5/32) becomes 00011 00101.
    coords = torch.tensor([[3.5 / 32, 5.5 / 32]])
    assert binary_coords(coords, 32).tolist() == [[0, 0, 0, 1, 1, 0, 0, 1, 0, 1]]


@pytest.mark.parametrize("coords", ["unit", "signed"])
@pytest.mark.parametrize("interp, kernel", [("nearest", 1), ("nearest", 3), ("bilinear", 1), ("bilinear", 3)])
def test_model_agrees_with_direct_reference(interp, kernel, coords):
    model = tiny(interp, kernel=kernel)
    model.coords = coords
    z = torch.randn(2, 4, 4, 6)
    with torch.no_grad():
        model.to_modulation.bias.normal_(0, 0.1)
        grid = make_grid((8, 8)).reshape(-1, 2)
        off_grid = torch.rand(20, 2) * 1.6 - 0.3  # inside and outside [0, 1] (zoom-out)
        for coords in (grid, off_grid):
            assert torch.allclose(model(z, coords), reference_forward(model, z, coords), atol=1e-5)


def test_bilinear_read_dense_and_tap_paths_agree_with_torch_interpolate(monkeypatch):
    s, d = 4, 16
    m = torch.randn(3, s, s, 5)
    coords = make_grid((d, d)).reshape(-1, 2)
    index, weight = functa_mod.bilinear_taps(coords, s)
    taps = functa_mod.read_modulations(m, index, weight)
    dense = functa_mod.read_modulations(m, index, weight, functa_mod.interpolation_matrix(index, weight, s * s))
    expected = F.interpolate(m.permute(0, 3, 1, 2), size=(d, d), mode="bilinear", align_corners=False)
    expected = expected.permute(0, 2, 3, 1).reshape(3, d * d, 5)
    assert torch.allclose(taps, expected, atol=1e-5) and torch.allclose(dense, expected, atol=1e-5)
    # The model gives the same output through either path.
    model, z = tiny("bilinear"), torch.randn(2, 4, 4, 6)
    with torch.no_grad():
        a = model(z, coords)
        monkeypatch.setattr(functa_mod, "DENSE_READ_MAX_CELLS", 0)
        assert torch.allclose(model(z, coords), a, atol=1e-5)


def test_nearest_read_is_constant_per_patch_with_local_coordinates():
    model = tiny("nearest", latent=(2, 2, 3), resolution=8)
    coords = make_grid((8, 8)).reshape(-1, 2)
    inputs = model.coordinate_inputs(coords).reshape(8, 8, 2)
    assert torch.equal(inputs[:4, :4], inputs[4:, 4:])  # every 4x4 patch sees the same local coordinates
    index, _ = functa_mod.nearest_taps(coords, 2)
    assert index.reshape(8, 8).tolist()[0] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert index.reshape(8, 8)[7, 7].item() == 3


def test_flat_latent_is_the_original_functa():
    model = tiny("nearest", latent=(1, 1, 10))
    coords = make_grid((8, 8)).reshape(-1, 2)
    assert torch.allclose(model.coordinate_inputs(coords), coords)  # global coordinates in [0, 1]^2 (App. C)
    assert parse_latent("1024") == (1, 1, 1024) and parse_latent("8x8x16") == (8, 8, 16)


@pytest.mark.parametrize("text", ["8x16", "0x0x4", "axbxc", "8x4x16"])
def test_bad_latent_shapes(text):
    with pytest.raises(InrkitError):
        parse_latent(text)


def test_latent_that_does_not_divide_resolution_is_refused():
    with pytest.raises(InrkitError, match="does not divide"):
        SpatialFuncta((5, 5, 4), 32)


def test_config_rebuilds_the_model():
    model = tiny("bilinear", kernel=3)
    again = build_functa(model.config)
    again.load_state_dict(model.state_dict())
    z, coords = torch.randn(1, 4, 4, 6), make_grid((8, 8)).reshape(-1, 2)
    assert torch.equal(model(z, coords), again(z, coords))


# ---------------------------------------------------------------- inner and outer loops

def photos(n, resolution=16, split="train"):
    from inrkit.data import open_dataset

    ds = open_dataset("builtin:photos", resolution, split=split, count=n)
    return torch.stack([ds[i][0] for i in range(n)])


def meta_train(model, images, steps, lr=3e-3, batch=8, **kw):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for step in range(steps):
        x = images[(step * batch) % len(images):][:batch]
        loss, _ = outer_loss(model, x, **kw)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.clip_learning_rates()
    return model


@pytest.fixture(scope="module")
def trained():
    """A tiny model meta-learned briefly on 16x16 photo crops, with its PSNR before and after."""
    torch.set_num_threads(1)
    images, held = photos(64), photos(16, split="heldout")
    model = tiny("nearest", latent=(4, 4, 8), resolution=16, width=32, depth=3)
    before = encode(model, held)[1].mean().item()
    meta_train(model, images, 60)
    return model, held, before, encode(model, held)[1].mean().item()


def test_meta_learning_raises_the_three_step_psnr(trained):
    _, _, before, after = trained
    assert after > before + 3, (before, after)


def test_inner_loop_lowers_the_error_on_every_step(trained):
    model, held, _, _ = trained
    targets, coords = image_targets(held)
    z, history = inner_loop(model, targets, coords, steps=5, differentiable=False)
    history.append(mse_per_item(model(z, coords), targets).detach())
    errors = torch.stack(history)  # (steps + 1, B)
    assert (errors[1:] < errors[:-1]).all(), errors


def test_inner_steps_do_not_depend_on_batch_size(trained):
    model, held, _, _ = trained
    z_batch, _ = encode(model, held[:6])
    z_alone, _ = encode(model, held[2:3])
    assert torch.allclose(z_batch[2], z_alone[0], atol=1e-6)


@pytest.mark.parametrize("first_order", [False, True])
def test_gradients_reach_the_meta_sgd_rates(first_order):
    model = tiny("nearest", latent=(2, 2, 4))
    loss, _ = outer_loss(model, photos(4, 8), steps=3, first_order=first_order)
    loss.backward()
    g = model.meta_lr.grad
    assert g is not None and g.shape == (2, 2, 4) and torch.isfinite(g).all() and g.abs().sum() > 0


def test_second_order_differs_from_first_order_and_checkpointing_changes_nothing():
    images = photos(4, 8)
    grads = {}
    for name, kw in dict(second={}, first=dict(first_order=True), ckpt=dict(checkpointed=True)).items():
        model = tiny("bilinear", latent=(2, 2, 4))
        loss, _ = outer_loss(model, images, steps=3, **kw)
        loss.backward()
        grads[name] = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert torch.allclose(grads["second"], grads["ckpt"], rtol=1e-4, atol=1e-7)
    assert not torch.allclose(grads["second"], grads["first"], rtol=1e-3)


def test_meta_sgd_rates_stay_clipped():
    model = tiny()
    with torch.no_grad():
        model.meta_lr.fill_(3.0)
    model.clip_learning_rates()
    assert model.meta_lr.max().item() == 1.0
    assert ((model.learning_rates() >= 0) & (model.learning_rates() <= 1)).all()


def test_quantisation_is_uniform_per_dimension():
    latents = torch.randn(50, 2, 2, 3) * torch.arange(1, 4)
    for bits in (6, 7, 8):
        codes, lo, hi, deq = quantize(latents, bits)
        assert codes.dtype == torch.uint8 and int(codes.max()) <= 2**bits - 1
        assert ((deq - latents).abs() <= (hi - lo) / 2**bits / 2 + 1e-5).all()
    with pytest.raises(InrkitError, match="--bits"):
        quantize(latents, 4)


# ---------------------------------------------------------------- stages, artifacts, rendering

SMALL = dict(latent="4x4x8", resolution=16, width=16, depth=3, w0=10.0, batch=4, lr=1e-3, workers=0,
             progress=False, heldout_count=6, encode_batch=8)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("meta") / "model.safetensors"
    metrics = meta("builtin:photos?count=12", out, steps=6, snapshot=3, **SMALL)
    return out, metrics


def test_meta_writes_model_state_pictures_and_functasets(run):
    out, metrics = run
    run_dir = out.with_suffix("")
    for name in ("state.safetensors", "stats.jsonl", "psnr.png", "reconstructions-0000003.png",
                 "reconstructions-0000006.png", "functaset-train.safetensors", "functaset-heldout.safetensors"):
        assert (run_dir / name).is_file(), name
    art = artifacts.read(out, kind="functa-model")
    assert art.config["model"]["latent"] == [4, 4, 8] and art.metrics["step"] == 6
    assert art.tensors["meta_lr"].shape == (4, 4, 8)
    train = artifacts.read(run_dir / "functaset-train.safetensors", kind="functaset")
    assert train.tensors["latents"].shape == (12, 4, 4, 8) and train.tensors["psnr"].shape == (12,)
    assert train.tensors["labels"].tolist() == [-1] * 12
    held = artifacts.read(run_dir / "functaset-heldout.safetensors", kind="functaset")
    assert held.config["data"]["split"] == "heldout" and len(held.tensors["latents"]) == 6
    assert abs(held.metrics["psnr"] - held.tensors["psnr"].mean().item()) < 1e-4
    assert metrics["heldout_psnr"] == pytest.approx(held.metrics["psnr"])
    picture = Image.open(run_dir / "reconstructions-0000006.png")
    assert picture.size[1] == 2 * 16 * 6  # targets above reconstructions, enlarged 6x


def test_resume_gives_the_same_model_as_an_uninterrupted_run(tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    opts = dict(SMALL, functasets=False, snapshot=100)
    meta("builtin:photos?count=12", a, steps=6, **opts)
    meta("builtin:photos?count=12", b, steps=3, **opts)
    meta("builtin:photos?count=12", b, steps=6, **opts)  # rerun with more steps: resumes at step 3
    ta, tb = artifacts.read(a).tensors, artifacts.read(b).tensors
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    with pytest.raises(InrkitError, match="--lr"):
        meta("builtin:photos?count=12", b, steps=8, **dict(opts, lr=5e-4))


def test_encode_stage_with_more_steps_and_quantisation(run, tmp_path):
    out, _ = run
    three = encode_stage(out, "builtin:photos?count=8", tmp_path / "f3.safetensors", steps=3, workers=0,
                         progress=False)
    ten = encode_stage(out, "builtin:photos?count=8", tmp_path / "f10.safetensors", steps=10, workers=0,
                       progress=False)
    assert ten["psnr"] > three["psnr"]  # test-time optimisation
    q = encode_stage(out, "builtin:photos?count=8", tmp_path / "q.safetensors", bits=6, workers=0, progress=False)
    art = artifacts.read(tmp_path / "q.safetensors", kind="functaset")
    assert art.tensors["codes"].dtype == torch.uint8 and art.metrics["bits"] == 6
    assert q["psnr_change"] == pytest.approx(q["psnr"] - three["psnr"], abs=1e-4)
    with pytest.raises(InrkitError, match="can encode only"):
        encode_stage(out, "builtin:photos?count=8", tmp_path / "x.safetensors", resolution=32, workers=0)


def test_render_functaset_embedded_named_and_perturbed(run, tmp_path):
    out, _ = run
    fs = out.with_suffix("") / "functaset-train.safetensors"
    render(fs, tmp_path / "a.png", index=[0, 1, 2], device="cpu")
    assert Image.open(tmp_path / "a.png").size == (3 * 16 + 2 * 2, 16)
    render(fs, tmp_path / "b.png", index=[0, 1], scale=2.0, model=out, device="cpu")
    assert Image.open(tmp_path / "b.png").size == (2 * 32 + 2, 32)
    render(fs, tmp_path / "c.png", index=[0], size=(8, 12), device="cpu")
    assert Image.open(tmp_path / "c.png").size == (12, 8)
    render(fs, tmp_path / "p.png", index=[0, 1], perturb=3, device="cpu")
    picture = np.asarray(Image.open(tmp_path / "p.png")).astype(int)
    assert picture.shape[0] == 3 * 16 + 2 * 4
    diff = picture[-16:]
    assert (np.abs(diff - 128) > 2).any()  # the perturbation changed some pixels
    # Rendering matches decoding the stored latents with the model.
    model = build_functa(artifacts.read(out).config["model"])
    artifacts.load_state(model, artifacts.read(out), out)
    z = artifacts.read(fs).tensors["latents"][:1]
    expected = (model.render(z).clamp(0, 1)[0] * 255).round().to(torch.uint8).numpy()
    render(fs, tmp_path / "d.png", index=[0], device="cpu")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "d.png")), expected)


def test_perturbation_is_local_for_spatial_and_global_for_flat_latents():
    from inrkit.models.functa_family import perturbation

    for latent, local in (((4, 4, 4), True), ((1, 1, 8), False)):
        model = tiny("nearest", latent=latent, resolution=16)
        z = torch.zeros(1, *latent)
        z_one = z.clone()
        z_one[0, 0, 0, 1] += 1.0  # one feature at one location
        a, b = model.render(z), model.render(z_one)
        changed = ((a - b).abs().amax(-1) > 1e-6)[0]
        assert changed[:4, :4].all() and (not changed[4:, 4:].any()) == local
        _, _, diff = perturbation(model, z, 1, 0.5, (16, 16), None, 2**14)
        assert diff.abs().max() > 0


def test_named_model_must_exist_and_match(run, tmp_path):
    out, _ = run
    fs = out.with_suffix("") / "functaset-train.safetensors"
    with pytest.raises(InrkitError, match="does not exist"):
        render(fs, tmp_path / "a.png", model=tmp_path / "none.safetensors", device="cpu")
    other = tmp_path / "other.safetensors"
    model = tiny("nearest", latent=(4, 4, 8), resolution=16, width=16, depth=3)
    artifacts.save(other, artifacts.Artifact(kind="functa-model", tensors=model.state_dict(),
                                             config=dict(model=model.config)))
    with pytest.raises(InrkitError, match="is not the model"):
        render(fs, tmp_path / "a.png", model=other, device="cpu")
    with pytest.raises(InrkitError, match="outside"):
        render(fs, tmp_path / "a.png", index=[99], device="cpu")
    assert parse_index("0-3,7") == [0, 1, 2, 3, 7]


def test_recipes_hold_the_paper_settings():
    cifar = load_recipe(ROOT / "recipes" / "spatial-functa-cifar10.json")
    assert (cifar["latent"], cifar["interp"], cifar["width"], cifar["depth"], cifar["w0"], cifar["lr"],
            cifar["batch"], cifar["steps"]) == ("8x8x16", "nearest", 256, 6, 10.0, 3e-5, 128, 200_000)
    linear = load_recipe(f"{ROOT / 'recipes' / 'spatial-functa-cifar10.json'}#8x8x16-linear")
    assert linear["interp"] == "bilinear" and linear["lr"] == 1e-4
    flat = load_recipe(f"{ROOT / 'recipes' / 'spatial-functa-cifar10.json'}#functa-1024")
    assert (flat["latent"], flat["w0"], flat["width"], flat["depth"], flat["lr"]) == ("1024", 30.0, 512, 15, 3e-6)
    imagenet = load_recipe(ROOT / "recipes" / "spatial-functa-imagenet256.json")
    assert (imagenet["latent"], imagenet["resolution"], imagenet["depth"], imagenet["w0"], imagenet["batch"]) == (
        "16x16x128", 256, 12, 20.0, 16)
    big = load_recipe(f"{ROOT / 'recipes' / 'spatial-functa-imagenet256.json'}#32x32x64-conv3")
    assert big["kernel"] == 3 and big["lr"] == 3e-5
    with pytest.raises(InrkitError, match="no variant"):
        load_recipe(f"{ROOT / 'recipes' / 'spatial-functa-cifar10.json'}#nosuch")


# ---------------------------------------------------------------- the command line

def cli(*args, ok=True):
    r = subprocess.run([sys.executable, "-m", "inrkit.cli", *map(str, args)], capture_output=True, text=True,
                       env=ENV, cwd=ROOT)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def test_cli_meta_encode_chain(tmp_path):
    out = tmp_path / "m.safetensors"
    cli("meta", "--data", "builtin:photos?count=8", "--out", out, "--latent", "4x4x8", "--resolution", "16",
        "--width", "16", "--depth", "3", "--batch", "4", "--steps", "2", "--lr", "1e-3", "--workers", "0",
        "--no-functasets")
    cli("encode", out, "--data", "builtin:photos?count=4", "--out", tmp_path / "f.safetensors", "--steps", "3",
        "--bits", "8", "--workers", "0")
    art = artifacts.read(tmp_path / "f.safetensors", kind="functaset")
    assert art.tensors["latents"].shape == (4, 4, 4, 8) and art.metrics["bits"] == 8


def _unembedded(run, tmp_path):
    """A functaset that names its model instead of embedding it, with that model file gone."""
    out, _ = run
    art = artifacts.read(out.with_suffix("") / "functaset-train.safetensors")
    model_copy = tmp_path / "gone.safetensors"
    art.tensors = {k: v for k, v in art.tensors.items() if not k.startswith("model.")}
    art.config.update(embedded_model=False, model_path=str(model_copy))
    path = tmp_path / "bare.safetensors"
    artifacts.save(path, art)
    return path


@pytest.mark.parametrize("args, message", [
    (["meta", "--data", "builtin:photos?count=4", "--latent", "5x5x4", "--resolution", "32"], "does not divide"),
    (["encode", "{model}", "--data", "builtin:photos?count=4", "--resolution", "32"], "can encode only"),
])
def test_cli_bad_input_one_sentence(args, message, run, tmp_path):
    out, _ = run
    subs = dict(model=out, missing=tmp_path / "missing.safetensors")
    target = tmp_path / "x.safetensors"
    r = cli(*[a.format(**subs) for a in args], "--out", target, ok=False)
    assert r.returncode != 0 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not target.exists()


@pytest.mark.parametrize("call, message", [
    (lambda run, tmp: meta("builtin:photos?count=4", tmp / "m.safetensors", interp="cubic"), "unknown --interp"),
    (lambda run, tmp: meta("builtin:photos?count=4", tmp / "m.safetensors", arch="functa", latent="4x4x4"),
     "flat latent"),
    (lambda run, tmp: meta("builtin:photos?count=4", tmp / "m.safetensors", batch=0), "at least 1"),
    (lambda run, tmp: encode_stage(run[0], "builtin:photos?count=4", tmp / "f.safetensors", bits=4), "--bits"),
    (lambda run, tmp: encode_stage(tmp / "none.safetensors", "builtin:photos?count=4", tmp / "f.safetensors"),
     "does not exist"),
    (lambda run, tmp: encode_stage(run[0].with_suffix("") / "functaset-train.safetensors", "builtin:photos",
                                   tmp / "f.safetensors"), "functa-model artifact is needed"),
    (lambda run, tmp: load_recipe(tmp / "none.json"), "does not exist"),
])
def test_bad_input_is_one_clear_error(call, message, run, tmp_path):
    with pytest.raises(InrkitError, match=message):
        call(run, tmp_path)
    assert not (tmp_path / "m.safetensors").exists() and not (tmp_path / "f.safetensors").exists()


def test_functaset_whose_model_is_missing(run, tmp_path):
    bare = _unembedded(run, tmp_path)
    with pytest.raises(InrkitError, match="is missing"):
        render(bare, tmp_path / "a.png", device="cpu")
    out, _ = run
    render(bare, tmp_path / "b.png", index=[0], model=out, device="cpu")  # named: fine


@pytest.mark.slow
def test_torchrun_two_processes_stay_in_sync(tmp_path):
    """2 CPU processes (gloo): identical parameters on both ranks, close to one process with the same batch."""
    script = tmp_path / "ddp.py"
    script.write_text(
        "import sys\n"
        "from inrkit.core import runtime\n"
        "from inrkit.stages.meta import meta\n"
        "out = sys.argv[1]\n"
        f"m = meta('builtin:photos?count=16', out, steps=4, snapshot=2, **{dict(SMALL, functasets=False)!r})\n"
        "open(out + f'.rank{runtime.rank()}', 'w').write(m['parameters_sha256'])\n")
    out = tmp_path / "ddp.safetensors"
    r = subprocess.run([str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", "2", str(script), str(out)],
                       capture_output=True, text=True, env=ENV, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    digests = [(tmp_path / f"ddp.safetensors.rank{r}").read_text() for r in (0, 1)]
    assert digests[0] == digests[1]  # bit-identical parameters on both ranks
    single = tmp_path / "single.safetensors"
    meta("builtin:photos?count=16", single, steps=4, snapshot=2, **dict(SMALL, functasets=False))
    a, b = artifacts.read(out).tensors, artifacts.read(single).tensors
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6), k


def test_render_cli_dispatches_functasets_and_load_rebuilds_the_model(run, tmp_path):
    import subprocess
    import sys

    import inrkit

    out, _ = run
    fs = out.with_suffix("") / "functaset-train.safetensors"
    r = subprocess.run([sys.executable, "-m", "inrkit.cli", "render", str(fs), "--index", "0-1", "--scale", "2",
                        "--out", str(tmp_path / "cli.png")], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "cli.png").size == (2 * 32 + 2, 32)
    r = subprocess.run([sys.executable, "-m", "inrkit.cli", "render", str(out), "--out", str(tmp_path / "m.png")],
                       capture_output=True, text=True, env=ENV)
    assert r.returncode == 1 and "functa-model artifact" in r.stderr and "Traceback" not in r.stderr
    model = inrkit.load(out)
    assert isinstance(model, SpatialFuncta) and not model.training


def test_meta_labels_go_into_both_functasets_and_a_rerun_adds_them(run, tmp_path):
    out = tmp_path / "d.safetensors"
    meta("builtin:digits?count=12", out, steps=2, snapshot=2, **dict(SMALL, channels=1))
    train = out.with_suffix("") / "functaset-train.safetensors"
    assert artifacts.read(train).tensors["labels"].tolist() == [-1] * 12
    meta("builtin:digits?count=12", out, steps=2, snapshot=2, labels=True, **dict(SMALL, channels=1))
    from inrkit.data import open_dataset

    ds = open_dataset("builtin:digits", 8, 1, labels=True, count=12)
    assert artifacts.read(train).tensors["labels"].tolist() == [int(ds[i][1]) for i in range(12)]
    held = artifacts.read(out.with_suffix("") / "functaset-heldout.safetensors").tensors["labels"]
    assert bool((held >= 0).all()) and held.unique().numel() > 1
