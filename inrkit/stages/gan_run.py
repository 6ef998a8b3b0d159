"""What every `inrkit train-gan` architecture shares (INR-GAN in inrkit.stages.train_gan, LoE-GAN / PE + CE in
inrkit.stages.train_loe_gan): the option checks, the batch stream, FID during training and the run itself
(resume, the schedule in images, the one training loop, the summary)."""

from __future__ import annotations

import time
from pathlib import Path

from inrkit.core import runtime
from inrkit.core.checks import require_at_least, require_positive, require_suffix, require_writable
from inrkit.core.config import defaults as config_defaults
from inrkit.core.errors import InrkitError
from inrkit.core.runtime import parameters_sha256, pick_device, print0
from inrkit.stages.configs import TrainGanConfig
from inrkit.train.loop import Run, Schedule, resume, training_loop


def start(cfg):
    """The device, with the process group joined under torchrun and the batch checked to split over it."""
    dev = pick_device(cfg.device)
    runtime.init_distributed(dev)
    if cfg.batch % runtime.world_size():
        raise InrkitError(f"--batch {cfg.batch} does not split evenly over {runtime.world_size()} processes.")
    return dev


def objective_options(cfg, gcfg: dict, dcfg: dict, dev, options: dict, training: dict, precision) -> dict:
    """The objective's arguments every architecture shares: seed, batch, EMA, outputs, FID and precision."""
    run_dir = Path(cfg.out).with_suffix("")
    return dict(seed=cfg.seed, batch=cfg.batch, ema_kimg=cfg.ema_kimg, ema_rampup=cfg.ema_rampup, out=Path(cfg.out),
                run_dir=run_dir, artifact_config=dict(generator=gcfg, discriminator=dcfg, training=training),
                options=options, keep_snapshots=cfg.keep_snapshots, fid_ticks=cfg.fid_ticks,
                fid=fid_during_training(cfg, run_dir, dev), precision=precision, compile=cfg.compile)


def run_training(cfg, objective, dataset, dev, training: dict, retry: str) -> dict:
    """The shared part of every train-gan architecture: resume, the schedule in images, the loop, the summary."""
    out = cfg.out
    run = Run(run_dir=out.with_suffix(""), training=training, device=dev, progress=cfg.progress, retry=retry)
    pos = resume(objective, run)
    tick = int(round(cfg.tick_kimg * 1000))
    schedule = Schedule(total_images=int(round(cfg.kimg * 1000)), batch=cfg.batch, tick_images=tick,
                        snapshot_images=tick * cfg.snapshot_ticks, seconds=cfg.seconds)
    pos = training_loop(objective, batches(dataset, cfg), schedule, run, out, pos)
    run_seconds = time.perf_counter() - run.started
    print0(f"trained to {pos['images'] / 1000:.3f} kimg ({(pos['images'] - run.start_images) / 1000:.3f} in this "
           f"run, {run_seconds:.0f} s) -> {out}")
    metrics = dict(kimg=pos["images"] / 1000, step=pos["step"], run_seconds=run_seconds,
                   parameters_sha256=parameters_sha256(objective.G_ema))
    if pos.get("fid") is not None:
        metrics["fid"] = pos["fid"]
    return metrics


def batches(dataset, cfg):
    """This rank's share of the one global stream of images (flipped as configured), from image `start` on."""
    from inrkit.data import make_loader

    world = runtime.world_size()
    return lambda start: make_loader(dataset, cfg.batch // world, seed=cfg.seed, start=start // world,
                                     flip=cfg.flip, workers=cfg.workers, device=pick_device(cfg.device))


def fid_during_training(cfg, run_dir: Path, dev):
    """FID of the EMA generator (rank 0), appended to stats.jsonl; the other ranks wait."""
    if not cfg.fid_ticks:
        return None

    def evaluate(G_ema, pos: dict) -> float | None:
        from inrkit.stages.fid import fid

        value = None
        if runtime.is_rank0():
            value = fid(G_ema, cfg.data, n=cfg.fid_n, stats=run_dir / "stats.jsonl",
                        stats_extra=dict(kimg=pos["images"] / 1000), device=str(dev), workers=cfg.workers,
                        precision=cfg.precision)
        runtime.barrier()
        return value

    return evaluate


def refuse_other_family(cfg, names: tuple[str, ...], owner: str) -> None:
    """One sentence for the first option of another architecture family changed from its default."""
    defaults = config_defaults(TrainGanConfig)
    for name in names:
        if getattr(cfg, name) != defaults[name]:
            raise InrkitError(f"--{name.replace('_', '-')} belongs to {owner}; --arch {cfg.arch} does not take it.")


def check_options(cfg) -> None:
    """Fail fast, in one sentence, on options that cannot work."""
    require_suffix(cfg.out, ".safetensors")
    if not cfg.dry_run:  # a dry run writes nothing
        require_writable(cfg.out)
    if cfg.channels not in (1, 3):
        raise InrkitError(f"--channels must be 1 (grey) or 3 (RGB), not {cfg.channels}.")
    require_at_least(1, batch=cfg.batch, r1_every=cfg.r1_every, snapshot_ticks=cfg.snapshot_ticks)
    require_positive(kimg=cfg.kimg, tick_kimg=cfg.tick_kimg, ema_kimg=cfg.ema_kimg, seconds=cfg.seconds)
    require_at_least(0, r1_gamma=cfg.r1_gamma, fid_ticks=cfg.fid_ticks)
    require_at_least(2, fid_n=cfg.fid_n)
