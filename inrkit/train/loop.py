"""The one training loop (EDM's `training_loop`): every trainer is this loop plus an objective.

The loop counts images. Each step draws a batch and calls `objective.step(batch, pos)`, which updates the
models and returns its losses as 0-dim tensors (no host sync: they are summed on the device and read only at
ticks). A tick (every `tick_images`) prints one status line and appends one stats.jsonl record of the tick's
mean losses over all ranks; a snapshot (every `snapshot_images`, and at the end) writes the objective's
artifact and pictures and the training state, after checking the ranks agree. `seconds` stops a run early,
rank 0's clock deciding for every rank, so all ranks leave at the same step.

Resume: rerunning the same command finds RUN/state.safetensors and continues exactly (models, optimizers,
schedulers, RNG, data position); options that change what is learned (`training`) must match.

NaN guard: a non-finite loss or gradient is remembered on the device (the first step and which quantity) and
checked before every tick and snapshot: the run stops with one sentence naming them and how to go on (the
stage's `Run.retry`, e.g. a lower learning rate, with a new --out: a resume would diverge again), and the last
good snapshot stays on disk untouched. Test hooks: INRKIT_FAULT_NAN_STEP=k poisons step k's losses and
INRKIT_FAULT_NAN_GRAD_STEP=k one of its gradients (either also the first parameter, as the update would).

Ctrl-C (one process): the step in progress finishes, a tick and a snapshot follow, and the run ends with one
sentence (inrkit.core.errors.Interrupted, exit code 130); rerunning continues exactly. A second Ctrl-C stops at
once (atomic writes keep every file whole). Under torchrun the launcher handles signals.

Damaged data: images the batch stream replaces because they cannot be decoded (inrkit.data.make_loader counts
them in its `skipped`) are summed over ranks at each tick; the run's total so far is the `skipped` of the status
line (when not 0) and of every stats.jsonl record.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from inrkit.core import artifacts, runtime
from inrkit.core.errors import InrkitError, Interrupted
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
    retry: str = "a lower learning rate"  # what the divergence sentence tells the user to rerun with
    start_images: int = 0
    started: float = field(default_factory=time.perf_counter)


def _fresh_position() -> dict:
    return dict(step=0, images=0, tick=0, tick_images=0, snapshot_images=0)


class _Tally:
    """Per-tick sums of the losses, and the first non-finite loss or gradient, kept on the device until a tick
    reads them."""

    def __init__(self, names: tuple[str, ...], modules: dict, device):
        self.names, self.modules, self.device = names, modules, device
        self.quantities = names + tuple(f"the gradient of {m}" for m in modules)
        self.sums = torch.zeros(len(names) + 1, dtype=torch.float64, device=device)  # losses..., steps
        self.bad = torch.full((2,), -1, dtype=torch.int64, device=device)  # (step, index of the quantity)
        self.skipped_seen = 0  # the stream's count of replaced images at the last tick

    def add(self, losses: dict, step: int) -> None:
        values = torch.stack([losses[n].detach().to(self.device, torch.float64).reshape(()) for n in self.names])
        self.sums += torch.cat([values, values.new_ones(1)])
        finite = torch.cat([torch.isfinite(values), _finite_gradients(self.modules, self.device)])
        # torch.full, not torch.tensor: a fill on the device, not a host-to-device copy every step
        step_t = torch.full((), step, dtype=torch.int64, device=self.device)
        first = torch.stack([step_t, (~finite).to(torch.int64).argmax()])
        self.bad = torch.where((self.bad[0] < 0) & ~finite.all(), first, self.bad)

    def check(self, out: Path, retry: str) -> None:
        step, which = (int(v) for v in self.bad.cpu())
        if step >= 0:
            raise InrkitError(f"training diverged at step {step}: {self.quantities[which]} is not finite; the last "
                              f"good snapshot ({out}) is kept, but the same command would resume from it and likely "
                              f"diverge again, so rerun it with {retry} and a new --out.")

    def record(self, skipped: int = 0) -> tuple[dict, int]:
        """The tick's mean losses over all ranks, and the images replaced in it over all ranks."""
        sums = runtime.sum_over_ranks(torch.cat([self.sums, self.sums.new_full((1,), skipped)]))
        steps = max(float(sums[-2]), 1.0)
        self.sums.zero_()
        return {n: float(s) / steps for n, s in zip(self.names, sums[:-2], strict=True)}, int(sums[-1])


