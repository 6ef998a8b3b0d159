"""Where a GINR training step's time goes, and its achieved GFLOP/s against a matmul of the same run.

The model is recipes/ginr.json#photos32-cpu (32x32 RGB, batch 16, every pixel supervised), one torch thread.
FLOPs are counted by torch.utils.flop_counter.FlopCounterMode (matmuls, attention; elementwise ops are not
counted), forward and backward. Time: the median of --repeats of (a) the whole training step (encoder, decoder,
MSE, backward, Adam) and (b) each component alone, forward + backward with its inputs as leaves:
  encoder          images -> tokens (patch embedding, Transformer blocks, projection)
  query features   h_F(v; sigma_q) for the B x N coordinates (Eqs. 2-3) and their expansion over the batch
  attention        selective token aggregation (Eq. 5: q/k/v/out projections and the softmax attention)
  bands + MLP      multi-band modulation, the MLP layers and the output heads (Eqs. 6-9)
The reference: a 512x512 @ 512x512 float32 matmul and one of the decoder's shape (B*N, d) @ (d, d), timed
in the same process between the step timings.

Usage: OMP_NUM_THREADS=1 .venv/bin/python bench/ginr_profile.py [--repeats 7]
Writes bench/results/ginr_profile.json; prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from inrkit.models.ginr import LocalityAwareINR, ginr_config
from inrkit.models.metalearn import image_targets

CPU_RECIPE = dict(resolution=32, patch=4, tokens=64, width=128, depth=2, heads=4, dim=64, features=64,
                  sigmas=[16.0, 8.0], sigma_q=4.0, decoder_heads=2)  # recipes/ginr.json#photos32-cpu


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def fwd_bwd(module_fn, *inputs):
    """A closure: forward of module_fn on fresh leaf copies of inputs, backward of a fixed random cotangent."""
    leaves = [x.detach().clone().requires_grad_(x.is_floating_point()) for x in inputs]
    out = module_fn(*leaves)
    cot = torch.randn_like(out)

    def run():
        xs = [x.detach().clone().requires_grad_(x.is_floating_point()) for x in inputs]
        module_fn(*xs).backward(cot)
    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = LocalityAwareINR(ginr_config(**CPU_RECIPE))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    images = torch.rand(args.batch, 3, 32, 32) * 2 - 1
    targets, coords = image_targets(images)
    dec = model.decoder

    def step():
        loss = ((model(model.encode(images), coords) - targets) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with torch.no_grad():
        tokens = model.encode(images)
        queries = dec.queries(tokens, coords)
        m = dec.aggregate(queries, tokens)

    parts = {
        "encoder": fwd_bwd(model.encode, images),
        "query features": fwd_bwd(lambda t: dec.queries(t, coords) * 1.0, tokens),
        "attention": fwd_bwd(dec.aggregate, queries, tokens),
        "bands + MLP": fwd_bwd(lambda v: dec.compose(coords, v), m),
    }
    a = torch.randn(512, 512)
    b = torch.randn(512, 512)
    x = torch.randn(args.batch * 1024, CPU_RECIPE["dim"])
    w = torch.randn(CPU_RECIPE["dim"], CPU_RECIPE["dim"])
    rows, ref = {}, {}
    step_s = timed(step, args.repeats)
    ref["matmul 512^3"] = 2 * 512**3 / timed(lambda: a @ b, args.repeats * 3) / 1e9
    ref[f"matmul ({args.batch * 1024}, {CPU_RECIPE['dim']}) @ ({CPU_RECIPE['dim']}, {CPU_RECIPE['dim']})"] = (
        2 * x.shape[0] * x.shape[1] * w.shape[1] / timed(lambda: x @ w, args.repeats * 3) / 1e9)
    step_flops = flops(step)
    for name, run in parts.items():
        rows[name] = dict(seconds=timed(run, args.repeats), flops=flops(run))
    step_s2 = timed(step, args.repeats)  # again, after the parts, for the noise
    ref["matmul 512^3 (again)"] = 2 * 512**3 / timed(lambda: a @ b, args.repeats * 3) / 1e9
    total_parts = sum(r["seconds"] for r in rows.values())
    result = dict(config=CPU_RECIPE, batch=args.batch, threads=torch.get_num_threads(), step_seconds=[step_s, step_s2],
                  step_gflop=step_flops / 1e9, step_gflops_per_s=step_flops / min(step_s, step_s2) / 1e9,
                  reference_gflops_per_s=ref, parts=rows, parts_seconds_sum=total_parts,
                  params=sum(p.numel() for p in model.parameters()), load=os.getloadavg(), torch=torch.__version__)
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path("bench/results/ginr_profile.json").write_text(json.dumps(result, indent=1))
    print(f"training step (batch {args.batch}): {min(step_s, step_s2):.3f} s (two medians: {step_s:.3f}, "
          f"{step_s2:.3f}), {step_flops / 1e9:.2f} GFLOP counted, "
          f"{result['step_gflops_per_s']:.2f} GFLOP/s")
    for k, v in ref.items():
        print(f"reference {k}: {v:.2f} GFLOP/s")
    print("\n| part (fwd + bwd) | s | share of the parts | GFLOP | GFLOP/s |\n|---|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['seconds']:.3f} | {100 * r['seconds'] / total_parts:.0f}% | {r['flops'] / 1e9:.2f} | "
              f"{r['flops'] / r['seconds'] / 1e9:.2f} |")
    print(f"| sum of parts | {total_parts:.3f} | | | |")


if __name__ == "__main__":
    main()
