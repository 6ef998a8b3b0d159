"""INR-GAN generator size and cost against the paper's Table 1, and its forward throughput on this CPU.

1. Counts: the paper's recipes (App. A: 256^2 blocks 128/256 with 4 layers of 512; FFHQ 1024^2 blocks
   128/256/512/1024 with 3/3/2/2 layers of 512/512/128/32) are built on the CPU and their parameter count
   checked against the closed form; every Table 1 row (latent-conditioned decoder, hypernetwork, + Fourier,
   + FMM, + multi-scale) is counted in closed form at 128^2, 256^2 and 1024^2 next to the paper's numbers.
   The 256^2 recipe's MACs are also measured with torch's FlopCounterMode (batch 1).
2. Throughput: G(z) at 256^2, batch 4, float32, no grad, against a 4096x4096 float32 matmul, alternated in
   --rounds rounds (this machine is shared and noisy). GFLOP/s = 2 x counted MACs / time. Headline: the
   median over rounds of (generator GFLOP/s / matmul GFLOP/s) within a round; best-of ratios also reported.

Usage: .venv/bin/python bench/inrgan_size.py [--rounds 3] [--out bench/results/inrgan_size.json]
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

from inrkit.models.inrgan import (
    InrGanGenerator,
    block_shapes,
    count_macs,
    count_params,
    generator_config,
    inr_layers,
)
from inrkit.models.macs import measured_macs

# Table 1 of the paper: (#params in millions, GMACs) per decoder type and resolution.
PAPER_TABLE1 = {
    "latent-conditioned INR": {128: (7.1, 30.09), 256: (7.1, 120.33), 1024: (7.1, 1925.22)},
    "+ hypernetwork": {128: (2055.5, 23.54), 256: (2055.5, 88.01), 1024: (2055.5, 1377.52)},
    "+ Fourier features": {128: (2312.02, 28.02), 256: (2312.02, 105.34), 1024: (2312.02, 1651.52)},
    "+ FMM": {128: (108.2, 25.87), 256: (108.2, 103.19), 1024: (108.2, 1649.37)},
    "+ multi-scale (INR-GAN)": {128: (107.03, 21.58), 256: (107.03, 38.76), 1024: (117.3, 47.35)},
}
ROW_OPTIONS = {
    "latent-conditioned INR": dict(arch="inr-latent", fourier=False, multiscale=False),
    "+ hypernetwork": dict(modulation="full", fourier=False, multiscale=False),
    "+ Fourier features": dict(modulation="full", multiscale=False),
    "+ FMM": dict(multiscale=False),
    "+ multi-scale (INR-GAN)": dict(),
}


def table1_rows() -> list[dict]:
    rows = []
    for name, options in ROW_OPTIONS.items():
        for res, (paper_m, paper_g) in PAPER_TABLE1[name].items():
            cfg = generator_config(resolution=res, **options)
            params, gmacs = count_params(cfg)["total"] / 1e6, count_macs(cfg)["total"] / 1e9
            rows.append(dict(decoder=name, resolution=res, params_m=params, paper_params_m=paper_m,
                             params_ratio=params / paper_m, gmacs=gmacs, paper_gmacs=paper_g,
                             gmacs_ratio=gmacs / paper_g))
    return rows


def concat_then_upsample_macs(cfg: dict) -> int:
    """MACs if a block's first layer ran on upsampled activations (the concatenation as written) instead
    of upsampling its coarse-grid product (what the model executes; identical outputs)."""
    pixels = [h * w for h, w in block_shapes(cfg)]
    extra = sum(lay.h_dim * lay.out_dim * (pixels[lay.block] - pixels[lay.block - 1])
                for lay in inr_layers(cfg) if lay.coarse)
    return count_macs(cfg)["total"] + extra


def recipe_report(resolution: int, paper: tuple[float, float]) -> dict:
    cfg = generator_config(resolution=resolution)
    start = time.perf_counter()
    G = InrGanGenerator(cfg)
    build_s = time.perf_counter() - start
    params, macs = count_params(cfg), count_macs(cfg)
    assert G.num_params() == params["total"], "closed-form parameter count disagrees with the model"
    pixels = [h * w for h, w in block_shapes(cfg)]
    per_block = [sum(lay.in_dim * lay.out_dim for lay in inr_layers(cfg) if lay.block == k) * pixels[k] / 1e9
                 for k in range(len(cfg["blocks"]))]
    return dict(resolution=resolution, blocks=cfg["blocks"], build_seconds=build_s,
                params=params, paper_params_m=paper[0], macs=macs, paper_gmacs=paper[1],
                gmacs_concat_then_upsample=concat_then_upsample_macs(cfg) / 1e9,
                gmacs_per_block_at_its_grid=per_block)


def time_once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def throughput(rounds: int, batch: int = 4, size: int = 4096) -> dict:
    torch.manual_seed(0)
    G = InrGanGenerator(generator_config(resolution=256)).eval()
    z = torch.randn(batch, 512, generator=torch.Generator().manual_seed(1))
    a, b = torch.randn(size, size), torch.randn(size, size)
    gen_flop, mm_flop = 2 * batch * G.macs_per_image(), 2 * size**3
    with torch.no_grad():
        measured = measured_macs(lambda: G(z[:1]))
        G(z), a @ b  # warm up
        gen_rates, mm_rates = [], []
        for _ in range(rounds):
            mm_rates.append(mm_flop / min(time_once(lambda: a @ b) for _ in range(2)) / 1e9)
            gen_rates.append(gen_flop / time_once(lambda: G(z)) / 1e9)
    ratios = [g / m for g, m in zip(gen_rates, mm_rates, strict=True)]
    return dict(batch=batch, resolution=256, dtype="float32", gmacs_per_image=G.macs_per_image() / 1e9,
                measured_gmacs_per_image=measured / 1e9, generator_gflops=gen_rates, matmul_gflops=mm_rates,
                ratio_per_round=ratios, ratio_median=statistics.median(ratios),
                ratio_best=max(gen_rates) / max(mm_rates), target=0.5,
                target_met=statistics.median(ratios) >= 0.5)


def print_report(result: dict) -> None:
    print("| decoder | res | params (M) | paper (M) | ratio | GMACs | paper GMACs | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for r in result["table1"]:
        print(f"| {r['decoder']} | {r['resolution']} | {r['params_m']:.2f} | {r['paper_params_m']} | "
              f"{r['params_ratio']:.2f} | {r['gmacs']:.2f} | {r['paper_gmacs']} | {r['gmacs_ratio']:.2f} |")
    for rec in result["recipes"]:
        p, m = rec["params"], rec["macs"]
        print(f"\nrecipe {rec['resolution']}^2 {rec['blocks']}: built in {rec['build_seconds']:.1f}s")
        print(f"  params {p['total'] / 1e6:.2f}M (paper {rec['paper_params_m']}M): mapping {p['mapping'] / 1e6:.2f}M,"
              f" output projection {p['output_projection'] / 1e6:.2f}M (1025 x {p['theta_per_sample']} theta),"
              f" shared INR {p['inr_shared'] / 1e6:.2f}M")
        print(f"  GMACs {m['total'] / 1e9:.2f} (paper {rec['paper_gmacs']}); INR {m['inr'] / 1e9:.2f}, hypernetwork "
              f"{(m['mapping'] + m['output_projection']) / 1e9:.3f}, FMM weights {m['fmm_weights'] / 1e9:.3f};"
              f" concat-then-upsample {rec['gmacs_concat_then_upsample']:.2f}")
        print("  INR GMACs per block at its grid: " + ", ".join(f"{g:.2f}" for g in rec["gmacs_per_block_at_its_grid"]))
    t = result["throughput"]
    print(f"\nthroughput 256^2 batch {t['batch']}: {t['gmacs_per_image']:.2f} GMACs/image "
          f"(FlopCounterMode: {t['measured_gmacs_per_image']:.2f})")
    print("  generator GFLOP/s " + ", ".join(f"{v:.1f}" for v in t["generator_gflops"])
          + " | matmul GFLOP/s " + ", ".join(f"{v:.1f}" for v in t["matmul_gflops"]))
    print(f"  ratio median {t['ratio_median']:.2f}, best/best {t['ratio_best']:.2f}, target {t['target']}: "
          f"{'met' if t['target_met'] else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="alternated timing rounds")
    parser.add_argument("--out", default="bench/results/inrgan_size.json", help="JSON results")
    args = parser.parse_args()
    load_before = os.getloadavg()
    result = dict(
        command=f".venv/bin/python bench/inrgan_size.py --rounds {args.rounds}",
        machine=dict(cpu=platform.processor() or platform.machine(), threads=torch.get_num_threads(),
                     torch=torch.__version__),
        table1=table1_rows(),
        recipes=[recipe_report(256, (107.03, 38.76)), recipe_report(1024, (117.3, 47.35))],
        throughput=throughput(args.rounds),
    )
    result["machine"]["loadavg_before_after"] = [load_before[0], os.getloadavg()[0]]
    print_report(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
