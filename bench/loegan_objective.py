"""Is it the generator or the objective? Train the CPU-sized LoE-GAN / PE + CE generator on builtin:digits 32x32
against supp. E's discriminator and losses, or against INR-GAN's (the StyleGAN2 residual D with minibatch stddev,
the non-saturating loss and R1, as the INR-GAN digits run that does draw digits), with Adam beta1 of either.

    OBJECTIVE  hinge-patch: the two-scale spectrally normalised patch D, hinge losses (Eqs. 9-10), no R1
               ns-r1:       inrkit.models.discriminator (channel_base 1024, channel_max 128: the README's INR-GAN
                            digits run), softplus losses, R1 gamma 4 on every step
    --beta1    0.9 (supp. E: Adam (0.9, 0.999)) or 0 (INR-GAN / StyleGAN2: (0, 0.99))

Everything else is the CPU comparison's: G 128 wide, bottleneck 64, tiles 2,2,4 on grid 2,4,8, L = 5, z 3328,
lr 1e-3 for G and D, batch 16, EMA half-life 10 kimg with ramp-up 0.05. Prints, every 2 kimg, the losses and the
per-pixel variance of 256 EMA samples (fixed latents) over the samples: a collapsed generator goes to 0, the data's
is 0.058 (all 1,500 digits at 32x32, in [0, 1]). Writes the EMA sample grid at the end to --png.

Usage: OMP_NUM_THREADS=1 .venv/bin/python bench/loegan_objective.py loe-gan ns-r1 --beta1 0 --kimg 12 \
           --png /tmp/loegan-ns-r1-b0.png
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F

from inrkit.core.pictures import image_grid, save_png
from inrkit.data import open_dataset
from inrkit.models import loegan
from inrkit.models.discriminator import Discriminator, discriminator_config
from inrkit.train.gan import r1_penalty, update_ema

BATCH, LR, R1_GAMMA = 16, 1e-3, 4.0


def build(arch: str, objective: str, beta1: float):
    gcfg = loegan.generator_config(arch=arch, resolution=32, width=128, hidden=64, frequencies=5, tiles=(2, 2, 4),
                                   grid_resolutions=(2, 4, 8), embedding_size=32, out_channels=1)
    G = loegan.LoeGanGenerator(gcfg)
    if objective == "hinge-patch":
        D = loegan.MultiScalePatchDiscriminator(dict(resolution=32, in_channels=1, base=32))
    else:
        D = Discriminator(discriminator_config(resolution=32, in_channels=1, channel_base=1024, channel_max=128))
    beta2 = 0.999 if beta1 > 0 else 0.99
    opt_g = torch.optim.Adam(G.parameters(), lr=LR, betas=(beta1, beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=LR, betas=(beta1, beta2))
    return G, D, opt_g, opt_d


def d_loss(objective: str, D, reals, fakes):
    """D's loss for one step (with R1 for ns-r1)."""
    if objective == "hinge-patch":
        return loegan.hinge_d_loss(D(reals), D(fakes))
    real_logits, r1 = r1_penalty(D, reals)
    return F.softplus(D(fakes)).mean() + F.softplus(-real_logits).mean() + R1_GAMMA / 2 * r1


def g_loss(objective: str, D, fakes):
    logits = D(fakes)
    return loegan.hinge_g_loss(logits) if objective == "hinge-patch" else F.softplus(-logits).mean()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("arch", choices=loegan.ARCHS)
    ap.add_argument("objective", choices=("hinge-patch", "ns-r1"))
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--kimg", type=float, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--png", default=None)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    data = open_dataset("builtin:digits", 32, 1)
    reals_all = torch.stack([data[i][0] for i in range(len(data))])  # (1500, 1, 32, 32) in [-1, 1]
    data_var = ((reals_all + 1) / 2).var(dim=0).mean().item()
    G, D, opt_g, opt_d = build(args.arch, args.objective, args.beta1)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    z_fixed = torch.randn(256, G.config["z_dim"], generator=torch.Generator().manual_seed(123))
    steps, start = int(args.kimg * 1000 / BATCH), time.time()
    print(f"{args.arch} {args.objective} beta1 {args.beta1:g}: G {G.num_params():,} params, D "
          f"{sum(p.numel() for p in D.parameters()):,}; data pixel variance {data_var:.3f}", flush=True)
    for step in range(1, steps + 1):
        idx = torch.randint(len(reals_all), (BATCH,))
        reals = reals_all[idx]
        D.requires_grad_(False)
        loss_g = g_loss(args.objective, D, G(torch.randn(BATCH, G.config["z_dim"])))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        D.requires_grad_(True)
        with torch.no_grad():
            fakes = G(torch.randn(BATCH, G.config["z_dim"]))
        loss_d = d_loss(args.objective, D, reals, fakes)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        update_ema(G, G_ema, step * BATCH, BATCH, 10.0, 0.05)
        if step % int(2000 / BATCH) == 0 or step == steps:
            with torch.no_grad():
                samples = (G_ema(z_fixed) + 1) / 2
            var = samples.clamp(0, 1).var(dim=0).mean().item()
            print(f"kimg {step * BATCH / 1000:5.1f}  loss_g {loss_g.item():7.3f}  loss_d {loss_d.item():7.3f}  "
                  f"sample pixel variance {var:.4f}  {time.time() - start:4.0f} s", flush=True)
    if args.png:
        with torch.no_grad():
            images = ((G_ema(z_fixed[:32]) + 1) / 2).clamp(0, 1)
        save_png(args.png, image_grid(images.permute(0, 2, 3, 1), columns=8, gap=0, zoom_to=64))


if __name__ == "__main__":
    main()
