"""Video as a first-class signal (issue 13, item 3): the built-in camera-path video builtin:pan, video files and
folders of frames, and rendering a fitted video back at any size, grid and frame rate (--fps-scale)."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import fuzz
import numpy as np
import pytest
import torch
from PIL import Image

from inrkit.core import artifacts
from inrkit.core.errors import InrkitError
from inrkit.data.video import camera_path, pan_frames, parse_pan
from inrkit.fields.family import build
from inrkit.fields.grid import subframe_ranges
from inrkit.signal import load_signal
from inrkit.stages.render import render

SMALL = "builtin:pan?frames=4&size=16"


def cli(*args):
    return subprocess.run([sys.executable, "-m", "inrkit.cli", *map(str, args)], capture_output=True, text=True)


def assert_one_sentence(r, *fragments):
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _digest(spec: str) -> str:
    return hashlib.sha256(load_signal(spec).numpy().tobytes()).hexdigest()


# --- the built-in video -------------------------------------------------------------------------------------------

def test_pan_defaults_and_options():
    assert parse_pan("builtin:pan") == {"frames": 32, "size": 128, "photo": "astronaut"}
    assert parse_pan("builtin:pan?size=64&photo=coffee") == {"frames": 32, "size": 64, "photo": "coffee"}
    assert load_signal("builtin:pan?frames=3&size=24&photo=camera").shape == (3, 24, 24, 1)  # a grey photo
    video = load_signal(SMALL)
    assert video.shape == (4, 16, 16, 3) and video.dtype == torch.float32 and 0 <= video.min() < video.max() <= 1


@pytest.mark.parametrize("spec, message", [
    ("builtin:pan?fps=3", "unknown option 'fps' in 'builtin:pan?fps=3'; builtin:pan takes frames, size and photo."),
    ("builtin:pan?frames=1", "frames='1' in 'builtin:pan?frames=1' must be a whole number from 2 to 4096."),
    ("builtin:pan?frames=2.5", "must be a whole number from 2 to 4096"),
    ("builtin:pan?size=-3", "size='-3' in 'builtin:pan?size=-3' must be a whole number from 16 to 1024."),
    ("builtin:pan?size=", "must be a whole number from 16 to 1024"),
    ("builtin:pan?photo=cat", "photo='cat' in 'builtin:pan?photo=cat' is not a bundled photo; choose astronaut"),
    ("builtin:pan?frames", "cannot read the options in 'builtin:pan?frames'"),
    ("builtin:pan?frames=4096&size=1024", "asks for 4,294,967,296 pixels"),
])
def test_pan_bad_options_are_one_sentence(spec, message):
    with pytest.raises(InrkitError) as err:
        load_signal(spec)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_pan_is_deterministic():
    """Same bytes in this process, again, and in a fresh process (nothing cached, nothing random)."""
    spec = "builtin:pan?frames=8&size=32&photo=coffee"
    first = _digest(spec)
    assert _digest(spec) == first
    code = f"import hashlib; from inrkit.signal import load_signal; " \
           f"print(hashlib.sha256(load_signal({spec!r}).numpy().tobytes()).hexdigest())"
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert fresh.stdout.strip() == first
    assert _digest("builtin:pan?frames=8&size=32&photo=chelsea") != first  # the photo matters


def test_pan_is_smooth():
    """Consecutive frames differ little: measured at the defaults (astronaut, 32 frames of 128x128) the mean
    absolute difference of neighbouring frames is 0.096 at most 0.127 (values in [0, 1]), against 0.252 between
    frames half the loop apart; twice the frames along the same path halves the motion (0.060). A path that jumped
    (a random crop per frame) would fail all three."""
    video = load_signal("builtin:pan").numpy()
    assert video.shape == (32, 128, 128, 3)
    step = np.abs(np.diff(video, axis=0, append=video[:1])).mean(axis=(1, 2, 3))  # the loop closes too
    far = np.abs(video - np.roll(video, 16, axis=0)).mean()
    assert step.max() < 0.15
    assert step.mean() < 0.5 * far
    denser = load_signal("builtin:pan?frames=64").numpy()
    assert np.abs(np.diff(denser, axis=0)).mean() < 0.75 * step.mean()


def test_pan_doubled_frames_hold_the_original_ones():
    """frames=2N is the same path sampled twice as often: its even frames are frames=N's, bit for bit."""
    assert np.array_equal(camera_path(16, 600, 400)[::2], camera_path(8, 600, 400))
    a, b = pan_frames(8, 16, "astronaut"), pan_frames(4, 16, "astronaut")
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a[::2], b, strict=True))