def _finite_gradients(modules: dict, device) -> torch.Tensor:
    """(M,) bool: whether each module's gradients (as the step left them) are all finite; one fused norm each."""
    flags = []
    for module in modules.values():
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        if not grads:
            flags.append(torch.ones((), dtype=torch.bool, device=device))
            continue
        norms = torch._foreach_norm(grads, math.inf)  # what clip_grad_norm_ uses: a few kernels for all of them
        flags.append(torch.stack([n.to(device) for n in norms]).isfinite().all())
    return torch.stack(flags) if flags else torch.ones(0, dtype=torch.bool, device=device)


def _poison(objective, losses: dict, step: int) -> None:
    """The divergence test hooks (INRKIT_FAULT_NAN_STEP, INRKIT_FAULT_NAN_GRAD_STEP): a diverged step, as far as the
    loop and the files can tell."""
    nan_loss = os.environ.get("INRKIT_FAULT_NAN_STEP") == str(step)
    nan_grad = os.environ.get("INRKIT_FAULT_NAN_GRAD_STEP") == str(step)
    if not (nan_loss or nan_grad):
        return
    for name in losses if nan_loss else ():
        losses[name] = losses[name] * float("nan")
    parameters = [p for m in objective.modules.values() for p in m.parameters()]
    with torch.no_grad():
        parameters[0].fill_(float("nan"))
        if nan_grad:
            next(p for p in parameters if p.grad is not None).grad.fill_(float("inf"))


def _status(pos: dict, record: dict, seconds: float, unit: str) -> None:
    shown = {k: v for k, v in record.items() if k not in ("tick", "kimg", "step") and (k != "skipped" or v)}
    losses = "  ".join(f"{k} {v:<8.4g}" for k, v in shown.items())
    kimg = f"kimg {pos['images'] / 1000:<9.3f} " if unit == "img" else ""
    print0(f"tick {pos['tick']:<4d} {kimg}step {pos['step']:<7d} {losses} sec/tick {seconds:.1f}")


def _tick(objective, tally: _Tally, pos: dict, stats: StatsWriter, run: Run, out: Path, tick_started: float,
          unit: str, stream) -> dict:
    """Close a tick: check for divergence, print the status line, write the stats record."""
    tally.check(out, run.retry)
    seconds = time.perf_counter() - tick_started
    pos["tick"] += 1
    counted = getattr(stream, "skipped", None)  # a data stream counts the images it replaced
    losses, skipped = tally.record((counted or 0) - tally.skipped_seen)
    tally.skipped_seen = counted or 0
    record = dict(tick=pos["tick"], kimg=pos["images"] / 1000, step=pos["step"], **losses)
    if counted is not None:
        pos["skipped"] = record["skipped"] = pos.get("skipped", 0) + skipped
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


