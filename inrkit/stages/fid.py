"""`inrkit fid`: FID of a model's samples, or of a set of images, against reference images (clean-fid, mode "clean").

SOURCE is either
  - an artifact of a family that makes samples (inrkit.models.registry: a family with a `sampler`; today the
    INR-GAN generator, kind "generator"), or such a model object (a generator from a training loop). Sample k
    comes from its own random stream (seed, k) (inrkit.models.sampling), so the samples do not depend on the
    batch size; they are uint8 as a PNG of the sample would be, so FID of a generator equals FID of a folder of
    its saved samples;
  - or any image set the data layer opens (folder, .zip, shards, builtin:NAME).

Both sides are compared at one resolution R: --resolution (or, for a sampled model, --scale times its training
size), else the model's training resolution, else the size of the source images. Image sets (the reference
images always) are converted to R by the data layer (centre crop, LANCZOS down, BICUBIC up).

A generator renders directly at R by default. Above its training size r this is the paper's UpsampledFID
(Sec. 4.2, Fig. 3), whose baselines --upsample selects: samples rendered at r, quantised to uint8 as saved
images are, then upsampled to R by torch interpolation of the pixel values (nearest-exact, bilinear or bicubic,
align_corners=False; bicubic is torch's a = -0.75 kernel, PIL's is a = -0.5), rounded and clipped to uint8.
`inr` renders on the denser grid. `all` scores the four against one reference statistic and draws sample 0
four ways side by side (nearest | bilinear | bicubic | inr) in a PNG.

Reference statistics of --data are computed once and cached in `cache_dir` (default $INRKIT_FID_CACHE, else
~/.cache/inrkit/fid) as a small .npz, written atomically, named and keyed by the dataset's fingerprint (which
covers its content, resolution, count and the data pipeline's version), the extractor's sha1 and the format.

--precision (inrkit.core.precision) applies to the generator's sampling only: the Inception features stay float32,
as the cached reference statistics are. --compile compiles a generator loaded from its artifact.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from inrkit.core import artifacts
from inrkit.core.checks import require_writable
from inrkit.core.errors import InrkitError
from inrkit.core.pictures import save_png, side_by_side
from inrkit.core.precision import Precision, compile_module, resolve_precision
from inrkit.core.progress import StatsWriter
from inrkit.core.runtime import pick_device, print0
from inrkit.data import open_dataset
from inrkit.data.image import BadImage
from inrkit.metrics.fid import (
    EXTRACTOR_SHA1,
    STATS_FORMAT,
    Stats,
    clean_resize,
    extract_features,
    feature_stats,
    fid_from_stats,
    load_inception,
    stats_from_file,
    stats_to_bytes,
)
from inrkit.models import registry
from inrkit.models.sampling import Sampler

DEFAULT_SAMPLES = 50_000  # FID50k: the usual protocol for generators (StyleGAN2, INR-GAN Tables 1-2)
CACHE_ENV = "INRKIT_FID_CACHE"
CLASSICAL = ("nearest", "bilinear", "bicubic")  # UpsampledFID's baselines (Sec. 4.2, Fig. 3)
UPSAMPLES = (*CLASSICAL, "inr")  # ... and the INR rendered on the denser grid
COMPARE_PNG = "upsampled-fid.png"  # --upsample all: one sample four ways, in the current folder by default


def default_cache_dir() -> Path:
    """$INRKIT_FID_CACHE, else $XDG_CACHE_HOME/inrkit/fid, else ~/.cache/inrkit/fid."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "inrkit" / "fid"


# ---------------------------------------------------------------------------------------------------------
# Sample sources


