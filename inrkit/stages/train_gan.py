"""`inrkit train-gan`: train an INR-GAN generator against a StyleGAN2 (config-e) discriminator.

Training settings follow INR-GAN App. A (the StyleGAN2 framework): non-saturating logistic loss, zero-centred R1
penalty on reals with gamma = 10 on every iteration (--r1-every N > 1 is StyleGAN2's lazy form: the penalty
scaled by N, D's Adam rate and betas adjusted by N / (N + 1)), Adam beta = (0, 0.98), eps = 1e-8 with three
learning rates (1e-5 for G's hypernetwork, 5e-4 for the INR's shared parameters, 3e-3 for D), random
horizontal flips, and an exponential moving average of G (half-life --ema-kimg thousand images, optionally
ramped up as StyleGAN2 does) whose weights are the result.

The schedule counts images: --kimg thousand in all (or stop early after --seconds of wall time: the step then
ends with a tick, FID if asked and a snapshot, and a rerun continues), a status line (and a stats.jsonl record)
every --tick-kimg, a snapshot every --snapshot-ticks ticks, FID of the EMA generator every --fid-ticks ticks (0: never).
--keep-snapshots also keeps each snapshot's generator in the run folder (for FID or renders after training).

Writes OUT (kind `generator`: config {"generator": generator_config, "discriminator": ..., "training": ...},
tensors = the EMA generator's state dict, metrics kimg and the last FID) at every snapshot, and a run folder OUT
without its suffix holding state.safetensors (G, D, G_ema, both Adam states, step, tick, images consumed, RNG),
stats.jsonl and samples-KIMG.png (e.g. samples-000012.345.png: fixed latents through the EMA generator).
Rerunning the same command resumes from the state (rerun with a larger --kimg to extend); changed training
options are refused.

Randomness is a function of (seed, rank, step): the latents of step k come from their own stream and the data
order and flips from the resumable loader, so a resumed run repeats an uninterrupted one exactly (on CPU).

Distributed: under torchrun every rank takes batch / world_size images of the one global stream; gradients are
averaged by an explicit all_reduce of a flat buffer after each backward (the R1 double backward and the
G/D requires_grad toggling do not mix well with DDP's hooks; this is what StyleGAN2-ADA does too), and the
generator's w_avg buffer is averaged after each update, so the ranks stay identical.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from inrkit.core import runtime
from inrkit.core.config import build, options_of, resume_options
from inrkit.core.errors import InrkitError
from inrkit.core.precision import resolve_precision
from inrkit.core.runtime import seed_all
from inrkit.models.discriminator import Discriminator, discriminator_config
from inrkit.models.inrgan import InrGanGenerator, generator_config, generator_summary
from inrkit.models.loegan import ARCHS as LOE_ARCHS
from inrkit.stages.configs import TrainGanConfig
from inrkit.stages.gan_run import check_options, objective_options, refuse_other_family, run_training, start
from inrkit.stages.train_loe_gan import train_loe_gan
from inrkit.train.gan import GanObjective

INRGAN_DEFAULTS = dict(z_dim=512, lr_g=1e-5, lr_d=3e-3)  # App. A (the config's None: the architecture's)
LOE_ONLY = ("loe_width", "loe_hidden", "loe_tiles", "loe_grid", "loe_embedding", "loe_frequencies", "loe_d_base",
           "loe_betas")


def parse_blocks(blocks) -> list[list[int]] | None:
    """None, a list of (resolution, layers, width) triples, or text like '8x1x16,16x1x16'."""
    if blocks is None or not isinstance(blocks, str):
        return None if blocks is None else [[int(v) for v in b] for b in blocks]
    try:
        triples = [[int(v) for v in part.split("x")] for part in blocks.replace(" ", "").split(",") if part]
    except ValueError:
        triples = []
    if not triples or any(len(t) != 3 for t in triples):
        raise InrkitError(f"--blocks {blocks!r} should be RESxLAYERSxWIDTH triples separated by commas, "
                          "e.g. 16x2x128,32x2x128.")
    return triples


def train_gan(data: str, out: Path, **options) -> dict:
    """Train (or resume) a GAN; write the EMA generator and the run folder; return summary metrics.
    `options` are TrainGanConfig's fields (inrkit/stages/configs.py); rerunning the same call resumes."""
    cfg = build(TrainGanConfig, data=data, out=Path(out), **options)
    if cfg.arch in LOE_ARCHS:  # Levels-of-Experts supp. E: its own models and objective
        return train_loe_gan(cfg)
    refuse_other_family(cfg, LOE_ONLY, "LoE-GAN (--arch loe-gan|pe-ce)")
    cfg.z_dim, cfg.lr_g, cfg.lr_d = (INRGAN_DEFAULTS[k] if getattr(cfg, k) is None else getattr(cfg, k)
                                     for k in ("z_dim", "lr_g", "lr_d"))  # App. A
    cfg.blocks = parse_blocks(cfg.blocks)
    gcfg, dcfg = _model_configs(cfg)
    cfg.blocks = gcfg["blocks"]  # the resolved default is what the artifact and the resume check record
    out, options = cfg.out, options_of(cfg)
    check_options(cfg)
    if cfg.dry_run:
        return _dry_run(gcfg, dcfg, options)
    dev = start(cfg)
    training = resume_options(cfg)
    objective, dataset = _setup(cfg, gcfg, dcfg, dev, options, training)
    return run_training(cfg, objective, dataset, dev, training,
                        retry=f"lower rates (e.g. --lr-g {cfg.lr_g / 2:g} --lr-shared {cfg.lr_shared / 2:g} "
                              f"--lr-d {cfg.lr_d / 2:g})")


