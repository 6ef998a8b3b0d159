"""Accelerated low-resolution inference (INR-GAN Sec. 4.2, Fig. 9): a 256^2 generator rendered at 64^2.

The paper's 256^2 recipe (random weights: the cost does not depend on them) renders the same --images seeds at
256x256 and at 64x64, the way `inrkit render GENERATOR --size 64` does (every block on its own sparser grid;
seeds mapped and rendered one by one). Timings alternate between the two sizes for --rounds rounds, each the
best of --repeats after a warm-up, on one process. Prediction: time(64) = time(256) x MACs(64) / MACs(256),
MACs per image counted in closed form (mapping network and hypernetwork head included; they do not shrink).
Headline: measured time(64) / predicted time(64), the median over rounds (target <= 1.3).

Usage: .venv/bin/python bench/lowres_inference.py [--rounds 3] [--out bench/results/lowres_inference.json]
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

from inrkit.models.inrgan import InrGanGenerator, generator_config
from inrkit.models.sampling import render_params, seed_params


def timed(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--low", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/results/lowres_inference.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    G = InrGanGenerator(generator_config(resolution=256)).eval()
    thetas = seed_params(G, list(range(args.images)), 1.0)
    full, low = (256, 256), (args.low, args.low)
    macs = {s: G.macs_per_image(s) for s in (full, low)}

    def render_at(shape):
        return lambda: render_params(G, thetas, shape, None, None)

    with torch.no_grad():
        render_at(low)()
        render_at(full)()
        rounds = []
        for r in range(args.rounds):
            t_full, t_low = timed(render_at(full), args.repeats), timed(render_at(low), args.repeats)
            predicted = t_full * macs[low] / macs[full]
            rounds.append(dict(round=r + 1, seconds_256=t_full, seconds_low=t_low, predicted_low=predicted,
                               measured_over_predicted=t_low / predicted, speedup=t_full / t_low))
            print(f"round {r + 1}: 256x256 {t_full:.3f} s, {args.low}x{args.low} {t_low:.4f} s "
                  f"(predicted {predicted:.4f} s): measured/predicted {t_low / predicted:.3f}, "
                  f"speed-up {t_full / t_low:.1f}x")
    result = dict(
        images=args.images, low=args.low, macs_256=macs[full], macs_low=macs[low],
        mac_ratio=macs[full] / macs[low], rounds=rounds,
        median_measured_over_predicted=statistics.median(x["measured_over_predicted"] for x in rounds),
        median_speedup=statistics.median(x["speedup"] for x in rounds),
        threads=torch.get_num_threads(), torch=torch.__version__, machine=platform.machine(),
        load_average=os.getloadavg(),
    )
    print(f"MACs per image: {macs[full] / 1e9:.2f} G at 256x256, {macs[low] / 1e9:.3f} G at {args.low}x{args.low} "
          f"({result['mac_ratio']:.1f}x fewer); median measured/predicted "
          f"{result['median_measured_over_predicted']:.3f}, median speed-up {result['median_speedup']:.1f}x; "
          f"load average {result['load_average'][0]:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