def upsample_pixels(pixels: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """Classical upsampling of uint8 images (B, C, r, r) -> uint8 (B, C, size, size), as of saved samples:
    torch interpolation of the pixel values as floats (align_corners=False; "nearest" is nearest-exact, the
    pixel-centre rule of PIL's NEAREST; bicubic is torch's a = -0.75 kernel), then rounded and clipped."""
    if mode not in CLASSICAL:
        raise ValueError(f"unknown classical upsampling {mode!r}")
    kwargs = dict(mode="nearest-exact") if mode == "nearest" else dict(mode=mode, align_corners=False)
    up = torch.nn.functional.interpolate(pixels.float(), size=(size, size), **kwargs)
    return up.round_().clamp_(0, 255).to(torch.uint8)


def sample_pixels(sampler: Sampler, start: int, count: int, resolution: int, upsample: str = "inr") -> torch.Tensor:
    """Samples at `resolution` as uint8 (count, C, R, R): rendered there by the model ("inr"), or rendered at its
    training size and upsampled classically (nearest | bilinear | bicubic; UpsampledFID, Sec. 4.2)."""
    if upsample == "inr":
        return sampler.draw(start, count, resolution)
    return upsample_pixels(sampler.draw(start, count, None), resolution, upsample)


def sample_features(sampler: Sampler, n: int, model, *, resolution: int, batch: int,
                    upsample: str = "inr") -> np.ndarray:
    """Inception features of samples 0..n-1: (n, 2048)."""
    def batches():
        for start in range(0, n, batch):
            pixels = sample_pixels(sampler, start, min(batch, n - start), resolution, upsample)
            yield torch.stack([clean_resize(p) for p in pixels])

    label = "" if upsample == "inr" and resolution == sampler.resolution else f" ({upsample})"
    return extract_features(batches(), n, model, description=f"FID samples{label}")


# ---------------------------------------------------------------------------------------------------------
# Datasets and the reference cache


class _Resized(torch.utils.data.Dataset):
    """Item i of an image dataset, clean-resized for Inception (in loader workers, when there are some)."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> torch.Tensor:
        return clean_resize(self.ds.pixels(i)[0])


def dataset_features(ds, model, *, batch: int, workers: int, description: str) -> np.ndarray:
    """Inception features of every image of an inrkit dataset: (len(ds), 2048)."""
    loader = torch.utils.data.DataLoader(_Resized(ds), batch_size=batch, shuffle=False, num_workers=workers)
    return extract_features(loader, len(ds), model, description=description)


def _stem(spec: str) -> str:
    """A readable file-name part for a dataset spec: builtin:photos?count=9 -> photos, /data/ffhq/ -> ffhq."""
    name = spec.split(":", 1)[1].split("?")[0] if spec.startswith("builtin:") else Path(spec.rstrip("/")).name
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:40] or "data"


def reference_stats(ds, model, *, cache_dir: Path, batch: int, workers: int) -> tuple[Stats, Path]:
    """Statistics of a reference dataset, from the cache or computed once and cached (atomically)."""
    key = hashlib.blake2b(json.dumps([STATS_FORMAT, EXTRACTOR_SHA1, ds.fingerprint]).encode(),
                          digest_size=8).hexdigest()
    path = Path(cache_dir) / f"{_stem(ds.spec)}-{ds.resolution}px-{len(ds)}-{key}.npz"
    if path.is_file():
        try:
            stats, info = stats_from_file(path)
            if info.get("key") == key and stats.n == len(ds):
                print0(f"reference statistics of {ds.spec} from {path}")
                return stats, path
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass
        print0(f"warning: {path} is not a usable statistics file; computing it again.")
    feats = dataset_features(ds, model, batch=batch, workers=workers, description="FID reference")
    stats = feature_stats(feats)
    info = dict(key=key, spec=ds.spec, fingerprint=ds.fingerprint, resolution=ds.resolution, count=len(ds),
                extractor_sha1=EXTRACTOR_SHA1, format=STATS_FORMAT, mode="clean")
    try:
        artifacts.atomic_write_bytes(path, stats_to_bytes(stats, info))
    except InrkitError as err:  # e.g. the disk filled up while the features were computed
        raise InrkitError(f"{str(err).rstrip('.')}; pass a --cache-dir with room.") from None
    print0(f"cached reference statistics of {ds.spec} in {path}")
    return stats, path


def _native_side(spec: str, role: str) -> int:
    """Shorter side of the first image of a dataset, as stored (before any conversion)."""
    ds = open_dataset(spec, 1, count=1)
    try:
        return min(ds.original(0).size)
    except BadImage:
        raise InrkitError(f"the first image of {role} {spec} cannot be decoded; pass --resolution.") from None


# ---------------------------------------------------------------------------------------------------------
# The stage


def _check_outputs(upsample, compare_out, stats, cache_dir) -> None:
    """Before any work: every file FID writes can be written (the cache, --stats, --compare-out)."""
    require_writable(default_cache_dir() if cache_dir is None else cache_dir, option="cache_dir", folder=True)
    if stats is not None:
        require_writable(stats, option="stats")
    if upsample == "all":
        require_writable(compare_out or COMPARE_PNG, ".png", option="compare_out")


def _check_options(n, data_count, psi, seed, batch, workers, resolution, scale, upsample) -> None:
    for name, value, least in (("--n", n, 2), ("--data-count", data_count, 2), ("--resolution", resolution, 1)):
        if value is not None and value < least:
            raise InrkitError(f"{name} must be at least {least}, got {value}"
                              + (" (a covariance needs two images)." if least == 2 else "."))
    if seed < 0:
        raise InrkitError(f"--seed must be zero or positive, got {seed}.")
    if not 0.0 <= psi <= 1.0:
        raise InrkitError(f"--psi must be in [0, 1], got {psi}.")
    if batch < 1 or workers < 0:
        raise InrkitError(f"--batch must be at least 1 and --workers at least 0, got {batch} and {workers}.")
    if scale is not None and not (scale > 0 and math.isfinite(scale)):
        raise InrkitError(f"--scale must be a positive number, got {scale}.")
    if upsample is not None and upsample not in (*UPSAMPLES, "all"):
        raise InrkitError(f"unknown --upsample {upsample!r}; choose nearest, bilinear, bicubic, inr or all.")


@dataclass
class Source:
    """What FID scores against the reference images: a model's samples (`sampler`) or an image `dataset`."""

    label: str  # the path, or the kind of a model handed over in memory
    noun: str  # what the messages call it: the artifact kind ("generator"), or "image set"
    count: int  # images scored
    trained: int  # its native side: the model's training size, or the images' size
    resolution: int  # R, the side both sets are compared at
    modes: tuple[str, ...] = ("inr",)  # sample paths to score (UpsampledFID baselines)
    sampler: Sampler | None = None
    dataset: object = None


def _is_artifact(source) -> bool:
    return isinstance(source, (str, Path)) and str(source).endswith(".safetensors")


def _target_resolution(trained: int, resolution: int | None, scale: float | None, noun: str = "generator") -> int:
    """The comparison size: --resolution, or --scale times the training size (a whole number of pixels); both
    given must agree."""
    if scale is None:
        return resolution or trained
    side = round(scale * trained)
    if side < 1 or abs(scale * trained - side) > 1e-6:
        raise InrkitError(f"--scale {scale:g} of the {trained}x{trained} training size is not a whole number of "
                          "pixels; choose a scale that gives one, or pass --resolution.")
    if resolution is not None and resolution != side:
        raise InrkitError(f"--scale {scale:g} means {side}x{side} for this {trained}x{trained} {noun} but "
                          f"--resolution is {resolution}; give only one of them.")
    return side


def _upsample_modes(upsample: str | None, trained: int, R: int, compare_out) -> tuple[str, ...]:
    """The sample paths to score: the INR on the R grid by default; --upsample asks for classical ones too."""
    if upsample is None:
        upsample = "inr"
    elif R <= trained:
        raise InrkitError(f"--upsample needs a comparison size above the {trained}x{trained} training size "
                          f"(--scale above 1), not {R}x{R}.")
    if compare_out is not None and upsample != "all":
        raise InrkitError("--compare-out applies only with --upsample all.")
    return UPSAMPLES if upsample == "all" else (upsample,)


def _sampling_family(source, dev: torch.device, compile: bool = False) -> tuple[registry.Family, object, str, str]:
    """(family, model, label, noun) of a model object or of an artifact whose family samples; other kinds are
    refused before anything is loaded. `compile` compiles a model loaded here (never one handed over)."""
    if isinstance(source, torch.nn.Module):
        family = registry.family_for(source)
        return family, source, family.kinds[0], family.kinds[0]
    kind = artifacts.kind_of(source)
    sampled = registry.known_kinds(lambda f: f.kinds if f.sampler is not None else ())
    if kind not in sampled:
        raise InrkitError(f"{source} is a {kind} artifact, but a {' or '.join(sampled)} artifact is needed here.")
    family = registry.family_of(kind, source)
    model = compile_module(family.build(artifacts.read(source, kind), Path(source), dev), dev, compile)
    return family, model, str(source), kind


def _sample_source(source, dev: torch.device, *, n, psi, seed, resolution, scale, upsample,
                   compare_out, compile: bool = False) -> Source:
    """A model's samples: loaded onto `dev` unless given as an object (which is then never changed)."""
    family, model, label, noun = _sampling_family(source, dev, compile)
    sampler = family.sampler(model, seed=seed, psi=psi, estimate=not isinstance(source, torch.nn.Module))
    if sampler.channels not in (1, 3):
        raise InrkitError(f"FID needs RGB or grey images; this {noun} makes {sampler.channels} channels.")
    R = _target_resolution(sampler.resolution, resolution, scale, noun)
    modes = _upsample_modes(upsample, sampler.resolution, R, compare_out)
    return Source(label, noun, n or DEFAULT_SAMPLES, sampler.resolution, R, modes, sampler=sampler)


def _images_resolution(source: str, data: str, resolution: int | None) -> int:
    """--resolution, else the source images' size, which must then be the reference images' size too: each set
    would otherwise be resized differently (by the data layer here, straight to 299 by clean-fid)."""
    if resolution is not None:
        return resolution
    side, ref_side = _native_side(source, "source"), _native_side(data, "reference")
    if side != ref_side:
        raise InrkitError(f"source images are {side}x{side} but the reference images of {data} are "
                          f"{ref_side}x{ref_side}; pass --resolution to compare both at one size.")
    return side


def _open_source(source, data: str, dev: torch.device, *, n, psi, seed, resolution, scale, upsample,
                 compare_out, compile: bool = False) -> Source:
    """A model's samples (a model object or a .safetensors artifact), else an image set."""
    if isinstance(source, torch.nn.Module) or _is_artifact(source):
        return _sample_source(source, dev, n=n, psi=psi, seed=seed, resolution=resolution, scale=scale,
                              upsample=upsample, compare_out=compare_out, compile=compile)
    if compile:
        raise InrkitError("--compile applies only to a generator source, not to images.")
    if psi != 1.0:
        raise InrkitError("--psi applies only to a generator source, not to images.")
    if scale is not None or upsample is not None or compare_out is not None:
        raise InrkitError("--scale, --upsample and --compare-out apply only to a generator source, not to images.")
    label = str(source)
    R = _images_resolution(label, data, resolution)
    ds = open_dataset(label, R, count=n)
    return Source(label, "image set", len(ds), R, R, dataset=ds)


def _autocast_draws(sampler: Sampler, precision: Precision) -> Sampler:
    """The sampler with every draw under the precision's autocast (itself under fp32)."""
    if not precision.autocasting:
        return sampler

    def draw(start: int, count: int, side: int | None) -> torch.Tensor:
        with precision.autocast():
            return sampler.draw(start, count, side)

    return dataclasses.replace(sampler, draw=draw)


def _features(src: Source, mode: str, model, batch: int, workers: int) -> np.ndarray:
    if src.sampler is None:
        return dataset_features(src.dataset, model, batch=batch, workers=workers, description="FID source")
    return sample_features(src.sampler, src.count, model, resolution=src.resolution, batch=batch, upsample=mode)


def write_comparison(path: str | Path, sampler: Sampler, resolution: int) -> Path:
    """Sample 0 at `resolution` four ways, left to right: nearest, bilinear, bicubic, INR (Fig. 3)."""
    tiles = [sample_pixels(sampler, 0, 1, resolution, mode)[0].permute(1, 2, 0).float() / 255 for mode in UPSAMPLES]
    return save_png(path, side_by_side(*tiles))


def _describe(trained: int, R: int, mode: str) -> str:
    if R == trained:
        return f"at {R}x{R}"
    how = "rendered by the INR" if mode == "inr" else f"{mode}-upsampled from {trained}x{trained}"
    return f"at {R}x{R} ({how}" + ("; UpsampledFID, Sec. 4.2)" if R > trained else ")")


def _report(values: dict[str, float], src: Source, data: str, data_count: int, seconds: float, *, psi: float,
            seed: int, stats, stats_extra: dict | None) -> None:
    """One summary line per mode on stderr and, with `stats`, one JSON line each."""
    for mode, value in values.items():
        print0(f"FID {value:.4f}: {src.label} ({src.count} images) vs {data} ({data_count} images) "
               f"{_describe(src.trained, src.resolution, mode)}, {seconds:.0f} s")
        if stats is None:
            continue
        record = dict(fid=value, source=src.label, data=data, n=src.count, data_count=data_count,
                      resolution=src.resolution, psi=psi, seed=seed, seconds=round(seconds, 2))
        if src.sampler is not None and src.resolution != src.trained:
            record.update(upsample=mode, scale=src.resolution / src.trained)
        StatsWriter(Path(stats), append=True).write(**record, **(stats_extra or {}))


def fid(
    source,  # a sampled model's artifact path (a generator) or object, or images (folder, .zip, shards, builtin:NAME)
    data: str,  # reference images (statistics cached)
    *,
    n: int | None = None,  # images from the source (default: all of a dataset; 50,000 generator samples)
    data_count: int | None = None,  # use the first N reference images (default: all)
    resolution: int | None = None,  # compare at R x R (default: generator training size or source image size)
    scale: float | None = None,  # generator: compare at scale x the training size (same as --resolution)
    upsample: str | None = None,  # generator, above its training size: nearest | bilinear | bicubic | inr | all
    compare_out: str | Path | None = None,  # --upsample all: the comparison PNG (default ./upsampled-fid.png)
    psi: float = 1.0,  # truncation, generator only (App. B.3)
    seed: int = 0,  # generator samples: sample k draws z from default_rng([seed, k])
    batch: int = 32,  # images per Inception batch (and per generator batch)
    workers: int = 2,  # data-decoding processes
    device: str = "auto",  # auto | cpu | cuda
    cache_dir: str | Path | None = None,  # reference statistics cache (default: default_cache_dir())
    stats: str | Path | None = None,  # append the result as one JSON line to this file (e.g. a run's stats.jsonl)
    stats_extra: dict | None = None,  # more fields for that line (e.g. {"kimg": 120} from a training loop)
    precision: str = "auto",  # the generator's sampling: auto | fp32 | bf16 | tf32 (inrkit.core.precision)
    compile: bool = False,  # torch.compile a generator loaded from its artifact
) -> float | dict[str, float]:
    """FID between SOURCE and the reference images --data; prints a summary and returns the value, or with
    --upsample all the four values {nearest, bilinear, bicubic, inr}."""
    start = time.perf_counter()
    _check_options(n, data_count, psi, seed, batch, workers, resolution, scale, upsample)
    _check_outputs(upsample, compare_out, stats, cache_dir)
    data = str(data)
    if data.endswith(".safetensors"):
        raise InrkitError(f"--data must be images (a folder, .zip, shards or builtin:NAME), not the artifact {data}.")
    dev = pick_device(device)
    sampling = resolve_precision(precision, dev)
    src = _open_source(source, data, dev, n=n, psi=psi, seed=seed, resolution=resolution, scale=scale,
                       upsample=upsample, compare_out=compare_out, compile=compile)
    if src.sampler is not None:
        src.sampler = _autocast_draws(src.sampler, sampling)
    ref_ds = open_dataset(data, src.resolution, count=data_count)
    if min(len(ref_ds), src.count) < 2:
        raise InrkitError(f"FID needs at least 2 images on each side; {src.label if src.count < 2 else data} holds "
                          "only 1.")
    model = load_inception(str(dev))
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    ref, _ = reference_stats(ref_ds, model, cache_dir=cache, batch=batch, workers=workers)
    values = {mode: fid_from_stats(feature_stats(_features(src, mode, model, batch, workers)), ref)
              for mode in src.modes}
    _report(values, src, data, len(ref_ds), time.perf_counter() - start, psi=psi, seed=seed, stats=stats,
            stats_extra=stats_extra)
    if upsample != "all":
        return values[src.modes[0]]
    picture = write_comparison(compare_out or COMPARE_PNG, src.sampler, src.resolution)
    print0(f"sample 0 four ways (nearest | bilinear | bicubic | inr) -> {picture}")
    return values
