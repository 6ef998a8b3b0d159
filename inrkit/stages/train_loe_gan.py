"""`inrkit train-gan --arch loe-gan|pe-ce`: LoE-GAN and its PE + CE baseline (Levels-of-Experts Sec. 4.4, supp. E).

The generator is inrkit.models.loegan.LoeGanGenerator (sizes --z-dim, --loe-width, --loe-hidden, --loe-tiles,
--loe-grid, --loe-embedding, --loe-frequencies; the defaults are the Table 4 derivation in that module), the
discriminator the two-scale spectrally normalised patch discriminator (--loe-d-base: supp. E's 64 by default),
the objective inrkit.train.loe_gan.HingeGanObjective (hinge losses, no R1), Adam betas (0.9, 0.999) with lr 1e-4
for G and D (supp. E; --loe-betas, --lr-g, --lr-d). --loe-betas 0,0.99 (StyleGAN2's beta1 0 with a shorter
beta2 memory) is the choice for small CPU runs: at 128 wide on 32x32 digits supp. E's beta1 0.9 collapses both
models by 16 kimg (docs/benchmarks.md). At a training resolution R below 256 the LoE grid resolutions and the CE
side default to at most R (never finer than the pixels, as Table 6's dagger; keeps LoE's fast full-grid path).
Everything else (schedule in kimg, ticks, snapshots with a sample grid, FID during training, resume, torchrun) is
train-gan's (inrkit.stages.train_gan.run_training).

Writes OUT, kind `loe-generator` (config {"generator", "discriminator", "training"}, the EMA generator's state
dict), which `inrkit render`, `inrkit fid` and `inrkit.load` rebuild through the registry.
INR-GAN-only options changed from their defaults are refused in one sentence, as is a resolution the patch
discriminator cannot take.
"""

from __future__ import annotations

import json

import torch

from inrkit.core import runtime
from inrkit.core.config import options_of, resume_options
from inrkit.core.errors import InrkitError
from inrkit.core.parse import parse_betas
from inrkit.core.precision import resolve_precision
from inrkit.core.runtime import seed_all
from inrkit.models import loegan
from inrkit.stages.gan_run import check_options, objective_options, refuse_other_family, run_training, start
from inrkit.train.loe_gan import HingeGanObjective

LOE_DEFAULTS = dict(z_dim=3328, lr_g=1e-4, lr_d=1e-4)  # supp. E; z_dim from the Table 4 derivation
TABLE4_GRID = (2, 8, 16, 32, 64, 128, 256)
TABLE4_EMBEDDING = 256
INRGAN_ONLY = ("blocks", "fmm_rank", "modulation", "fourier", "multiscale", "upsample", "fourier_scale",
               "hyper_hidden", "d_channel_base", "d_channel_max", "lr_shared", "r1_gamma", "r1_every")


def parse_ints(text, option: str) -> list[int]:
    """'2,4,8' (or a list) -> [2, 4, 8]; one sentence otherwise."""
    if isinstance(text, (list, tuple)):
        return [int(v) for v in text]
    try:
        values = [int(v) for v in str(text).replace(" ", "").split(",") if v]
    except ValueError:
        values = []
    if not values:
        raise InrkitError(f"--{option} {text!r} should be integers separated by commas, e.g. 2,4,8.")
    return values


def resolve(cfg) -> None:
    """Fill the architecture's defaults into cfg (what the artifact and the resume check record)."""
    refuse_other_family(cfg, INRGAN_ONLY, "INR-GAN (--arch inrgan|inr-latent)")
    for key, value in LOE_DEFAULTS.items():
        if getattr(cfg, key) is None:
            setattr(cfg, key, value)
    tiles = parse_ints(cfg.loe_tiles, "loe-tiles")
    cfg.loe_tiles = ",".join(map(str, tiles))
    if cfg.loe_grid is None:
        grid = [min(r, cfg.resolution) for r in TABLE4_GRID][: len(tiles)]
        grid += [grid[-1]] * (len(tiles) - len(grid))
    else:
        grid = parse_ints(cfg.loe_grid, "loe-grid")
    cfg.loe_grid = ",".join(map(str, grid))
    if cfg.loe_embedding is None:
        cfg.loe_embedding = min(TABLE4_EMBEDDING, cfg.resolution)
    cfg.loe_betas = ",".join(f"{b:g}" for b in parse_betas("--loe-betas", cfg.loe_betas))


