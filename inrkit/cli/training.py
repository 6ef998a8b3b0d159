"""`inrkit fit`, `inrkit meta`, `inrkit train-gan`: options declared from the stages' configs
(inrkit/stages/configs.py), resolved as dataclass defaults < `--config` recipe < command line, then one stage call.
"""

from __future__ import annotations

import typer

from inrkit.cli.declare import command
from inrkit.stages.configs import ClassifierConfig, DiffusionConfig, FitConfig, MetaConfig, TrainGanConfig

FIT_DOC = """Fit one signal. Example: inrkit fit builtin:camera --arch loe --size 256 --out out/camera.safetensors"""
META_DOC = """Meta-learn (spatial) functa and encode functasets. Example: inrkit meta --data builtin:photos
    --latent 8x8x16 --interp nearest --width 64 --depth 4 --lr 1e-3 --batch 16 --steps 2000 --out out/sf.safetensors
    (paper settings: --config recipes/spatial-functa-cifar10.json; 2 processes: torchrun --nproc_per_node 2
    -m inrkit.cli meta ...)"""
TRAIN_GAN_DOC = """Train an INR-GAN generator (StyleGAN2 settings, App. A). Example: inrkit train-gan --data
    builtin:photos --resolution 32 --blocks 16x2x128,32x2x128 --kimg 500 --out out/gan.safetensors
    (rerun the same command to resume; 2 processes: torchrun --nproc_per_node 2 -m inrkit.cli train-gan ...)"""


def run_fit(kw: dict) -> None:
    """--size is text on the command line and in a recipe; the stage takes (H, W)."""
    from inrkit.core.parse import parse_size
    from inrkit.stages.fit import fit

    size = kw["size"]
    fit(**dict(kw, size=parse_size(str(size)) if size else None))


def run_meta(kw: dict) -> None:
    from inrkit.stages.meta import meta

    meta(**kw)


def run_train_gan(kw: dict) -> None:
    from inrkit.stages.train_gan import train_gan

    train_gan(**kw)


TRAIN_CLASSIFIER_DOC = """Train a classifier on a labelled functaset (spatial functa App. C). Example: inrkit
    train-classifier --data out/sf/functaset-train.safetensors --eval out/sf/functaset-heldout.safetensors
    --width 64 --depth 4 --heads 4 --steps 2000 --out out/classifier.safetensors
    (paper settings: --config recipes/classifier-cifar10.json; rerun the same command to resume)"""


def run_train_classifier(kw: dict) -> None:
    from inrkit.stages.train_classifier import train_classifier

    train_classifier(**kw)


TRAIN_DIFFUSION_DOC = """Train a diffusion model on a functaset (spatial functa App. C). Example: inrkit
    train-diffusion --data out/sf/functaset-train.safetensors --channels 64 --channel-mult 1,2 --batch 64
    --steps 5000 --out out/diffusion.safetensors; then inrkit render out/diffusion.safetensors --seeds 0-63 --cfg 4
    --sampler ddim --steps 50 (paper settings: --config recipes/diffusion-cifar10.json; rerun to resume)"""


def run_train_diffusion(kw: dict) -> None:
    from inrkit.stages.train_diffusion import train_diffusion

    train_diffusion(**kw)


def register(app: typer.Typer) -> None:
    """Add the training commands to `app`."""
    app.command("fit")(command(FitConfig, run_fit, doc=FIT_DOC, arguments=("signal",)))
    app.command("meta")(command(MetaConfig, run_meta, doc=META_DOC,
                                flags=dict(first_order="--first-order/--second-order")))
    app.command("train-gan")(command(TrainGanConfig, run_train_gan, doc=TRAIN_GAN_DOC))
    app.command("train-classifier")(command(ClassifierConfig, run_train_classifier, doc=TRAIN_CLASSIFIER_DOC))
    app.command("train-diffusion")(command(DiffusionConfig, run_train_diffusion, doc=TRAIN_DIFFUSION_DOC,
                                           flags=dict(cond="--cond/--no-cond")))
