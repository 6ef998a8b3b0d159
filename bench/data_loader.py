"""Loader throughput from shards at 64x64, and whether loading stalls a training step.

1. Packs builtin:photos crops (default 2,000 at 64x64, PNG) to shards in a temporary folder.
2. Throughput: images/s of make_loader over those shards with 0, 1 and 2 workers (batch 64,
   flips on), counted over --batches batches after --warmup batches.
3. Stall: a training loop with a fixed compute step per batch (a small conv net, forward and
   backward) fed by the loader, against the same loop on one reused batch (compute alone).
   `wait` is the time spent inside next(loader), i.e. blocked on data; `step` is the whole step,
   so it also shows decoding competing with the compute for the same cores.

This machine is shared and noisy, so every configuration runs once per round, rounds alternate
configurations side by side, and the tables give medians over --rounds rounds; the step ratio is
the median of per-round ratios to compute alone (with the same torch thread count).

Usage: .venv/bin/python bench/data_loader.py [--images 2000] [--batches 300] [--steps 60] [--rounds 3]
Prints markdown tables and writes bench/results/data_loader.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from inrkit.data import make_loader, open_dataset, pack_dataset

WORKERS = (0, 1, 2)
# (torch threads in the training process, loader workers or None for one reused batch)
STEP_CONFIGS = ((2, None), (2, 0), (2, 1), (2, 2), (1, None), (1, 1))


def throughput(dataset, workers: int, batch: int, batches: int, warmup: int) -> float:
    """Images per second of the loader alone."""
    loader = make_loader(dataset, batch, seed=0, flip=True, workers=workers)
    for _ in range(warmup):
        next(loader)
    start = time.perf_counter()
    for _ in range(batches):
        next(loader)
    return batches * batch / (time.perf_counter() - start)


def make_model() -> torch.nn.Module:
    """A small conv net (discriminator-like): a fixed, realistic amount of compute per 64x64 batch."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, 2, 1), torch.nn.LeakyReLU(0.2),
        torch.nn.Conv2d(32, 64, 3, 2, 1), torch.nn.LeakyReLU(0.2),
        torch.nn.Conv2d(64, 128, 3, 2, 1), torch.nn.LeakyReLU(0.2),
        torch.nn.Flatten(), torch.nn.LazyLinear(1),
    )


def train_steps(model, optimizer, batches, steps: int) -> tuple[float, float]:
    """(ms per step, ms per step spent waiting for data) over `steps` training steps."""
    wait = 0.0
    start = time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        images, _ = next(batches)
        wait += time.perf_counter() - t
        loss = model(images).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return 1e3 * (time.perf_counter() - start) / steps, 1e3 * wait / steps


def step_time(dataset, threads: int, workers: int | None, batch: int, steps: int) -> tuple[float, float]:
    torch.set_num_threads(threads)
    if workers is None:
        fixed = next(make_loader(dataset, batch, workers=0))
        batches = iter(lambda: fixed, None)
    else:
        batches = make_loader(dataset, batch, seed=1, flip=True, workers=workers)
    model = make_model()
    model(torch.zeros(1, 3, dataset.resolution, dataset.resolution))  # materialise the lazy layer
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    train_steps(model, optimizer, batches, 5)  # warm-up: workers start, caches fill
    return train_steps(model, optimizer, batches, steps)


def step_name(threads: int, workers: int | None) -> str:
    source = "one reused batch (compute alone)" if workers is None else f"loader, {workers} workers"
    return f"{threads} torch threads, {source}"


def measure(dataset, args) -> tuple[dict, dict]:
    """Rounds of every configuration, side by side; returns per-configuration lists."""
    rates = {w: [] for w in WORKERS}
    steps = {c: [] for c in STEP_CONFIGS}
    for r in range(args.rounds):
        for w in WORKERS:
            rates[w].append(throughput(dataset, w, args.batch, args.batches, args.warmup))
        for threads, workers in STEP_CONFIGS:
            steps[(threads, workers)].append(step_time(dataset, threads, workers, args.batch, args.steps))
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    return rates, steps


def summarise(steps: dict) -> dict[str, dict[str, float]]:
    """Median step and wait per configuration, and the median per-round ratio to compute alone."""
    table = {}
    for (threads, workers), runs in steps.items():
        alone = steps[(threads, None)]
        ratios = [s / a for (s, _), (a, _) in zip(runs, alone, strict=True)]
        table[step_name(threads, workers)] = {
            "ms_per_step": statistics.median(s for s, _ in runs),
            "ms_waiting_for_data": statistics.median(w for _, w in runs),
            "step_vs_compute_alone": statistics.median(ratios),
        }
    return table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        summary = pack_dataset(f"builtin:photos?count={args.images}", Path(tmp), args.resolution,
                               shard_size=500, workers=2, progress=False)
        pack_s = time.perf_counter() - t
        t = time.perf_counter()
        dataset = open_dataset(tmp, args.resolution)  # scans tar headers and checks each image's ends
        scan_s = time.perf_counter() - t
        rates, steps = measure(dataset, args)
    report = {
        "command": "bench/data_loader.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
                    "load_average": os.getloadavg()},
        "pack": {"images": summary.written, "seconds": pack_s, "shards": len(summary.shards),
                 "megabytes": summary.bytes / 1e6},
        "open_dataset_seconds": scan_s,
        "loader_images_per_s": {f"{w} workers": statistics.median(r) for w, r in rates.items()},
        "loader_images_per_s_rounds": {f"{w} workers": r for w, r in rates.items()},
        "training_step": summarise(steps),
    }
    print_tables(report, args)
    out = Path("bench/results/data_loader.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


def print_tables(report: dict, args) -> None:
    pack, load = report["pack"], tuple(round(x, 1) for x in report["machine"]["load_average"])
    print(f"\npack: {pack['images']} images in {pack['seconds']:.1f} s, {pack['shards']} shards, "
          f"{pack['megabytes']:.1f} MB; opening (scan) {report['open_dataset_seconds']:.2f} s; "
          f"load average (1, 5, 15 min) {load}\n")
    print(f"| loader, {args.resolution}x{args.resolution} PNG shards, batch {args.batch} | images/s (median) |")
    print("|---|---:|")
    for name, rate in report["loader_images_per_s"].items():
        print(f"| {name} | {rate:,.0f} |")
    print("\n| training loop | ms/step | ms/step waiting for data | step vs compute alone |\n|---|---:|---:|---:|")
    for name, r in report["training_step"].items():
        print(f"| {name} | {r['ms_per_step']:.1f} | {r['ms_waiting_for_data']:.2f} | "
              f"{r['step_vs_compute_alone']:.2f}x |")


if __name__ == "__main__":
    main()
