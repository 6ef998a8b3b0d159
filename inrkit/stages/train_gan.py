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
import time
from pathlib import Path

import torch

from inrkit.core import runtime
from inrkit.core.checks import require_at_least, require_positive, require_suffix, require_writable
from inrkit.core.config import build, options_of, resume_options
from inrkit.core.errors import InrkitError
from inrkit.core.precision import resolve_precision
from inrkit.core.runtime import parameters_sha256, pick_device, print0, seed_all
from inrkit.models.discriminator import Discriminator, discriminator_config
from inrkit.models.inrgan import InrGanGenerator, generator_config, generator_summary
from inrkit.stages.configs import TrainGanConfig
from inrkit.train.gan import GanObjective
from inrkit.train.loop import Run, Schedule, resume, training_loop


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
    cfg.blocks = parse_blocks(cfg.blocks)
    gcfg, dcfg = _model_configs(cfg)
    cfg.blocks = gcfg["blocks"]  # the resolved default is what the artifact and the resume check record
    out, options = cfg.out, options_of(cfg)
    _check_options(cfg)
    if cfg.dry_run:
        return _dry_run(gcfg, dcfg, options)
    dev = pick_device(cfg.device)
    runtime.init_distributed(dev)
    if cfg.batch % runtime.world_size():
        raise InrkitError(f"--batch {cfg.batch} does not split evenly over {runtime.world_size()} processes.")
    training = resume_options(cfg)
    objective, dataset = _setup(cfg, gcfg, dcfg, dev, options, training)
    run = Run(run_dir=out.with_suffix(""), training=training, device=dev, progress=cfg.progress,
              retry=f"lower rates (e.g. --lr-g {cfg.lr_g / 2:g} --lr-shared {cfg.lr_shared / 2:g} "
                    f"--lr-d {cfg.lr_d / 2:g})")
    pos = resume(objective, run)
    tick = int(round(cfg.tick_kimg * 1000))
    schedule = Schedule(total_images=int(round(cfg.kimg * 1000)), batch=cfg.batch, tick_images=tick,
                        snapshot_images=tick * cfg.snapshot_ticks, seconds=cfg.seconds)
    pos = training_loop(objective, _batches(dataset, cfg), schedule, run, out, pos)
    run_seconds = time.perf_counter() - run.started
    print0(f"trained to {pos['images'] / 1000:.3f} kimg ({(pos['images'] - run.start_images) / 1000:.3f} in this "
           f"run, {run_seconds:.0f} s) -> {out}")
    metrics = dict(kimg=pos["images"] / 1000, step=pos["step"], run_seconds=run_seconds,
                   parameters_sha256=parameters_sha256(objective.G_ema))
    if pos.get("fid") is not None:
        metrics["fid"] = pos["fid"]
    return metrics


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
    run_dir = Path(cfg.out).with_suffix("")
    objective = GanObjective(G=G, D=D, G_ema=G_ema, opt_g=opt_g, opt_d=opt_d, seed=cfg.seed, batch=cfg.batch,
                             r1_gamma=cfg.r1_gamma, r1_every=cfg.r1_every, ema_kimg=cfg.ema_kimg,
                             ema_rampup=cfg.ema_rampup, out=Path(cfg.out), run_dir=run_dir,
                             artifact_config=dict(generator=gcfg, discriminator=dcfg, training=training),
                             options=options, keep_snapshots=cfg.keep_snapshots, fid_ticks=cfg.fid_ticks,
                             fid=_fid_during_training(cfg, run_dir, dev), precision=precision,
                             compile=cfg.compile)
    return objective, dataset


def _batches(dataset, cfg):
    """This rank's share of the one global stream of images (flipped as configured), from image `start` on."""
    from inrkit.data import make_loader

    world = runtime.world_size()
    return lambda start: make_loader(dataset, cfg.batch // world, seed=cfg.seed, start=start // world,
                                     flip=cfg.flip, workers=cfg.workers, device=pick_device(cfg.device))


def _fid_during_training(cfg, run_dir: Path, dev):
    """FID of the EMA generator (rank 0), appended to stats.jsonl; the other ranks wait."""
    if not cfg.fid_ticks:
        return None

    def evaluate(G_ema, pos: dict) -> float | None:
        from inrkit.stages.fid import fid

        value = None
        if runtime.is_rank0():
            value = fid(G_ema, cfg.data, n=cfg.fid_n, stats=run_dir / "stats.jsonl",
                        stats_extra=dict(kimg=pos["images"] / 1000), device=str(dev), workers=cfg.workers,
                        precision=cfg.precision)
        runtime.barrier()
        return value

    return evaluate


def _check_options(cfg) -> None:
    """Fail fast, in one sentence, on options that cannot work."""
    require_suffix(cfg.out, ".safetensors")
    if not cfg.dry_run:  # a dry run writes nothing
        require_writable(cfg.out)
    if cfg.channels not in (1, 3):
        raise InrkitError(f"--channels must be 1 (grey) or 3 (RGB), not {cfg.channels}.")
    require_at_least(1, batch=cfg.batch, r1_every=cfg.r1_every, snapshot_ticks=cfg.snapshot_ticks)
    require_positive(kimg=cfg.kimg, tick_kimg=cfg.tick_kimg, ema_kimg=cfg.ema_kimg, seconds=cfg.seconds)
    require_at_least(0, r1_gamma=cfg.r1_gamma, fid_ticks=cfg.fid_ticks)
    require_at_least(2, fid_n=cfg.fid_n)


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
