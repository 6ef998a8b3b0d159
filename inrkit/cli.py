"""The `inrkit` command line: one command per stage; each parses options and calls one stage function."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from inrkit.errors import InrkitError

app = typer.Typer(
    help="Implicit neural representations: fit, meta-learn, GANs, diffusion, and rendering on any grid.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    if debug:
        os.environ["INRKIT_DEBUG"] = "1"


@app.command()
def fit(
    signal: str = typer.Argument(..., help="Image file, folder of frames, animated GIF, or builtin:NAME."),
    out: Path = typer.Option(Path("out/field.safetensors"), help="Field artifact to write."),
    arch: str = typer.Option("loe", help="siren | pe | loe"),
    width: int = typer.Option(64, help="Hidden channels."),
    depth: int = typer.Option(10, help="Linear layers in all."),
    tile: int = typer.Option(2, help="LoE: candidate weights per axis (N; N^d per layer)."),
    blend: str = typer.Option("nearest", help="LoE blending: nearest | linear."),
    arrangement: str = typer.Option("coarse-to-fine", help="LoE grid layout: coarse-to-fine | fine-to-coarse | "
                                    "interleaved | chunked | random-affine."),
    frequencies: int = typer.Option(8, help="Positional-encoding frequencies L (LoE: 0 = constant input)."),
    w0: float = typer.Option(30.0, help="SIREN w0 (first and hidden layers)."),
    steps: int = typer.Option(2000, help="Optimisation steps."),
    lr: float | None = typer.Option(None, help="Learning rate (default 5e-3 for pe/loe, 1e-4 for siren)."),
    lr_decay: float = typer.Option(0.1, help="Multiply the learning rate by this ..."),
    lr_decay_at: float = typer.Option(0.5, help="... after this fraction of the steps."),
    batch_pixels: int = typer.Option(0, help="Random pixels per step; 0 = the full grid every step."),
    size: str | None = typer.Option(None, help="Resample the target to N or HxW."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
) -> None:
    """Fit one signal. Example: inrkit fit builtin:camera --arch loe --size 256 --out out/camera.safetensors"""
    from inrkit.fields.grid import parse_size
    from inrkit.stages.fit import fit as run

    run(signal, out, arch=arch, width=width, depth=depth, tile=tile, blend=blend, arrangement=arrangement,
        frequencies=frequencies, w0=w0, steps=steps, lr=lr, lr_decay=lr_decay, lr_decay_at=lr_decay_at,
        batch_pixels=batch_pixels, size=parse_size(size) if size else None, seed=seed, device=device)


@app.command()
def render(
    artifact: Path = typer.Argument(..., help="A field (from fit), functaset (from meta or encode) or "
                                "generator (from train-gan) artifact."),
    out: Path = typer.Option(Path("out/render.png"), help="Output .png (video: .gif or a folder of frames)."),
    size: str | None = typer.Option(None, help="Output size N or HxW (any resolution)."),
    scale: float | None = typer.Option(None, help="Grid density relative to training: 2 = superresolution."),
    grid: str | None = typer.Option(None, help="Coordinate range lo,hi or lo_x,hi_x,lo_y,hi_y; training "
                                       "range is 0,1 (e.g. --grid=-0.3,1.3 zooms out)."),
    chunk: int = typer.Option(2**16, help="Points per evaluation chunk (bounds memory)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    index: str | None = typer.Option(None, help="Functaset items to draw, e.g. 0-15 or 3,7,10-12."),
    model: Path | None = typer.Option(None, help="Functaset: its functa-model, when not embedded."),
    perturb: int | None = typer.Option(None, help="Functaset: shift this latent dimension everywhere "
                                          "(perturbation analysis, spatial functa App. C.5)."),
    seeds: str | None = typer.Option(None, help="Generator: samples to draw, e.g. 0-15 (default) or 3,7,10-12."),
    psi: float | None = typer.Option(None, help="Generator: truncation psi (App. B.3; default 1, none)."),
    interpolate: str | None = typer.Option(None, help="Generator: two seeds A,B; draw a row from A to B."),
    steps: int | None = typer.Option(None, help="Generator: images in the --interpolate row (default 8)."),
    space: str | None = typer.Option(None, help="Generator: interpolate inr parameters (default) or pixels."),
    frequencies: bool = typer.Option(False, "--frequencies",
                                     help="Generator: write the per-block Fourier frequency histogram instead."),
) -> None:
    """Render an INR on any grid. Example: inrkit render out/camera.safetensors --scale 2 --out x2.png"""
    from inrkit.fields.grid import parse_ranges, parse_size
    from inrkit.stages.render import render as run
    from inrkit.stages.render_functa import parse_index

    if chunk < 1:
        raise InrkitError("--chunk must be at least 1.")
    run(artifact, out, size=parse_size(size) if size else None, scale=scale,
        grid=parse_ranges(grid) if grid else None, chunk=chunk, device=device,
        index=parse_index(index) if index else None, model=model, perturb=perturb,
        seeds=_seeds(seeds, "--seeds"), psi=psi, interpolate=_seeds(interpolate, "--interpolate"), steps=steps,
        space=space, frequencies=frequencies)


def _seeds(text: str | None, option: str) -> list[int] | None:
    """'0-15' or '3,7' -> seeds, with the option named in the error."""
    from inrkit.stages.render_functa import parse_index

    if text is None:
        return None
    try:
        return parse_index(text)
    except InrkitError:
        raise InrkitError(f"{option} {text!r} is not a list of seeds; write e.g. 0-15 or 3,7.") from None


@app.command()
def meta(
    data: str | None = typer.Option(None, help="Training images: a folder, .zip, shards or builtin:NAME."),
    out: Path = typer.Option(Path("out/functa.safetensors"), help="functa-model artifact; run folder beside it."),
    recipe: str | None = typer.Option(None, help="JSON recipe (recipes/*.json), FILE#VARIANT for a variant; "
                                      "options given here override it."),
    arch: str | None = typer.Option(None, help="spatial-functa | functa (flat latent)."),
    latent: str | None = typer.Option(None, help="Latent shape SxSxC, e.g. 8x8x16; C alone is a flat functa."),
    interp: str | None = typer.Option(None, help="nearest (per-patch coordinates) | bilinear (binary coordinates)."),
    kernel: int | None = typer.Option(None, help="Latent-to-modulation convolution: 1 (1x1) or 3 (3x3)."),
    resolution: int | None = typer.Option(None, help="Image side (default 32); the latent side must divide it."),
    channels: int | None = typer.Option(None, help="3 (RGB) or 1 (grey)."),
    width: int | None = typer.Option(None, help="SIREN width (default 256)."),
    depth: int | None = typer.Option(None, help="SIREN linear layers in all (default 6)."),
    w0: float | None = typer.Option(None, help="SIREN omega_0 (default 10)."),
    inner_steps: int | None = typer.Option(None, help="Inner SGD steps from zero latents (default 3)."),
    first_order: bool | None = typer.Option(None, "--first-order/--second-order",
                                            help="Gradients through the inner loop: second order by default."),
    checkpointed: bool | None = typer.Option(None, "--checkpointed/--no-checkpointed",
                                             help="Recompute inner-loop activations in the backward (less memory)."),
    lr: float | None = typer.Option(None, help="Outer Adam learning rate (default 3e-5)."),
    batch: int | None = typer.Option(None, help="Images per outer step over all processes (default 128)."),
    steps: int | None = typer.Option(None, help="Outer steps in all (default 200000); rerun with more to extend."),
    seconds: float | None = typer.Option(None, help="Stop this run after this many seconds of training."),
    snapshot: int | None = typer.Option(None, help="Steps between snapshots (default 1000)."),
    count: int | None = typer.Option(None, help="Use the first N training images."),
    heldout: str | None = typer.Option(None, help="Held-out images for the final functaset (default: the "
                                       "heldout split of a builtin: set)."),
    heldout_count: int | None = typer.Option(None, help="Use the first N held-out images."),
    functasets: bool | None = typer.Option(None, "--functasets/--no-functasets",
                                           help="Encode the training and held-out sets at the end (default on)."),
    encode_steps: int | None = typer.Option(None, help="Inner steps when encoding the functasets (default 3)."),
    workers: int | None = typer.Option(None, help="Data-decoding processes (default 2)."),
    seed: int | None = typer.Option(None, help="Initialisation and data order (default 0)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
) -> None:
    """Meta-learn (spatial) functa and encode functasets. Example: inrkit meta --data builtin:photos
    --latent 8x8x16 --interp nearest --width 64 --depth 4 --lr 1e-3 --batch 16 --steps 2000 --out out/sf.safetensors
    (paper settings: --recipe recipes/spatial-functa-cifar10.json; 2 processes: torchrun --nproc_per_node 2
    -m inrkit.cli meta ...)"""
    from inrkit.stages.meta import meta_with_recipe

    given = dict(data=data, out=out, arch=arch, latent=latent, interp=interp, kernel=kernel, resolution=resolution,
                 channels=channels, width=width, depth=depth, w0=w0, inner_steps=inner_steps, first_order=first_order,
                 checkpointed=checkpointed, lr=lr, batch=batch, steps=steps, seconds=seconds, snapshot=snapshot,
                 count=count, heldout=heldout, heldout_count=heldout_count, functasets=functasets,
                 encode_steps=encode_steps, workers=workers, seed=seed, device=device)
    meta_with_recipe(recipe, **{k: v for k, v in given.items() if v is not None})


@app.command()
def encode(
    model: Path = typer.Argument(..., help="A functa-model artifact written by meta."),
    data: str = typer.Option(..., help="Images to encode: a folder, .zip, shards or builtin:NAME."),
    out: Path = typer.Option(Path("out/functaset.safetensors"), help="Functaset artifact to write."),
    steps: int = typer.Option(3, help="Inner SGD steps from zero latents; more is test-time optimisation."),
    bits: int | None = typer.Option(None, help="Quantise each latent dimension uniformly to 6, 7 or 8 bits."),
    split: str = typer.Option("train", help="train | heldout (builtin: sets)."),
    count: int | None = typer.Option(None, help="Encode the first N images."),
    labels: bool = typer.Option(False, "--labels", help="Store class labels (sub-folder names, digits, ...)."),
    resolution: int | None = typer.Option(None, help="Image side; only the model's training resolution works."),
    batch: int = typer.Option(64, help="Images per batch (results do not depend on it)."),
    workers: int = typer.Option(2, help="Data-decoding processes."),
    embed_model: bool = typer.Option(True, "--embed-model/--no-embed-model",
                                     help="Store the model inside the functaset so it renders on its own."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
) -> None:
    """Convert images to functa latents. Example: inrkit encode out/sf.safetensors --data builtin:photos
    --split heldout --steps 3 --bits 6 --out out/heldout.safetensors"""
    from inrkit.stages.encode import encode as run

    run(model, data, out, steps=steps, bits=bits, split=split, count=count, labels=labels, resolution=resolution,
        batch=batch, workers=workers, embed_model=embed_model, device=device)


@app.command()
def fid(
    source: str = typer.Argument(..., help="A generator artifact, or images: a folder, .zip, shards or builtin:NAME."),
    data: str = typer.Option(..., help="Reference images (a folder, .zip, shards or builtin:NAME); their "
                             "statistics are computed once and cached."),
    n: int | None = typer.Option(None, "--n", help="Images from SOURCE (default: all of a dataset, 50000 samples "
                                 "of a generator)."),
    data_count: int | None = typer.Option(None, help="Use the first N reference images (default: all)."),
    resolution: int | None = typer.Option(None, help="Compare at RxR (default: the generator's training size or "
                                          "the source images' size); a generator renders at it (UpsampledFID)."),
    psi: float = typer.Option(1.0, help="Truncation psi (generator only)."),
    seed: int = typer.Option(0, help="Generator samples: sample k has its own seed, so --batch does not matter."),
    batch: int = typer.Option(32, help="Images per Inception batch."),
    workers: int = typer.Option(2, help="Data-decoding processes."),
    cache_dir: Path | None = typer.Option(None, help="Reference statistics cache (default: $INRKIT_FID_CACHE or "
                                          "~/.cache/inrkit/fid)."),
    stats: Path | None = typer.Option(None, help="Also append the result as a JSON line to this file."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
) -> None:
    """FID (clean-fid, mode clean) of a generator or of images against reference images; prints it on stdout.
    Example: inrkit fid out/generator.safetensors --data builtin:photos --n 10000
    (images against images: inrkit fid samples/ --data real/ --resolution 64)"""
    from inrkit.stages.fid import fid as run

    value = run(source, data, n=n, data_count=data_count, resolution=resolution, psi=psi, seed=seed, batch=batch,
                workers=workers, device=device, cache_dir=cache_dir, stats=stats)
    print(f"{value:.6f}")


@app.command("train-gan")
def train_gan(
    data: str = typer.Option(..., help="Training images: a folder, .zip, shards or builtin:NAME."),
    out: Path = typer.Option(Path("out/generator.safetensors"), help="Generator artifact (EMA weights); run "
                             "folder beside it."),
    arch: str = typer.Option("inrgan", help="inrgan (hypernetwork) | inr-latent (Table 1 baseline)."),
    resolution: int = typer.Option(32, help="Training resolution (square)."),
    channels: int = typer.Option(3, help="3 (RGB) or 1 (grey)."),
    blocks: str | None = typer.Option(None, help="INR blocks RESxLAYERSxWIDTH,..., e.g. 16x2x128,32x2x128 "
                                      "(default: the paper's recipe scaled to --resolution)."),
    fmm_rank: int = typer.Option(10, help="FMM rank r (Sec. 3.2)."),
    modulation: str = typer.Option("fmm", help="fmm | fmm-linear | full"),
    fourier: bool = typer.Option(True, "--fourier/--no-fourier", help="Fourier features at block starts."),
    multiscale: bool = typer.Option(True, "--multiscale/--no-multiscale", help="Multi-scale blocks (Sec. 3.3)."),
    upsample: str = typer.Option("nearest", help="nearest | bilinear"),
    z_dim: int = typer.Option(512, help="Latent size."),
    hyper_hidden: int = typer.Option(1024, help="Hypernetwork width."),
    d_channel_base: int = typer.Option(16384, help="Discriminator channel base (16384: config-e)."),
    d_channel_max: int = typer.Option(512, help="Discriminator channels at most."),
    kimg: float = typer.Option(25000, help="Thousands of real images in all; rerun with more to extend."),
    seconds: float | None = typer.Option(None, help="Stop this run after this much wall time (with a snapshot); "
                                         "rerun to continue."),
    batch: int = typer.Option(32, help="Images per step over all processes."),
    lr_g: float = typer.Option(1e-5, help="Adam rate of G's hypernetwork (App. A)."),
    lr_shared: float = typer.Option(5e-4, help="Adam rate of the INR's shared parameters (App. A)."),
    lr_d: float = typer.Option(3e-3, help="Adam rate of D (App. A)."),
    r1_gamma: float = typer.Option(10.0, help="R1 penalty weight."),
    r1_every: int = typer.Option(1, help="R1 every N steps, lazily scaled (App. A: 1)."),
    ema_kimg: float = typer.Option(10.0, help="EMA half-life of G in thousands of images."),
    ema_rampup: float | None = typer.Option(None, help="EMA ramp-up: half-life at most this fraction of the "
                                            "images so far (e.g. 0.05)."),
    tick_kimg: float = typer.Option(4.0, help="Thousands of images per tick (status line, stats record)."),
    snapshot_ticks: int = typer.Option(50, help="Ticks between snapshots (artifact, state, sample grid)."),
    fid_ticks: int = typer.Option(0, help="Ticks between FID evaluations (0: never)."),
    fid_n: int = typer.Option(10000, help="Generated images per FID."),
    keep_snapshots: bool = typer.Option(False, "--keep-snapshots", help="Also keep every snapshot's generator "
                                        "as RUN/generator-KIMG.safetensors."),
    seed: int = typer.Option(0, help="Initialisation, latents and data order."),
    workers: int = typer.Option(2, help="Data-decoding processes."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config, parameters and GMACs; "
                                 "train and write nothing."),
) -> None:
    """Train an INR-GAN generator (StyleGAN2 settings, App. A). Example: inrkit train-gan --data builtin:photos
    --resolution 32 --blocks 16x2x128,32x2x128 --kimg 500 --out out/gan.safetensors
    (rerun the same command to resume; 2 processes: torchrun --nproc_per_node 2 -m inrkit.cli train-gan ...)"""
    from inrkit.stages.train_gan import train_gan as run

    run(data, out, arch=arch, resolution=resolution, channels=channels, blocks=blocks, fmm_rank=fmm_rank,
        modulation=modulation, fourier=fourier, multiscale=multiscale, upsample=upsample, z_dim=z_dim,
        hyper_hidden=hyper_hidden, d_channel_base=d_channel_base, d_channel_max=d_channel_max, kimg=kimg,
        seconds=seconds, batch=batch, lr_g=lr_g, lr_shared=lr_shared, lr_d=lr_d, r1_gamma=r1_gamma, r1_every=r1_every,
        ema_kimg=ema_kimg, ema_rampup=ema_rampup, tick_kimg=tick_kimg, snapshot_ticks=snapshot_ticks,
        fid_ticks=fid_ticks, fid_n=fid_n, keep_snapshots=keep_snapshots, seed=seed, workers=workers, device=device,
        dry_run=dry_run)


def _mount_subcommands() -> None:
    from inrkit.cli_data import data_app

    app.add_typer(data_app, name="data", help="Look at datasets and pack them into webdataset shards.")


_mount_subcommands()


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 1 (--debug shows the traceback)."""
    try:
        app()
    except InrkitError as e:
        if os.environ.get("INRKIT_DEBUG") or "--debug" in sys.argv:
            raise
        print(f"inrkit: error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("inrkit: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
