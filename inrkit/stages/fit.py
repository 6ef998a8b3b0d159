"""`inrkit fit`: fit one signal (image or video) with SIREN, a Fourier-feature MLP or Levels-of-Experts."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from inrkit.core import artifacts
from inrkit.core.errors import InrkitError
from inrkit.core.pictures import plot_curve, save_gif, save_png, side_by_side
from inrkit.core.progress import StatsWriter, progress_bar
from inrkit.core.runtime import pick_device, print0, seed_all
from inrkit.fields import build_field
from inrkit.fields.grid import evaluate, make_grid
from inrkit.metrics.image import psnr, ssim
from inrkit.signal import load_signal

# Learning rates when --lr is not given: LoE supp. A uses 5e-3 for PE-MLP and LoE; SIREN needs a
# smaller one to train stably (SIREN paper 1e-4; LoE supp. C uses 5e-5 for video).
DEFAULT_LR = {"loe": 5e-3, "pe": 5e-3, "siren": 1e-4}


def field_config(arch: str, in_dim: int, out_dim: int, resolution: int, width: int, depth: int, tile: int,
                 blend: str, arrangement: str, frequencies: int, w0: float, seed: int) -> dict:
    """The field config for an architecture; every field takes coordinates in [0, 1]^in_dim."""
    if arch == "siren":
        return dict(arch="siren", in_dim=in_dim, out_dim=out_dim, width=width, depth=depth, w0_first=w0,
                    w0_hidden=w0)
    if arch == "pe":
        return dict(arch="pe", in_dim=in_dim, out_dim=out_dim, width=width, depth=depth, frequencies=frequencies,
                    seed=seed)
    if arch == "loe":
        from inrkit.fields.loe import LoEField

        return LoEField(in_dim=in_dim, out_dim=out_dim, width=width, depth=depth, tile=tile, blend=blend,
                        arrangement=arrangement, resolution=resolution, frequencies=frequencies, seed=seed).config
    raise InrkitError(f"unknown --arch {arch!r}; choose siren, pe or loe.")


def fit(
    signal: str,                      # image file, folder of frames, animated GIF, or builtin:NAME
    out: Path,                        # the field artifact (.safetensors); pictures go to a folder beside it
    arch: str = "loe",                # siren | pe | loe
    width: int = 64,                  # hidden channels (LoE supp. A: 64)
    depth: int = 10,                  # linear layers in all (LoE supp. A: 10, of which 9 position-dependent)
    tile: int = 2,                    # LoE: candidates per axis, N (N^d matrices per layer)
    blend: str = "nearest",           # LoE: nearest (Eq. 5) or linear (Eq. 4)
    arrangement: str = "coarse-to-fine",  # LoE grid layout (supp. Tables 5-6)
    frequencies: int = 8,             # positional-encoding frequencies L (0 for LoE: constant input)
    w0: float = 30.0,                 # SIREN w0 for first and hidden layers
    steps: int = 2000,                # optimisation steps
    lr: float | None = None,          # Adam learning rate (default per arch, DEFAULT_LR)
    lr_decay: float = 0.1,            # multiply lr by this ...
    lr_decay_at: float = 0.5,         # ... after this fraction of steps (supp. A: 5e-3 -> 5e-4 halfway)
    batch_pixels: int = 0,            # 0: the full grid every step (supp. A); else random pixels per step
    size: tuple[int, ...] | None = None,  # resample the target to (H, W)
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
) -> dict:
    """Fit the signal and write the artifact; return its summary metrics."""
    out = Path(out)
    if steps < 1:
        raise InrkitError("--steps must be at least 1.")
    if out.suffix != ".safetensors":
        raise InrkitError(f"--out {out} should end in .safetensors.")
    target = load_signal(signal, size)
    dev = pick_device(device)
    seed_all(seed)
    shape, channels = tuple(target.shape[:-1]), target.shape[-1]
    cfg = field_config(arch, len(shape), channels, max(shape[-2:]), width, depth, tile, blend, arrangement,
                       frequencies, w0, seed)
    field = build_field(cfg).to(dev)
    lr = DEFAULT_LR[arch] if lr is None else lr
    run_dir = out.with_suffix("")
    history, seconds = _train(field, target.to(dev), steps, lr, lr_decay, lr_decay_at, batch_pixels, seed,
                              StatsWriter(run_dir / "stats.jsonl"), progress)
    recon = evaluate(field, shape, device=dev)
    metrics = dict(psnr=psnr(recon.clamp(0, 1), target), ssim=ssim(recon.clamp(0, 1), target),
                   params=sum(p.numel() for p in field.parameters()), macs_per_sample=field.macs_per_sample(),
                   seconds=seconds, steps=steps)
    signal_info = dict(source=signal, shape=list(shape), channels=channels, video=len(shape) == 3)
    options = dict(signal=signal, arch=arch, width=width, depth=depth, tile=tile, blend=blend,
                   arrangement=arrangement, frequencies=frequencies, w0=w0, steps=steps, lr=lr, lr_decay=lr_decay,
                   lr_decay_at=lr_decay_at, batch_pixels=batch_pixels, size=size, seed=seed)
    artifacts.save(out, artifacts.Artifact(kind="field", tensors=field.state_dict(),
                                           config=dict(field=field.config, signal=signal_info),
                                           options=options, metrics=metrics))
    _write_pictures(run_dir, target, recon, history)
    print0(f"PSNR {metrics['psnr']:.2f} dB  SSIM {metrics['ssim']:.4f}  params {metrics['params']:,}  "
           f"MACs/sample {metrics['macs_per_sample']:,}  {seconds:.1f} s")
    print0(f"wrote {out} and pictures in {run_dir}/")
    return metrics


def _train(field, target, steps, lr, lr_decay, lr_decay_at, batch_pixels, seed, stats, show) -> tuple[list, float]:
    """Adam (0.9, 0.995) with one step decay (LoE supp. A); returns ([(step, psnr)], seconds)."""
    shape = tuple(target.shape[:-1])
    total = target[..., 0].numel()
    full = batch_pixels <= 0 or batch_pixels >= total
    flat_target = target.reshape(total, -1)
    coords = None if full else make_grid(shape).reshape(total, -1).to(target.device)
    gen = torch.Generator(device=target.device).manual_seed(seed)
    opt = torch.optim.Adam(field.parameters(), lr=lr, betas=(0.9, 0.995))
    decay_step = int(steps * lr_decay_at)
    history, start = [], time.perf_counter()
    with progress_bar("fit", steps, enabled=show) as update:
        for step in range(1, steps + 1):
            if step == decay_step + 1:
                for group in opt.param_groups:
                    group["lr"] = lr * lr_decay
            if full:
                loss = torch.mean((field.forward_grid(shape) - target) ** 2)
            else:
                idx = torch.randint(total, (batch_pixels,), generator=gen, device=target.device)
                loss = torch.mean((field(coords[idx]) - flat_target[idx]) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value = -10 * torch.log10(loss.detach()).item()
            history.append((step, value))
            update(psnr=value)
            if step % 50 == 0 or step == steps:
                stats.write(step=step, loss=loss.item(), psnr=value, lr=opt.param_groups[0]["lr"],
                            seconds=time.perf_counter() - start)
    return history, time.perf_counter() - start


def _write_pictures(run_dir: Path, target: torch.Tensor, recon: torch.Tensor, history: list) -> None:
    """target | reconstruction (middle frame for video, plus a GIF), and the PSNR curve."""
    recon = recon.clamp(0, 1)
    if target.dim() == 4:
        save_gif(run_dir / "reconstruction.gif", recon)
        target, recon = target[len(target) // 2], recon[len(recon) // 2]
    save_png(run_dir / "compare.png", side_by_side(target.cpu(), recon))
    xs, ys = zip(*history, strict=True)
    plot_curve(run_dir / "psnr.png", xs, ys, "step", "training PSNR (dB)", "fit")
