"""`inrkit train-gan --arch loe-gan|pe-ce` (Levels-of-Experts supp. E) end to end on a CPU at tiny sizes: the
artifact, the sample grids, resume bit-identical, the refusals, and rendering / FID sampling of the result."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ddp import train_gan_on_two_ranks
from typer.testing import CliRunner

import inrkit
from inrkit.cli import app
from inrkit.core import artifacts
from inrkit.core.config import build, load_recipe, options_of, resume_options
from inrkit.core.errors import InrkitError
from inrkit.core.runtime import parameters_sha256
from inrkit.models import loegan
from inrkit.models.loegan_family import KIND
from inrkit.models.registry import family_for
from inrkit.models.sampling import sample_latents
from inrkit.stages import train_loe_gan as train_loe_gan_stage
from inrkit.stages.configs import TrainGanConfig
from inrkit.stages.train_gan import train_gan

ROOT = Path(__file__).resolve().parents[1]

DATA = "builtin:digits"
TINY = dict(resolution=32, z_dim=8, loe_width=16, loe_hidden=8, loe_tiles="2,2", loe_grid="2,8", batch=4,
            tick_kimg=0.004, snapshot_ticks=2, workers=0, progress=False, device="cpu", flip=False)


@pytest.mark.parametrize("arch", loegan.ARCHS)
def test_tiny_run_writes_a_loe_generator_with_grids(tmp_path, arch):
    out = tmp_path / "g.safetensors"
    metrics = train_gan(DATA, out, arch=arch, kimg=0.016, **TINY)  # 4 steps, snapshots after 2 and 4
    assert metrics["step"] == 4 and math.isclose(metrics["kimg"], 0.016)
    art = artifacts.read(out)
    assert art.kind == KIND
    gcfg = art.config["generator"]
    assert (gcfg["arch"], gcfg["z_dim"], gcfg["width"], gcfg["tiles"]) == (arch, 8, 16, [2, 2])
    assert gcfg["embedding_size"] == 32  # the CE side defaults to at most the resolution
    assert art.config["training"]["lr_g"] == 1e-4 and art.config["training"]["lr_d"] == 1e-4  # supp. E
    assert art.config["training"]["loe_betas"] == "0.9,0.999"  # supp. E
    grids = sorted(p.name for p in (tmp_path / "g").glob("samples-*.png"))
    assert grids == ["samples-000000.008.png", "samples-000000.016.png"]
    G = inrkit.load(out)
    assert isinstance(G, loegan.LoeGanGenerator) and not G.training
    assert parameters_sha256(G) == metrics["parameters_sha256"]
    stats = [json.loads(line) for line in (tmp_path / "g" / "stats.jsonl").read_text().splitlines()]
    assert [set(s) >= {"loss_g", "loss_d"} for s in stats] == [True] * 4
    sampler = family_for(G).sampler(G, seed=0)
    images = sampler.draw(0, 2, None)
    assert images.shape == (2, 3, 32, 32) and images.dtype == torch.uint8


def test_resume_is_bit_identical(tmp_path):
    straight = train_gan(DATA, tmp_path / "a.safetensors", arch="loe-gan", kimg=0.016, **TINY)
    train_gan(DATA, tmp_path / "b.safetensors", arch="loe-gan", kimg=0.008, **TINY)
    resumed = train_gan(DATA, tmp_path / "b.safetensors", arch="loe-gan", kimg=0.016, **TINY)
    assert resumed["step"] == straight["step"] == 4
    assert resumed["parameters_sha256"] == straight["parameters_sha256"]
    sa = artifacts.read(tmp_path / "a" / "state.safetensors").tensors
    sb = artifacts.read(tmp_path / "b" / "state.safetensors").tensors
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)  # D, its spectral-norm u, Adams
    with pytest.raises(InrkitError, match="lr"):  # a changed training option is not a resume
        train_gan(DATA, tmp_path / "b.safetensors", arch="loe-gan", kimg=0.024, **dict(TINY, lr_d=1e-3))


def test_dry_run_prints_table4_sizes(capsys):
    result = train_gan(DATA, "unused.safetensors", arch="loe-gan", resolution=256, dry_run=True)
    assert result["generator_params"] == 19_605_175 and round(result["generator_macs_per_pixel"]) == 1_251_866
    assert "19,605,175 params, 1.252M MACs per pixel" in capsys.readouterr().out
    result = train_gan(DATA, "unused.safetensors", arch="pe-ce", resolution=256, dry_run=True)
    assert result["generator_params"] == 19_869_367 and abs(result["generator_macs_per_pixel"] / 1.39e6 - 1) < 0.03


def test_loe_betas_reach_both_adams(tmp_path):
    cfg = build(TrainGanConfig, data=DATA, out=tmp_path / "g.safetensors", arch="pe-ce", loe_betas="0, 0.99", **TINY)
    train_loe_gan_stage.resolve(cfg)
    assert cfg.loe_betas == "0,0.99"  # what the artifact and the resume check record
    gcfg, dcfg = train_loe_gan_stage.model_configs(cfg)
    objective, _ = train_loe_gan_stage.setup(cfg, gcfg, dcfg, torch.device("cpu"), options_of(cfg),
                                             resume_options(cfg))
    groups = objective.opt_g.param_groups + objective.opt_d.param_groups
    assert [group["betas"] for group in groups] == [(0.0, 0.99)] * 2


@pytest.mark.parametrize("args, sentence", [
    (["--arch", "loe-gan", "--fmm-rank", "4"], "--fmm-rank belongs to INR-GAN"),
    (["--arch", "pe-ce", "--r1-gamma", "1"], "--r1-gamma belongs to INR-GAN"),
    (["--arch", "loe-gan", "--resolution", "48"], "needs a resolution that is a multiple of 32"),
    (["--loe-tiles", "2,2"], "--loe-tiles belongs to LoE-GAN"),
    (["--loe-d-base", "16"], "--loe-d-base belongs to LoE-GAN"),
    (["--arch", "loe-gan", "--loe-d-base", "0"], "base channels (--loe-d-base) must be a positive integer"),
    (["--loe-betas", "0,0.99"], "--loe-betas belongs to LoE-GAN"),
    (["--arch", "pe-ce", "--loe-betas", "0.9"], "--loe-betas takes two numbers in [0, 1)"),
    (["--arch", "loe-gan", "--loe-betas", "0,1"], "--loe-betas takes two numbers in [0, 1)"),
])
def test_refusals_are_one_sentence_and_write_nothing(tmp_path, args, sentence):
    out = tmp_path / "run" / "g.safetensors"
    result = CliRunner().invoke(app, ["train-gan", "--data", DATA, "--out", str(out), *args])
    assert result.exit_code != 0 and isinstance(result.exception, InrkitError)  # main() prints it as one line
    message = str(result.exception)
    assert sentence in message and "\n" not in message and message.endswith(".")
    assert not (tmp_path / "run").exists()


def test_the_command_line_refuses_in_one_line(tmp_path):
    out = tmp_path / "run" / "g.safetensors"
    done = subprocess.run([sys.executable, "-m", "inrkit.cli", "train-gan", "--data", DATA, "--out", str(out),
                           "--arch", "loe-gan", "--fmm-rank", "4"], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr == ("inrkit: error: --fmm-rank belongs to INR-GAN (--arch inrgan|inr-latent); --arch loe-gan "
                           "does not take it.\n")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("variant, params", [("", 19_605_175), ("#pe-ce", 19_869_367)])
def test_paper_recipe_is_table4(variant, params):
    recipe = load_recipe(f"{ROOT / 'recipes' / 'loe-gan-ffhq256.json'}{variant}", TrainGanConfig)
    result = train_gan(DATA, "unused.safetensors", **recipe, dry_run=True)
    assert result["generator_params"] == params and result["options"]["batch"] == 32
    assert result["options"]["kimg"] == 32000 and result["options"]["lr_g"] == result["options"]["lr_d"] == 1e-4
    assert result["options"]["loe_betas"] == "0.9,0.999"  # a recipe's list, recorded as the command line's text


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("loe") / "g.safetensors"
    train_gan(DATA, out, arch="loe-gan", kimg=0.008, **TINY)
    return out


def render_cli(*args):
    return CliRunner().invoke(app, ["render", *map(str, args)])


def test_render_any_grid_scale_and_low_res(trained, tmp_path):
    from PIL import Image

    G = inrkit.load(trained)
    for args, side in ((["--scale", 2], 64), (["--size", 16], 16), (["--size", 48], 48)):
        png = tmp_path / f"r{side}.png"
        result = render_cli(trained, "--seeds", "0-1", "--out", png, "--device", "cpu", *args)
        assert result.exit_code == 0, result.output
        assert Image.open(png).size == (2 * side + 2, side)  # two samples in one row, a 2-pixel gap
        if side == 16:
            assert "low-res inference" in result.output
    grid = np.asarray(Image.open(tmp_path / "r16.png"), dtype=np.float64)[:, :16] / 255
    z = torch.cat([sample_latents(G.config["z_dim"], 0, 1, 0)])
    with torch.no_grad():  # seed 0 through the model itself
        expected = ((G.render(z, (16, 16)) + 1) / 2).clamp(0, 1)[0].numpy()
    assert np.abs(grid - expected).max() <= 1 / 255 + 1e-6
    zoom = tmp_path / "zoom.png"
    result = render_cli(trained, "--seeds", "0", "--grid=-0.5,1.5", "--out", zoom, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert Image.open(zoom).size == (64, 64)  # the training pixel pitch on a grid twice as wide
    row = tmp_path / "interp.png"
    result = render_cli(trained, "--interpolate", "0,1", "--steps", 3, "--out", row, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert Image.open(row).size == (3 * 32 + 2 * 2, 32)


def test_render_refuses_psi_and_inrgan_options(trained, tmp_path):
    result = render_cli(trained, "--psi", "0.7", "--out", tmp_path / "a.png", "--device", "cpu")
    assert isinstance(result.exception, InrkitError) and "no w space" in str(result.exception)
    result = render_cli(trained, "--frequencies", "--out", tmp_path / "b.png", "--device", "cpu")
    assert isinstance(result.exception, InrkitError) and "loe-generator" in str(result.exception)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_torchrun_two_processes_stay_in_sync(tmp_path):
    """2 CPU processes (gloo) on the shared trainer: G, D and EMA bit-identical on both ranks, rank 0 writes."""
    out, digests = train_gan_on_two_ranks(tmp_path, DATA, arch="loe-gan", kimg=0.016, **TINY)
    assert len(digests[0].split()) == 3 and digests[0] == digests[1]
    assert artifacts.read(out, kind=KIND).metrics["kimg"] == pytest.approx(0.016)
    run_dir = out.with_suffix("")
    assert len((run_dir / "stats.jsonl").read_text().splitlines()) == 4
    assert sorted(p.name for p in run_dir.glob("samples-*.png")) == ["samples-000000.008.png",
                                                                    "samples-000000.016.png"]