def model_configs(cfg) -> tuple[dict, dict]:
    dcfg = loegan.discriminator_config(resolution=cfg.resolution, in_channels=cfg.channels, base=cfg.loe_d_base)
    gcfg = loegan.generator_config(arch=cfg.arch, resolution=cfg.resolution, z_dim=cfg.z_dim, width=cfg.loe_width,
                                   hidden=cfg.loe_hidden, tiles=parse_ints(cfg.loe_tiles, "loe-tiles"),
                                   grid_resolutions=parse_ints(cfg.loe_grid, "loe-grid"),
                                   frequencies=cfg.loe_frequencies, embedding_size=cfg.loe_embedding,
                                   out_channels=cfg.channels)
    return gcfg, dcfg


def train_loe_gan(cfg) -> dict:
    """Train (or resume) LoE-GAN / PE + CE from a built TrainGanConfig; return summary metrics."""
    resolve(cfg)
    gcfg, dcfg = model_configs(cfg)
    options = options_of(cfg)
    check_options(cfg)
    if cfg.dry_run:
        return dry_run(gcfg, dcfg, options)
    dev = start(cfg)
    training = resume_options(cfg)
    objective, dataset = setup(cfg, gcfg, dcfg, dev, options, training)
    return run_training(cfg, objective, dataset, dev, training,
                        retry=f"lower rates (e.g. --lr-g {cfg.lr_g / 2:g} --lr-d {cfg.lr_d / 2:g})")


def setup(cfg, gcfg: dict, dcfg: dict, dev, options: dict, training: dict):
    """G, D, the EMA of G (seeded), their Adams (supp. E) as the objective; and the dataset."""
    from inrkit.data import open_dataset

    seed_all(cfg.seed)
    precision = resolve_precision(cfg.precision, dev)
    G = loegan.LoeGanGenerator(gcfg).to(dev).train()
    D = precision.convolutions(loegan.MultiScalePatchDiscriminator(dcfg).to(dev).train())
    G_ema = loegan.LoeGanGenerator(gcfg).to(dev).eval().requires_grad_(False)
    G_ema.load_state_dict(G.state_dict())
    betas = parse_betas("--loe-betas", cfg.loe_betas)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=betas)
    dataset = open_dataset(cfg.data, cfg.resolution, cfg.channels)
    objective = HingeGanObjective(G=G, D=D, G_ema=G_ema, opt_g=opt_g, opt_d=opt_d, r1_gamma=0.0, r1_every=1,
                                  **objective_options(cfg, gcfg, dcfg, dev, options, training, precision))
    return objective, dataset


def dry_run(gcfg: dict, dcfg: dict, options: dict) -> dict:
    """Print (rank 0) the resolved configs, G's params and MACs per pixel (Table 4's columns), D's size."""
    summary = loegan.generator_summary(gcfg)
    D = loegan.MultiScalePatchDiscriminator(dcfg)
    result = dict(generator=gcfg, discriminator=dcfg, options=options, generator_params=summary["params"],
                  generator_macs_per_pixel=summary["macs_per_pixel"],
                  generator_gmacs_per_image=summary["gmacs_per_image"], discriminator_params=D.num_params(),
                  discriminator_gmacs_per_image=D.macs_per_image() / 1e9)
    if runtime.is_rank0():  # stdout, as INR-GAN's dry run
        for name, value in (("generator", gcfg), ("discriminator", dcfg), ("options", options)):
            print(f"{name}: {json.dumps(value)}")
        r = gcfg["resolution"]
        print(f"generator ({gcfg['arch']}): {summary['params']:,} params, {summary['macs_per_pixel'] / 1e6:.3f}M "
              f"MACs per pixel, {summary['gmacs_per_image']:.4f} GMACs per image at {r}x{r}")
        print(f"discriminator: {result['discriminator_params']:,} params, "
              f"{result['discriminator_gmacs_per_image']:.4f} GMACs per image")
    return result
