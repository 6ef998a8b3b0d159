"""Reliability: divergence of every trainer, data damaged in the middle of an epoch, writes that fail, output
paths checked before any work, the families' closed-form parameter counts, stats.jsonl after a resume."""

import errno
import inspect
import io
import json
import os
import re
import tarfile
import zipfile

import killharness as kh
import numpy as np
import pytest
import torch
from PIL import Image

import inrkit
from inrkit.core import artifacts
from inrkit.core.checks import require_writable
from inrkit.core.errors import InrkitError
from inrkit.stages.fit import fit
from inrkit.stages.meta import meta
from inrkit.stages.train_classifier import train_classifier
from inrkit.stages.train_diffusion import train_diffusion
from inrkit.stages.train_gan import train_gan

CPU = dict(device="cpu", progress=False)
FIT = dict(arch="pe", width=8, depth=3, frequencies=2, size=(16, 16), steps=8, tick=2, snapshot=4, **CPU)
META = dict(latent="2x2x4", resolution=8, width=8, depth=3, batch=4, lr=1e-3, steps=8, tick=2, snapshot=4,
            workers=0, functasets=False, **CPU)
GAN = dict(resolution=8, channels=1, blocks=[[4, 1, 8], [8, 1, 8]], z_dim=4, hyper_hidden=8, d_channel_base=32,
           d_channel_max=8, batch=4, kimg=0.032, tick_kimg=0.008, snapshot_ticks=2, workers=0, **CPU)
CLASSIFIER = dict(width=8, depth=1, heads=2, batch=8, steps=8, warmup=2, tick=2, snapshot=4, **CPU)
DIFFUSION = dict(channels=8, res_blocks=1, attention="1", heads=2, batch=8, steps=8, tick=2, snapshot=4, samples=2,
                 sample_steps=2, lr=1e-3, **CPU)


@pytest.fixture(scope="module")
def functaset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("functaset")
    kh.write_inputs(folder)
    return str(folder / "set.safetensors")


def trainers(functaset: str) -> dict:
    """Each trainer as out -> metrics, tiny: 8 steps, a snapshot every 4 (steps 4 and 8)."""
    return {
        "fit": lambda out: fit("builtin:camera", out, **FIT),
        "meta": lambda out: meta("builtin:photos?count=8", out, **META),
        "train-gan": lambda out: train_gan("builtin:digits", out, **GAN),
        "train-classifier": lambda out: train_classifier(functaset, out, **CLASSIFIER),
        "train-diffusion": lambda out: train_diffusion(functaset, out, **DIFFUSION),
    }


def _step_of(out):
    return artifacts.read(out.with_suffix("") / "state.safetensors").metrics["step"]


@pytest.mark.parametrize("trainer", ["fit", "meta", "train-gan", "train-classifier", "train-diffusion"])
@pytest.mark.parametrize("hook, quantity", [("INRKIT_FAULT_NAN_STEP", r"\w+ is not finite"),
                                            ("INRKIT_FAULT_NAN_GRAD_STEP", r"the gradient of \w+ is not finite")])
def test_divergence_stops_every_trainer_with_one_sentence_and_keeps_the_last_good_snapshot(
        trainer, hook, quantity, functaset, tmp_path, monkeypatch):
    out = tmp_path / "m.safetensors"
    monkeypatch.setenv(hook, "6")  # the snapshot at step 4 is the last good one
    with pytest.raises(InrkitError, match=f"training diverged at step 6: {quantity}; the last good snapshot") as err:
        trainers(functaset)[trainer](out)
    message = str(err.value)
    assert "\n" not in message and "would resume from it and likely diverge again" in message
    assert "rerun it with " in message and "lower" in message and message.endswith("and a new --out.")
    assert _step_of(out) == 4 and artifacts.read(out).metrics.get("step", 4) == 4
    for t in artifacts.read(out).tensors.values():
        assert not t.is_floating_point() or torch.isfinite(t).all()  # nothing of step 6 reached the files
    assert inrkit.load(out) is not None


def test_a_finite_run_is_not_stopped_by_the_gradient_guard(tmp_path):
    """The same fit without the fault finishes: the guard reacts to non-finite values only."""
    assert fit("builtin:camera", tmp_path / "f.safetensors", **FIT)["steps"] == 8