def _model_configs(cfg) -> tuple[dict, dict]:
    """The generator's and the discriminator's configs from the stage options."""
    gcfg = generator_config(arch=cfg.arch, resolution=cfg.resolution, blocks=cfg.blocks, z_dim=cfg.z_dim,
                            hyper_hidden=cfg.hyper_hidden, fmm_rank=cfg.fmm_rank, modulation=cfg.modulation,
                            fourier=cfg.fourier, multiscale=cfg.multiscale, upsample=cfg.upsample,
                            fourier_scale=cfg.fourier_scale, out_channels=cfg.channels)
    dcfg = discriminator_config(resolution=cfg.resolution, in_channels=cfg.channels, channel_base=cfg.d_channel_base,
                                channel_max=cfg.d_channel_max)
    return gcfg, dcfg


def _setup(cfg, gcfg: dict, dcfg: dict, dev, options: dict, training: dict):
    """G, D, the EMA of G (seeded) and their Adam optimizers (App. A), as the objective; and the dataset."""
    from inrkit.data import open_dataset

    seed_all(cfg.seed)
    precision = resolve_precision(cfg.precision, dev)
    G = InrGanGenerator(gcfg).to(dev).train()
    D = precision.convolutions(Discriminator(dcfg).to(dev).train())  # channels-last where that pays
    G_ema = InrGanGenerator(gcfg).to(dev).eval().requires_grad_(False)
    G_ema.load_state_dict(G.state_dict())
    groups = G.parameter_groups()
    opt_g = torch.optim.Adam([dict(params=groups["hypernetwork"], lr=cfg.lr_g),
                              dict(params=groups["inr_shared"], lr=cfg.lr_shared)], betas=(0.0, 0.98), eps=1e-8)
    ratio = cfg.r1_every / (cfg.r1_every + 1) if cfg.r1_every > 1 else 1.0  # StyleGAN2's lazy-regularisation
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d * ratio, betas=(0.0, 0.98 ** ratio), eps=1e-8)
    dataset = open_dataset(cfg.data, cfg.resolution, cfg.channels)
    objective = GanObjective(G=G, D=D, G_ema=G_ema, opt_g=opt_g, opt_d=opt_d, r1_gamma=cfg.r1_gamma,
                             r1_every=cfg.r1_every,
                             **objective_options(cfg, gcfg, dcfg, dev, options, training, precision))
    return objective, dataset


def _dry_run(cfg: dict, dcfg: dict, options: dict) -> dict:
    """Print (stdout, rank 0) the resolved configuration and the models' sizes; touch nothing."""
    summary = generator_summary(cfg)
    D = Discriminator(dcfg)
    result = dict(generator=cfg, discriminator=dcfg, options=options, generator_params=summary["params"],
                  generator_gmacs_per_image=summary["gmacs_per_image"], discriminator_params=D.num_params(),
                  discriminator_gmacs_per_image=D.macs_per_image() / 1e9)
    if runtime.is_rank0():
        for name, value in (("generator", cfg), ("discriminator", dcfg), ("options", options)):
            print(f"{name}: {json.dumps(value)}")
        r = cfg["resolution"]
        print(f"generator: {summary['params']:,} params, {summary['gmacs_per_image']:.4f} GMACs per image at "
              f"{r}x{r}")
        print(f"discriminator: {result['discriminator_params']:,} params, "
              f"{result['discriminator_gmacs_per_image']:.4f} GMACs per image")
    return result
