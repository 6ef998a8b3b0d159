"""Kill a training stage at any moment and check that rerunning it ends exactly where an uninterrupted run ends.

Each training stage (fit, meta, train-gan, train-classifier, train-diffusion) runs at tiny size as a child process
(`python -m inrkit.cli STAGE ...`). A trial kills it with SIGKILL at seeded random moments, some after a random
wall time and some in the middle of a chosen atomic write (the INRKIT_FAULT_KILL_WRITE hook of
inrkit.core.artifacts: half the bytes written, then SIGKILL), then reruns the same command until it exits 0. It
then compares every tensor of every .safetensors file in the trial's folder with an uninterrupted run's
(bit-identical on CPU) and looks for stray temporary files.

    OMP_NUM_THREADS=1 .venv/bin/python tests/killharness.py --trials 10 --seed 1  # = pytest -m slow tests/test_kills.py
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from inrkit.core import artifacts

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
MAX_ATTEMPTS = 12  # a trial that has not finished after this many runs is a failure

# Tiny settings: a few snapshots each, so kills land before, between and inside them. {data} is the trial's
# input folder (the classifier's and the diffusion model's functaset).
STAGES = {
    "fit": ["fit", "builtin:camera", "--arch", "pe", "--width", "16", "--depth", "3", "--frequencies", "4",
            "--size", "16", "--steps", "60", "--tick", "10", "--snapshot", "20", "--batch-pixels", "64"],
    "meta": ["meta", "--data", "builtin:photos?count=8", "--latent", "2x2x4", "--resolution", "8", "--width", "8",
             "--depth", "3", "--batch", "4", "--lr", "1e-3", "--steps", "12", "--tick", "2", "--snapshot", "4",
             "--workers", "0", "--encode-steps", "1", "--heldout-count", "4"],
    "train-gan": ["train-gan", "--data", "builtin:digits", "--resolution", "8", "--channels", "1", "--blocks",
                  "4x1x8,8x1x8", "--z-dim", "4", "--hyper-hidden", "8", "--d-channel-base", "32", "--d-channel-max",
                  "8", "--batch", "4", "--kimg", "0.048", "--tick-kimg", "0.008", "--snapshot-ticks", "2",
                  "--workers", "0", "--no-flip"],
    "train-classifier": ["train-classifier", "--data", "{data}/set.safetensors", "--width", "8", "--depth", "1",
                         "--heads", "2", "--batch", "8", "--steps", "12", "--warmup", "2", "--tick", "2",
                         "--snapshot", "4"],
    "train-diffusion": ["train-diffusion", "--data", "{data}/set.safetensors", "--channels", "8", "--res-blocks",
                        "1", "--attention", "1", "--heads", "2", "--batch", "8", "--steps", "12", "--tick", "2",
                        "--snapshot", "4", "--samples", "2", "--sample-steps", "2", "--lr", "1e-3"],
}

# Atomic writes of an uninterrupted run of each (snapshots x their files, functasets): "write N" kills pick N in
# 1..WRITES, so every one of them can be the one interrupted.
WRITES = {"fit": 12, "meta": 14, "train-gan": 9, "train-classifier": 9, "train-diffusion": 9}


def write_inputs(folder: Path) -> None:
    """The labelled functaset the classifier and the diffusion model train on (the same for every run)."""
    from inrkit.models.functa import SpatialFuncta
    from inrkit.models.functa_family import MODEL_KIND
    from inrkit.stages.encode import functaset_artifact

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = SpatialFuncta((2, 2, 4), 8, 1, 8, 2, 10.0, "nearest", 1)
    model_path = folder / "model.safetensors"
    artifacts.save(model_path, artifacts.Artifact(kind=MODEL_KIND, tensors=model.state_dict(),
                                                  config=dict(model=model.config)))
    labels = torch.arange(24) % 3
    latents = 0.5 * torch.randn(24, 2, 2, 4) + labels[:, None, None, None].float()
    artifacts.save(folder / "set.safetensors", functaset_artifact(
        model, model_path, latents, labels, torch.zeros(24), data=dict(classes=["a", "b", "c"]), steps=3))


def command(args: list[str], folder: Path, inputs: Path) -> list[str]:
    """The child's argv: a stage's arguments (STAGES), on the CPU, writing into `folder`."""
    args = [a.replace("{data}", str(inputs)) for a in args]
    return [sys.executable, "-m", "inrkit.cli", *args, "--device", "cpu", "--out", str(folder / "out.safetensors")]


@dataclass
class Attempt:
    kill: str          # "none", "time T" or "write N"
    returncode: int
    seconds: float


def run_once(cmd: list[str], kill: str, timeout: float = 300) -> Attempt:
    """One run: to the end (kill "none"), SIGKILLed after a wall time ("time T"), or killing itself in its N-th
    atomic write ("write N")."""
    env = dict(ENV)
    if kill.startswith("write"):
        env["INRKIT_FAULT_KILL_WRITE"] = kill.split()[1]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait = float(kill.split()[1]) if kill.startswith("time") else timeout
    try:
        _, err = proc.communicate(timeout=wait)
    except subprocess.TimeoutExpired:
        proc.kill()  # SIGKILL
        _, err = proc.communicate()
    if proc.returncode not in (0, -9):
        raise RuntimeError(f"{' '.join(cmd[3:5])} failed ({proc.returncode}) after kill {kill}: "
                           f"{err.decode(errors='replace')[-2000:]}")
    return Attempt(kill, proc.returncode, time.perf_counter() - start)


def tensors_of(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Every tensor of every .safetensors file under `folder`, by relative path."""
    return {str(p.relative_to(folder)): artifacts.read(p).tensors for p in sorted(folder.rglob("*.safetensors"))}


