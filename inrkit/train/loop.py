"""The one training loop (EDM's `training_loop`): every trainer is this loop plus an objective.

The loop counts images. Each step draws a batch and calls `objective.step(batch, pos)`, which updates the
models and returns its losses as 0-dim tensors (no host sync: they are summed on the device and read only at
ticks). A tick (every `tick_images`) prints one status line and appends one stats.jsonl record of the tick's
mean losses over all ranks; a snapshot (every `snapshot_images`, and at the end) writes the objective's
artifact and pictures and the training state, after checking the ranks agree. `seconds` stops a run early,
rank 0's clock deciding for every rank, so all ranks leave at the same step.

Resume: rerunning the same command finds RUN/state.safetensors and continues exactly (models, optimizers,
schedulers, RNG, data position); options that change what is learned (`training`) must match.

NaN guard: a non-finite loss is remembered on the device (the first step and which loss) and checked before
every tick and snapshot: the run stops with one sentence, and the last good snapshot stays on disk untouched.
Test hook: INRKIT_FAULT_NAN_STEP=k poisons step k (its losses and the first parameter) to exercise the guard.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from inrkit.core import runtime
from inrkit.core.errors import InrkitError
from inrkit.core.progress import StatsWriter, progress_bar
from inrkit.core.runtime import print0
from inrkit.train.checkpoint import load_state, save_state


class Objective(Protocol):
    """What a trainer plugs into the loop."""

    name: str                       # shown on the progress bar
    losses: tuple[str, ...]         # the names of the values `step` returns, in order
    modules: dict                   # name -> nn.Module: everything saved in the training state
    optimizers: dict                # name -> torch.optim.Optimizer
    schedulers: dict                # name -> LR scheduler (may be empty)
    generators: dict                # name -> torch.Generator the objective draws from (may be empty)

    def step(self, batch, pos: dict) -> dict[str, torch.Tensor]: ...   # one update; pos is before the step
    def snapshot(self, pos: dict) -> None: ...                        # rank 0: artifact and pictures
    def tick(self, pos: dict, record: dict) -> None: ...              # extra per-tick work (e.g. FID); may be a no-op


@dataclass
class Schedule:
    total_images: int               # train until this many images have been seen
    batch: int                      # images per step over all ranks
    tick_images: int                # images per tick (status line, stats record)
    snapshot_images: int            # images between snapshots
    seconds: float | None = None    # stop this run after this much wall time (with a snapshot)
    unit: str = "img"               # what the counts count: img (status in kimg) or step (one "image" a step)


@dataclass
class Run:
    run_dir: Path                   # the run folder: state.safetensors, stats.jsonl, pictures
    training: dict                  # options that must match to resume
    device: torch.device
    progress: bool = True
    start_images: int = 0
    started: float = field(default_factory=time.perf_counter)


def _fresh_position() -> dict:
    return dict(step=0, images=0, tick=0, tick_images=0, snapshot_images=0)


class _Tally:
    """Per-tick sums of the losses and the first non-finite one, kept on the device until a tick reads them."""

    def __init__(self, names: tuple[str, ...], device):
        self.names, self.device = names, device
        self.sums = torch.zeros(len(names) + 1, dtype=torch.float64, device=device)  # losses..., steps
        self.bad = torch.full((2,), -1, dtype=torch.int64, device=device)  # (step, index of the loss)

    def add(self, losses: dict, step: int) -> None:
        values = torch.stack([losses[n].detach().to(self.device, torch.float64).reshape(()) for n in self.names])
        self.sums += torch.cat([values, values.new_ones(1)])
        finite = torch.isfinite(values)
        # torch.full, not torch.tensor: a fill on the device, not a host-to-device copy every step
        step_t = torch.full((), step, dtype=torch.int64, device=self.device)
        first = torch.stack([step_t, (~finite).to(torch.int64).argmax()])
        self.bad = torch.where((self.bad[0] < 0) & ~finite.all(), first, self.bad)

    def check(self, out: Path) -> None:
        step, which = (int(v) for v in self.bad.cpu())
        if step >= 0:
            name = self.names[which]
            raise InrkitError(f"training diverged at step {step}: {name} is not finite; nothing was written after "
                              f"the last good snapshot ({out}), and rerunning resumes from it.")

    def record(self) -> dict:
        sums = runtime.sum_over_ranks(self.sums.clone())
        steps = max(float(sums[-1]), 1.0)
        self.sums.zero_()
        return {n: float(s) / steps for n, s in zip(self.names, sums[:-1], strict=True)}


def _poison(objective, losses: dict, step: int) -> None:
    """The NaN test hook (INRKIT_FAULT_NAN_STEP): a diverged step, as far as the loop and the files can tell."""
    if os.environ.get("INRKIT_FAULT_NAN_STEP") == str(step):
        for name in losses:
            losses[name] = losses[name] * float("nan")
        with torch.no_grad():
            next(iter(objective.modules.values())).parameters().__next__().fill_(float("nan"))


def _status(pos: dict, record: dict, seconds: float, unit: str) -> None:
    losses = "  ".join(f"{k} {v:<8.4g}" for k, v in record.items() if k not in ("tick", "kimg", "step"))
    kimg = f"kimg {pos['images'] / 1000:<9.3f} " if unit == "img" else ""
    print0(f"tick {pos['tick']:<4d} {kimg}step {pos['step']:<7d} {losses} sec/tick {seconds:.1f}")


def _tick(objective, tally: _Tally, pos: dict, stats: StatsWriter, out: Path, tick_started: float,
          unit: str) -> dict:
    """Close a tick: check for divergence, print the status line, write the stats record."""
    tally.check(out)
    seconds = time.perf_counter() - tick_started
    pos["tick"] += 1
    record = dict(tick=pos["tick"], kimg=pos["images"] / 1000, step=pos["step"], **tally.record())
    objective.tick(pos, record)
    _status(pos, record, seconds, unit)
    images = max(pos["images"] - pos["tick_images"], 1)
    stats.write(**record, sec_per_tick=round(seconds, 3), sec_per_kimg=round(seconds / images * 1000, 3))
    pos["tick_images"] = pos["images"]
    return record


def _snapshot(objective, run: Run, pos: dict) -> None:
    """Artifact and pictures (the objective's) and the training state, on rank 0, once the ranks agree."""
    for module in objective.modules.values():
        runtime.check_in_sync(module)
    pos["snapshot_images"] = pos["images"]
    if runtime.is_rank0():
        objective.snapshot(pos)
        save_state(run.run_dir / "state.safetensors", objective.modules, objective.optimizers, objective.schedulers,
                   run.training, pos, objective.generators)
    runtime.barrier()  # the other ranks may read the artifact next


def resume(objective, run: Run) -> dict:
    """The position to start from: the saved state's (restored into the objective's models), or the start."""
    pos = load_state(run.run_dir / "state.safetensors", objective.modules, objective.optimizers,
                     objective.schedulers, run.training, objective.generators) or _fresh_position()
    for module in objective.modules.values():
        runtime.broadcast_parameters(module)
    run.start_images = pos["images"]
    return pos


def training_loop(objective, batches: Callable[[int], Iterator], schedule: Schedule, run: Run, out: Path,
                  pos: dict) -> dict:
    """Train from `pos` (see `resume`) until schedule.total_images or schedule.seconds; return the position.
    `batches(start)` gives this rank's batches from global image `start` on; `out` is the artifact (for messages).
    """
    stats = StatsWriter(run.run_dir / "stats.jsonl", append=pos["step"] > 0)
    tally, tick_started = _Tally(objective.losses, run.device), time.perf_counter()
    stream = batches(pos["images"])
    desc = f"{objective.name} from step {pos['step']}" if pos["step"] else objective.name
    shown: dict = {}
    with progress_bar(desc, max(schedule.total_images - pos["images"], 0), enabled=run.progress,
                      unit=schedule.unit) as update:
        while pos["images"] < schedule.total_images:
            losses = objective.step(next(stream), pos)
            pos["step"], pos["images"] = pos["step"] + 1, pos["images"] + schedule.batch
            _poison(objective, losses, pos["step"])
            tally.add(losses, pos["step"])
            late = schedule.seconds is not None and runtime.rank0_decides(
                time.perf_counter() - run.started >= schedule.seconds, run.device)
            done = pos["images"] >= schedule.total_images or late
            if pos["images"] >= pos["tick_images"] + schedule.tick_images or done:
                shown = _tick(objective, tally, pos, stats, out, tick_started, schedule.unit)
                tick_started = time.perf_counter()
            if pos["images"] >= pos["snapshot_images"] + schedule.snapshot_images or done:
                tally.check(out)
                _snapshot(objective, run, pos)
            update(advance=schedule.batch, **{k: v for k, v in shown.items() if k in objective.losses})
            if late and pos["images"] < schedule.total_images:
                print0(f"stopping after --seconds {schedule.seconds:g}; rerun the command to continue")
                break
    if pos["images"] != pos["snapshot_images"] or not Path(out).is_file():
        _snapshot(objective, run, pos)
    return pos