def test_camera_path_stays_inside_the_photo():
    for w, h in ((512, 512), (600, 400), (451, 300)):
        boxes = camera_path(257, w, h)
        assert boxes[:, :2].min() >= 0 and boxes[:, 2].max() <= w and boxes[:, 3].max() <= h
        sides = boxes[:, 2] - boxes[:, 0]
        assert np.allclose(sides, boxes[:, 3] - boxes[:, 1])
        assert 0.59 * min(w, h) < sides.min() < 0.61 * min(w, h) and 0.79 * min(w, h) < sides.max() <= 0.8 * min(w, h)


# --- video inputs -------------------------------------------------------------------------------------------------

def _uint8(video: torch.Tensor) -> list[np.ndarray]:
    return [(f.numpy() * 255).round().astype(np.uint8) for f in video]


def test_video_file_folder_and_gif_read_the_same_clip(tmp_path):
    cv2 = pytest.importorskip("cv2")
    clip = load_signal("builtin:pan?frames=6&size=32")
    frames = _uint8(clip)
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, f in reversed(list(enumerate(frames))):  # written out of order: read sorted by name
        Image.fromarray(f).save(folder / f"f{t:02d}.png")
    (folder / "notes.txt").write_text("not a frame")
    assert torch.equal(load_signal(str(folder)), clip)
    gif = tmp_path / "clip.gif"
    images = [Image.fromarray(f) for f in frames]
    images[0].save(gif, save_all=True, append_images=images[1:], duration=100, loop=0)
    assert load_signal(str(gif)).shape == (6, 32, 32, 3)
    for name, codec in (("clip.mp4", "mp4v"), ("clip.avi", "MJPG")):
        writer = cv2.VideoWriter(str(tmp_path / name), cv2.VideoWriter_fourcc(*codec), 10, (32, 32))
        for f in frames:
            writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        writer.release()
        read = load_signal(str(tmp_path / name))
        assert read.shape == (6, 32, 32, 3)
        # lossy codecs: measured 0.027 mean absolute error, against 0.217 for the frames in reverse order
        assert (read - clip).abs().mean() < 0.06 < (read - clip.flip(0)).abs().mean() / 3
        assert load_signal(str(tmp_path / name), (16, 24)).shape == (6, 16, 24, 3)


