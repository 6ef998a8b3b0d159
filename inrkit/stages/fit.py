"""`inrkit fit`: fit one signal (image or video) with SIREN, a Fourier-feature MLP (PE, or PE + a coordinate
embedding) or Levels-of-Experts."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from inrkit.core import artifacts
from inrkit.core.checks import require_at_least, require_choice, require_positive, require_writable
from inrkit.core.config import build, options_of, resume_options
from inrkit.core.errors import InrkitError
from inrkit.core.parse import parse_betas, parse_size
from inrkit.core.pictures import plot_curve, save_gif, save_png, side_by_side
from inrkit.core.precision import resolve_precision
from inrkit.core.runtime import pick_device, print0, seed_all
from inrkit.fields import build_field
from inrkit.fields.base import hidden_widths
from inrkit.fields.family import KIND
from inrkit.fields.grid import evaluate
from inrkit.metrics.image import psnr, ssim
from inrkit.signal import load_signal
from inrkit.stages.configs import FitConfig
from inrkit.train.fitting import FitObjective, repeat_forever, step_decay
from inrkit.train.loop import Run, Schedule, resume, training_loop

# Learning rates when --lr is not given: LoE supp. A uses 5e-3 for PE-MLP and LoE; SIREN needs a
# smaller one to train stably (SIREN paper 1e-4; LoE supp. C uses 5e-5 for video).
DEFAULT_LR = {"loe": 5e-3, "pe": 5e-3, "pe-ce": 5e-3, "siren": 1e-4}
DEFAULT_BETAS = (0.9, 0.995)  # supp. A; supp. B and C train with (0.9, 0.999) (their recipes say so)


def field_config(arch: str, in_dim: int, out_dim: int, resolution: int, width: int, depth: int, tile: int,
                 blend: str, arrangement: str, frequencies: int, w0: float, seed: int, *,
                 widths: list[int] | None = None, tiles: list[int] | None = None, scales: list[float] | None = None,
                 ce_channels: int | None = None, ce_size: int | None = None) -> dict:
    """The field config for an architecture; every field takes coordinates in [0, 1]^in_dim. `widths` (pe,
    pe-ce, loe), `tiles` and `scales` (loe) are per-layer lists; pe-ce's embedding defaults to the paper's for
    the dimension (PAPER_EMBEDDING). Building the field here checks the lists' lengths."""
    if arch == "siren":
        return dict(arch="siren", in_dim=in_dim, out_dim=out_dim, width=width, depth=depth, w0_first=w0,
                    w0_hidden=w0)
    # the configs are written, not read off a built field: building one would draw from the seeded global RNG
    per_layer = {} if widths is None else dict(widths=hidden_widths(width, depth, widths))
    if arch == "pe":
        return dict(arch="pe", in_dim=in_dim, out_dim=out_dim, width=width, depth=depth, frequencies=frequencies,
                    seed=seed, **per_layer)
    if arch == "pe-ce":
        from inrkit.fields.pe_ce import PAPER_EMBEDDING

        channels, size = PAPER_EMBEDDING.get(in_dim, PAPER_EMBEDDING[2])
        return dict(arch="pe-ce", in_dim=in_dim, out_dim=out_dim, width=width, depth=depth, frequencies=frequencies,
                    **per_layer, ce_channels=ce_channels or channels, ce_size=ce_size or size)
    if arch == "loe":
        from inrkit.fields.loe import LoEField

        affines = None
        if scales is not None:  # A_i = s_i I, b_i = 0
            affines = [[(float(s) * torch.eye(in_dim)).tolist(), [0.0] * in_dim] for s in scales]
            arrangement = "explicit"
        return LoEField(in_dim=in_dim, out_dim=out_dim, width=width, depth=depth, tile=tile, blend=blend,
                        arrangement=arrangement, resolution=resolution, frequencies=frequencies, seed=seed,
                        affines=affines, widths=widths, tiles=tiles).config
    raise InrkitError(f"unknown --arch {arch!r}; choose siren, pe, pe-ce or loe.")


