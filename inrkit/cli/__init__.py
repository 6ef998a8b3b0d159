"""The `inrkit` command line: one command per stage; each parses options and calls one stage function.

The training commands (fit, meta, train-gan) are declared from their configs in inrkit/cli/training.py; the
others are declared here by hand; `data` and `info` are sub-apps. `main` is the one place user errors are
printed (inrkit/cli/errors.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from inrkit.cli.errors import user_errors
from inrkit.core.errors import InrkitError
from inrkit.core.precision import COMPILE_HELP, PRECISION_HELP

app = typer.Typer(
    help="Implicit neural representations: fit, meta-learn, GANs, diffusion, and rendering on any grid.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    if debug:
        os.environ["INRKIT_DEBUG"] = "1"


@app.command()
def classify(
    classifier: Path = typer.Argument(..., help="A classifier artifact (from train-classifier)."),
    data: str = typer.Option(..., help="Images (a folder, .zip, shards or builtin:NAME), encoded through the "
                             "classifier's functa model, or a functaset of that model (.safetensors)."),
    out: Path = typer.Option(Path("out/predictions.json"), help="Predictions (.json or .csv); the confusion "
                             "matrix PNG is written beside it."),
    split: str = typer.Option("train", help="train | heldout (builtin: sets)."),
    count: int | None = typer.Option(None, help="Use the first N images."),
    resolution: int | None = typer.Option(None, help="Image side; only the functa model's training resolution."),
    steps: int = typer.Option(3, help="Inner SGD steps when encoding images (Sec. 4: 3)."),
    batch: int = typer.Option(64, help="Images per encoding batch."),
    labels: bool = typer.Option(True, "--labels/--no-labels", help="Read class labels to score the predictions."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
) -> None:
    """Classify images or a functaset; prints top-1/top-5 when labels exist. Example: inrkit classify
    out/classifier.safetensors --data builtin:digits --split heldout --out out/predictions.json"""
    from inrkit.stages.classify import classify as run

    run(classifier, data, out=out, split=split, count=count, resolution=resolution, steps=steps, batch=batch,
        labels=labels, device=device)


def _mount_training() -> None:
    from inrkit.cli import training

    training.register(app)


_mount_training()


@app.command()
def render(
    artifact: Path = typer.Argument(..., help="A field (from fit), functaset (from meta or encode), "
                                "generator (from train-gan) or diffusion (from train-diffusion) artifact."),
    out: Path = typer.Option(Path("out/render.png"), help="Output .png (video: .gif or a folder of frames)."),
    size: str | None = typer.Option(None, help="Output size N or HxW (any resolution)."),
    scale: float | None = typer.Option(None, help="Grid density relative to training: 2 = superresolution."),
    fps_scale: int | None = typer.Option(None, "--fps-scale", help="Video field: render K times as many frames, "
                                         "the in-between times (temporal superresolution); every K-th frame is a "
                                         "plain render's."),
    grid: str | None = typer.Option(None, help="Coordinate range lo,hi or lo_x,hi_x,lo_y,hi_y; training "
                                       "range is 0,1 (e.g. --grid=-0.3,1.3 zooms out)."),
    chunk: int = typer.Option(2**16, help="Points per evaluation chunk (bounds memory)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    index: str | None = typer.Option(None, help="Functaset items to draw, e.g. 0-15 or 3,7,10-12."),
    model: Path | None = typer.Option(None, help="Functaset: its functa-model (token functaset: its ginr-model), "
                                         "when not embedded."),
    perturb: int | None = typer.Option(None, help="Functaset: shift this latent dimension everywhere "
                                          "(perturbation analysis, spatial functa App. C.5)."),
    locality: int | None = typer.Option(None, help="GINR token functaset: the locality picture for token K "
                                           "(Sec. 4.3): the token each pixel attends to most, the pixels attending "
                                           "to K, and the change when K is zeroed."),
    seeds: str | None = typer.Option(None, help="Generator: samples to draw, e.g. 0-15 (default) or 3,7,10-12."),
    psi: float | None = typer.Option(None, help="Generator: truncation psi (App. B.3; default 1, none)."),
    interpolate: str | None = typer.Option(None, help="Generator: two seeds A,B; draw a row from A to B."),
    steps: int | None = typer.Option(None, help="Generator: images in the --interpolate row (default 8); "
                                     "diffusion: DDIM steps (default 50)."),
    space: str | None = typer.Option(None, help="Generator: interpolate inr parameters (default) or pixels."),
    frequencies: bool = typer.Option(False, "--frequencies",
                                     help="Generator: write the per-block Fourier frequency histogram instead."),
    label: int | None = typer.Option(None, "--class", "--label", help="Diffusion: the class to sample "
                                     "(conditional models; default: seed k gets class k mod classes)."),
    cfg: float | None = typer.Option(None, help="Diffusion: classifier-free guidance scale (0: unconditional, "
                                     "1: conditional; the paper: 4-5)."),
    sampler: str | None = typer.Option(None, help="Diffusion: ddpm (default, all 1000 steps) | ddim (--steps, "
                                       "default 50)."),
    eta: float | None = typer.Option(None, help="Diffusion: DDIM eta (default 0, deterministic)."),
    save_latents: Path | None = typer.Option(None, help="Diffusion: also write the sampled latents as a "
                                             "functaset (.safetensors)."),
    precision: str = typer.Option("auto", help=PRECISION_HELP),
    compile: bool = typer.Option(False, "--compile/--no-compile", help=COMPILE_HELP),
) -> None:
    """Render an INR on any grid. Example: inrkit render out/camera.safetensors --scale 2 --out x2.png"""
    from inrkit.core.parse import parse_index, parse_ranges, parse_size
    from inrkit.stages.render import render as run

    if chunk < 1:
        raise InrkitError("--chunk must be at least 1.")
    run(artifact, out, size=parse_size(size) if size else None, scale=scale, fps_scale=fps_scale,
        grid=parse_ranges(grid) if grid else None, chunk=chunk, device=device,
        index=parse_index(index) if index else None, model=model, perturb=perturb, locality=locality,
        seeds=_seeds(seeds, "--seeds"), psi=psi, interpolate=_seeds(interpolate, "--interpolate"), steps=steps,
        space=space, frequencies=frequencies, label=label, cfg=cfg, sampler=sampler, eta=eta,
        save_latents=save_latents, precision=precision, compile=compile)


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
def encode(
    artifact: Path = typer.Argument(..., help="A functa-model or ginr-model (from meta) or generator (from "
                                    "train-gan) artifact."),
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
    augment: int | None = typer.Option(None, help="functa: encode K random crop (+ flip) copies of every image "
                                       "(spatial functa App. C.1: 50)."),
    augment_pad: int | None = typer.Option(None, help="functa: zero padding of the --augment crops (default: the "
                                           "resolution / 8, App. B.1's 4 at 32 px)."),
    augment_flip: bool | None = typer.Option(None, "--augment-flip/--no-augment-flip",
                                             help="functa: flip --augment copies left-right at random (default on)."),
    space: str | None = typer.Option(None, help="generator: latent space w (default, the mapping output) or z."),
    lr: float | None = typer.Option(None, help="generator: initial learning rate (default 0.1)."),
    noise: float | None = typer.Option(None, help="generator: initial latent-noise factor (default 0.05)."),
    perceptual: bool | None = typer.Option(None, "--perceptual/--no-perceptual",
                                           help="generator: Inception distance + pixel MSE (default), or MSE alone."),
    seed: int | None = typer.Option(None, help="generator: latent-noise streams (default 0)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    precision: str = typer.Option("auto", help=PRECISION_HELP),
    compile: bool = typer.Option(False, "--compile/--no-compile", help=COMPILE_HELP),
) -> None:
    """Convert images to latents. A functa-model gives functa latents (a functaset): inrkit encode out/sf.safetensors
    --data builtin:photos --split heldout --steps 3 --bits 6 --out out/heldout.safetensors. A ginr-model gives
    latent tokens in one forward pass (a token functaset): inrkit encode out/ginr.safetensors --data D --labels.
    A generator projects
    images into its z or w space (StyleGAN2 projector, INR-GAN App. B.2): inrkit encode out/gan.safetensors
    photos/ --space w --steps 1000 --out out/latents.safetensors (targets over reconstructions in latents.png)."""
    from inrkit.stages.encode import encode_artifact

    encode_artifact(artifact, images, data=data, out=out, steps=steps, count=count, split=split, batch=batch,
                    device=device, functa=dict(bits=bits, labels=labels, resolution=resolution, workers=workers,
                                               embed_model=embed_model, augment=augment, augment_pad=augment_pad,
                                               augment_flip=augment_flip),
                    generator=dict(space=space, lr=lr, noise=noise, perceptual=perceptual, seed=seed),
                    precision=precision, compile=compile)


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
    precision: str = typer.Option("auto", help="Generator sampling: " + PRECISION_HELP + " (the Inception "
                                  "features stay fp32)."),
    compile: bool = typer.Option(False, "--compile/--no-compile", help=COMPILE_HELP),
) -> None:
    """FID (clean-fid, mode clean) of a generator or of images against reference images; prints it on stdout.
    Example: inrkit fid out/generator.safetensors --data builtin:photos --n 10000
    (images against images: inrkit fid samples/ --data real/ --resolution 64;
    UpsampledFID, Fig. 3: inrkit fid out/generator.safetensors --data real/ --scale 2 --upsample all)"""
    from inrkit.stages.fid import fid as run

    value = run(source, data, n=n, data_count=data_count, resolution=resolution, scale=scale, upsample=upsample,
                compare_out=compare_out, psi=psi, seed=seed, batch=batch, workers=workers, device=device,
                cache_dir=cache_dir, stats=stats, precision=precision, compile=compile)
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


def _mount_subcommands() -> None:
    from inrkit.cli import info
    from inrkit.cli.data import data_app

    app.add_typer(data_app, name="data", help="Look at datasets and pack them into webdataset shards.")
    info.register(app)


_mount_subcommands()


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 1, a command line click cannot parse one
    line and exit code 2, Ctrl-C outside a training loop 'interrupted' and 130 (--debug shows the traceback)."""
    try:
        with user_errors():
            code = app(standalone_mode=False)  # click's usage errors come here instead of its 4-line usage box
    except (typer.Abort, KeyboardInterrupt):  # click turns Ctrl-C into Abort
        print("inrkit: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as err:
        if not _usage_error(err):
            raise
        if type(err).__name__ == "NoArgsIsHelpError":  # `inrkit` or `inrkit data` alone: the help is the answer
            print(err.format_message())
            sys.exit(err.exit_code)
        where = f"; see {err.ctx.command_path} --help" if getattr(err, "ctx", None) is not None else ""
        print(f"inrkit: error: {' '.join(err.format_message().split()).rstrip('.')}{where}.", file=sys.stderr)
        sys.exit(err.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


def _usage_error(err: Exception) -> bool:
    """click's UsageError (a missing argument, an unknown option, 'abc' for a number). Found by name: recent
    typers carry their own copy of click, whose classes are not click's."""
    return any(c.__name__ == "UsageError" for c in type(err).__mro__)