def test_unreadable_video_file_is_one_sentence(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    r = cli("fit", bad, "--out", tmp_path / "v.safetensors")
    assert_one_sentence(r, f"{bad} is not a readable video")
    assert not (tmp_path / "v.safetensors").exists() and not (tmp_path / "v").exists()


def test_frames_of_different_sizes_are_refused(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for name, (w, h) in (("a.png", (16, 12)), ("b.png", (16, 12)), ("c.png", (20, 12)), ("d.png", (8, 8))):
        Image.new("RGB", (w, h), (200, 10, 10)).save(folder / name)
    out = tmp_path / "v.safetensors"
    r = cli("fit", folder, "--arch", "pe", "--steps", "2", "--out", out)
    assert_one_sentence(r, "c.png is 20x12 (width x height) but a.png is 16x12", "--size")
    assert not out.exists() and not out.with_suffix("").exists()
    assert load_signal(str(folder), (12, 16)).shape == (4, 12, 16, 3)  # --size resamples them all to one


# --- rendering a fitted video -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pan_field(tmp_path_factory):
    d = tmp_path_factory.mktemp("pan")
    out = d / "pan.safetensors"
    r = cli("fit", SMALL, "--arch", "pe", "--width", "32", "--depth", "3", "--frequencies", "4", "--steps", "60",
            "--out", out, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    return out


def _frames_of(folder):
    return [np.asarray(Image.open(p)) for p in sorted(folder.iterdir())]


def test_fit_and_render_with_fps_scale(pan_field, tmp_path):
    """The CLI chain: a plain render has 4 frames; --fps-scale 2 has 8 whose even frames are the plain ones, bit for
    bit, and whose odd frames are the field half a frame later, at t = (k + 1) / 4."""
    art = artifacts.read(pan_field)
    assert art.config["signal"]["shape"] == [4, 16, 16] and art.config["signal"]["source"] == SMALL
    assert art.config["field"]["in_dim"] == 3
    r = cli("render", pan_field, "--out", tmp_path / "plain", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    r = cli("render", pan_field, "--fps-scale", "2", "--out", tmp_path / "x2", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "rendered 8x16x16" in r.stdout + r.stderr
    plain, doubled = _frames_of(tmp_path / "plain"), _frames_of(tmp_path / "x2")
    assert len(plain) == 4 and len(doubled) == 8
    assert all(np.array_equal(a, b) for a, b in zip(doubled[::2], plain, strict=True))
    field = build(art, pan_field)
    t, y, x = torch.meshgrid(torch.arange(1, 5) / 4, (torch.arange(16) + 0.5) / 16, (torch.arange(16) + 0.5) / 16,
                             indexing="ij")
    with torch.no_grad():
        between = field(torch.stack([t, y, x], -1).float()).clamp(0, 1)
    odd = torch.from_numpy(np.stack(doubled[1::2])).float() / 255
    assert (odd - between).abs().max() < 0.5 / 255 + 1e-4
    assert not any(np.array_equal(a, b) for a, b in zip(doubled[1::2], plain, strict=True))


def test_fps_scale_at_any_size_grid_and_scale(pan_field, tmp_path):
    out = render(pan_field, tmp_path / "x3.gif", fps_scale=3, size=(10, 14), grid=[(-0.25, 1.25), (0.0, 1.0)],
                 device="cpu")
    gif = Image.open(out)
    # 30 fps: 33 ms, which GIF keeps in hundredths
    assert gif.n_frames == 12 and gif.size == (14, 10) and gif.info["duration"] == 30
    out = render(pan_field, tmp_path / "s2", fps_scale=2, scale=2.0, device="cpu")
    frames = _frames_of(out)
    assert len(frames) == 8 and frames[0].shape == (32, 32, 3)
    plain = render(pan_field, tmp_path / "s1", scale=2.0, device="cpu")
    assert all(np.array_equal(a, b) for a, b in zip(frames[::2], _frames_of(plain), strict=True))
    assert render(pan_field, tmp_path / "k1", fps_scale=1, device="cpu") and len(_frames_of(tmp_path / "k1")) == 4


def test_subframe_ranges():
    assert subframe_ranges((4, 8, 8), None, 1) == [None]
    grids = subframe_ranges((4, 8, 8), [(0.0, 1.0), (-1.0, 2.0), (0.0, 1.0)], 4)
    assert [g[0] for g in grids] == [(0.0, 1.0), (0.0625, 1.0625), (0.125, 1.125), (0.1875, 1.1875)]
    assert all(g[1:] == [(-1.0, 2.0), (0.0, 1.0)] for g in grids)


def test_fps_scale_bad_values_write_nothing(pan_field, tmp_path):
    for bad in (0, -2, 1.5, True):
        with pytest.raises(InrkitError, match=r"--fps-scale must be a whole number of at least 1, got "):
            render(pan_field, tmp_path / "bad.gif", fps_scale=bad, device="cpu")
    assert not (tmp_path / "bad.gif").exists()


@pytest.fixture(scope="module")
def image_field(tmp_path_factory):
    d = tmp_path_factory.mktemp("image")
    out = d / "cam.safetensors"
    r = cli("fit", "builtin:camera", "--arch", "pe", "--width", "8", "--depth", "2", "--frequencies", "2",
            "--size", "16", "--steps", "2", "--out", out, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.parametrize("k", ["2", "1"])
def test_fps_scale_on_an_image_is_one_sentence(image_field, tmp_path, k):
    out = tmp_path / "x.png"
    r = cli("render", image_field, "--fps-scale", k, "--out", out, "--device", "cpu")
    assert_one_sentence(r, f"--fps-scale renders the in-between frames of a video, but {image_field} holds an "
                           "image (16x16); leave it out.")
    assert not out.exists()


def test_fps_scale_on_another_family_is_one_sentence(tmp_path):
    gen = fuzz.make_artifact("generator", tmp_path)
    out = tmp_path / "x.png"
    r = cli("render", gen, "--fps-scale", "2", "--out", out, "--device", "cpu")
    assert_one_sentence(r, "--fps-scale apply to fields, not to a generator artifact.")
    assert not out.exists()
