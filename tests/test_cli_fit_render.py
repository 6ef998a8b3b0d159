"""The fit -> render chain through the real command line, and its answers to bad input."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from inrkit.core import artifacts
from inrkit.core.pictures import to_uint8
from inrkit.fields.grid import evaluate
from inrkit.fields.mlp import FourierMLP
from inrkit.stages.render import render


def run(*args, ok=True):
    r = subprocess.run([sys.executable, "-m", "inrkit.cli", *map(str, args)], capture_output=True, text=True)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    d = tmp_path_factory.mktemp("fit")
    out = d / "cam.safetensors"
    run("fit", "builtin:camera", "--arch", "pe", "--width", "16", "--depth", "3", "--frequencies", "4",
        "--size", "24x32", "--steps", "30", "--out", out)
    return out


def test_fit_writes_artifact_pictures_and_stats(fitted):
    run_dir = fitted.with_suffix("")
    for name in ("compare.png", "psnr.png", "stats.jsonl"):
        assert (run_dir / name).is_file()
    art = artifacts.read(fitted, kind="field")
    assert art.config["signal"]["shape"] == [24, 32]
    assert art.metrics["psnr"] > 8 and 0 < art.metrics["ssim"] <= 1
    assert art.options["steps"] == 30


def test_render_needs_no_fit_options(fitted, tmp_path):
    run("render", fitted, "--out", tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").size == (32, 24)  # PIL reports (W, H)
    run("render", fitted, "--scale", "2", "--out", tmp_path / "b.png")
    assert Image.open(tmp_path / "b.png").size == (64, 48)
    run("render", fitted, "--grid=-0.3,1.3", "--out", tmp_path / "c.png")
    assert Image.open(tmp_path / "c.png").size == (51, 38)  # same pixel pitch over a 1.6x wider range
    run("render", fitted, "--size", "7x9", "--out", tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").size == (9, 7)


def test_round_trip_render_is_bit_identical_to_in_memory_model(tmp_path):
    f = FourierMLP(in_dim=2, out_dim=3, width=16, depth=3, frequencies=4).eval()
    with torch.no_grad():
        f.linears[-1].bias.fill_(0.5)
    p = tmp_path / "f.safetensors"
    artifacts.save(p, artifacts.Artifact(kind="field", tensors=f.state_dict(),
                                         config={"field": f.config, "signal": {"shape": [20, 30], "channels": 3}}))
    render(p, tmp_path / "r.png", scale=2.0, device="cpu")
    expected = to_uint8(evaluate(f, (40, 60)).clamp(0, 1))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "r.png")), expected)


def test_render_zoom_out_contains_the_training_view(tmp_path):
    """On --grid -1,2 with the same pitch, the middle third samples exactly the training pixel centres."""
    f = FourierMLP(in_dim=2, out_dim=1, width=16, depth=3, frequencies=3).eval()
    p = tmp_path / "f.safetensors"
    artifacts.save(p, artifacts.Artifact(kind="field", tensors=f.state_dict(),
                                         config={"field": f.config, "signal": {"shape": [8, 8], "channels": 1}}))
    render(p, tmp_path / "base.png", device="cpu")
    render(p, tmp_path / "wide.png", grid=[(-1.0, 2.0), (-1.0, 2.0)], device="cpu")
    base, wide = np.asarray(Image.open(tmp_path / "base.png")), np.asarray(Image.open(tmp_path / "wide.png"))
    assert wide.shape == (24, 24)
    assert np.abs(wide[8:16, 8:16].astype(int) - base.astype(int)).max() <= 1  # float rounding of coordinates


@pytest.mark.parametrize("args, message", [
    (["fit", "/nonexistent/x.png"], "does not exist"),
    (["fit", "builtin:nosuch"], "unknown built-in image"),
    (["fit", "{notimage}"], "not a readable image"),
    (["fit", "builtin:camera", "--arch", "cnn", "--steps", "1"], "unknown --arch"),
    (["render", "{notimage}"], "not a safetensors file"),
    (["render", "{truncated}"], "truncated"),
    (["render", "{fitted}", "--grid", "1,0"], "lo < hi"),
    (["render", "{fitted}", "--scale", "0"], "--scale must be positive"),
    (["render", "{generator}"], "generator artifact"),
])
def test_bad_input_one_sentence_no_traceback(args, message, fitted, tmp_path):
    notimage = tmp_path / "text.png"
    notimage.write_text("this is not an image")
    truncated = tmp_path / "trunc.safetensors"
    truncated.write_bytes(fitted.read_bytes()[:-100])
    generator = tmp_path / "gen.safetensors"
    artifacts.save(generator, artifacts.Artifact(kind="generator", tensors={"w": torch.zeros(1)}, config={}))
    subs = dict(notimage=notimage, truncated=truncated, fitted=fitted, generator=generator)
    out = tmp_path / "out.safetensors" if args[0] == "fit" else tmp_path / "out.png"
    r = run(*[a.format(**subs) for a in args], "--out", out, ok=False)
    assert r.returncode != 0
    assert message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists() and not out.with_suffix("").exists()


def _write_video(tmp_path):
    """A 4-frame 12x16 RGB clip: a bright square moving right, as frames and as an animated GIF."""
    frames = []
    for t in range(4):
        a = np.zeros((12, 16, 3), np.uint8)
        a[3:9, 2 + 3 * t : 6 + 3 * t] = (255, 128, 0)
        frames.append(Image.fromarray(a))
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, f in enumerate(frames):
        f.save(folder / f"{t:03d}.png")
    gif = tmp_path / "clip.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return folder, gif


def test_video_fit_and_render(tmp_path):
    from inrkit.signal import load_signal

    folder, gif = _write_video(tmp_path)
    assert load_signal(str(folder)).shape == (4, 12, 16, 3)
    assert load_signal(str(gif)).shape == (4, 12, 16, 3)
    out = tmp_path / "clip.safetensors"
    run("fit", folder, "--arch", "siren", "--width", "16", "--depth", "3", "--steps", "20", "--out", out)
    art = artifacts.read(out)
    assert art.config["signal"]["shape"] == [4, 12, 16] and art.config["field"]["in_dim"] == 3
    assert (out.with_suffix("") / "reconstruction.gif").is_file()
    run("render", out, "--scale", "2", "--out", tmp_path / "x2")
    assert sorted(p.name for p in (tmp_path / "x2").iterdir()) == [f"frame_{t:04d}.png" for t in range(4)]
    assert Image.open(tmp_path / "x2" / "frame_0000.png").size == (32, 24)
    run("render", out, "--out", tmp_path / "clip_render.gif")
    assert Image.open(tmp_path / "clip_render.gif").n_frames == 4
