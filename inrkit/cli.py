"""The `inrkit` command line: one command per stage; each parses options and calls one stage function."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from inrkit.core.errors import InrkitError

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
    from inrkit.core.parse import parse_size
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
    from inrkit.core.parse import parse_index, parse_ranges, parse_size
    from inrkit.stages.render import render as run

    if chunk < 1:
        raise InrkitError("--chunk must be at least 1.")
    run(artifact, out, size=parse_size(size) if size else None, scale=scale,
        grid=parse_ranges(grid) if grid else None, chunk=chunk, device=device,
        index=parse_index(index) if index else None, model=model, perturb=perturb,
        seeds=_seeds(seeds, "--seeds"), psi=psi, interpolate=_seeds(interpolate, "--interpolate"), steps=steps,
        space=space, frequencies=frequencies)


def _seeds(text: str | None, option: str) -> list[int] | None:
    """'0-15' or '3,7' -> seeds, with the option named in the error."""
    from inrkit.core.parse import parse_index

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
    artifact: Path = typer.Argument(..., help="A functa-model (from meta) or generator (from train-gan) artifact."),
    images: str | None = typer.Argument(None, help="Images to encode: a folder, .zip, shards or builtin:NAME."),
    data: str | None = typer.Option(None, help="The images, as an option (functa-model use; same as IMAGES)."),
    out: Path | None = typer.Option(None, help="Artifact to write (default out/functaset.safetensors for a "
                                    "functa-model, out/latents.safetensors for a generator; its PNG beside it)."),
    steps: int | None = typer.Option(None, help="functa: inner SGD steps from zero latents (default 3; more is "
                                     "test-time optimisation); generator: projector steps (default 1000)."),
    count: int | None = typer.Option(None, help="Encode the first N images."),
    split: str = typer.Option("train", help="train | heldout (builtin: sets)."),
    batch: int | None = typer.Option(None, help="Images per batch (default 64; generator 16); results do not "
                                     "depend on it."),
    bits: int | None = typer.Option(None, help="functa: quantise each latent dimension uniformly to 6, 7 or 8 bits."),
    labels: bool | None = typer.Option(None, "--labels", help="functa: store class labels (sub-folder names, ...)."),
    resolution: int | None = typer.Option(None, help="functa: image side; only the model's training resolution."),
    workers: int | None = typer.Option(None, help="functa: data-decoding processes (default 2)."),
    embed_model: bool | None = typer.Option(None, "--embed-model/--no-embed-model",
                                            help="functa: store the model inside the functaset (default on)."),
    space: str | None = typer.Option(None, help="generator: latent space w (default, the mapping output) or z."),
    lr: float | None = typer.Option(None, help="generator: initial learning rate (default 0.1)."),
    noise: float | None = typer.Option(None, help="generator: initial latent-noise factor (default 0.05)."),
    perceptual: bool | None = typer.Option(None, "--perceptual/--no-perceptual",
                                           help="generator: Inception distance + pixel MSE (default), or MSE alone."),
    seed: int | None = typer.Option(None, help="generator: latent-noise streams (default 0)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
) -> None:
    """Convert images to latents. A functa-model gives functa latents (a functaset): inrkit encode out/sf.safetensors
    --data builtin:photos --split heldout --steps 3 --bits 6 --out out/heldout.safetensors. A generator projects
    images into its z or w space (StyleGAN2 projector, INR-GAN App. B.2): inrkit encode out/gan.safetensors
    photos/ --space w --steps 1000 --out out/latents.safetensors (targets over reconstructions in latents.png)."""
    from inrkit.stages.encode import encode_artifact

    encode_artifact(artifact, images, data=data, out=out, steps=steps, count=count, split=split, batch=batch,
                    device=device, functa=dict(bits=bits, labels=labels, resolution=resolution, workers=workers,
                                               embed_model=embed_model),
                    generator=dict(space=space, lr=lr, noise=noise, perceptual=perceptual, seed=seed))


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
    scale: float | None = typer.Option(None, help="Generator: compare at this multiple of its training size "
                                       "(2: UpsampledFID at twice the size; the same as --resolution)."),
    upsample: str | None = typer.Option(None, help="Generator above its training size: inr (default: rendered on "
                                        "the denser grid) | nearest | bilinear | bicubic (samples upsampled) | all."),
    compare_out: Path | None = typer.Option(None, help="--upsample all: PNG of one sample four ways (default "
                                            "./upsampled-fid.png)."),
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
    (images against images: inrkit fid samples/ --data real/ --resolution 64;
    UpsampledFID, Fig. 3: inrkit fid out/generator.safetensors --data real/ --scale 2 --upsample all)"""
    from inrkit.stages.fid import fid as run

    value = run(source, data, n=n, data_count=data_count, resolution=resolution, scale=scale, upsample=upsample,
                compare_out=compare_out, psi=psi, seed=seed, batch=batch, workers=workers, device=device,
                cache_dir=cache_dir, stats=stats)
    if isinstance(value, dict):  # --upsample all: the four side by side
        print("  ".join(f"{mode:>11}" for mode in value))
        print("  ".join(f"{v:11.6f}" for v in value.values()))
    else:
        print(f"{value:.6f}")


