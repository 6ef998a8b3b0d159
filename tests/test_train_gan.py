"""`inrkit train-gan`: dry run, a tiny run's outputs, exact resume, the artifact, bad input, torchrun."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ddp import train_gan_on_two_ranks

from inrkit.core import artifacts
from inrkit.core.errors import InrkitError
from inrkit.models.registry import load as load_generator
from inrkit.stages.train_gan import parse_blocks, train_gan
from inrkit.train import loop as loop_mod

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
DATA = "builtin:digits"
# 16x16, tiny G and D: 8 images a step, a tick every 4 steps, a snapshot every 2 ticks.
TINY = dict(resolution=16, channels=3, blocks=[[8, 1, 16], [16, 1, 16]], z_dim=16, hyper_hidden=32,
            d_channel_base=64, d_channel_max=16, batch=8, tick_kimg=0.032, snapshot_ticks=2, ema_kimg=0.01,
            workers=0, device="cpu", progress=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gan") / "g.safetensors"
    metrics = train_gan(DATA, out, kimg=0.128, keep_snapshots=True, **TINY)
    return out, metrics


def test_dry_run_prints_sizes_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "g.safetensors"
    result = train_gan(DATA, out, kimg=1, dry_run=True, **TINY)
    printed = capsys.readouterr().out
    assert "params" in printed and "GMACs per image at 16x16" in printed and "discriminator:" in printed
    assert result["generator_params"] > 0 and result["generator_gmacs_per_image"] > 0
    assert result["discriminator_params"] > 0
    assert list(tmp_path.iterdir()) == []


def test_tiny_run_writes_artifact_grid_and_stats(run):
    out, metrics = run
    run_dir = out.with_suffix("")
    art = artifacts.read(out, kind="generator")
    assert art.config["generator"]["resolution"] == 16 and art.metrics["kimg"] == pytest.approx(0.128)
    assert metrics["kimg"] == pytest.approx(0.128) and metrics["step"] == 16
    assert sorted(p.name for p in run_dir.glob("samples-*.png")) == ["samples-000000.064.png",
                                                                    "samples-000000.128.png"]
    lines = (run_dir / "stats.jsonl").read_text().splitlines()
    assert len(lines) == 4 and '"loss_d"' in lines[-1] and '"sec_per_tick"' in lines[-1]
    assert (run_dir / "state.safetensors").is_file()
    kept = sorted(p.name for p in run_dir.glob("generator-*.safetensors"))
    assert kept == ["generator-000000.064.safetensors", "generator-000000.128.safetensors"]
    assert artifacts.read(run_dir / kept[0], kind="generator").metrics["kimg"] == pytest.approx(0.064)
    final = artifacts.read(run_dir / kept[1], kind="generator").tensors
    assert all(torch.equal(v, art.tensors[k]) for k, v in final.items())


def test_artifact_loads_as_the_ema_generator(run):
    out, _ = run
    G = load_generator(out)
    state = artifacts.read(out.with_suffix("") / "state.safetensors", kind="train-state").tensors
    for k, v in G.state_dict().items():
        assert torch.equal(v, state[f"G_ema.{k}"]), k
    assert not all(torch.equal(v, state[f"G.{k}"]) for k, v in G.state_dict().items() if k != "w_avg")
    img = G(torch.randn(2, G.config["z_dim"]))
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()
    import inrkit

    public = inrkit.load(out)  # the public API rebuilds the same generator
    assert all(torch.equal(v, public.state_dict()[k]) for k, v in G.state_dict().items())


def test_resume_after_interruption_equals_an_uninterrupted_run(run, tmp_path, monkeypatch):
    reference, _ = run
    out = tmp_path / "r.safetensors"
    original = loop_mod.save_state

    def snapshot_then_stop(*args):
        original(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(loop_mod, "save_state", snapshot_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train_gan(DATA, out, kimg=0.128, **TINY)
    assert artifacts.read(out).metrics["kimg"] == pytest.approx(0.064)
    monkeypatch.setattr(loop_mod, "save_state", original)
    train_gan(DATA, out, kimg=0.128, **TINY)
    a = artifacts.read(out.with_suffix("") / "state.safetensors").tensors
    b = artifacts.read(reference.with_suffix("") / "state.safetensors").tensors
    assert a.keys() == b.keys()
    for k in a:
        if not k.startswith("rng."):
            assert torch.equal(a[k], b[k]), k
    assert len((out.with_suffix("") / "stats.jsonl").read_text().splitlines()) == 4


def test_seconds_stops_early_with_a_snapshot_and_a_rerun_finishes_the_same(run, tmp_path):
    reference, _ = run
    out = tmp_path / "s.safetensors"
    metrics = train_gan(DATA, out, kimg=0.128, seconds=1e-6, **TINY)
    assert metrics["step"] == 1 and artifacts.read(out).metrics["kimg"] == pytest.approx(0.008)
    assert (out.with_suffix("") / "samples-000000.008.png").is_file()
    train_gan(DATA, out, kimg=0.128, **TINY)
    a = artifacts.read(out).tensors
    b = artifacts.read(reference).tensors
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_changed_training_option_is_refused(run):
    out, _ = run
    with pytest.raises(InrkitError, match="was trained with --lr-d"):
        train_gan(DATA, out, kimg=0.128, **dict(TINY, lr_d=1e-3))


@pytest.mark.parametrize("change, message", [
    (dict(arch="stylegan"), "unknown arch"),
    (dict(blocks=[[8, 1, 16], [32, 1, 16]]), "must not decrease and must end at 16"),
    (dict(channels=2), "--channels"),
    (dict(batch=0), "at least 1"),
    (dict(seconds=0), "--seconds must be positive"),
])
def test_bad_input_is_one_clear_error(change, message, tmp_path):
    with pytest.raises(InrkitError, match=message):
        train_gan(DATA, tmp_path / "g.safetensors", kimg=0.1, **dict(TINY, **change))
    assert list(tmp_path.iterdir()) == []


def test_blocks_text():
    assert parse_blocks("8x1x16, 16x2x32") == [[8, 1, 16], [16, 2, 32]]
    with pytest.raises(InrkitError, match="RESxLAYERSxWIDTH"):
        parse_blocks("8x1,16x2x32")


def cli(*args):
    return subprocess.run([sys.executable, "-m", "inrkit.cli", *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=ROOT)


SMALL_CLI = ["--resolution", "16", "--z-dim", "16", "--hyper-hidden", "32", "--d-channel-base", "64",
             "--d-channel-max", "16", "--batch", "8", "--workers", "0", "--device", "cpu"]


@pytest.mark.parametrize("args, message", [
    (["--arch", "stylegan"], "unknown arch 'stylegan'"),
    (["--blocks", "8x1x16,32x1x16"], "must end at 16"),
])
def test_cli_bad_input_one_line(args, message, tmp_path):
    target = tmp_path / "g.safetensors"
    r = cli("train-gan", "--data", DATA, "--out", target, *SMALL_CLI, *args)
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not target.exists() and not target.with_suffix("").exists()


def test_cli_dry_run(tmp_path):
    target = tmp_path / "g.safetensors"
    r = cli("train-gan", "--data", DATA, "--out", target, *SMALL_CLI, "--blocks", "8x1x16,16x1x16", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "GMACs per image" in r.stdout and "discriminator:" in r.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_torchrun_two_processes_stay_in_sync(tmp_path):
    """2 CPU processes (gloo): bit-identical G, D and EMA parameters on both ranks."""
    out, digests = train_gan_on_two_ranks(tmp_path, DATA, kimg=0.064, **TINY)
    assert digests[0] == digests[1]
    assert artifacts.read(out, kind="generator").metrics["kimg"] == pytest.approx(0.064)
    # Only rank 0 writes: one stats line per tick, one sample grid per snapshot, no stray files.
    run_dir = out.with_suffix("")
    assert len((run_dir / "stats.jsonl").read_text().splitlines()) == 2
    assert sorted(p.name for p in run_dir.iterdir()) == ["samples-000000.064.png", "state.safetensors",
                                                         "stats.jsonl"]
