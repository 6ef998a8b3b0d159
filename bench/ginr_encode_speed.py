"""Encoding throughput: a GINR model's single forward pass against spatial functa's 3 inner steps.

Both models come from bench/ginr_table3.py (out/bench/ginr_table3/full.safetensors and functa.safetensors),
the images are the first --count held-out builtin:photos crops at 32x32, preloaded; one torch thread, one
process, the timings interleaved (GINR, functa, GINR, ...) so that both see the same load. Per model:
  tokens / latents only   GINR: encoder forward; functa: 3 inner SGD steps from zero (metalearn.inner_loop)
  with the PSNR           what `inrkit encode` also does per item: decode on the grid and score
images/s at batch --batch (best of --repeats) and seconds for one image alone (best of --repeats).

Usage: OMP_NUM_THREADS=1 .venv/bin/python bench/ginr_encode_speed.py [--count 256 --batch 64 --repeats 5]
Writes bench/results/ginr_encode_speed.json; prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from inrkit.core import artifacts
from inrkit.data import open_dataset
from inrkit.metrics.image import psnr_per_item
from inrkit.models import functa_family, ginr_family
from inrkit.models.metalearn import encode, image_targets, inner_loop

RUNS = Path("out/bench/ginr_table3")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=256)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ginr_path, functa_path = RUNS / "full.safetensors", RUNS / "functa.safetensors"
    ginr = ginr_family.build_model(artifacts.read(ginr_path), ginr_path).eval()
    functa = functa_family.build_model(artifacts.read(functa_path), functa_path).eval()
    held = open_dataset("builtin:photos", 32, 3, split="heldout", count=args.count)
    images = torch.stack([held[i][0] for i in range(len(held))])
    _, coords = image_targets(images[:1])

    @torch.no_grad()
    def ginr_tokens(x):
        return ginr.encode(x)

    @torch.no_grad()
    def ginr_psnr(x):
        targets, coords = image_targets(x)
        return psnr_per_item(ginr(ginr.encode(x), coords).clamp(0, 1), targets)

    def functa_latents(x):
        targets, coords = image_targets(x)
        return inner_loop(functa, targets, coords, 3, differentiable=False)[0]

    def functa_psnr(x):
        return encode(functa, x, 3)[1]

    fns = {"GINR tokens (1 forward)": ginr_tokens, "GINR + PSNR": ginr_psnr,
           "spatial functa latents (3 steps)": functa_latents, "spatial functa + PSNR": functa_psnr}
    batches = [images[a:a + args.batch] for a in range(0, len(images), args.batch)]
    best = {k: dict(batch_s=float("inf"), one_s=float("inf")) for k in fns}
    for fn in fns.values():
        fn(images[:2])  # warm-up
    for _ in range(args.repeats):
        for name, fn in fns.items():  # interleaved: the same load for all
            t = time.perf_counter()
            for x in batches:
                fn(x)
            best[name]["batch_s"] = min(best[name]["batch_s"], time.perf_counter() - t)
            t = time.perf_counter()
            fn(images[:1])
            best[name]["one_s"] = min(best[name]["one_s"], time.perf_counter() - t)
    rows = {k: dict(images_per_s=len(images) / v["batch_s"], one_image_s=v["one_s"]) for k, v in best.items()}
    psnr = dict(ginr=ginr_psnr(images).mean().item(), functa=functa_psnr(images).mean().item())
    result = dict(rows=rows, count=len(images), batch=args.batch, repeats=args.repeats, heldout_psnr=psnr,
                  models=dict(ginr=str(ginr_path), functa=str(functa_path)), load=os.getloadavg(),
                  torch=torch.__version__)
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path("bench/results/ginr_encode_speed.json").write_text(json.dumps(result, indent=1))
    print(f"| encoder | images/s at batch {args.batch} | s for one image |\n|---|---:|---:|")
    for k, v in rows.items():
        print(f"| {k} | {v['images_per_s']:.1f} | {v['one_image_s']:.4f} |")
    print(f"held-out PSNR of these models on these {len(images)} images: GINR {psnr['ginr']:.2f}, "
          f"functa {psnr['functa']:.2f}")


if __name__ == "__main__":
    main()
