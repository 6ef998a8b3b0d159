"""`inrkit encode`: convert every image of a dataset to its functa latent by the inner loop (a functaset), or,
given a ginr-model, to its latent tokens by one forward pass (a token functaset, kind ginr-functaset).

A functaset artifact (kind `functaset`: inrkit.models.functa_family, which rebuilds and draws it) holds latents
(N, s, s, c), labels (N,) (-1 when unlabelled) and psnr (N,) of each reconstruction; with --bits also the
quantisation codes (N, s, s, c) uint8 and the per-dimension range lo, hi (s, s, c), the latents then being the
dequantised values (App. C.4.4). Unless told otherwise it embeds its model's tensors under `model.`
(MODEL_PREFIX), so it renders with no other file; its config names the model's config and sha256 either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from inrkit.core import artifacts, runtime
from inrkit.core.checks import flag, require_at_least, require_writable
from inrkit.core.errors import InrkitError
from inrkit.core.precision import compile_module, resolve_precision
from inrkit.core.progress import progress_bar
from inrkit.core.runtime import pick_device, print0
from inrkit.data import open_dataset
from inrkit.data.augment import Augmented
from inrkit.metrics.image import psnr_per_item
from inrkit.models import functa_family, ginr_family, inrgan_family, registry
from inrkit.models.functa import SpatialFuncta
from inrkit.models.functa_family import MODEL_PREFIX
from inrkit.models.ginr import LocalityAwareINR
from inrkit.models.metalearn import encode as encode_images
from inrkit.models.metalearn import image_targets
from inrkit.stages.project import encode_generator

BITS = (6, 7, 8)  # App. C.4.4 / Fig. 11: 32-bit floats and 8, 7, 6 bits per latent dimension


def check_resolution(model: SpatialFuncta, resolution: int | None, model_path: str | Path) -> int:
    """The model encodes images at its training resolution only: its SIREN and Meta-SGD rates were
    meta-learned for that pixel grid (local patch coordinates, binary code length)."""
    d = model.resolution
    if resolution is not None and resolution != d:
        raise InrkitError(f"{model_path} was meta-learned on {d}x{d} images and can encode only that resolution, "
                          f"not {resolution}x{resolution}; render at other sizes with `inrkit render --size`.")
    return d


def _loader(dataset, indices: list[int], batch: int, workers: int):
    subset = torch.utils.data.Subset(dataset, indices)
    return torch.utils.data.DataLoader(subset, batch_size=batch, shuffle=False, num_workers=workers)


def _gather(tensor: torch.Tensor, total: int) -> torch.Tensor:
    """Concatenate each rank's contiguous share (padded to equal length for all_gather) in rank order."""
    if runtime.world_size() == 1:
        return tensor
    share = -(-total // runtime.world_size())
    padded = torch.zeros(share, *tensor.shape[1:], dtype=tensor.dtype, device=tensor.device)
    padded[: len(tensor)] = tensor
    parts = [torch.empty_like(padded) for _ in range(runtime.world_size())]
    torch.distributed.all_gather(parts, padded)
    return torch.cat(parts)[:total]


def rank_share(total: int) -> list[int]:
    """This rank's contiguous block of item indices (the last rank may hold fewer)."""
    share = -(-total // runtime.world_size())
    return list(range(min(runtime.rank() * share, total), min((runtime.rank() + 1) * share, total)))


def encode_dataset(model: SpatialFuncta, dataset, steps: int = 3, batch: int = 64, workers: int = 0,
                   progress: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every image -> (latents (N, s, s, c), labels (N,), psnr (N,)) on the model's device, split across ranks."""
    return encode_items(lambda images: encode_images(model, images, steps), model.zero_latents(0), dataset,
                        batch, workers, progress)


def encode_items(encode_batch: Callable, empty: torch.Tensor, dataset, batch: int = 64, workers: int = 0,
                 progress: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every image through `encode_batch` (images (B, C, H, W) on empty's device -> latents, psnr (B,)) ->
    (latents, labels (N,), psnr (N,)) on the CPU, split across ranks; `empty` holds 0 latents of the right shape."""
    device = empty.device
    latents, labels, psnrs = [], [], []
    indices = rank_share(len(dataset))
    with progress_bar(f"encode {len(dataset)} images", len(indices), enabled=progress, unit="img") as update:
        for images, label in _loader(dataset, indices, batch, workers):
            z, p = encode_batch(images.to(device))
            latents.append(z)
            labels.append(label.to(device))
            psnrs.append(p)
            update(len(images), psnr=p.mean().item())
    cat = [torch.cat(x) if x else None for x in (latents, labels, psnrs)]
    if cat[0] is None:  # a rank with no items still joins the all_gather
        cat = [empty, torch.zeros(0, dtype=torch.int64, device=device), torch.zeros(0, device=device)]
    return tuple(_gather(t, len(dataset)).cpu() for t in cat)


def quantize(latents: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Uniform quantisation of each latent dimension over the set (App. C.4.4: 2^bits uniform bins between the
    dimension's min and max). latents (N, s, s, c) -> (codes uint8, lo, hi (s, s, c), dequantised bin centres)."""
    if bits not in BITS:
        raise InrkitError(f"--bits must be one of {', '.join(map(str, BITS))}, got {bits}.")
    levels = 2**bits
    lo, hi = latents.amin(dim=0), latents.amax(dim=0)
    width = (hi - lo).clamp_min(1e-12) / levels
    codes = torch.floor((latents - lo) / width).clamp(0, levels - 1)
    return codes.to(torch.uint8), lo, hi, lo + (codes + 0.5) * width


@torch.no_grad()
def reconstruction_psnr(model: SpatialFuncta, latents: torch.Tensor, dataset, batch: int = 64,
                        workers: int = 0) -> torch.Tensor:
    """PSNR (N,) of the clamped reconstructions of the given latents against the dataset's images."""
    device = model.meta_lr.device
    out, start = [], 0
    for images, _ in _loader(dataset, list(range(len(dataset))), batch, workers):
        targets, coords = image_targets(images.to(device))
        z = latents[start : start + len(images)].to(device)
        out.append(psnr_per_item(model(z, coords).clamp(0, 1), targets).cpu())
        start += len(images)
    return torch.cat(out)


def functaset_artifact(model: SpatialFuncta, model_path: str | Path, latents, labels, psnr, *, data: dict,
                       steps: int | None, embed_model: bool = True, quantized: dict | None = None,
                       metrics: dict | None = None, options: dict | None = None,
                       kind: str = functa_family.SET_KIND) -> artifacts.Artifact:
    """Assemble a functaset: latents, labels, psnr (+ quantisation tensors) and, embedded, the model (any module
    with a `config`: a GINR token functaset is kind ginr-functaset, with no inner-loop steps to record)."""
    tensors = dict(latents=latents.float(), labels=labels.long(), psnr=psnr.float())
    if quantized:
        tensors.update(quantized)
    if embed_model:
        tensors.update({MODEL_PREFIX + k: v for k, v in model.state_dict().items()})
    model_sha = artifacts.sha256(model_path) if Path(model_path).is_file() else ""
    config = dict(model=model.config, model_path=str(model_path), model_sha256=model_sha,
                  embedded_model=embed_model, data=data, **({} if steps is None else dict(steps=steps)))
    return artifacts.Artifact(kind=kind, tensors=tensors, config=config,
                              options=options or {}, parents={str(model_path): model_sha} if model_sha else {},
                              metrics=metrics or {})


def summary_metrics(psnr: torch.Tensor, seconds: float) -> dict:
    return dict(psnr=psnr.mean().item(), psnr_median=psnr.median().item(), psnr_min=psnr.min().item(),
                count=len(psnr), seconds=seconds, images_per_second=len(psnr) / max(seconds, 1e-9))


def dataset_record(dataset) -> dict:
    """What a functaset records of the images it encodes (meta's rerun compares the fingerprint)."""
    return dict(spec=dataset.spec, split=dataset.split, count=len(dataset), resolution=dataset.resolution,
                channels=dataset.channels, fingerprint=dataset.fingerprint, classes=list(dataset.classes))


def write_functaset(path: Path, model: SpatialFuncta, model_path: str | Path, dataset, *, steps: int = 3,
                    bits: int | None = None, batch: int = 64, workers: int = 0, embed_model: bool = True,
                    progress: bool = True, options: dict | None = None) -> dict:
    """Encode a dataset and write its functaset (rank 0); returns the summary metrics on every rank."""
    start = time.perf_counter()
    latents, labels, psnr = encode_dataset(model, dataset, steps, batch, workers, progress)
    metrics = summary_metrics(psnr, time.perf_counter() - start)
    quantized = None
    if bits is not None:
        codes, lo, hi, latents = quantize(latents, bits)
        psnr_float, psnr = psnr, reconstruction_psnr(model, latents, dataset, batch, workers)
        quantized = dict(codes=codes, lo=lo, hi=hi)
        metrics.update(psnr=psnr.mean().item(), psnr_median=psnr.median().item(), psnr_min=psnr.min().item(),
                       bits=bits, psnr_unquantized=psnr_float.mean().item(),
                       psnr_change=psnr.mean().item() - psnr_float.mean().item())
    if runtime.is_rank0():
        artifacts.save(path, functaset_artifact(model, model_path, latents, labels, psnr,
                                                data=dataset_record(dataset), steps=steps,
                                                embed_model=embed_model, quantized=quantized, metrics=metrics,
                                                options=options))
    return metrics


def encode(
    model: Path,                       # a functa-model artifact written by `inrkit meta`
    data: str,                         # images to encode (see inrkit.data.DATA_HELP)
    out: Path,                         # the functaset artifact (.safetensors)
    steps: int = 3,                    # inner SGD steps from zero latents (Sec. 4: 3; more = test-time optimisation)
    bits: int | None = None,           # quantise each latent dimension to 2^bits uniform bins (App. C.4.4): 6, 7, 8
    split: str = "train",              # built-in sets: train or heldout
    count: int | None = None,          # encode the first `count` images (default: all)
    labels: bool = False,              # store class labels (folder names, digits, photo names); else -1
    resolution: int | None = None,     # image side; default and only accepted value: the model's
    batch: int = 64,                   # images per inner-loop batch (results do not depend on it)
    workers: int = 2,                  # decoding processes
    embed_model: bool = True,          # store the model's tensors inside the functaset (renders with no other file)
    augment: int | None = None,        # K random crop (+ flip) copies of every image (App. B.1/C.1: 50 on CIFAR-10)
    augment_pad: int | None = None,    # zero padding of the crops (App. B.1: 4 at 32 px; default resolution / 8)
    augment_flip: bool = True,         # random left-right flips of the copies (off where mirroring changes meaning)
    device: str = "auto",
    progress: bool = True,
    precision: str = "auto",           # the inner loop's autocast: auto | fp32 | bf16 | tf32 (inrkit.core.precision)
    compile: bool = False,             # torch.compile the model's forward (the inner loop is first order here)
) -> dict:
    """Encode `data` with `model` and write the functaset; return its summary metrics."""
    out = require_writable(out, ".safetensors")
    if steps < 0 or batch < 1:
        raise InrkitError(f"--steps must be at least 0 and --batch at least 1, got {steps} and {batch}.")
    if bits is not None and bits not in BITS:
        raise InrkitError(f"--bits must be one of {', '.join(map(str, BITS))}, got {bits}.")
    dev = pick_device(device)
    runtime.init_distributed(dev)
    autocast = resolve_precision(precision, dev).autocast()
    net = compile_module(registry.load(model, functa_family.MODEL_KIND, dev), dev, compile)
    res = check_resolution(net, resolution, model)
    dataset = open_dataset(data, res, net.config["channels"], labels=labels, split=split, count=count)
    if augment is not None:
        dataset = Augmented(dataset, augment, pad=res // 8 if augment_pad is None else augment_pad,
                            flip=augment_flip)
    options = dict(model=str(model), data=data, steps=steps, bits=bits, split=split, count=count, labels=labels,
                   resolution=res, batch=batch, embed_model=embed_model, augment=augment, augment_pad=augment_pad,
                   augment_flip=augment_flip)
    with autocast:
        metrics = write_functaset(out, net, model, dataset, steps=steps, bits=bits, batch=batch, workers=workers,
                                  embed_model=embed_model, progress=progress, options=options)
    change = f"  ({metrics['psnr_change']:+.2f} dB from {bits}-bit quantisation)" if bits else ""
    print0(f"encoded {metrics['count']} images in {steps} steps: PSNR {metrics['psnr']:.2f} dB{change}  "
           f"{metrics['images_per_second']:.1f} images/s -> {out}")
    return metrics


# ---- a ginr-model: every image to its R latent tokens by one forward pass of the GINR encoder (Lee et al. 2023,
# Sec. 3.2; no inner loop), written as a token functaset (kind ginr-functaset, inrkit.models.ginr_family): latents
# (N, R, d), labels (N,) (-1 when unlabelled) and psnr (N,) of each reconstruction on the training grid, the model
# embedded unless told otherwise. `meta --arch ginr` writes its final sets with write_token_functaset.

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


@dataclass(frozen=True)
class Encoder:
    """What `inrkit encode` does with one kind of artifact: `run(artifact, images, out, **options, **common)`."""

    kind: str
    group: str  # the keyword of encode_artifact holding this kind's own options
    run: Callable[..., dict]
    out: str  # the default --out
    defaults: dict  # defaults of the options both kinds take, where this kind's differ


ENCODERS = (
    # inner-loop steps from zero latents (Sec. 4: 3) and images per batch (results do not depend on it)
    Encoder(functa_family.MODEL_KIND, "functa", encode, "out/functaset.safetensors", dict(steps=3, batch=64)),
    # the StyleGAN2 projector's steps (App. B.2) and images optimised together
    Encoder(inrgan_family.KIND, "generator", encode_generator, "out/latents.safetensors", dict(steps=1000, batch=16)),
    # one forward pass of the GINR encoder; it takes the functa options that apply to it (labels, resolution, ...)
    Encoder(ginr_family.MODEL_KIND, "functa", encode_ginr, "out/token-functaset.safetensors", dict(batch=64)),
)


def _encoder(kind: str, artifact: Path, groups: dict[str, dict]) -> Encoder:
    """The encoder of `kind`, after refusing the options (given, i.e. not None) of the other kinds."""
    found = [e for e in ENCODERS if e.kind == kind]
    if not found:
        raise InrkitError(f"{artifact} is a {kind} artifact; `encode` takes a "
                          f"{' or a '.join(e.kind for e in ENCODERS)} artifact.")
    for other in ENCODERS:
        names = [flag(k) for k, v in groups.get(other.group, {}).items() if v is not None]
        if names and other.group != found[0].group:
            raise InrkitError(f"{', '.join(names)} {'apply' if len(names) > 1 else 'applies'} to {other.kind} "
                              f"artifacts, not to a {kind} artifact.")
    return found[0]


def encode_artifact(
    artifact: Path,                    # a functa-model or ginr-model (from meta) or a generator (train-gan) artifact
    images: str | None = None,         # images to encode; --data is the same thing (either, not both)
    *,
    data: str | None = None,
    out: Path | None = None,           # default: out/functaset.safetensors or out/latents.safetensors
    functa: dict | None = None,        # functa-model options (bits, labels, resolution, embed_model, workers)
    generator: dict | None = None,     # generator options (space, lr, noise, perceptual, seed)
    **common,                          # both kinds: steps, batch, count, split, device, progress, precision, compile
) -> dict:
    """`inrkit encode`: dispatch on the artifact's kind (ENCODERS); options of the other kind (given, i.e. not
    None) are refused in one sentence. Returns the stage's metrics."""
    groups = dict(functa=functa or {}, generator=generator or {})
    encoder = _encoder(artifacts.kind_of(artifact), artifact, groups)
    if images is not None and data is not None:
        raise InrkitError("give the images once: as the IMAGES argument or as --data, not both.")
    images = images if images is not None else data
    if images is None:
        raise InrkitError(f"no images to encode; pass them after {artifact} (or as --data).")
    common = {k: (encoder.defaults.get(k) if v is None else v) for k, v in common.items()
              if v is not None or k in encoder.defaults}
    options = {k: v for k, v in groups[encoder.group].items() if v is not None}
    return encoder.run(artifact, images, Path(out or encoder.out), **options, **common)