def _per_layer(cfg: FitConfig) -> dict:
    """--widths, --tiles and --scales as lists (None where not given), each with depth - 1 values: one per hidden
    layer, one per position-dependent layer (checked before anything is loaded or written)."""
    lists = dict(widths=parse_numbers("--widths", cfg.widths, int, 1),
                 tiles=parse_numbers("--tiles", cfg.tiles, int, 2),
                 scales=parse_numbers("--scales", cfg.scales, float, 0.0))
    for name, values in lists.items():
        if values is not None and len(values) != cfg.depth - 1:
            raise InrkitError(f"--{name} needs depth - 1 = {cfg.depth - 1} values (--depth {cfg.depth}), got "
                              f"{len(values)}: {','.join(f'{v:g}' for v in values)}.")
    return lists


def parse_numbers(flag: str, value, kind: type, low: float) -> list | None:
    """'4,8,32' (the command line) or [4, 8, 32] (a recipe) -> a list of `kind` values >= low; None stays None."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else None
    try:
        numbers = [kind(v) if isinstance(v, str) else v for v in items]
        ok = bool(numbers) and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= low
                                   and (kind is float or float(v).is_integer()) for v in numbers)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        what = "integers" if kind is int else "numbers"
        raise InrkitError(f"{flag} takes comma-separated {what} of at least {low:g}, got {value!r}.")
    return [kind(v) for v in numbers]


def fit(signal: str, out: Path, **options) -> dict:
    """Fit the signal (rerunning resumes from the run folder's state) and write the artifact; return its metrics.
    `options` are FitConfig's fields (inrkit/stages/configs.py)."""
    cfg = build(FitConfig, signal=signal, out=Path(out), **options)
    _check_options(cfg)
    size = parse_size(cfg.size) if isinstance(cfg.size, str) else cfg.size
    target = load_signal(signal, tuple(size) if size else None)
    dev = pick_device(cfg.device)
    objective = _setup(cfg, target.to(dev))
    run = Run(run_dir=cfg.out.with_suffix(""), training=resume_options(cfg), device=dev, progress=cfg.progress,
              retry=f"a lower --lr (e.g. {_lr(cfg) / 2:g})")
    pos = resume(objective, run)
    schedule = Schedule(total_images=cfg.steps, batch=1, tick_images=cfg.tick, snapshot_images=cfg.snapshot,
                        seconds=cfg.seconds, unit="step")
    pos = training_loop(objective, lambda start: repeat_forever(), schedule, run, cfg.out, pos)
    metrics = artifacts.read(cfg.out, kind=KIND).metrics
    print0(f"PSNR {metrics['psnr']:.2f} dB  SSIM {metrics['ssim']:.4f}  params {metrics['params']:,}  "
           f"MACs/sample {metrics['macs_per_sample']:,}  {time.perf_counter() - run.started:.1f} s")
    print0(f"wrote {cfg.out} and pictures in {run.run_dir}/")
    return metrics


def _check_options(cfg: FitConfig) -> None:
    require_writable(cfg.out, ".safetensors")
    require_at_least(1, steps=cfg.steps, tick=cfg.tick, snapshot=cfg.snapshot)
    require_positive(seconds=cfg.seconds)
    require_choice("arch", cfg.arch, tuple(DEFAULT_LR))
    per_arch = dict(widths=("pe", "pe-ce", "loe"), tiles=("loe",), scales=("loe",), ce_channels=("pe-ce",),
                    ce_size=("pe-ce",))
    for name, archs in per_arch.items():
        if getattr(cfg, name) is not None and cfg.arch not in archs:
            raise InrkitError(f"--{name.replace('_', '-')} applies to --arch {' | '.join(archs)}, not {cfg.arch}; "
                              "leave it out.")
    require_at_least(1, ce_channels=cfg.ce_channels)
    require_at_least(2, ce_size=cfg.ce_size)
    _per_layer(cfg)
    _betas(cfg)


def _betas(cfg: FitConfig) -> tuple[float, float]:
    return DEFAULT_BETAS if cfg.betas is None else parse_betas("--betas", cfg.betas)


def _lr(cfg: FitConfig) -> float:
    return DEFAULT_LR[cfg.arch] if cfg.lr is None else cfg.lr


def config_for(cfg: FitConfig, shape: tuple[int, ...], channels: int) -> dict:
    """The field config `fit` builds for a signal of `shape` (frames, H, W or H, W) and `channels`; the grid scales
    stop at the larger spatial side (Table 6's dagger). bench/loe_counts.py counts the recipes through it."""
    return field_config(cfg.arch, len(shape), channels, max(shape[-2:]), cfg.width, cfg.depth, cfg.tile, cfg.blend,
                        cfg.arrangement, cfg.frequencies, cfg.w0, cfg.seed, **_per_layer(cfg),
                        ce_channels=cfg.ce_channels, ce_size=cfg.ce_size)


def _setup(cfg: FitConfig, target: torch.Tensor) -> FitObjective:
    """The field (seeded), Adam (--betas, default supp. A's (0.9, 0.995)) with one step decay, as the objective."""
    seed_all(cfg.seed)
    field = build_field(config_for(cfg, tuple(target.shape[:-1]), target.shape[-1])).to(target.device)
    lr = _lr(cfg)
    opt = torch.optim.Adam(field.parameters(), lr=lr, betas=_betas(cfg))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, step_decay(cfg.steps, cfg.lr_decay, cfg.lr_decay_at))
    options = dict(options_of(cfg), lr=lr)
    return FitObjective(field=field, target=target, optimizer=opt, scheduler=sched, batch_pixels=cfg.batch_pixels,
                        seed=cfg.seed, snapshot_hook=lambda pos: _snapshot(cfg, field, target, options, pos),
                        precision=resolve_precision(cfg.precision, target.device), compile=cfg.compile)


