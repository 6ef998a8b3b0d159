"""FID feature extraction rate on this machine: images/s of clean resize + Inception, by input size.

For each input size (default 64x64 and 256x256 uint8 RGB, random-walk textures), batches of --batch images go
through exactly what `inrkit fid` runs: clean-fid's "clean" resize to 299x299 (inrkit.metrics.fid.clean_resize)
and the TorchScript FID Inception (load_inception), timed separately. The machine is shared and noisy, so the
sizes alternate batch by batch (side by side) over --rounds rounds after one warm-up batch, and the table gives
the overall rate and the median per-batch rate.

Usage: .venv/bin/python bench/fid_rate.py [--sizes 64 256] [--batch 16] [--rounds 4] [--device cpu]
Prints a markdown table and writes bench/results/fid_rate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from inrkit.metrics.fid import clean_resize, load_inception

OUT = Path(__file__).resolve().parent / "results" / "fid_rate.json"


def textures(count: int, size: int, seed: int) -> torch.Tensor:
    """uint8 (count, 3, size, size) random-walk textures (image-like, not white noise)."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(0, 12, (count, 3, size, size)), axis=2) + 128
    return torch.from_numpy(np.clip(walk, 0, 255).astype(np.uint8))


def timed_batch(pixels: torch.Tensor, model, device: torch.device) -> tuple[float, float]:
    """Seconds spent resizing and in Inception for one batch."""
    start = time.perf_counter()
    batch = torch.stack([clean_resize(p) for p in pixels])
    resized = time.perf_counter()
    with torch.no_grad():
        model(batch.to(device)).cpu()
    return resized - start, time.perf_counter() - resized


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    model = load_inception(str(device))
    load_before = os.getloadavg()
    timed_batch(textures(4, args.sizes[0], 99), model, device)  # warm-up: TorchScript profiling runs
    times = {s: [] for s in args.sizes}
    for r in range(args.rounds):
        for s in args.sizes:
            times[s].append(timed_batch(textures(args.batch, s, r), model, device))
    rows = []
    for s in args.sizes:
        resize, inception = (sum(t[i] for t in times[s]) for i in (0, 1))
        count, seconds = args.batch * args.rounds, resize + inception
        median = statistics.median(args.batch / (a + b) for a, b in times[s])
        rows.append(dict(input=f"{s}x{s}", images=count, batch=args.batch, seconds=round(seconds, 2),
                         images_per_s=round(count / seconds, 3), median_batch_images_per_s=round(median, 3),
                         resize_share=round(resize / seconds, 4)))
    print("| input | images | batch | seconds | images/s | median batch images/s | resize share |\n"
          "|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['input']} | {row['images']} | {row['batch']} | {row['seconds']} | {row['images_per_s']} | "
              f"{row['median_batch_images_per_s']} | {row['resize_share']:.1%} |")
    result = dict(command="python bench/fid_rate.py " + " ".join(f"--{k} {v}" if not isinstance(v, list) else
                                                                 f"--{k} {' '.join(map(str, v))}"
                                                                 for k, v in vars(args).items()),
                  device=str(device), cpu=platform.processor() or platform.machine(), cpus=os.cpu_count(),
                  torch=torch.__version__, torch_threads=torch.get_num_threads(),
                  load_average_before=[round(x, 2) for x in load_before],
                  load_average_after=[round(x, 2) for x in os.getloadavg()], rows=rows)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
