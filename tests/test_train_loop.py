"""The one training loop, through both trainers: the NaN guard keeps the last good snapshot; under torchrun,
--seconds stops every rank at the same step (rank 0 decides)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from inrkit.core import artifacts
from inrkit.core.errors import InrkitError
from inrkit.stages.meta import meta
from inrkit.stages.train_gan import train_gan

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
GAN = dict(resolution=16, channels=1, blocks=[[8, 1, 16], [16, 1, 16]], z_dim=16, hyper_hidden=32,
           d_channel_base=64, d_channel_max=16, batch=8, tick_kimg=0.016, snapshot_ticks=1, ema_kimg=0.01,
           workers=0, device="cpu", progress=False)
META = dict(latent="4x4x4", resolution=16, width=16, depth=3, batch=4, lr=1e-3, workers=0, progress=False,
            functasets=False, tick=1, snapshot=2)


def run_gan(out, **kw):
    return train_gan("builtin:digits", out, kimg=0.064, **dict(GAN, **kw))


def run_meta(out, **kw):
    return meta("builtin:photos?count=8", out, steps=8, **dict(META, **kw))


@pytest.mark.parametrize("trainer, loss, snapshot_step", [(run_gan, "loss_g", 4), (run_meta, "loss", 4)])
def test_nan_stops_with_one_sentence_and_keeps_the_last_good_snapshot(trainer, loss, snapshot_step, tmp_path,
                                                                      monkeypatch):
    out = tmp_path / "m.safetensors"
    monkeypatch.setenv("INRKIT_FAULT_NAN_STEP", "5")  # steps 2 and 4 snapshot (gan: 2 steps/tick, meta: every 2)
    with pytest.raises(InrkitError, match=f"diverged at step 5: {loss} is not finite") as err:
        trainer(out)
    assert "\n" not in str(err.value)
    art = artifacts.read(out)
    assert art.metrics["step"] == snapshot_step
    assert all(torch.isfinite(t).all() for t in art.tensors.values() if t.is_floating_point())
    state = artifacts.read(out.with_suffix("") / "state.safetensors")
    assert state.metrics["step"] == snapshot_step
    import inrkit

    assert inrkit.load(out) is not None  # the kept snapshot rebuilds
    monkeypatch.delenv("INRKIT_FAULT_NAN_STEP")
    trainer(out)  # rerunning resumes from the kept snapshot and finishes
    assert artifacts.read(out).metrics["step"] == 8


def test_nan_in_the_reported_losses_is_what_stops_the_run(tmp_path, monkeypatch):
    """Without the fault the same run finishes: the guard reacts to the poisoned step, nothing else."""
    out = tmp_path / "g.safetensors"
    monkeypatch.setenv("INRKIT_FAULT_NAN_STEP", "999")
    metrics = run_gan(out)
    assert metrics["step"] == 8


def test_stats_record_per_tick_with_the_objectives_losses(tmp_path):
    out = tmp_path / "m.safetensors"
    run_meta(out, tick=2)
    records = [json.loads(line) for line in (out.with_suffix("") / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6, 8]
    assert {"loss", "psnr", "psnr_start", "meta_lr", "sec_per_tick", "kimg"} <= set(records[0])


TORCHRUN_SCRIPT = """
import json, sys
from inrkit.core import runtime
from inrkit.stages.{module} import {function}
out = sys.argv[1]
metrics = {function}({data!r}, out, seconds=3, {budget}, **{options!r})
open(out + f'.rank{{runtime.rank()}}', 'w').write(json.dumps(metrics))
"""


@pytest.mark.slow
@pytest.mark.parametrize("module, function, data, budget, options", [
    ("meta", "meta", "builtin:photos?count=8", "steps=100000", dict(META, tick=5, snapshot=100000)),
    ("train_gan", "train_gan", "builtin:digits", "kimg=1000", dict(GAN, snapshot_ticks=100000)),
])
def test_torchrun_seconds_stops_both_ranks_at_the_same_step(module, function, data, budget, options, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(TORCHRUN_SCRIPT.format(module=module, function=function, data=data, budget=budget,
                                             options=options))
    out = tmp_path / "m.safetensors"
    r = subprocess.run([str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", "2", str(script), str(out)],
                       capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"m.safetensors.rank{k}").read_text()) for k in (0, 1)]
    assert ranks[0]["step"] == ranks[1]["step"] > 1
    assert ranks[0]["parameters_sha256"] == ranks[1]["parameters_sha256"]
    assert artifacts.read(out).metrics["step"] == ranks[0]["step"]
    assert "stopping after --seconds 3" in r.stderr