def _snapshot(cfg: FitConfig, field, target: torch.Tensor, options: dict, pos: dict) -> None:
    """The field artifact with its reconstruction metrics, and the pictures beside it."""
    shape, channels = tuple(target.shape[:-1]), target.shape[-1]
    recon = evaluate(field, shape, device=target.device)
    target = target.cpu()
    metrics = dict(psnr=psnr(recon.clamp(0, 1), target), ssim=ssim(recon.clamp(0, 1), target),
                   params=sum(p.numel() for p in field.parameters()), macs_per_sample=field.macs_per_sample(),
                   steps=pos["step"])
    signal_info = dict(source=cfg.signal, shape=list(shape), channels=channels, video=len(shape) == 3)
    artifacts.save(cfg.out, artifacts.Artifact(kind=KIND, tensors=field.state_dict(),
                                               config=dict(field=field.config, signal=signal_info),
                                               options=options, metrics=metrics))
    _write_pictures(cfg.out.with_suffix(""), target, recon)


def _write_pictures(run_dir: Path, target: torch.Tensor, recon: torch.Tensor) -> None:
    """target | reconstruction (middle frame for video, plus a GIF), and the PSNR curve (from stats.jsonl)."""
    recon = recon.clamp(0, 1)
    if target.dim() == 4:
        save_gif(run_dir / "reconstruction.gif", recon)
        target, recon = target[len(target) // 2], recon[len(recon) // 2]
    save_png(run_dir / "compare.png", side_by_side(target.cpu(), recon))
    lines = (run_dir / "stats.jsonl").read_text().splitlines() if (run_dir / "stats.jsonl").is_file() else []
    history = [json.loads(line) for line in lines if line.strip()]
    if history:
        plot_curve(run_dir / "psnr.png", [h["step"] for h in history], [h["psnr"] for h in history], "step",
                   "training PSNR (dB)", "fit")
