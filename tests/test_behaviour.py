"""The stages compute what they computed before the restructure: fixed-seed tiny runs of fit, meta, train-gan
and encode write tensors with the sha256 recorded in tests/data/behaviour_hashes.json (see tests/behaviour.py
for the commands and how to regenerate the file)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
RECORD = json.loads((HERE / "data" / "behaviour_hashes.json").read_text())


@pytest.fixture(scope="module")
def hashes():
    if torch.__version__ != RECORD["torch"] or os.uname().machine != RECORD["machine"]:
        pytest.skip(f"hashes were recorded with torch {RECORD['torch']} on {RECORD['machine']}; regenerate them "
                    "with tests/behaviour.py --write on a known-good commit to compare here")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(HERE / "behaviour.py")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout[done.stdout.index("{"):])["hashes"]


@pytest.mark.parametrize("name", sorted(RECORD["hashes"]))
def test_same_tensors_as_recorded(hashes, name):
    """Every file recorded is written again with the same tensors (a stage may write new files, e.g. fit's
    training state since fit became resumable). A GAN run's convolutions round differently on another CPU, so the
    record also holds the recording commit's hashes on the other CPUs it was run on ("also")."""
    recorded = RECORD["hashes"][name]
    also = RECORD.get("also", {}).get("hashes", {}).get(name, {})  # the same commit's hashes on another CPU
    written = {f: hashes[name].get(f) for f in recorded}
    assert all(written[f] == recorded[f] or written[f] in also.get(f, []) for f in recorded), (written, recorded)
