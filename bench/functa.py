"""Spatial functa on a CPU: builtin:photos at 32x32, three latents, one training-time budget each.

1. Meta-learning (the `meta` stage) for 8x8x16 nearest, 8x8x16 bilinear and a flat 1024-d functa, with the same
   SIREN and optimiser, each for --minutes of training; then the stage encodes the training and held-out sets
   (3 inner steps from zero). Table 1: held-out mean PSNR after 3 steps, with the budget (steps, images, s).
2. Efficiency: freshly initialised per-image SIRENs (same width and depth, omega_0 = 30, Adam, the full grid
   every step) fitted to the first --fit-images held-out images; for each image and each model, the optimisation
   steps (and seconds) until the SIREN's PSNR reaches that image's 3-step functa PSNR.
3. Encoding throughput: images/s of the 3-step inner loop at batch 64 on preloaded 32x32 images, and the
   seconds to encode one image alone.
4. Quantisation (App. C.4.4): held-out PSNR with each latent dimension quantised uniformly to 8, 7, 6 bits.

All timings come from this one run on a shared, noisy machine (see `load` in the JSON). PSNRs are of the
reconstruction clamped to [0, 1], on images in [0, 1].

Usage: .venv/bin/python bench/functa.py [--minutes 7] [--threads 1] [--only nearest,bilinear,flat]
Writes bench/results/functa.json and the runs under out/bench/functa/; prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import torch

import inrkit
from inrkit.core import artifacts
from inrkit.data import open_dataset
from inrkit.fields.siren import Siren
from inrkit.metrics.image import psnr
from inrkit.models.metalearn import encode, image_targets
from inrkit.stages.encode import quantize, reconstruction_psnr
from inrkit.stages.meta import meta

CONFIGS = {
    "nearest": dict(arch="spatial-functa", latent="8x8x16", interp="nearest"),
    "bilinear": dict(arch="spatial-functa", latent="8x8x16", interp="bilinear"),
    "flat": dict(arch="functa", latent="1024", interp="nearest"),
}
LABELS = {"nearest": "8x8x16 nearest", "bilinear": "8x8x16 bilinear", "flat": "1024 flat (functa)"}


def train(name: str, args, out_dir: Path) -> dict:
    """Meta-learn one configuration for the time budget; the stage also writes both functasets."""
    out = out_dir / f"{name}.safetensors"
    shutil.rmtree(out.with_suffix(""), ignore_errors=True)  # a fresh run, not a resume
    out.unlink(missing_ok=True)
    m = meta("builtin:photos", out, **CONFIGS[name], resolution=32, width=args.width, depth=args.depth, w0=args.w0,
             lr=args.lr, batch=args.batch, steps=10**9, seconds=args.minutes * 60, snapshot=10**9,
             count=args.train_count, heldout_count=args.heldout_count, workers=0, seed=0, device="cpu",
             progress=False)
    held = artifacts.read(out.with_suffix("") / "functaset-heldout.safetensors", kind="functaset")
    return dict(config=name, label=LABELS[name], steps=m["step"], images_seen=m["step"] * args.batch,
                train_seconds=round(m["run_seconds"], 1), heldout_psnr=held.metrics["psnr"],
                train_psnr=m["train_psnr"], heldout_count=held.metrics["count"], out=str(out))


def throughput(model, images: torch.Tensor, repeats: int = 3) -> tuple[float, float]:
    """(images/s at batch len(images), seconds for one image alone), best of `repeats`."""
    batch_s, one_s = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        encode(model, images, 3)
        batch_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        encode(model, images[:1], 3)
        one_s.append(time.perf_counter() - t)
    return len(images) / min(batch_s), min(one_s)


def quantisation(model, latents: torch.Tensor, dataset) -> dict:
    """Held-out mean PSNR at 32 bits (as stored) and quantised to 8, 7, 6 bits per latent dimension."""
    table = {"32": reconstruction_psnr(model, latents, dataset).mean().item()}
    for bits in (8, 7, 6):
        table[str(bits)] = reconstruction_psnr(model, quantize(latents, bits)[3], dataset).mean().item()
    return table


def fit_curve(image: torch.Tensor, width: int, depth: int, lr: float, steps: int, seed: int) -> tuple[list, float]:
    """A fresh SIREN fitted to one image (C, H, W) in [-1, 1]: (clamped PSNR before each update, s per update)."""
    torch.manual_seed(seed)
    targets, coords = image_targets(image[None])
    target = targets[0]
    siren = Siren(in_dim=2, out_dim=image.shape[0], width=width, depth=depth, w0_first=30.0, w0_hidden=30.0)
    opt = torch.optim.Adam(siren.parameters(), lr=lr)
    curve = []
    start = time.perf_counter()
    for _ in range(steps + 1):
        pred = siren(coords)
        curve.append(psnr(pred.clamp(0, 1), target))  # no_grad inside; float64 log of the float32 MSE
        loss = ((pred - target) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return curve, (time.perf_counter() - start) / (steps + 1)


def steps_to_reach(curve: list, target: float) -> int | None:
    """Updates done before the SIREN first reaches `target` dB (None: not within the budget)."""
    return next((k for k, p in enumerate(curve) if p >= target), None)


def efficiency(results: dict, held_images: torch.Tensor, args) -> dict:
    """Per image and per model: SIREN steps and seconds to match the 3-step functa PSNR of that image."""
    n = min(args.fit_images, len(held_images))
    out = {}
    for lr in args.fit_lrs:
        curves, sec = [], []
        for i in range(n):
            c, s = fit_curve(held_images[i], args.width, args.depth, lr, args.fit_steps, seed=i)
            curves.append(c)
            sec.append(s)
        per_step = sum(sec) / len(sec)
        rows = {}
        for name, r in results.items():
            targets = r["heldout_item_psnr"][:n]
            needed = [steps_to_reach(c, t) for c, t in zip(curves, targets, strict=True)]
            reached = sorted(k for k in needed if k is not None)
            rows[name] = dict(target_psnr=sum(targets) / n, reached=len(reached), images=n,
                              median_steps=reached[len(reached) // 2] if len(reached) * 2 > n else None,
                              mean_steps_reached=sum(reached) / len(reached) if reached else None,
                              steps=needed)
            if rows[name]["median_steps"] is not None:
                rows[name]["median_seconds"] = rows[name]["median_steps"] * per_step
        out[str(lr)] = dict(seconds_per_step=per_step, final_psnr=sum(c[-1] for c in curves) / n,
                            max_steps=args.fit_steps, models=rows)
    return out


def print_tables(report: dict) -> None:
    cfg = report["settings"]
    print(f"\n### Held-out PSNR after 3 inner steps (builtin:photos 32x32, {cfg['heldout_count']} held-out images; "
          f"SIREN {cfg['width']}x{cfg['depth']}, w0 {cfg['w0']}, Adam {cfg['lr']}, batch {cfg['batch']}, "
          f"{cfg['threads']} CPU thread)\n")
    print("| latent | held-out PSNR (dB) | train PSNR (dB) | outer steps | images seen | training s |")
    print("|---|---|---|---|---|---|")
    for r in report["runs"].values():
        print(f"| {r['label']} | {r['heldout_psnr']:.2f} | {r['train_psnr']:.2f} | {r['steps']} | "
              f"{r['images_seen']} | {r['train_seconds']:.0f} |")
    print("\n### Encoding throughput (3 inner steps, 32x32, CPU)\n")
    print("| latent | images/s at batch 64 | s for one image alone |")
    print("|---|---|---|")
    for r in report["runs"].values():
        print(f"| {r['label']} | {r['images_per_second']:.1f} | {r['seconds_one_image']:.3f} |")
    print("\n### Quantisation (App. C.4.4): held-out PSNR (dB) by bits per latent dimension\n")
    print("| latent | 32 | 8 | 7 | 6 |")
    print("|---|---|---|---|---|")
    for r in report["runs"].values():
        q = r["quantisation"]
        print(f"| {r['label']} | {q['32']:.2f} | {q['8']:.2f} | {q['7']:.2f} | {q['6']:.2f} |")
    for lr, e in report["efficiency"].items():
        print(f"\n### Per-image SIREN (fresh, Adam lr {lr}, {e['seconds_per_step'] * 1000:.1f} ms/step) vs "
              f"the 3-step encoding, first {cfg['fit_images']} held-out images (max {e['max_steps']} steps; "
              f"SIREN PSNR at the end {e['final_psnr']:.2f} dB)\n")
        print("| latent | 3-step PSNR (dB) | images reached | median SIREN steps | median SIREN s | "
              "3-step encode s (one image) |")
        print("|---|---|---|---|---|---|")
        for name, row in e["models"].items():
            med = row["median_steps"]
            sec = f"{row['median_seconds']:.2f}" if med is not None else "-"
            print(f"| {report['runs'][name]['label']} | {row['target_psnr']:.2f} | {row['reached']}/{row['images']} "
                  f"| {med if med is not None else '>' + str(e['max_steps'])} | {sec} | "
                  f"{report['runs'][name]['seconds_one_image']:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=7.0, help="training time per configuration")
    ap.add_argument("--only", default=",".join(CONFIGS))
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--w0", type=float, default=10.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--train-count", type=int, default=1000)
    ap.add_argument("--heldout-count", type=int, default=256)
    ap.add_argument("--fit-images", type=int, default=16)
    ap.add_argument("--fit-steps", type=int, default=2000)
    ap.add_argument("--fit-lrs", type=float, nargs="+", default=[1e-4, 1e-3])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is faster than 2 on a busy 2-core box)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out_dir = Path("out/bench/functa")
    load_before = os.getloadavg()
    held = open_dataset("builtin:photos", 32, split="heldout", count=args.heldout_count)
    held_images = torch.stack([held[i][0] for i in range(len(held))])
    runs = {}
    for name in args.only.split(","):
        r = train(name, args, out_dir)
        model = inrkit.load(r["out"])
        fs = artifacts.read(Path(r["out"]).with_suffix("") / "functaset-heldout.safetensors", kind="functaset")
        r["heldout_item_psnr"] = fs.tensors["psnr"].tolist()
        r["images_per_second"], r["seconds_one_image"] = throughput(model, held_images[:64])
        r["quantisation"] = quantisation(model, fs.tensors["latents"], held)
        runs[name] = r
        print(json.dumps({k: v for k, v in r.items() if k != "heldout_item_psnr"}), flush=True)
    report = dict(
        settings=dict(vars(args), data="builtin:photos", resolution=32, inner_steps=3),
        environment=dict(torch=torch.__version__, cpu=platform.processor() or platform.machine(),
                         cpus=os.cpu_count(), threads=torch.get_num_threads(),
                         load=dict(before=load_before, after_training=os.getloadavg())),
        runs=runs,
        efficiency=efficiency(runs, held_images, args),
        command="python bench/functa.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
                                                     if not isinstance(v, list)),
    )
    report["environment"]["load"]["end"] = os.getloadavg()
    path = Path("bench/results/functa.json")
    artifacts.atomic_write_bytes(path, json.dumps(report, indent=1).encode())
    print_tables(report)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