@app.command()
def kpl(
    generator: str = typer.Argument(..., help="A generator artifact (from train-gan), trained on faces."),
    faces: str = typer.Option(..., help="Real face images to project (a folder, .zip, shards or builtin:faces), "
                              "read at the generator's resolution."),
    out: Path = typer.Option(Path("out/kpl.json"), help="JSON result; the Fig. 4 picture is written beside it "
                             "(.png)."),
    n_train: int = typer.Option(10000, help="Generator samples to fit the linear map on (N_tr, App. B.2)."),
    n_test: int = typer.Option(256, help="Real faces to project and score on (N_ts, App. B.2)."),
    projection_steps: int = typer.Option(1000, help="Optimisation steps per projection (StyleGAN2 projector)."),
    seed: int = typer.Option(0, help="Generator samples, projection noise and the KPL(random) permutation."),
    batch: int = typer.Option(32, help="Generator samples per batch."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
) -> None:
    """Keypoints Prediction Loss (INR-GAN Table 3, Algorithm 1): how well a linear map predicts 68 face keypoints
    from Z and W latents; needs dlib (pip install 'inrkit[kpl]'). Example: inrkit kpl out/gan.safetensors
    --faces ffhq256/ --out out/kpl.json"""
    from inrkit.stages.kpl import kpl as run

    result = run(generator, faces, out=out, n_train=n_train, n_test=n_test, projection_steps=projection_steps,
                 seed=seed, batch=batch, device=device)
    s = result["kpl"]
    print(f"KPL(Z) {s['z']:.4g}  KPL(W) {s['w']:.4g}  KPL(random) {s['random_z']:.4g} (Z) {s['random_w']:.4g} (W)")


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
    fourier_scale: float = typer.Option(10.0, help="Std of the initial Fourier frequencies (radians per unit of "
                                        "[0, 1]); lower it for smooth, low-resolution data."),
    z_dim: int = typer.Option(512, help="Latent size."),
    hyper_hidden: int = typer.Option(1024, help="Hypernetwork width."),
    d_channel_base: int = typer.Option(16384, help="Discriminator channel base (16384: config-e)."),
    d_channel_max: int = typer.Option(512, help="Discriminator channels at most."),
    kimg: float = typer.Option(25000, help="Thousands of real images in all; rerun with more to extend."),
    seconds: float | None = typer.Option(None, help="Stop this run after this much wall time (with a snapshot); "
                                         "rerun to continue."),
    batch: int = typer.Option(32, help="Images per step over all processes."),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Random horizontal flips of the training images "
                              "(the paper's; turn off where mirroring changes meaning, e.g. digits)."),
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
        modulation=modulation, fourier=fourier, multiscale=multiscale, upsample=upsample,
        fourier_scale=fourier_scale, z_dim=z_dim,
        hyper_hidden=hyper_hidden, d_channel_base=d_channel_base, d_channel_max=d_channel_max, kimg=kimg,
        seconds=seconds, batch=batch, flip=flip, lr_g=lr_g, lr_shared=lr_shared, lr_d=lr_d, r1_gamma=r1_gamma,
        r1_every=r1_every,
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