def differences(ref: dict, got: dict) -> list[str]:
    """Files or tensors that differ between two tensors_of results (empty: bit-identical)."""
    out = [f"{name}: missing" for name in ref if name not in got] + [f"{n}: extra" for n in got if n not in ref]
    for name in set(ref) & set(got):
        a, b = ref[name], got[name]
        if set(a) != set(b):
            out.append(f"{name}: tensor names differ")
        out += [f"{name}:{k}" for k in set(a) & set(b) if a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k])]
    return out


def stray_files(folder: Path) -> list[str]:
    """Temporaries left behind (an atomic write's .tmp, require_writable's probe)."""
    return [str(p.relative_to(folder)) for p in folder.rglob("*") if p.name.endswith(".tmp")
            or p.name.startswith(".inrkit-probe-")]


@dataclass
class Trial:
    attempts: list[Attempt] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)

    @property
    def kills(self) -> int:
        return sum(a.returncode == -9 for a in self.attempts)


def plan(rng: random.Random, reference_seconds: float, writes: int) -> list[str]:
    """1 to 3 kills: after a random wall time within the uninterrupted run's, or in one of its atomic writes."""
    kills = []
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.5:
            kills.append(f"write {rng.randint(1, writes)}")
        else:
            kills.append(f"time {rng.uniform(0.3, 1.0) * reference_seconds:.2f}")
    return kills


def trial(stage: str, folder: Path, inputs: Path, reference: dict, rng: random.Random, seconds: float) -> Trial:
    """Kill as planned, rerun until the run exits 0, compare with the reference."""
    cmd, result = command(STAGES[stage], folder, inputs), Trial()
    for kill in plan(rng, seconds, WRITES[stage]):
        result.attempts.append(run_once(cmd, kill))
    while not result.attempts or result.attempts[-1].returncode != 0:
        if len(result.attempts) >= MAX_ATTEMPTS:
            raise RuntimeError(f"{stage} did not finish after {MAX_ATTEMPTS} runs")
        result.attempts.append(run_once(cmd, "none"))
    result.differences = differences(reference, tensors_of(folder))
    result.stray = stray_files(folder)
    return result


def campaign(stage: str, trials: int, seed: int, root: Path) -> dict:
    """The uninterrupted reference, then `trials` killed-and-rerun trials of one stage."""
    inputs = root / "inputs"
    if not (inputs / "set.safetensors").is_file():
        write_inputs(inputs)
    ref_folder = root / stage / "reference"
    seconds = run_once(command(STAGES[stage], ref_folder, inputs), "none").seconds
    reference = tensors_of(ref_folder)
    rng = random.Random(f"{seed}-{stage}")
    results = [trial(stage, root / stage / f"trial-{k}", inputs, reference, rng, seconds) for k in range(trials)]
    return dict(stage=stage, trials=trials, kills=sum(r.kills for r in results),
                write_kills=sum(a.kill.startswith("write") and a.returncode == -9 for r in results
                                for a in r.attempts),
                identical=sum(not r.differences for r in results), stray=sum(len(r.stray) for r in results),
                runs=sum(len(r.attempts) for r in results), reference_seconds=round(seconds, 1),
                files=len(reference), problems=[(k, r.differences[:5], r.stray[:5]) for k, r in enumerate(results)
                                                if r.differences or r.stray])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stages", default=",".join(STAGES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for stage in args.stages.split(","):
            start = time.perf_counter()
            result = campaign(stage, args.trials, args.seed, Path(tmp))
            print(json.dumps(dict(result, seconds=round(time.perf_counter() - start, 1))), flush=True)


if __name__ == "__main__":
    sys.exit(main())
