"""`inrkit train-diffusion`, the diffusion family (render, --save-latents, the FID sampler) and bad input."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from inrkit.core import artifacts
from inrkit.core.errors import InrkitError
from inrkit.models import diffusion_family, functa_family, registry
from inrkit.models.functa import SpatialFuncta
from inrkit.models.functa_family import MODEL_KIND
from inrkit.stages.encode import functaset_artifact
from inrkit.stages.render import render
from inrkit.stages.train_diffusion import train_diffusion

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(channels=8, res_blocks=1, channel_mult="1,2", attention="1", heads=2, batch=8, steps=6, tick=3,
            snapshot=3, samples=4, sample_steps=3, lr=1e-3, device="cpu", progress=False)


def functaset(tmp_path: Path, labels: bool = True, n: int = 24) -> Path:
    torch.manual_seed(0)
    model = SpatialFuncta((2, 2, 4), 8, 1, 8, 2, 10.0, "nearest", 1)
    model_path = tmp_path / "m.safetensors"
    artifacts.save(model_path, artifacts.Artifact(kind=MODEL_KIND, tensors=model.state_dict(),
                                                  config=dict(model=model.config)))
    y = torch.arange(n) % 3
    z = 0.5 * torch.randn(n, 2, 2, 4) + y[:, None, None, None].float()
    path = tmp_path / ("set.safetensors" if labels else "unlabelled.safetensors")
    artifacts.save(path, functaset_artifact(model, model_path, z, y if labels else torch.full((n,), -1),
                                            torch.zeros(n), data=dict(classes=["a", "b", "c"]), steps=3))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("diffusion")
    out = d / "cond.safetensors"
    train_diffusion(str(functaset(d)), out, **TINY)
    unc = d / "unc.safetensors"
    train_diffusion(str(functaset(d)), unc, cond=False, **TINY)
    return d, out, unc


def cli(*args):
    return subprocess.run([sys.executable, "-m", "inrkit.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT)


def one_clean_line(r, message):
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_artifact_and_snapshot_grids(trained):
    d, out, unc = trained
    art = artifacts.read(out)
    assert art.kind == diffusion_family.KIND and art.config["denoiser"]["classes"] == 3
    assert art.config["normalisation"] == dict(kind="vector", gamma=2.0)
    assert art.tensors["norm.mu"].shape == (4,) and art.config["diffusion"]["ratio"] == 3.0
    assert sorted(p.name for p in out.with_suffix("").glob("samples-*.png")) == ["samples-0000003.png",
                                                                                 "samples-0000006.png"]
    model = registry.load(out)
    assert isinstance(model, diffusion_family.DiffusionModel) and model.classes == ["a", "b", "c"]
    assert registry.load(unc).denoiser.classes == 0


def test_fid_sampler_is_batch_independent_and_renders_denser(trained):
    model = registry.load(trained[1])
    s = diffusion_family.sampler(model, seed=0)
    three = s.draw(0, 3, None)
    assert three.dtype == torch.uint8 and three.shape == (3, 1, 8, 8)
    # the same sample up to float rounding of the batched convolutions: a pixel may move by one level of 255
    assert (s.draw(1, 1, None)[0].int() - three[1].int()).abs().max().item() <= 1
    alone = diffusion_family.sample_latents(model, [1], 0, torch.tensor([1]), 1.0)
    batched = diffusion_family.sample_latents(model, [0, 1, 2], 0, torch.tensor([0, 1, 2]), 1.0)
    assert torch.allclose(alone[0], batched[1], atol=1e-5)
    assert s.draw(0, 2, 16).shape == (2, 1, 16, 16)


def test_render_and_save_latents(trained, tmp_path):
    d, out, _ = trained
    png, lat = tmp_path / "s.png", tmp_path / "lat.safetensors"
    render(out, png, seeds=[0, 1, 2, 3], label=2, cfg=3.0, sampler="ddim", steps=4, scale=2, save_latents=lat,
           device="cpu")
    assert png.is_file()
    fs = registry.load(lat)
    assert isinstance(fs, functa_family.Functaset) and fs.latents.shape == (4, 2, 2, 4)
    assert fs.labels.tolist() == [2, 2, 2, 2]
    again = diffusion_family.sample_latents(registry.load(out), [2], 0, torch.tensor([2]), 3.0, "ddim", 4)
    assert torch.allclose(again[0], fs.latents[2], atol=1e-5)


def test_unlabelled_functaset_for_cond_is_refused(tmp_path):
    out = tmp_path / "d.safetensors"
    r = cli("train-diffusion", "--data", functaset(tmp_path, labels=False), "--cond", "--out", out, "--steps", "2",
            "--device", "cpu")
    one_clean_line(r, "has no class labels")
    assert not out.exists() and not out.with_suffix("").exists()


def test_guidance_and_class_are_checked(trained, tmp_path):
    d, out, unc = trained
    png = tmp_path / "x.png"
    one_clean_line(cli("render", unc, "--cfg", "4", "--out", png), "--cfg needs a conditional diffusion model")
    with pytest.raises(InrkitError, match=r"^--class 3 is out of range; this model has classes 0-2\.$"):
        render(out, png, label=3, device="cpu")
    with pytest.raises(InrkitError, match="apply to --sampler ddim"):
        render(out, png, sampler="ddpm", steps=5, device="cpu")
    with pytest.raises(InrkitError, match="--index apply to functasets, not to a diffusion artifact"):
        render(out, png, index=[0], device="cpu")
    assert not png.exists()


def test_changed_or_missing_functa_model_is_refused(trained, tmp_path):
    art = artifacts.read(trained[1])
    key = next(k for k in art.tensors if k.startswith(diffusion_family.FUNCTA_PREFIX))
    changed = dict(art.tensors, **{key: art.tensors[key] + 0.01})
    artifacts.save(tmp_path / "changed.safetensors", artifacts.Artifact(art.kind, changed, art.config))
    with pytest.raises(InrkitError, match="not the one it was trained with"):
        registry.load(tmp_path / "changed.safetensors")
    missing = {k: v for k, v in art.tensors.items() if not k.startswith(diffusion_family.FUNCTA_PREFIX)}
    artifacts.save(tmp_path / "missing.safetensors", artifacts.Artifact(art.kind, missing, art.config))
    with pytest.raises(InrkitError, match="functa model"):
        registry.load(tmp_path / "missing.safetensors")


def test_latent_shape_the_unet_cannot_take_is_refused(tmp_path):
    out = tmp_path / "d.safetensors"
    with pytest.raises(InrkitError, match="a 2x2 latent cannot be halved 2 times"):
        train_diffusion(str(functaset(tmp_path)), out, **dict(TINY, channel_mult="1,2,2"))
    assert not out.exists()


def test_resume_is_bit_identical(trained, tmp_path):
    data = functaset(tmp_path)
    whole = train_diffusion(str(data), tmp_path / "a.safetensors", **TINY)
    train_diffusion(str(data), tmp_path / "b.safetensors", **dict(TINY, steps=3))
    resumed = train_diffusion(str(data), tmp_path / "b.safetensors", **TINY)
    assert resumed["parameters_sha256"] == whole["parameters_sha256"]


def test_keep_snapshots_leaves_one_loadable_artifact_per_snapshot(tmp_path):
    out = tmp_path / "k.safetensors"
    train_diffusion(str(functaset(tmp_path)), out, **dict(TINY, keep_snapshots=True))
    kept = sorted(out.with_suffix("").glob("diffusion-*.safetensors"))
    assert [p.name for p in kept] == ["diffusion-0000003.safetensors", "diffusion-0000006.safetensors"]
    assert [artifacts.read(p).metrics["step"] for p in kept] == [3, 6]
    assert artifacts.read(kept[-1]).tensors.keys() == artifacts.read(out).tensors.keys()
    registry.load(kept[0])


def test_resume_on_a_functaset_of_another_latent_shape_is_refused(tmp_path):
    data, out = functaset(tmp_path), tmp_path / "d.safetensors"
    train_diffusion(str(data), out, **dict(TINY, steps=3))
    state = out.with_suffix("") / "state.safetensors"
    before = state.read_bytes()
    torch.manual_seed(0)
    other = SpatialFuncta((4, 4, 2), 8, 1, 8, 2, 10.0, "nearest", 1)
    artifacts.save(tmp_path / "m4.safetensors", artifacts.Artifact(kind=MODEL_KIND, tensors=other.state_dict(),
                                                                  config=dict(model=other.config)))
    artifacts.save(data, functaset_artifact(other, tmp_path / "m4.safetensors", torch.randn(24, 4, 4, 2),
                                            torch.arange(24) % 3, torch.zeros(24), data=dict(classes=["a", "b", "c"]),
                                            steps=3))
    r = cli("train-diffusion", "--data", data, "--out", out, *_tiny_cli())
    one_clean_line(r, "holds 4x4x2 latents, but")
    assert state.read_bytes() == before and artifacts.read(out).metrics["step"] == 3


def _tiny_cli() -> list[str]:
    flags = []
    for key, value in TINY.items():
        if key == "progress":
            continue
        flags += [f"--{key.replace('_', '-')}", str(value)]
    return flags


@pytest.mark.slow
def test_torchrun_two_processes_stay_in_sync(tmp_path):
    """2 CPU processes (gloo): each takes half of every batch, gradients are averaged, and both ranks end with
    bit-identical EMA weights."""
    import os

    data = functaset(tmp_path)
    script = tmp_path / "run.py"
    script.write_text(
        "import sys\n"
        "from inrkit.core import runtime\n"
        "from inrkit.stages.train_diffusion import train_diffusion\n"
        f"m = train_diffusion({str(data)!r}, sys.argv[1], **{dict(TINY, steps=8, tick=4, snapshot=8)!r})\n"
        "open(sys.argv[1] + f'.rank{runtime.rank()}', 'w').write(m['parameters_sha256'])\n")
    out = tmp_path / "ddp.safetensors"
    r = subprocess.run([str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", "2", str(script), str(out)],
                       capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=ROOT,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    digests = [(tmp_path / f"ddp.safetensors.rank{k}").read_text() for k in (0, 1)]
    assert digests[0] == digests[1]
    assert artifacts.read(out).metrics["step"] == 8
