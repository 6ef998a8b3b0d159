"""`inrkit render` on a generator artifact, through the real command line: sample grids, superresolution,
zoom-out, low-resolution inference, interpolation (Fig. 5), frequency histograms and bad input."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from inrkit.core import artifacts
from inrkit.core.errors import InrkitError
from inrkit.fields.mlp import FourierMLP
from inrkit.models.inrgan import InrGanGenerator, count_macs, generator_config
from inrkit.stages.render import render

R, GAP = 16, 2  # training resolution of the tiny generator; white gap between tiled images


def run(*args, ok=True):
    r = subprocess.run([sys.executable, "-m", "inrkit.cli", "render", *map(str, args), "--device", "cpu"],
                       capture_output=True, text=True)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(int)


def tiles(sheet: np.ndarray, n: int, h: int, w: int) -> list[np.ndarray]:
    """The n images of a one-row sheet of h x w tiles."""
    assert sheet.shape[:2] == (h, n * w + (n - 1) * GAP)
    return [sheet[:, k * (w + GAP) : k * (w + GAP) + w] for k in range(n)]


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    """A tiny two-block generator saved as train-gan saves its final artifact."""
    torch.manual_seed(0)
    cfg = generator_config(arch="inrgan", resolution=R, blocks=[[8, 1, 16], [16, 1, 16]], z_dim=32,
                           hyper_hidden=32, hyper_layers=1, fmm_rank=2)
    G = InrGanGenerator(cfg).eval()
    with torch.no_grad():
        G.w_avg.copy_(torch.randn_like(G.w_avg) * 0.1)
    path = tmp_path_factory.mktemp("gen") / "gen.safetensors"
    config = dict(generator=G.config, discriminator={}, training={})
    artifacts.save(path, artifacts.Artifact(kind="generator", tensors=G.state_dict(), config=config,
                                            metrics=dict(kimg=0.0, step=0)))
    return path


@pytest.fixture(scope="module")
def plain(gen, tmp_path_factory):
    """Seeds 0-3 at the training resolution."""
    out = tmp_path_factory.mktemp("plain") / "plain.png"
    run(gen, "--seeds", "0-3", "--out", out)
    return tiles(png(out), 4, R, R)


def test_grid_of_seeds_differs_per_seed(plain):
    assert all(im.shape == (R, R, 3) for im in plain)
    assert np.abs(plain[0] - plain[1]).max() > 0


def test_default_draws_sixteen_seeds_in_rows_of_eight(gen, tmp_path):
    run(gen, "--out", tmp_path / "g.png")
    assert png(tmp_path / "g.png").shape == (2 * R + GAP, 8 * R + 7 * GAP, 3)


def test_seeds_are_batch_independent(gen, plain, tmp_path):
    run(gen, "--seeds", "2-3", "--out", tmp_path / "b.png")
    two = tiles(png(tmp_path / "b.png"), 2, R, R)
    assert np.array_equal(two[0], plain[2]) and np.array_equal(two[1], plain[3])


def test_superresolution_doubles(gen, tmp_path):
    run(gen, "--seeds", "0-3", "--scale", "2", "--out", tmp_path / "x2.png")
    tiles(png(tmp_path / "x2.png"), 4, 2 * R, 2 * R)


def test_zoom_out_keeps_pitch_and_centre(gen, plain, tmp_path):
    run(gen, "--seeds", "0-3", "--grid=-0.5,1.5", "--out", tmp_path / "wide.png")
    wide = tiles(png(tmp_path / "wide.png"), 4, 2 * R, 2 * R)
    for w, p in zip(wide, plain, strict=True):  # nearest upsampling: the centre is the training view
        assert np.abs(w[R // 2 : R // 2 + R, R // 2 : R // 2 + R] - p).max() <= 1  # uint8 rounding
        assert np.abs(w[: R // 2] - w[R // 2 : R]).max() > 0  # the outside is not a copy


def test_low_resolution_inference_prints_macs(gen, tmp_path):
    r = run(gen, "--seeds", "0-3", "--size", "8", "--out", tmp_path / "low.png")
    tiles(png(tmp_path / "low.png"), 4, 8, 8)
    text = " ".join(r.stderr.split())  # rich wraps long lines
    cfg = artifacts.read(gen).config["generator"]
    low, full = count_macs(cfg, 8)["total"], count_macs(cfg)["total"]
    assert f"{low / 1e6:.3f} MMACs per image at 8x8 vs {full / 1e6:.3f} MMACs at 16x16" in text, text
    assert "per-pixel INR part 4.00x fewer" in text and "x faster" in text, text


def test_truncation_to_zero_gives_the_average_image(gen, tmp_path):
    run(gen, "--seeds", "0-2", "--psi", "0", "--out", tmp_path / "t.png")
    a, b, c = tiles(png(tmp_path / "t.png"), 3, R, R)
    assert np.array_equal(a, b) and np.array_equal(b, c)


@pytest.mark.parametrize("space", ["inr", "pixel"])
def test_interpolation_row_ends_are_the_seeds(gen, plain, tmp_path, space):
    out = tmp_path / f"{space}.png"
    run(gen, "--interpolate", "1,3", "--steps", "5", "--space", space, "--out", out)
    row = tiles(png(out), 5, R, R)
    assert np.array_equal(row[0], plain[1]) and np.array_equal(row[-1], plain[3])
    assert np.abs(row[2] - row[0]).max() > 0 and np.abs(row[2] - row[-1]).max() > 0


def test_frequency_histogram(gen, tmp_path):
    run(gen, "--seeds", "0-7", "--frequencies", "--out", tmp_path / "f.png")
    assert png(tmp_path / "f.png").shape[0] > 100


@pytest.mark.parametrize("args, message", [
    (["--seeds", "x"], "--seeds"),
    (["--interpolate", "1,2,3"], "exactly two seeds"),
    (["--interpolate", "1,2", "--steps", "1"], "--steps must be at least 2"),
    (["--interpolate", "1,2", "--space", "latent"], "unknown --space"),
    (["--index", "0"], "apply to functasets"),
    (["--size", "0"], "must be positive"),
])
def test_bad_input_one_sentence_no_traceback(gen, tmp_path, args, message):
    out = tmp_path / "bad.png"
    r = run(gen, *args, "--out", out, ok=False)
    assert r.returncode == 1
    assert message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists()


def test_empty_seeds_rejected(gen, tmp_path):
    with pytest.raises(InrkitError, match="selects no seeds"):
        render(gen, tmp_path / "e.png", seeds=[], device="cpu")


def test_generator_options_rejected_for_a_field(tmp_path):
    f = FourierMLP(in_dim=2, out_dim=1, width=8, depth=2, frequencies=2).eval()
    p = tmp_path / "f.safetensors"
    artifacts.save(p, artifacts.Artifact(kind="field", tensors=f.state_dict(),
                                         config={"field": f.config, "signal": {"shape": [8, 8], "channels": 1}}))
    with pytest.raises(InrkitError, match="--seeds, --psi apply to generators"):
        render(p, tmp_path / "r.png", seeds=[0], psi=0.5, device="cpu")
