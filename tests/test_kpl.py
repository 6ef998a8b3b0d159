"""`inrkit kpl` (INR-GAN Algorithm 1): the least-squares core, a synthetic generator whose keypoints are a known
linear function of its latent (KPL near 0, KPL(random) much larger), dropped faces, a missing dlib, and the
command line on a tiny generator (which draws no faces: one clear sentence, exit 1)."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data, transform

from inrkit.core import artifacts
from inrkit.core.errors import InrkitError
from inrkit.metrics import keypoints as keypoints_module
from inrkit.metrics.kpl import fit_linear, kpl_score, kpl_scores
from inrkit.models.inrgan import InrGanGenerator
from inrkit.models.sampling import sample_latents
from inrkit.stages import kpl as kpl_stage

ROOT = Path(__file__).resolve().parents[1]
R = 64  # synthetic face side: HOG finds faces at 32 px too, but 64 px drops fewer
FACE = (222.0, 128.0, 190.0)  # centre x, y and side (pixels) of the astronaut's face crop
WARP = (0.08, 0.08, 0.06, 0.06)  # latent -> (scale-1, rotation, x shift, y shift) of the similarity warp
Z_DIM = 8  # latents 4.. do not move the face: the fit has to find which dimensions matter


@pytest.fixture(scope="module")
def extractor():
    pytest.importorskip("dlib", reason="the kpl extra (dlib-bin) is not installed")
    return keypoints_module.DlibKeypoints()


@functools.cache
def face_photo() -> tuple[np.ndarray, float, float, float]:
    """The astronaut around her face, downscaled to 256 px once (bilinear warps from it are then cheap and not
    aliased): (float image, centre x, centre y, face crop side) in its pixels."""
    cx, cy, size = FACE
    left, top, side = round(cx - size), round(cy - size), round(2 * size)
    crop = Image.fromarray(data.astronaut()).crop((left, top, left + side, top + side)).resize((256, 256),
                                                                                               Image.LANCZOS)
    scale = 256 / side
    return np.asarray(crop) / 255.0, (cx - left) * scale, (cy - top) * scale, size * scale


def warped_faces(z: np.ndarray, side: int = R) -> np.ndarray:
    """uint8 (N, side, side, 3): the astronaut's face under the similarity x -> M x + t with
    M = [[1 + a, -b], [b, 1 + a]] and t about the image centre, (a, b, tx, ty) = WARP * z[:4]. A keypoint k of the
    unwarped crop lands at M (k - 1/2) + 1/2 + t: linear in (a, b, tx, ty), hence in z."""
    photo, cx, cy, size = face_photo()
    out = []
    for a, b, tx, ty in np.asarray(z)[:, :4] * np.array(WARP):
        inverse = np.linalg.inv(np.array([[1 + a, -b], [b, 1 + a]]))

        def source(coords, inverse=inverse, t=np.array([tx, ty])):  # output (col, row) -> input (col, row)
            u = (coords + 0.5) / side - 0.5 - t
            return u @ inverse.T * size + np.array([cx, cy]) - 0.5

        out.append(transform.warp(photo, source, output_shape=(side, side), order=1, mode="edge"))
    return np.round(np.stack(out) * 255).astype(np.uint8)


def warp_sampler(seed: int, blank_every: int = 0):
    """A generator-like sampler: sample k's latent is sample_latents' z_k; blank_every > 0 makes every such
    sample a flat grey image (no face)."""
    def render(start: int, count: int):
        z = sample_latents(Z_DIM, start, count, seed).numpy()
        images = warped_faces(z)
        if blank_every:
            images[[k % blank_every == 0 for k in range(start, start + count)]] = 128
        return {"z": z}, images

    return render


# ---------------------------------------------------------------- the least-squares core


def test_fit_with_bias_is_exact_on_linear_data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 6))
    A, b = rng.standard_normal((6, 136)), rng.standard_normal(136)
    A_fit, b_fit = fit_linear(x, x @ A + b)
    np.testing.assert_allclose(A_fit, A, atol=1e-9)
    np.testing.assert_allclose(b_fit, b, atol=1e-9)
    y = (x @ A + b).reshape(50, 68, 2)
    test = rng.standard_normal((7, 6))
    score, predicted = kpl_score(x, y, test, (test @ A + b).reshape(7, 68, 2))
    assert score < 1e-18 and predicted.shape == (7, 68, 2)


def test_score_is_the_mean_squared_error_per_coordinate():
    """Normalisation (metrics/kpl.py docstring): constant keypoints fit exactly, so an offset of 0.01 on every
    test coordinate scores 1e-4, whatever the number of images."""
    x = np.random.default_rng(1).standard_normal((30, 3))
    train = np.full((30, 68, 2), 0.5)
    for n in (1, 10):
        score, _ = kpl_score(x, train, x[:n], np.full((n, 68, 2), 0.51))
        assert score == pytest.approx(1e-4, rel=1e-6)


def test_random_permutation_loses_the_information():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((400, 4))
    y = (x @ rng.standard_normal((4, 136)) * 0.05 + 0.5).reshape(-1, 68, 2)
    scores, predicted = kpl_scores({"z": x[:300]}, y[:300], {"z": x[300:]}, y[300:], seed=0)
    assert set(scores) == {"z", "random_z"} and set(predicted) == {"z", "random_z"}
    assert scores["z"] < 1e-20
    variance = np.mean((y[300:] - y[:300].mean(0)) ** 2)
    assert scores["random_z"] == pytest.approx(variance, rel=0.1)  # the permuted fit predicts about the mean


# ---------------------------------------------------------------- keypoints


def test_keypoint_interface(extractor):
    faces = warped_faces(np.zeros((1, Z_DIM)))
    blank = np.full((1, R, R, 3), 128, np.uint8)
    keypoints, found = extractor(np.concatenate([faces, blank]))
    assert keypoints.shape == (2, 68, 2) and found.tolist() == [True, False]
    assert np.isnan(keypoints[1]).all()
    eyes = keypoints[0, [36, 45]]  # outer eye corners: left of right, in the upper half, x in [0, 1]
    assert 0.1 < eyes[0, 0] < eyes[1, 0] < 0.9 and (eyes[:, 1] < 0.5).all()
    grey, found_grey = extractor(faces.mean(-1).round().astype(np.uint8))  # (N, H, W) grey works too
    assert found_grey.all() and np.abs(grey - keypoints[:1]).max() < 0.05


def test_synthetic_generator_kpl_near_zero_random_large(extractor):
    """The sanity check: keypoints are a known linear function of the latent, and the 'projection' returns the
    true latents, so KPL(Z) is the detector's noise and KPL(random) the keypoints' spread."""
    train = kpl_stage.sample_keypoints(warp_sampler(seed=0), 300, extractor, batch=100, progress=False)
    test = kpl_stage.sample_keypoints(warp_sampler(seed=1), 40, extractor, batch=40, progress=False)
    assert len(train.keypoints) > 250 and len(test.keypoints) > 30
    scores, _ = kpl_scores(train.latents, train.keypoints, test.latents, test.keypoints)
    print(f"synthetic KPL(Z) {scores['z']:.3g}  KPL(random) {scores['random_z']:.3g}  "
          f"kept {len(train.keypoints)}/300, {len(test.keypoints)}/40")
    assert scores["z"] < 2e-4  # about 1 px RMS at 64 px
    assert scores["random_z"] > 20 * scores["z"]


def test_dropped_faces_are_counted(extractor, tmp_path):
    samples = kpl_stage.sample_keypoints(warp_sampler(seed=0, blank_every=3), 9, extractor, batch=4,
                                         progress=False)
    assert samples.found[[0, 3, 6]].tolist() == [False] * 3 and samples.dropped == 3
    kept = samples.found.nonzero()[0]
    np.testing.assert_array_equal(samples.latents["z"], sample_latents(Z_DIM, 0, 9, 0).numpy()[kept])
    assert samples.keypoints.shape == (len(kept), 68, 2)
    folder = tmp_path / "faces"
    folder.mkdir()
    for k, image in enumerate(warped_faces(np.zeros((3, Z_DIM)))):
        Image.fromarray(image if k != 1 else np.zeros_like(image)).save(folder / f"{k}.png")
    real = kpl_stage.real_keypoints(str(folder), R, 3, 3, extractor, progress=False)
    assert real.dropped == 1 and len(real.keypoints) == 2 and real.targets.shape == (2, 3, R, R)
    assert real.targets.min() >= -1 and real.targets.max() <= 1


def test_missing_dlib_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # `import dlib` raises ImportError
    with pytest.raises(InrkitError, match=r"install them with pip install 'inrkit\[kpl\]'\.$") as err:
        keypoints_module.DlibKeypoints()
    assert str(err.value).count(".") == 1  # one sentence


def test_missing_dlib_cli_exits_1(monkeypatch, capsys, tmp_path):
    from inrkit import cli

    monkeypatch.setitem(sys.modules, "dlib", None)
    monkeypatch.setattr(sys, "argv", ["inrkit", "kpl", str(tmp_path / "g.safetensors"), "--faces", "builtin:faces"])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("inrkit: error: ") and "\n" not in err and "pip install 'inrkit[kpl]'" in err


def test_small_faces_are_found_and_timed(extractor):
    """HOG finds faces in 32 and 64 px images (enlarged to 200 px first); prints dlib's time per image."""
    for side in (32, 64):
        faces = warped_faces(sample_latents(Z_DIM, 0, 20, 2).numpy(), side)
        start = time.perf_counter()
        _, found = extractor(faces)
        print(f"dlib keypoints at {side}x{side}: {(time.perf_counter() - start) / 20 * 1000:.1f} ms per image, "
              f"{found.sum()}/20 found")
        assert found.mean() >= 0.75


