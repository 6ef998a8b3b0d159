"""`inrkit encode GINR_MODEL`: every image to its R latent tokens by one forward pass of the GINR encoder (Lee et
al. 2023, Sec. 3.2; no inner loop), written as a token functaset (kind `ginr-functaset`, inrkit.models.ginr_family):
latents (N, R, d), labels (N,) (-1 when unlabelled) and psnr (N,) of each reconstruction on the training grid,
with the model embedded unless told otherwise. `meta --arch ginr` writes its final sets with write_token_functaset.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from inrkit.core import artifacts, runtime
from inrkit.core.checks import require_at_least, require_writable
from inrkit.core.errors import InrkitError
from inrkit.core.precision import compile_module, resolve_precision
from inrkit.core.runtime import pick_device, print0
from inrkit.data import open_dataset
from inrkit.metrics.image import psnr_per_item
from inrkit.models import ginr_family, registry
from inrkit.models.ginr import LocalityAwareINR
from inrkit.models.metalearn import image_targets
from inrkit.stages.encode import dataset_record, encode_items, functaset_artifact, summary_metrics


@torch.no_grad()
def encode_tokens(model: LocalityAwareINR, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, C, H, W) in [-1, 1] -> their tokens (B, R, d) and the PSNR (B,) of the clamped reconstruction
    on the images' own pixel grid."""
    tokens = model.encode(images)
    targets, _ = image_targets(images)
    recon = model.render(tokens, tuple(images.shape[-2:]), chunk=ginr_family.MAX_CHUNK).float()
    return tokens.float(), psnr_per_item(recon.flatten(1, 2).clamp(0, 1), targets)


def write_token_functaset(path: Path, model: LocalityAwareINR, model_path: str | Path, dataset, *, batch: int = 64,
                          workers: int = 0, embed_model: bool = True, progress: bool = True,
                          options: dict | None = None) -> dict:
    """Encode a dataset and write its token functaset (rank 0); returns the summary metrics on every rank."""
    start = time.perf_counter()
    device = next(model.parameters()).device
    empty = torch.zeros(0, model.config["tokens"], model.config["dim"], device=device)
    latents, labels, psnr = encode_items(lambda images: encode_tokens(model, images), empty, dataset, batch,
                                         workers, progress)
    metrics = summary_metrics(psnr, time.perf_counter() - start)
    if runtime.is_rank0():
        artifacts.save(path, functaset_artifact(model, model_path, latents, labels, psnr, data=dataset_record(dataset),
                                                steps=None, embed_model=embed_model, metrics=metrics,
                                                options=options, kind=ginr_family.SET_KIND))
    return metrics


def encode_ginr(
    model: Path,                       # a ginr-model artifact written by `inrkit meta --arch ginr`
    data: str,                         # images to encode (see inrkit.data.DATA_HELP)
    out: Path,                         # the token functaset artifact (.safetensors)
    split: str = "train",              # built-in sets: train or heldout
    count: int | None = None,          # encode the first `count` images (default: all)
    labels: bool = False,              # store class labels (folder names, digits, photo names); else -1
    resolution: int | None = None,     # image side; default and only accepted value: the model's (its patch grid)
    batch: int = 64,                   # images per forward pass (results do not depend on it)
    workers: int = 2,                  # decoding processes
    embed_model: bool = True,          # store the model's tensors inside the set (renders with no other file)
    device: str = "auto",
    progress: bool = True,
    precision: str = "auto",           # the forward pass's autocast: auto | fp32 | bf16 | tf32
    compile: bool = False,             # torch.compile the decoder's forward
    **functa_only,                     # functa-model options given for a ginr-model: refused in one sentence
) -> dict:
    """Encode `data` with the GINR `model` and write the token functaset; return its summary metrics."""
    given = [k for k, v in functa_only.items() if v is not None]
    if given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise InrkitError(f"{flags} {'apply' if len(given) > 1 else 'applies'} to functa-model artifacts, not to a "
                          f"ginr-model artifact (it encodes in one forward pass).")
    out = require_writable(out, ".safetensors")
    require_at_least(1, batch=batch)
    dev = pick_device(device)
    runtime.init_distributed(dev)
    net = registry.load(model, ginr_family.MODEL_KIND, dev)
    compile_module(net.decoder, dev, compile)
    side = net.resolution
    if resolution is not None and (resolution, resolution) != side:
        raise InrkitError(f"{model} was trained on {side[0]}x{side[1]} images and encodes only that size (its patch "
                          f"grid and positional embedding), not {resolution}x{resolution}; render at other sizes "
                          "with `inrkit render --size`.")
    if side[0] != side[1]:
        raise InrkitError(f"{model} was trained on {side[0]}x{side[1]} images; `inrkit encode` reads square images.")
    dataset = open_dataset(data, side[0], net.config["channels"], labels=labels, split=split, count=count)
    options = dict(model=str(model), data=data, split=split, count=count, labels=labels, resolution=side[0],
                   batch=batch, embed_model=embed_model)
    with resolve_precision(precision, dev).autocast():
        metrics = write_token_functaset(out, net, model, dataset, batch=batch, workers=workers,
                                        embed_model=embed_model, progress=progress, options=options)
    print0(f"encoded {metrics['count']} images in one forward pass: PSNR {metrics['psnr']:.2f} dB  "
           f"{metrics['images_per_second']:.1f} images/s -> {out}")
    return metrics
