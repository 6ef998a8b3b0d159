"""Runs killed at any moment resume to bit-identical results with no stray files (tests/killharness.py), and
Ctrl-C ends a run with a snapshot and one sentence."""

import signal
import subprocess
import time

import killharness as kh
import pytest

# A fit long enough to be interrupted in the middle (3000 steps, ~500 a second here), with 3 snapshots.
FIT = ["fit", "builtin:camera", "--arch", "pe", "--width", "16", "--depth", "3", "--frequencies", "4", "--size", "16",
       "--steps", "3000", "--tick", "10", "--snapshot", "1000", "--batch-pixels", "64"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run's tensors."""
    folder = tmp_path_factory.mktemp("reference")
    assert kh.run_once(kh.command(FIT, folder, folder), "none").returncode == 0
    return kh.tensors_of(folder)


def test_killed_in_the_middle_of_a_snapshot_write_resumes_bit_identically(reference, tmp_path):
    """The 6th atomic write is the second snapshot's compare.png: killed half-way, after the artifact, before the
    state; the rerun redoes that snapshot from the first one's state."""
    cmd = kh.command(FIT, tmp_path, tmp_path)
    assert kh.run_once(cmd, "write 6").returncode == -9
    assert any(p.name.endswith(".tmp") for p in tmp_path.rglob("*"))  # the kill left a temporary, as a crash would
    assert kh.run_once(cmd, "none").returncode == 0
    assert kh.differences(reference, kh.tensors_of(tmp_path)) == []
    assert kh.stray_files(tmp_path) == []  # the rerun's writes removed the dead writer's temporary


def test_ctrl_c_ends_the_run_with_a_snapshot_and_one_sentence(reference, tmp_path):
    cmd = kh.command(FIT, tmp_path, tmp_path)
    proc = subprocess.Popen(cmd, cwd=kh.ROOT, env=kh.ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    stats = tmp_path / "out" / "stats.jsonl"
    deadline = time.monotonic() + 120
    while not (stats.is_file() and stats.read_text().count("\n") >= 2) and time.monotonic() < deadline:
        time.sleep(0.05)  # training has begun: two ticks are written
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    said = [line for line in err.splitlines() if line.startswith("inrkit:")]
    assert len(said) == 1 and said[0].startswith("inrkit: interrupted at step ") and "Traceback" not in err, err
    assert "rerunning the same command continues from it." in said[0]
    step = int(said[0].split("step ")[1].split(";")[0])
    assert 0 < step < 3000
    from inrkit.core import artifacts

    assert artifacts.read(tmp_path / "out" / "state.safetensors").metrics["step"] == step  # the snapshot is the stop
    assert kh.run_once(cmd, "none").returncode == 0
    assert kh.differences(reference, kh.tensors_of(tmp_path)) == []
    assert kh.stray_files(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(kh.WRITES))
def test_kills_at_random_moments_resume_bit_identically(stage, tmp_path):
    result = kh.campaign(stage, trials=10, seed=1, root=tmp_path)
    assert result["problems"] == []
    assert result["identical"] == result["trials"] == 10 and result["stray"] == 0
    assert result["kills"] >= 10 and result["write_kills"] >= 3  # the trials did kill, some of them mid-write
