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

import inspect
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from inrkit.core import artifacts, runtime
from inrkit.core.errors import InrkitError
from inrkit.core.pictures import save_png
from inrkit.core.progress import StatsWriter, progress_bar
from inrkit.core.runtime import pick_device, print0, seed_all
from inrkit.models.discriminator import Discriminator, discriminator_config
from inrkit.models.inrgan import InrGanGenerator, generator_config, generator_summary
from inrkit.stages.meta import _check_in_sync, parameters_sha256

# Options that change what is learned: a resumed run must match them. The others (kimg, tick_kimg,
# snapshot_ticks, fid_ticks, fid_n, workers, device, progress) may change between runs.
TRAINING_KEYS = ("data", "arch", "resolution", "channels", "blocks", "fmm_rank", "modulation", "fourier",
                 "multiscale", "upsample", "fourier_scale", "z_dim", "flip", "hyper_hidden", "d_channel_base",
                 "d_channel_max", "batch",
                 "lr_g", "lr_shared", "lr_d", "r1_gamma", "r1_every", "ema_kimg", "ema_rampup", "seed")
GRID = (4, 8)  # rows x columns of the sample grid
GRID_SEED = 123  # the grid's latents: the same in every snapshot and every run


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


def train_gan(
    data: str,                       # training images (see inrkit.data.DATA_HELP)
    out: Path,                       # the generator artifact; the run folder is OUT without its suffix
    *,
    arch: str = "inrgan",            # inrgan (hypernetwork) or inr-latent (Table 1 baseline)
    resolution: int = 32,            # training resolution (square)
    channels: int = 3,               # 3 (RGB) or 1 (grey)
    blocks=None,                     # [(resolution, layers, width), ...] or '8x1x16,16x1x16'; None: the default
    fmm_rank: int = 10,              # r of Sec. 3.2
    modulation: str = "fmm",         # fmm | fmm-linear | full
    fourier: bool = True,            # Fourier features at block starts
    multiscale: bool = True,         # False: every block at the output resolution
    upsample: str = "nearest",       # nearest | bilinear
    fourier_scale: float = 10.0,     # std of the initial Fourier frequencies, radians per unit of [0, 1]
    z_dim: int = 512,                # App. A
    hyper_hidden: int = 1024,        # hypernetwork width (App. A)
    d_channel_base: int = 16384,     # discriminator channels: config-e (32768: config-f)
    d_channel_max: int = 512,
    kimg: float = 25_000,            # thousands of real images shown to D in all (StyleGAN2: 25000)
    seconds: float | None = None,    # stop this run after this much wall time (a tick and a snapshot end it)
    batch: int = 32,                 # images per step over all ranks (StyleGAN2 config-e: 32)
    flip: bool = True,               # random horizontal flips of the reals (Sec. 4.1); off for digits or text
    lr_g: float = 1e-5,              # G's hypernetwork (App. A)
    lr_shared: float = 5e-4,         # the INR's shared parameters (App. A)
    lr_d: float = 3e-3,              # D (App. A)
    r1_gamma: float = 10.0,          # R1 weight (App. A)
    r1_every: int = 1,               # R1 every N steps, lazily scaled (App. A: every step)
    ema_kimg: float = 10.0,          # EMA half-life in thousands of images (StyleGAN2: 10)
    ema_rampup: float | None = None,  # half-life at most this fraction of the images seen so far (e.g. 0.05)
    tick_kimg: float = 4.0,          # thousands of images per tick (status line, stats record)
    snapshot_ticks: int = 50,        # ticks between snapshots (artifact, state, sample grid)
    fid_ticks: int = 0,              # ticks between FID evaluations of the EMA generator (0: never)
    fid_n: int = 10_000,             # generated images per FID
    keep_snapshots: bool = False,    # also keep every snapshot's generator as RUN/generator-KIMG.safetensors
    seed: int = 0,
    workers: int = 2,
    device: str = "auto",
    dry_run: bool = False,           # print the resolved configuration and sizes; train and write nothing
    progress: bool = True,
) -> dict:
    """Train (or resume) a GAN; write the EMA generator and the run folder; return summary metrics."""
    out = Path(out)
    options = {k: v for k, v in locals().items() if k in inspect.signature(train_gan).parameters}
    options["out"], options["blocks"] = str(out), parse_blocks(blocks)
    cfg = generator_config(arch=arch, resolution=resolution, blocks=options["blocks"], z_dim=z_dim,
                           hyper_hidden=hyper_hidden, fmm_rank=fmm_rank, modulation=modulation, fourier=fourier,
                           multiscale=multiscale, upsample=upsample, fourier_scale=fourier_scale,
                           out_channels=channels)
    options["blocks"] = cfg["blocks"]
    dcfg = discriminator_config(resolution=resolution, in_channels=channels, channel_base=d_channel_base,
                                channel_max=d_channel_max)
    _check_options(out, resolution, channels, batch, kimg, r1_every, r1_gamma, tick_kimg, snapshot_ticks, fid_ticks,
                   fid_n, ema_kimg, seconds)
    if dry_run:
        return _dry_run(cfg, dcfg, options)

    from inrkit.data import make_loader, open_dataset

    dev = pick_device(device)
    runtime.init_distributed(dev)
    world = runtime.world_size()
    if batch % world:
        raise InrkitError(f"--batch {batch} does not split evenly over {world} processes.")
    seed_all(seed)
    G = InrGanGenerator(cfg).to(dev).train()
    D = Discriminator(dcfg).to(dev).train()
    G_ema = InrGanGenerator(cfg).to(dev).eval().requires_grad_(False)
    G_ema.load_state_dict(G.state_dict())
    groups = G.parameter_groups()
    opt_g = torch.optim.Adam([dict(params=groups["hypernetwork"], lr=lr_g), dict(params=groups["inr_shared"],
                              lr=lr_shared)], betas=(0.0, 0.98), eps=1e-8)
    ratio = r1_every / (r1_every + 1) if r1_every > 1 else 1.0  # StyleGAN2's lazy-regularisation correction
    opt_d = torch.optim.Adam(D.parameters(), lr=lr_d * ratio, betas=(0.0, 0.98 ** ratio), eps=1e-8)
    dataset = open_dataset(data, resolution, channels)
    run_dir = out.with_suffix("")
    training = {k: options[k] for k in TRAINING_KEYS}
    pos = _resume(run_dir / "state.safetensors", G, D, G_ema, opt_g, opt_d, training)
    for model in (G, D, G_ema):
        runtime.broadcast_parameters(model)
    stats = StatsWriter(run_dir / "stats.jsonl", append=pos["step"] > 0)
    local = batch // world
    loader = make_loader(dataset, local, seed=seed, start=pos["images"] // world, flip=flip, workers=workers)
    total = int(round(kimg * 1000))
    snap = dict(G=G, D=D, G_ema=G_ema, opt_g=opt_g, opt_d=opt_d, out=out, run_dir=run_dir, options=options,
                training=training, dcfg=dcfg, keep=keep_snapshots)
    start_images, start, tick_start = pos["images"], time.perf_counter(), time.perf_counter()
    snapped = pos["images"]  # images at the last snapshot written
    sums = torch.zeros(4, dtype=torch.float64)  # loss_g, loss_d, r1, steps of this tick (this rank)
    last_fid = pos.get("fid")
    desc = f"train-gan from {pos['images'] / 1000:.1f} kimg" if pos["images"] else "train-gan"
    with progress_bar(desc, max(total - pos["images"], 0), enabled=progress, unit="img") as update:
        while pos["images"] < total:
            reals, _ = next(loader)
            info = _step(G, D, G_ema, opt_g, opt_d, reals.to(dev), pos, seed, r1_gamma, r1_every, batch,
                         ema_kimg, ema_rampup)
            sums += torch.tensor([info["loss_g"], info["loss_d"], info["r1"], 1.0], dtype=torch.float64)
            update(advance=batch, loss_g=info["loss_g"], loss_d=info["loss_d"])
            done = pos["images"] >= total or _out_of_time(start, seconds, dev)
            if pos["images"] < pos["tick_images"] + tick_kimg * 1000 and not done:
                continue
            pos["tick"] += 1
            tick_seconds = time.perf_counter() - tick_start
            record = _tick_record(sums, pos, tick_seconds)
            print0(f"tick {pos['tick']:<4d} kimg {record['kimg']:<10.3f} loss_g {record['loss_g']:<7.3f} "
                   f"loss_d {record['loss_d']:<7.3f} r1 {record['r1']:<8.4f} sec/tick {tick_seconds:.1f}")
            stats.write(**record)
            pos["tick_images"] = pos["images"]
            if fid_ticks and (pos["tick"] % fid_ticks == 0 or done):
                last_fid = _fid(G_ema, data, fid_n, run_dir, pos, dev, workers)
                pos["fid"] = last_fid
            if pos["tick"] % snapshot_ticks == 0 or done:
                _snapshot(pos=pos, **snap)
                snapped = pos["images"]
            sums.zero_()
            tick_start = time.perf_counter()
            if pos["images"] < total and done:
                print0(f"stopping after --seconds {seconds:g}; rerun the command to continue")
                break
    if pos["images"] != snapped or not out.is_file():
        _snapshot(pos=pos, **snap)
    run_seconds = time.perf_counter() - start
    print0(f"trained to {pos['images'] / 1000:.3f} kimg ({(pos['images'] - start_images) / 1000:.3f} in this run, "
           f"{run_seconds:.0f} s) -> {out}")
    metrics = dict(kimg=pos["images"] / 1000, step=pos["step"], run_seconds=run_seconds,
                   parameters_sha256=parameters_sha256(G_ema))
    if last_fid is not None:
        metrics["fid"] = last_fid
    return metrics


def _check_options(out: Path, resolution, channels, batch, kimg, r1_every, r1_gamma, tick_kimg, snapshot_ticks,
                   fid_ticks, fid_n, ema_kimg, seconds=None) -> None:
    """Fail fast, in one sentence, on options that cannot work."""
    if out.suffix != ".safetensors":
        raise InrkitError(f"--out {out} should end in .safetensors.")
    if channels not in (1, 3):
        raise InrkitError(f"--channels must be 1 (grey) or 3 (RGB), not {channels}.")
    if min(batch, r1_every, snapshot_ticks) < 1 or min(kimg, tick_kimg, ema_kimg) <= 0:
        raise InrkitError("--batch, --r1-every and --snapshot-ticks must be at least 1 and --kimg, --tick-kimg and "
                          "--ema-kimg positive.")
    if seconds is not None and seconds <= 0:
        raise InrkitError(f"--seconds must be positive, got {seconds}.")
    if r1_gamma < 0 or fid_ticks < 0 or fid_n < 2:
        raise InrkitError("--r1-gamma and --fid-ticks must not be negative and --fid-n must be at least 2.")


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


def _latents(seed: int, step: int, phase: int, count: int, z_dim: int, dev) -> torch.Tensor:
    """z ~ N(0, I) for one phase of one step on this rank: a function of (seed, rank, step, phase) only."""
    rng = np.random.default_rng([seed, runtime.rank(), step, phase])
    return torch.from_numpy(rng.standard_normal((count, z_dim), dtype=np.float32)).to(dev)


def _step(G, D, G_ema, opt_g, opt_d, reals, pos: dict, seed, r1_gamma, r1_every, batch, ema_kimg,
          ema_rampup) -> dict:
    """One G update, one D update (with R1 when due), the EMA update; advances pos."""
    n, z_dim, step = reals.shape[0], G.config["z_dim"], pos["step"]
    # G: non-saturating loss softplus(-D(G(z))).
    D.requires_grad_(False)
    loss_g = F.softplus(-D(G(_latents(seed, step, 0, n, z_dim, reals.device)))).mean()
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    runtime.average_gradients(G)
    opt_g.step()
    _average_buffer(G.w_avg)
    D.requires_grad_(True)
    # D: softplus(D(fake)) + softplus(-D(real)), + gamma/2 |grad_x D(x)|^2 on reals when due (lazily scaled).
    with torch.no_grad():
        fakes = G(_latents(seed, step, 1, n, z_dim, reals.device), update_w_avg=False)
    regularise = r1_gamma > 0 and step % r1_every == 0
    reals = reals.detach().requires_grad_(regularise)
    real_logits = D(reals)
    loss_d = F.softplus(D(fakes)).mean() + F.softplus(-real_logits).mean()
    total, r1 = loss_d, torch.zeros(())
    if regularise:
        (grad,) = torch.autograd.grad(real_logits.sum(), reals, create_graph=True)
        r1 = grad.square().sum(dim=(1, 2, 3)).mean()
        total = total + r1 * (r1_gamma / 2 * r1_every)
    opt_d.zero_grad(set_to_none=True)
    total.backward()
    runtime.average_gradients(D)
    opt_d.step()
    pos["step"], pos["images"] = step + 1, pos["images"] + batch
    _update_ema(G, G_ema, pos["images"], batch, ema_kimg, ema_rampup)
    return dict(loss_g=loss_g.item(), loss_d=loss_d.item(), r1=r1.item())


@torch.no_grad()
def _update_ema(G, G_ema, images: int, batch: int, ema_kimg: float, ema_rampup: float | None) -> None:
    """StyleGAN2's EMA: beta = 0.5 ** (batch / half-life in images); buffers (w_avg) are copied."""
    half_life = ema_kimg * 1000
    if ema_rampup is not None:
        half_life = min(half_life, images * ema_rampup)
    beta = 0.5 ** (batch / max(half_life, 1e-8))
    for p_ema, p in zip(G_ema.parameters(), G.parameters(), strict=True):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
        b_ema.copy_(b)


def _out_of_time(start: float, seconds: float | None, device) -> bool:
    """--seconds spent? Rank 0's clock decides for all ranks, so they stop at the same step."""
    if seconds is None:
        return False
    late = time.perf_counter() - start >= seconds
    if runtime.world_size() > 1:
        flag = torch.tensor([float(late)], device=device)
        torch.distributed.broadcast(flag, 0)
        late = bool(flag.item())
    return late


def _average_buffer(buffer: torch.Tensor) -> None:
    if runtime.world_size() > 1:
        torch.distributed.all_reduce(buffer)
        buffer /= runtime.world_size()


def _tick_record(sums: torch.Tensor, pos: dict, seconds: float) -> dict:
    """The tick's mean losses over all ranks, and timing."""
    if runtime.world_size() > 1:  # on the models' device: nccl reduces only CUDA tensors
        device = torch.device("cuda") if torch.distributed.get_backend() == "nccl" else torch.device("cpu")
        summed = sums.to(device)
        torch.distributed.all_reduce(summed)
        sums = summed.cpu()
    steps = max(float(sums[3]), 1.0)
    return dict(tick=pos["tick"], kimg=pos["images"] / 1000, step=pos["step"], loss_g=float(sums[0]) / steps,
                loss_d=float(sums[1]) / steps, r1=float(sums[2]) / steps, sec_per_tick=round(seconds, 3),
                sec_per_kimg=round(seconds / max((pos["images"] - pos["tick_images"]) / 1000, 1e-9), 3))


def _fid(G_ema, data: str, n: int, run_dir: Path, pos: dict, dev, workers: int) -> float | None:
    """FID of the EMA generator (rank 0), appended to stats.jsonl; the other ranks wait."""
    value = None
    if runtime.is_rank0():
        from inrkit.stages.fid import fid

        value = fid(G_ema, data, n=n, stats=run_dir / "stats.jsonl", stats_extra=dict(kimg=pos["images"] / 1000),
                    device=str(dev), workers=workers)
    if runtime.world_size() > 1:
        torch.distributed.barrier()
    return value


def _snapshot(*, pos, G, D, G_ema, opt_g, opt_d, out, run_dir, options, training, dcfg, keep) -> None:
    """Generator artifact, training state and sample grid (rank 0), after checking the ranks agree."""
    for model in (G, D, G_ema):
        _check_in_sync(model)
    if runtime.is_rank0():
        metrics = dict(kimg=pos["images"] / 1000, step=pos["step"])
        if pos.get("fid") is not None:
            metrics["fid"] = pos["fid"]
        config = dict(generator=G_ema.config, discriminator=dcfg, training=training)
        generator = artifacts.Artifact(kind="generator", tensors=G_ema.state_dict(), config=config, options=options,
                                       metrics=metrics)
        artifacts.save(out, generator)
        if keep:
            artifacts.save(run_dir / f"generator-{pos['images'] / 1000:010.3f}.safetensors", generator)
        _save_state(run_dir / "state.safetensors", G, D, G_ema, opt_g, opt_d, training, pos)
        _save_grid(run_dir / f"samples-{pos['images'] / 1000:010.3f}.png", G_ema)
    if runtime.world_size() > 1:
        torch.distributed.barrier()


@torch.no_grad()
def _save_grid(path: Path, G_ema) -> None:
    """GRID samples of fixed latents from the EMA generator, as one PNG (small images enlarged)."""
    from inrkit.stages.fid import sample_latents

    rows, cols = GRID
    z = sample_latents(G_ema.config["z_dim"], 0, rows * cols, GRID_SEED).to(G_ema.w_avg.device)
    images = ((G_ema(z, update_w_avg=False) + 1) / 2).clamp(0, 1).cpu()  # (N, C, R, R)
    grid = images.view(rows, cols, *images.shape[1:]).permute(0, 3, 1, 4, 2)  # rows, R, cols, R, C
    sheet = grid.reshape(rows * images.shape[-2], cols * images.shape[-1], images.shape[1])
    zoom = max(1, 64 // images.shape[-1])
    save_png(path, sheet.repeat_interleave(zoom, 0).repeat_interleave(zoom, 1))


def _save_state(path: Path, G, D, G_ema, opt_g, opt_d, training: dict, pos: dict) -> None:
    """Everything a resume needs, as tensors and JSON (nothing pickled)."""
    tensors = {}
    for name, model in (("G", G), ("D", D), ("G_ema", G_ema)):
        tensors.update({f"{name}.{k}": v for k, v in model.state_dict().items()})
    groups = {}
    for name, opt in (("adam_g", opt_g), ("adam_d", opt_d)):
        state = opt.state_dict()
        for i, s in state["state"].items():
            tensors.update({f"{name}.{i}.{k}": torch.as_tensor(v) for k, v in s.items()})
        groups[name] = state["param_groups"]
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    artifacts.save(path, artifacts.Artifact(kind="gan-state", tensors=tensors, config=dict(training=training),
                                            options=dict(param_groups=groups), metrics=dict(pos)))


def _resume(path: Path, G, D, G_ema, opt_g, opt_d, training: dict) -> dict:
    """Load the state if there is one (refusing a changed configuration); return the position in training."""
    if not path.is_file():
        return dict(step=0, images=0, tick=0, tick_images=0, fid=None)
    state = artifacts.read(path, kind="gan-state")
    runtime.refuse_changed_options(path.parent, state.config.get("training", {}), training, TRAINING_KEYS)
    for name, model in (("G", G), ("D", D), ("G_ema", G_ema)):
        prefix = name + "."
        model.load_state_dict({k[len(prefix):]: v for k, v in state.tensors.items() if k.startswith(prefix)})
    for name, opt in (("adam_g", opt_g), ("adam_d", opt_d)):
        opt_state: dict = {}
        for key, value in state.tensors.items():
            if key.startswith(name + "."):
                _, i, field = key.split(".", 2)
                opt_state.setdefault(int(i), {})[field] = value
        opt.load_state_dict(dict(state=opt_state, param_groups=state.options["param_groups"][name]))
    torch.set_rng_state(state.tensors["rng.cpu"])
    if "rng.cuda" in state.tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(state.tensors["rng.cuda"])
    pos = dict(state.metrics)
    print0(f"resuming {path.parent} from {pos['images'] / 1000:.3f} kimg (tick {pos['tick']})")
    return pos
