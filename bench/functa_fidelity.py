"""Spatial functa fidelity, before and after issue 11's fixes, on one held-out split (issue 11, item 9).

Each variant is meta-learned on builtin:photos at 32x32 (the same 1,000 training and 256 held-out crops as
bench/functa.py, the same small SIREN and optimiser, and the same budget: --steps outer steps, or --minutes of
training when --steps is 0 (a step budget is fair on a shared machine; a time budget favours the faster model))
and scored on the held-out crops:
  - PSNR after 3 inner steps (what a functaset stores) and with zero latents (0 steps): their gap is how much the
    latents carry; a model that ignores its latents has a gap near 0;
  - the share of the 3-step gain kept when the latents are quantised to 6 bits (App. C.4.4).
The variants cross the SIREN input (App. C as written, `unit`: patch coordinates in [0, 1] or bits in {0, 1};
`signed`: mapped to [-1, 1], inrkit before the fix) with the bias initialisation (B.1: zero, as the functa code;
`uniform`: Sitzmann et al.), for nearest and bilinear reads, and bilinear at Tab. 4's relative outer rate
(linear 1e-4 against 1-NN 3e-5: x3.3). One JSON line per variant, then a markdown table.

    OMP_NUM_THREADS=1 .venv/bin/python bench/functa_fidelity.py --steps 500 --only nearest-before,nearest-after
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

import inrkit
from inrkit.core import artifacts
from inrkit.data import open_dataset
from inrkit.stages.encode import quantize, reconstruction_psnr
from inrkit.stages.meta import meta

VARIANTS = {
    "nearest-before": dict(interp="nearest", coords="signed", siren_bias="uniform"),
    "nearest-after": dict(interp="nearest", coords="unit", siren_bias="zero"),
    "bilinear-before": dict(interp="bilinear", coords="signed", siren_bias="uniform"),
    "bilinear-unit": dict(interp="bilinear", coords="unit", siren_bias="uniform"),
    "bilinear-zero-bias": dict(interp="bilinear", coords="signed", siren_bias="zero"),
    "bilinear-after": dict(interp="bilinear", coords="unit", siren_bias="zero"),
    "bilinear-after-lr": dict(interp="bilinear", coords="unit", siren_bias="zero", lr_scale=10 / 3),
}


def run(name: str, args, out_dir: Path, held) -> dict:
    v = dict(VARIANTS[name])
    lr = args.lr * v.pop("lr_scale", 1.0)
    out = out_dir / f"{name}.safetensors"
    shutil.rmtree(out.with_suffix(""), ignore_errors=True)  # a fresh run, not a resume
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    m = meta("builtin:photos", out, arch="spatial-functa", latent="8x8x16", resolution=32, width=args.width,
             depth=args.depth, w0=10.0, lr=lr, batch=args.batch, steps=args.steps or 10**9,
             seconds=None if args.steps else args.minutes * 60,
             snapshot=10**9, count=args.train_count, heldout_count=args.heldout_count, workers=0, seed=0,
             device="cpu", progress=False, **v)
    model = inrkit.load(out)
    fs = artifacts.read(out.with_suffix("") / "functaset-heldout.safetensors", kind="functaset")
    latents = fs.tensors["latents"]
    with torch.no_grad():
        three = reconstruction_psnr(model, latents, held).mean().item()
        zero = reconstruction_psnr(model, torch.zeros_like(latents), held).mean().item()
        six = reconstruction_psnr(model, quantize(latents, 6)[3], held).mean().item()
    return dict(variant=name, **VARIANTS[name], lr=lr, steps=m["step"], train_seconds=round(m["run_seconds"]),
                heldout_psnr_3_steps=three, heldout_psnr_zero_latents=zero, latent_gain_db=three - zero,
                heldout_psnr_6_bits=six, train_psnr=m["train_psnr"], wall_seconds=round(time.perf_counter() - start))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=500, help="outer steps per variant (0: use --minutes)")
    ap.add_argument("--minutes", type=float, default=3.0, help="training time per variant when --steps is 0")
    ap.add_argument("--only", default=",".join(VARIANTS))
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--train-count", type=int, default=1000)
    ap.add_argument("--heldout-count", type=int, default=256)
    ap.add_argument("--out", type=Path, default=Path("out/bench/fidelity"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    held = open_dataset("builtin:photos", 32, split="heldout", count=args.heldout_count)
    rows = []
    for name in args.only.split(","):
        rows.append(run(name, args, args.out, held))
        print(json.dumps(rows[-1]), flush=True)
    print("\n| variant | SIREN input | biases | outer lr | steps | held-out PSNR, 3 steps | zero latents | "
          "gain from latents | 6-bit latents |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['variant']} | {r['coords']} | {r['siren_bias']} | {r['lr']:.2g} | {r['steps']} | "
              f"{r['heldout_psnr_3_steps']:.2f} | {r['heldout_psnr_zero_latents']:.2f} | {r['latent_gain_db']:.2f} | "
              f"{r['heldout_psnr_6_bits']:.2f} |")


if __name__ == "__main__":
    main()