class _Interrupts:
    """Ctrl-C as a request: the first SIGINT is noted (the loop ends after the step in progress, with a snapshot),
    a second one interrupts at once. Only in one process's main thread (under torchrun the launcher handles it)."""

    def __enter__(self):
        self.requested, self.previous = False, None
        if threading.current_thread() is threading.main_thread() and runtime.world_size() == 1:
            self.previous = signal.signal(signal.SIGINT, self._note)
        return self

    def _note(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True  # nothing is printed here: a handler can run in the middle of a print

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _stop(schedule: Schedule, run: Run, interrupts: _Interrupts) -> str | None:
    """Why this run stops after this step, if it does: "seconds" (rank 0's clock decides for all) or "interrupt"."""
    late = schedule.seconds is not None and runtime.rank0_decides(
        time.perf_counter() - run.started >= schedule.seconds, run.device)
    return "interrupt" if interrupts.requested else "seconds" if late else None


def _stats(path: Path, pos: dict) -> StatsWriter:
    """stats.jsonl, trimmed on a resume to the records up to the resumed position: a killed run may have written
    ticks after its last snapshot (they are trained again) or half a line."""
    if pos["step"] > 0 and runtime.is_rank0() and path.is_file():
        kept = []
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            kimg = record.get("kimg", 0) if isinstance(record, dict) else None
            if isinstance(kimg, (int, float)) and kimg <= pos["images"] / 1000 + 1e-9:
                kept.append(line + "\n")
        artifacts.atomic_write_bytes(path, "".join(kept).encode())
    return StatsWriter(path, append=pos["step"] > 0)


def _batch_stream(batches: Callable[[int], Iterator], pos: dict) -> Iterator:
    """The batches from the position on. A DataLoader's iterator draws its base seed from the global RNG: a
    fresh run draws it before the first step, so a resumed run (its RNG restored to the snapshot's, taken after
    that draw) must not draw again, or every later global draw would be shifted."""
    if pos["step"] == 0:
        return batches(pos["images"])
    state = torch.get_rng_state()
    stream = batches(pos["images"])
    torch.set_rng_state(state)
    return stream


def training_loop(objective, batches: Callable[[int], Iterator], schedule: Schedule, run: Run, out: Path,
                  pos: dict) -> dict:
    """Train from `pos` (see `resume`) until schedule.total_images or schedule.seconds; return the position.
    `batches(start)` gives this rank's batches from global image `start` on; `out` is the artifact (for messages).
    Ctrl-C ends it early with a snapshot and raises Interrupted."""
    stats = _stats(run.run_dir / "stats.jsonl", pos)
    tally, tick_started = _Tally(objective.losses, objective.modules, run.device), time.perf_counter()
    stream = _batch_stream(batches, pos)
    desc = f"{objective.name} from step {pos['step']}" if pos["step"] else objective.name
    shown: dict = {}
    stop = None
    with progress_bar(desc, max(schedule.total_images - pos["images"], 0), enabled=run.progress,
                      unit=schedule.unit) as update, _Interrupts() as interrupts:
        while pos["images"] < schedule.total_images and stop is None:
            losses = objective.step(next(stream), pos)
            pos["step"], pos["images"] = pos["step"] + 1, pos["images"] + schedule.batch
            _poison(objective, losses, pos["step"])
            tally.add(losses, pos["step"])
            stop = _stop(schedule, run, interrupts)
            done = pos["images"] >= schedule.total_images or stop is not None
            if pos["images"] >= pos["tick_images"] + schedule.tick_images or done:
                shown = _tick(objective, tally, pos, stats, run, out, tick_started, schedule.unit, stream)
                tick_started = time.perf_counter()
            if pos["images"] >= pos["snapshot_images"] + schedule.snapshot_images or done:
                tally.check(out, run.retry)
                _snapshot(objective, run, pos)
            update(advance=schedule.batch, **{k: v for k, v in shown.items() if k in objective.losses})
    if pos["images"] != pos["snapshot_images"] or not Path(out).is_file():
        _snapshot(objective, run, pos)
    if stop == "seconds" and pos["images"] < schedule.total_images:
        print0(f"stopping after --seconds {schedule.seconds:g}; rerun the command to continue")
    if stop == "interrupt" and pos["images"] < schedule.total_images:
        raise Interrupted(f"interrupted at step {pos['step']}; a snapshot was written ({out} and "
                          f"{run.run_dir / 'state.safetensors'}), and rerunning the same command continues from it.")
    return pos