# ---------------------------------------------------------------- the stage and the command line


def tiny_generator(path: Path, resolution: int = 16) -> Path:
    torch.manual_seed(0)
    G = InrGanGenerator(dict(resolution=resolution, blocks=[[resolution // 2, 1, 8], [resolution, 1, 8]], z_dim=8,
                             hyper_hidden=16, hyper_layers=1, fmm_rank=2))
    artifacts.save(path, artifacts.Artifact(kind="generator", tensors=G.state_dict(), config={"generator": G.config}))
    return path


class BrightnessKeypoints:
    """A stand-in extractor for a generator that draws no faces: 68 points around the brightness centroid,
    'found' where the image is not too dark."""

    name = "brightness centroid (test)"

    def __call__(self, images):
        images = np.asarray(images, dtype=np.float64)
        grey = images.mean(-1) if images.ndim == 4 else images
        h, w = grey.shape[1:]
        weights = (grey + 1e-6) / (grey + 1e-6).sum((1, 2), keepdims=True)
        cx = (weights.sum(1) * (np.arange(w) + 0.5) / w).sum(1)
        cy = (weights.sum(2) * (np.arange(h) + 0.5) / h).sum(1)
        ring = np.stack([np.cos(np.arange(68)), np.sin(np.arange(68))], -1) * 0.2
        return ring + np.stack([cx, cy], -1)[:, None], grey.mean((1, 2)) > 20


def test_stage_end_to_end_with_stand_in_extractor(tmp_path):
    """Algorithm 1 through the stage on a tiny generator: real projection (2 steps, pixels only), JSON + PNG."""
    gen = tiny_generator(tmp_path / "g.safetensors")
    folder = tmp_path / "faces"
    folder.mkdir()
    for k in range(4):  # one black image: dropped by the stand-in extractor
        Image.fromarray(np.full((16, 16, 3), 0 if k == 2 else 40 * k + 60, np.uint8)).save(folder / f"{k}.png")

    def embed(G, targets, space):
        return kpl_stage.project_latents(G, targets, space, steps=2, seed=0, perceptual=False)

    out = tmp_path / "kpl.json"
    result = kpl_stage.kpl(gen, str(folder), out=out, n_train=40, n_test=4, projection_steps=2, batch=16,
                           device="cpu", extractor=BrightnessKeypoints(), embed=embed, progress=False)
    saved = json.loads(out.read_text())
    assert saved["kpl"] == result["kpl"] and set(saved["kpl"]) == {"z", "w", "random_z", "random_w"}
    assert saved["n_test_used"] == 3 and saved["n_test_dropped"] == 1
    assert saved["n_train_used"] + saved["n_train_dropped"] == 40
    assert saved["latent_dims"] == {"z": 8, "w": 16}
    assert all(np.isfinite(v) and v >= 0 for v in saved["kpl"].values())
    picture = np.asarray(Image.open(out.with_suffix(".png")))
    assert picture.shape == (3 * 160, 3 * 160, 3)  # rows z, w, random_w; the 3 kept faces
    red = (picture[..., 0] > 200) & (picture[..., 1] < 80) & (picture[..., 2] < 80)
    assert red.sum() > 100  # predicted keypoints were drawn


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inrkit.cli", "kpl", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT)


def test_cli_generator_without_faces_says_so(extractor, tmp_path):
    gen = tiny_generator(tmp_path / "g.safetensors", resolution=32)
    r = cli(gen, "--faces", "builtin:faces", "--n-train", "8", "--n-test", "4", "--device", "cpu",
            "--out", tmp_path / "kpl.json")
    assert r.returncode == 1
    err = r.stderr.strip().splitlines()[-1]
    assert err.startswith("inrkit: error: a face was found in 0 of 8 samples of") and "Traceback" not in r.stderr
    assert "KPL needs a generator of faces" in err and not (tmp_path / "kpl.json").exists()


def test_cli_faces_without_faces_says_so(extractor, tmp_path):
    gen = tiny_generator(tmp_path / "g.safetensors", resolution=32)
    r = cli(gen, "--faces", "builtin:digits", "--n-test", "5", "--device", "cpu", "--out", tmp_path / "kpl.json")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "inrkit: error: no face was found in any of the 5 images of builtin:digits at 32x32; "
        "KPL needs real face images (e.g. FFHQ).")


def test_bad_options_refused(tmp_path):
    with pytest.raises(InrkitError, match="--n-train must be at least 2"):
        kpl_stage.kpl(tmp_path / "g.safetensors", "builtin:faces", n_train=1, extractor=BrightnessKeypoints())