# ---- damaged data in the middle of an epoch ----------------------------------------------------------------


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _damaged(data: bytes) -> bytes:
    """Whole at both ends (the scan's check passes), garbage in the middle: it fails when decoded, mid-epoch."""
    middle = len(data) // 2
    return data[:40] + bytes(range(middle - 40)) + data[middle:]


def _images(kind: str, folder) -> str:
    """8 images, 2 of them damaged in the middle, as a folder, a zip or a tar shard."""
    files = {f"{k}.png": _damaged(_png(30 * k)) if k in (2, 5) else _png(30 * k) for k in range(8)}
    if kind == "folder":
        (folder / "images").mkdir()
        for name, data in files.items():
            (folder / "images" / name).write_bytes(data)
        return str(folder / "images")
    if kind == "zip":
        with zipfile.ZipFile(folder / "images.zip", "w") as z:
            for name, data in files.items():
                z.writestr(name, data)
        return str(folder / "images.zip")
    with tarfile.open(folder / "train-000000.tar", "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{name[:-4]}.png")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(folder / "train-000000.tar")


@pytest.mark.parametrize("kind, workers", [("folder", 0), ("zip", 2), ("shard", 2), ("shard", 0)])
def test_damaged_images_mid_epoch_are_skipped_and_counted_in_status_and_stats(kind, workers, tmp_path, capsys):
    """8 steps of 4 images are 4 epochs of 8: the 2 damaged images are met 8 times, whatever the workers."""
    out = tmp_path / "m.safetensors"
    meta(_images(kind, tmp_path), out, **dict(META, workers=workers))
    records = [json.loads(line) for line in (out.with_suffix("") / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6, 8]
    assert [r["skipped"] for r in records][-1] == 8 and records == sorted(records, key=lambda r: r["skipped"])
    assert re.search(r"tick 4 .*?skipped\s+8 ", capsys.readouterr().err, re.S)  # the status line (rich wraps it)
    assert artifacts.read(out).metrics["step"] == 8  # training went on to the end


def test_clean_data_shows_no_skipped_on_the_status_line(tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    meta("builtin:photos?count=8", out, **META)
    assert "skipped" not in capsys.readouterr().err
    assert json.loads((out.with_suffix("") / "stats.jsonl").read_text().splitlines()[-1])["skipped"] == 0


# ---- writes that fail ------------------------------------------------------------------------------------------


def _fail_with(code: int, after: int = 0, real=None):
    """A stand-in for an os call: the real one `after` times, then OSError(code)."""
    calls = []

    def fail(*args, **kwargs):
        calls.append(1)
        if len(calls) <= after:
            return real(*args, **kwargs)
        raise OSError(code, os.strerror(code))
    return fail


@pytest.mark.parametrize("code, where", [(errno.ENOSPC, "fsync"), (errno.EACCES, "mkstemp"), (errno.EIO, "replace")])
def test_a_failed_write_keeps_the_previous_file_and_says_so(code, where, tmp_path, monkeypatch):
    path = tmp_path / "a.safetensors"
    artifacts.atomic_write_bytes(path, b"before")
    target = artifacts.tempfile if where == "mkstemp" else artifacts.os
    monkeypatch.setattr(target, where, _fail_with(code))
    with pytest.raises(InrkitError) as err:
        artifacts.atomic_write_bytes(path, b"after")
    assert str(err.value) == f"could not write {path} ({os.strerror(code)}); the previous file is left as it was."
    assert path.read_bytes() == b"before" and sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors"]


def test_a_failed_first_write_says_nothing_was_written(tmp_path, monkeypatch):
    monkeypatch.setattr(artifacts.os, "fsync", _fail_with(errno.ENOSPC))
    with pytest.raises(InrkitError, match=r"\(No space left on device\); nothing was written\.$"):
        artifacts.atomic_write_bytes(tmp_path / "a.png", b"x")
    assert list(tmp_path.iterdir()) == []


def test_a_disk_full_mid_training_ends_the_run_with_the_previous_snapshot_intact(tmp_path, monkeypatch):
    """The step-4 snapshot's 4 writes (artifact, 2 pictures, state) succeed; the step-8 artifact finds the disk full."""
    out = tmp_path / "f.safetensors"
    monkeypatch.setattr(artifacts.os, "replace", _fail_with(errno.ENOSPC, after=4, real=os.replace))
    with pytest.raises(InrkitError, match=f"could not write {out} .No space left on device.; the previous file is"):
        fit("builtin:camera", out, **FIT)
    monkeypatch.undo()
    assert artifacts.read(out).metrics["steps"] == 4 and _step_of(out) == 4
    assert kh.stray_files(tmp_path) == []
    fit("builtin:camera", out, **FIT)  # with room again, the rerun resumes from step 4 and finishes
    assert artifacts.read(out).metrics["steps"] == 8


def test_stats_and_data_show_on_a_failing_disk_are_one_sentence(tmp_path, monkeypatch):
    from inrkit.core.progress import StatsWriter
    from inrkit.data import show_dataset

    (tmp_path / "file").write_text("x")
    with pytest.raises(InrkitError, match=r"could not write .*stats.jsonl \(File exists\); the records before"):
        StatsWriter(tmp_path / "file" / "stats.jsonl")
    monkeypatch.setattr(artifacts.os, "fsync", _fail_with(errno.ENOSPC))
    with pytest.raises(InrkitError, match=r"grid.png \(No space left on device\); nothing was written\.$"):
        show_dataset("builtin:digits", tmp_path / "grid.png", num=4, resolution=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


# ---- output paths checked before any work -------------------------------------------------------------------


def test_require_writable(tmp_path):
    assert require_writable(tmp_path / "new" / "deeper" / "a.png", ".png") == tmp_path / "new" / "deeper" / "a.png"
    assert not (tmp_path / "new").exists()  # checked, not made
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder.png").mkdir()
    for path, kwargs, said in [
        (tmp_path / "a.jpg", dict(), "should end in .png"),
        (tmp_path / "folder.png", dict(), "is a folder; give a file name"),
        (tmp_path / "file" / "a.png", dict(), "is a file, not a folder"),
        (tmp_path / "file", dict(folder=True), "is a file; give a folder"),
        ("/proc/x/y.png", dict(), "no file can be made in /proc"),
    ]:
        with pytest.raises(InrkitError, match=said):
            require_writable(path, *(() if kwargs else (".png",)), **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder.png"]  # no probe left behind


# ---- the closed-form parameter counts the families check configs with --------------------------------------


def test_closed_form_counts_match_the_modules():
    from inrkit.fields import build_field
    from inrkit.fields.loe import LoEField
    from inrkit.fields.mlp import FourierMLP
    from inrkit.fields.siren import Siren
    from inrkit.fields.validate import state_numel
    from inrkit.models.functa import SpatialFuncta
    from inrkit.models.validate import functa_numel

    def numel(module):
        return sum(t.numel() for t in module.state_dict().values())

    fields = [Siren(3, 1, 12, 4), FourierMLP(2, 3, 8, 2, "rff", 3, 5), FourierMLP(3, 1, 8, 4, "pe", 0),
              LoEField(2, 3, 8, 4, tile=3, frequencies=0), LoEField(3, 1, 8, 3, tile=2, loe_layers=1)]
    for f in fields:
        assert state_numel(f.config) == numel(f) == numel(build_field(f.config))
    for interp, kernel in (("nearest", 1), ("bilinear", 3)):
        m = SpatialFuncta((4, 4, 3), 16, 3, 8, 4, 10.0, interp, kernel)
        assert functa_numel(m.config) == numel(m)


def test_every_generator_config_key_has_a_rule():
    from inrkit.models import inrgan, validate

    assert set(validate.GENERATOR) == set(inspect.signature(inrgan.generator_config).parameters)


# ---- stats.jsonl after a resume -------------------------------------------------------------------------------


def test_a_resume_trims_stats_to_its_position(tmp_path):
    """A killed run may have written ticks after its last snapshot, and half a line: the rerun keeps each tick once."""
    out = tmp_path / "m.safetensors"
    meta("builtin:photos?count=8", out, **dict(META, steps=4))
    stats = out.with_suffix("") / "stats.jsonl"
    stats.write_text(stats.read_text() + json.dumps(dict(tick=3, kimg=0.024, step=6)) + "\n" + '{"tick": 4, "kim')
    meta("builtin:photos?count=8", out, **META)
    assert [json.loads(line)["step"] for line in stats.read_text().splitlines()] == [2, 4, 6, 8]
