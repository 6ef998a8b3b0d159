"""Latent projection (inrkit.metrics.projection, the StyleGAN2 projector) on a small untrained 32x32 generator.

1. Speed: steps/s for a batch of --batch images with and without the perceptual (Inception) distance, measured
   side by side: --rounds rounds of --round-steps steps each, alternating, after one warm-up round each.
2. Error curves: the pixel MSE (images in [-1, 1]) at the first, middle and last of --steps steps, projecting
   the generator's own samples (seeds 0..batch-1 of sample_latents, seed 5) in w and z, pixel MSE alone, for
   the default fourier_scale (10) and for fourier_scale 1 (a random generator with default-scale Fourier
   frequencies predicted from w is an erratic function of w); --perceptual-curve adds the w curve with the
   perceptual distance (slow on CPU: ~2 steps/s).

Usage: .venv/bin/python bench/projection.py [--batch 8] [--steps 1000] [--perceptual-curve] [--device cpu]
Prints markdown tables and writes bench/results/projection.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from inrkit.metrics.projection import project
from inrkit.models.inrgan import InrGanGenerator
from inrkit.models.sampling import sample_latents

OUT = Path(__file__).resolve().parent / "results" / "projection.json"
CONFIG = dict(resolution=32, blocks=[[16, 2, 64], [32, 2, 64]], z_dim=64, hyper_hidden=128, hyper_layers=2, fmm_rank=4)


def generator(fourier_scale: float, device: torch.device) -> InrGanGenerator:
    torch.manual_seed(0)
    return InrGanGenerator(dict(CONFIG, fourier_scale=fourier_scale)).to(device).eval()


@torch.no_grad()
def own_samples(G, count: int) -> torch.Tensor:
    z = sample_latents(G.config["z_dim"], 0, count, seed=5).to(G.w_avg.device)
    return G(z, update_w_avg=False).clamp(-1, 1)


def speed(G, targets, rounds: int, steps: int) -> list[dict]:
    times = {True: [], False: []}
    for r in range(rounds + 1):
        for perceptual in (False, True):
            start = time.perf_counter()
            project(G, targets, steps=steps, perceptual=perceptual, batch=len(targets), progress=False)
            if r:  # round 0 warms up (Inception load, TorchScript profiling)
                times[perceptual].append(steps / (time.perf_counter() - start))
    return [dict(perceptual=p, batch=len(targets), steps_per_s=round(statistics.median(t), 3),
                 rounds=[round(x, 3) for x in t]) for p, t in times.items()]


def curve(G, targets, space: str, steps: int, perceptual: bool, fourier_scale: float) -> dict:
    start = time.perf_counter()
    p = project(G, targets, space=space, steps=steps, perceptual=perceptual, batch=len(targets), progress=False)
    h = p.history
    return dict(fourier_scale=fourier_scale, space=space, perceptual=perceptual, steps=steps,
                first=round(h[0], 5), mid=round(h[len(h) // 2], 5), last=round(h[-1], 5),
                final_mean=round(p.errors.mean().item(), 5), final_max=round(p.errors.max().item(), 5),
                seconds=round(time.perf_counter() - start, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--round-steps", type=int, default=10)
    parser.add_argument("--perceptual-curve", action="store_true")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    load_before = os.getloadavg()
    G = generator(10.0, device)
    speeds = speed(G, own_samples(G, args.batch), args.rounds, args.round_steps)
    curves = []
    for scale in (10.0, 1.0):
        G = generator(scale, device)
        targets = own_samples(G, args.batch)
        for space in ("w", "z"):
            curves.append(curve(G, targets, space, args.steps, False, scale))
        if args.perceptual_curve:
            curves.append(curve(G, targets, "w", args.steps, True, scale))
    print("| perceptual | batch | steps/s (median) | rounds |\n|---|---|---|---|")
    for s in speeds:
        print(f"| {s['perceptual']} | {s['batch']} | {s['steps_per_s']} | {s['rounds']} |")
    print("\n| fourier_scale | space | perceptual | steps | MSE first | mid | last | final mean | final max | s |\n"
          "|---|---|---|---|---|---|---|---|---|---|")
    for c in curves:
        print(f"| {c['fourier_scale']:g} | {c['space']} | {c['perceptual']} | {c['steps']} | {c['first']} | "
              f"{c['mid']} | {c['last']} | {c['final_mean']} | {c['final_max']} | {c['seconds']} |")
    command = "python bench/projection.py " + " ".join(
        f"--{k.replace('_', '-')}" + ("" if isinstance(v, bool) else f" {v}")
        for k, v in vars(args).items() if v is not False)
    result = dict(command=command, generator=CONFIG, device=str(device),
                  cpu=platform.processor() or platform.machine(), cpus=os.cpu_count(), torch=torch.__version__,
                  torch_threads=torch.get_num_threads(), load_average_before=[round(x, 2) for x in load_before],
                  load_average_after=[round(x, 2) for x in os.getloadavg()], speed=speeds, curves=curves)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
