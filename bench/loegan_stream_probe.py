"""Does PE + CE's collapse at the CPU setting depend on the data stream? Build `train-gan`'s exact LoE-family
objective (inrkit.stages.train_loe_gan.setup: G, D, both Adams, the EMA, the step latents) for the docs'
comparison setting, feed it builtin:digits one of three ways, and print every 2 kimg the per-pixel variance of
256 EMA samples (fixed latents) over the samples: a collapsed generator goes to 0, the data's is 0.058.

    STREAM  loader:  train-gan's own stream (inrkit.data.make_loader: a fresh permutation per epoch)
            replace: random batches with replacement (bench/loegan_objective.py's)
            perm:    a fresh torch.randperm per epoch

Usage: OMP_NUM_THREADS=1 .venv/bin/python bench/loegan_stream_probe.py pe-ce loader --seed 0 --kimg 16
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from inrkit.core.config import build, options_of, resume_options
from inrkit.models import loegan
from inrkit.stages import train_loe_gan
from inrkit.stages.configs import TrainGanConfig
from inrkit.stages.gan_run import batches

SETTING = dict(data="builtin:digits", resolution=32, channels=1, flip=False, loe_width=128, loe_hidden=64,
               loe_tiles="2,2,4", loe_grid="2,4,8", loe_frequencies=5, loe_d_base=32, loe_betas="0,0.99", batch=16,
               lr_g=1e-3, lr_d=1e-3, ema_rampup=0.05, workers=0, device="cpu", progress=False)


def image_stream(kind: str, cfg, dataset, reals: torch.Tensor):
    """Batches of cfg.batch training images (in [-1, 1]) forever, drawn the `kind` way."""
    if kind == "loader":
        for images, _ in batches(dataset, cfg)(0):
            yield images
    while kind == "replace":
        yield reals[torch.randint(len(reals), (cfg.batch,))]
    while kind == "perm":
        order = torch.randperm(len(reals))
        for i in range(0, len(reals) - cfg.batch + 1, cfg.batch):
            yield reals[order[i:i + cfg.batch]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("arch", choices=loegan.ARCHS)
    ap.add_argument("stream", choices=("loader", "replace", "perm"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kimg", type=float, default=16)
    args = ap.parse_args()
    cfg = build(TrainGanConfig, out=Path("unused.safetensors"), arch=args.arch, seed=args.seed, kimg=args.kimg,
                **SETTING)
    train_loe_gan.resolve(cfg)
    gcfg, dcfg = train_loe_gan.model_configs(cfg)
    objective, dataset = train_loe_gan.setup(cfg, gcfg, dcfg, torch.device("cpu"), options_of(cfg),
                                             resume_options(cfg))
    torch.manual_seed(args.seed)
    reals = torch.stack([dataset[i][0] for i in range(len(dataset))])
    z_fixed = torch.randn(256, gcfg["z_dim"], generator=torch.Generator().manual_seed(123))
    steps, every, start = int(args.kimg * 1000 / cfg.batch), int(2000 / cfg.batch), time.time()
    stream = image_stream(args.stream, cfg, dataset, reals)
    print(f"{args.arch} stream {args.stream} seed {args.seed}: {steps} steps of {cfg.batch}", flush=True)
    for step in range(steps):
        losses = objective.step((next(stream),), dict(step=step, images=step * cfg.batch))
        if (step + 1) % every == 0 or step + 1 == steps:
            with torch.no_grad():
                var = ((objective.G_ema(z_fixed) + 1) / 2).clamp(0, 1).var(dim=0).mean().item()
            print(f"kimg {(step + 1) * cfg.batch / 1000:5.1f}  loss_g {losses['loss_g'].item():6.3f}  loss_d "
                  f"{losses['loss_d'].item():6.3f}  sample pixel variance {var:.4f}  {time.time() - start:4.0f} s",
                  flush=True)


if __name__ == "__main__":
    main()
