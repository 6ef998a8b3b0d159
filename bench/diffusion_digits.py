"""Measure a conditional diffusion model on a digits functaset (issue 11's CPU check): FID of N samples against the
real digits per snapshot artifact, DDPM (1000 steps) vs DDIM (50) FID and seconds per sample, and class consistency
(logistic regression on the real digits' pixels, the share of CFG samples it labels as the requested class) at
guidance scales 0, 1, 2, 4, and memorisation (spatial functa App. C.2, Table 7's check): for --mem-samples samples of
one class, the number of distinct nearest training images (pixel L2, among all training digits), against the count
expected from as many uniform draws from that class's training images, and against what as many held-out real
digits of that class give. With --floors, two reference FIDs that bound what any sampler can reach here: the
held-out real digits against the same reference (the distribution floor at that n), and the functa
reconstructions of the reference digits themselves (what decoding through the functa model alone costs); and, as a
check of the measuring path, the reference's own images through the samples' path (FID 0 when they agree). One JSON
line per measurement on stdout.

    OMP_NUM_THREADS=1 python bench/diffusion_digits.py out/diffbench/digits.safetensors --n 200 --ref-count 1000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from inrkit.core import artifacts
from inrkit.data import open_dataset
from inrkit.metrics.fid import feature_stats, fid_from_stats, load_inception
from inrkit.models import diffusion_family as family
from inrkit.models import registry
from inrkit.models.sampling import Sampler, quantize
from inrkit.stages.fid import default_cache_dir, reference_stats, sample_features

SIDE = 32  # the digits' side here: the reference, the pixel classifier and the nearest-image search


def real_digits(resolution: int, count: int | None, split: str = "train"):
    ds = open_dataset("builtin:digits", resolution, channels=1, labels=True, split=split, count=count)
    pairs = [ds[i] for i in range(len(ds))]
    return torch.stack([p[0] for p in pairs]), torch.tensor([int(p[1]) for p in pairs])


def fid_of(model, sampling: dict, n: int, ref, inception) -> tuple[float, float]:
    """(FID, seconds per sample) of n samples drawn with `sampling` (sampler, steps, eta, cfg)."""
    model.sampling = sampling
    start = time.perf_counter()
    sampler = family.sampler(model, seed=0)
    feats = sample_features(sampler, n, inception, resolution=sampler.resolution, batch=50)
    seconds = time.perf_counter() - start
    return fid_from_stats(feature_stats(feats), ref), seconds / n


def tensor_fid(pixels: torch.Tensor, ref, inception) -> float:
    """FID of images (N, 1, R, R) in [0, 1] against `ref`, through the same path as the samples' (uint8, clean
    resize)."""
    images = quantize(pixels.clamp(0, 1))
    side = images.shape[-1]
    source = Sampler(resolution=side, channels=1, draw=lambda start, count, _side: images[start:start + count])
    feats = sample_features(source, len(images), inception, resolution=side, batch=50)
    return fid_from_stats(feature_stats(feats), ref)


def floors(model, latents: torch.Tensor, ref_count: int, hx: torch.Tensor, ref, inception) -> dict:
    """FID of the held-out real digits, and of the functa reconstructions of the reference digits (the first
    `ref_count` training items, the reference's own images; `latents` are the training functaset's, in dataset
    order)."""
    latents = latents[:ref_count]
    r = model.functa.resolution
    recon = torch.cat([family.render_codes(model, latents[i:i + 100], (r, r)) for i in range(0, len(latents), 100)])
    x, _ = real_digits(r, ref_count)  # the reference's own images through the samples' path: FID 0 if the paths agree
    return dict(path_check_n=len(x), fid_path_check=tensor_fid((x + 1) / 2, ref, inception),
                heldout_real_n=len(hx), fid_heldout_real=tensor_fid((hx + 1) / 2, ref, inception),
                reconstructions_n=len(recon), fid_reconstructions=tensor_fid(recon.permute(0, 3, 1, 2), ref, inception))


def class_consistency(model, clf, scales, per_class: int) -> dict:
    """Share of samples the pixel classifier labels as requested, per guidance scale (DDIM 50)."""
    n = model.denoiser.classes
    ids = list(range(per_class * n))
    labels = torch.tensor([k % n for k in ids])
    out = {}
    for scale in scales:
        z = family.sample_latents(model, ids, 1, labels, float(scale), "ddim", 50)
        r = SIDE  # the pixel classifier's side; any decoder renders on any grid
        pixels = family.render_codes(model, z, (r, r)).clamp(0, 1).cpu().reshape(len(ids), -1).numpy()
        out[str(scale)] = float((clf.predict(pixels * 2 - 1) == labels.numpy()).mean())
    return out


def memorisation(model, x, y, hx, hy, digit: int, n: int, scale: float) -> dict:
    """Distinct nearest training images (pixel L2) of n samples of class `digit` at guidance `scale` (DDIM 50)."""
    z = family.sample_latents(model, list(range(n)), 2, torch.full((n,), digit), float(scale), "ddim", 50)
    r = SIDE
    samples = family.render_codes(model, z, (r, r)).clamp(0, 1).reshape(n, -1) * 2 - 1
    train = x.reshape(len(x), -1)
    nearest = torch.cdist(samples, train).argmin(1)
    real = hx[hy == digit].reshape(-1, train.shape[1])
    real_nearest = torch.cdist(real, train).argmin(1)
    m = int((y == digit).sum())
    return dict(digit=digit, samples=n, cfg=scale, distinct_nearest=int(nearest.unique().numel()),
                nearest_of_the_class=float((y[nearest] == digit).float().mean()),
                expected_uniform_draws=m * (1 - (1 - 1 / m) ** n), class_train_images=m,
                heldout_real=len(real), heldout_distinct_nearest=int(real_nearest.unique().numel()),
                expected_uniform_draws_heldout_n=m * (1 - (1 - 1 / m) ** len(real)))


def arguments() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("artifacts", nargs="+", type=Path)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--ref-count", type=int, default=1000)
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--ddpm", action="store_true", help="also FID and seconds per sample with DDPM 1000 steps")
    ap.add_argument("--ddpm-n", type=int, default=None, help="samples for the DDPM FID (default --n)")
    ap.add_argument("--mem-samples", type=int, default=0, help="memorisation check with this many samples of "
                    "--mem-digit (0: skip)")
    ap.add_argument("--mem-digit", type=int, default=3)
    ap.add_argument("--mem-cfg", type=float, default=1.0)
    ap.add_argument("--no-consistency", action="store_true")
    ap.add_argument("--no-fid", action="store_true", help="skip the DDIM-50 FID of --n samples")
    ap.add_argument("--floors", action="store_true", help="also the held-out-real and functa-reconstruction FIDs "
                    "(needs --functaset)")
    ap.add_argument("--functaset", type=Path, help="the training functaset: the x0 clip of artifacts written "
                    "before the artifact stored it (the largest normalised |z|)")
    args = ap.parse_args()
    if args.floors and args.functaset is None:
        ap.error("--floors needs --functaset (the training functaset).")
    return args


def measure(path: Path, args, ref, inception, clf, digits, latents) -> None:
    """Every asked-for measurement of one diffusion artifact, one JSON line each."""
    x, y, hx, hy = digits
    model = registry.load(path)
    if model.denoiser.clip is None and latents is not None:
        model.denoiser.clip = float(model.normaliser.normalise(latents.float()).abs().max())
    ddim = dict(sampler="ddim", steps=50, eta=0.0, cfg=1.0)
    if not args.no_fid:
        value, sps = fid_of(model, ddim, args.n, ref, inception)
        print(json.dumps(dict(artifact=str(path), metrics=artifacts.read(path).metrics, sampler="ddim50", cfg=1.0,
                              n=args.n, ref=args.ref_count, fid=value, sec_per_sample=sps)), flush=True)
    if args.ddpm:
        n = args.ddpm_n or args.n
        value, sps = fid_of(model, dict(sampler="ddpm", steps=None, eta=1.0, cfg=1.0), n, ref, inception)
        print(json.dumps(dict(artifact=str(path), sampler="ddpm1000", cfg=1.0, n=n, fid=value,
                              sec_per_sample=sps)), flush=True)
        if n != args.n or args.no_fid:
            value, sps = fid_of(model, ddim, n, ref, inception)
            print(json.dumps(dict(artifact=str(path), sampler="ddim50", cfg=1.0, n=n, fid=value,
                                  sec_per_sample=sps)), flush=True)
    if not args.no_consistency:
        consistency = class_consistency(model, clf, (0, 1, 2, 4), args.per_class)
        print(json.dumps(dict(artifact=str(path), class_consistency=consistency, per_class=args.per_class)),
              flush=True)
    if args.mem_samples:
        print(json.dumps(dict(artifact=str(path), memorisation=memorisation(
            model, x, y, hx, hy, args.mem_digit, args.mem_samples, args.mem_cfg))), flush=True)


def main() -> None:
    args = arguments()
    from sklearn.linear_model import LogisticRegression

    torch.set_grad_enabled(False)
    inception = load_inception("cpu")
    ref_ds = open_dataset("builtin:digits", SIDE, channels=1, count=args.ref_count)
    ref, _ = reference_stats(ref_ds, inception, cache_dir=default_cache_dir(), batch=50, workers=0)
    x, y = real_digits(SIDE, None)
    clf = LogisticRegression(max_iter=2000).fit(x.reshape(len(x), -1).numpy(), y.numpy())
    hx, hy = real_digits(SIDE, None, "heldout")
    held = float((clf.predict(hx.reshape(len(hx), -1).numpy()) == hy.numpy()).mean())
    print(json.dumps(dict(pixel_classifier_heldout_accuracy=held)), flush=True)
    latents = registry.load(args.functaset).latents if args.functaset is not None else None  # read once
    if args.floors:
        model = registry.load(args.artifacts[0])
        print(json.dumps(dict(floors=floors(model, latents, args.ref_count, hx, ref, inception))), flush=True)
    for path in args.artifacts:
        measure(path, args, ref, inception, clf, (x, y, hx, hy), latents)


if __name__ == "__main__":
    main()
