"""Spatial functa's classification claim at CPU scale (Sec. 5, Tab. 1-2): spatial > flat functa.

On builtin:digits at 32x32 grey (1,500 training digits; the 297 held-out digits are never seen by meta-learning),
given three functa models meta-learned with the same SIREN and wall-clock budget (8x8x16 and 4x4x64 nearest
spatial functa, a flat 1024-d functa; see docs/benchmarks.md for the meta commands), this encodes the training
split (plain, and with K augmented copies) and the held-out split, trains the same Transformer classifier on each
with the same budget, and beside them the same Transformer on pixels (4x4 patches as 8x8x16 tokens: the pixel
reference with the 8x8x16 functa's exact shape). Prints a table and writes bench/results/functa_classify.json.

    OMP_NUM_THREADS=1 .venv/bin/python bench/functa_classify.py --models out/clf --steps 2000 --augment 10 [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from inrkit.core import artifacts
from inrkit.core.config import build
from inrkit.data import open_dataset
from inrkit.models.functa_family import Functaset
from inrkit.stages.configs import ClassifierConfig
from inrkit.stages.encode import encode
from inrkit.stages.train_classifier import fit_classifier, read_functaset, train_classifier

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"spatial 8x8x16 nearest": "sf8", "spatial 4x4x64 nearest": "sf4", "flat 1024": "flat"}


def encode_sets(model: Path, work: Path, augment: int) -> dict[str, Path]:
    """The training split (plain and augmented) and the held-out split, labelled, through `model`."""
    sets = dict(train=work / f"{model.stem}-train.safetensors", heldout=work / f"{model.stem}-heldout.safetensors",
                augmented=work / f"{model.stem}-train-aug{augment}.safetensors")
    common = dict(labels=True, workers=0, device="cpu", progress=False)
    if not sets["train"].is_file():
        encode(model, "builtin:digits", sets["train"], **common)
    if not sets["heldout"].is_file():
        encode(model, "builtin:digits", sets["heldout"], split="heldout", **common)
    if augment and not sets["augmented"].is_file():
        encode(model, "builtin:digits", sets["augmented"], augment=augment, augment_flip=False, **common)
    return sets


def patches(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Digits 32x32 in [-1, 1] as (N, 8, 8, 16): each token a 4x4 patch, as the 8x8x16 functa's tokens."""
    ds = open_dataset("builtin:digits", 32, 1, labels=True, split=split)
    images = torch.stack([ds[i][0] for i in range(len(ds))])  # (N, 1, 32, 32)
    tiles = images.view(-1, 8, 4, 8, 4).permute(0, 1, 3, 2, 4).reshape(-1, 8, 8, 16)
    return tiles, torch.tensor(ds.targets)


def options(args, out: Path) -> dict:
    return dict(out=out, width=args.width, depth=args.depth, heads=args.heads, dropout=0.1, input_scale=0.0,
                lr=args.lr, warmup=args.steps // 20, batch=args.batch, steps=args.steps, ema_decay=0.999,
                label_smoothing=0.1, weight_decay=0.1, tick=args.steps // 10, snapshot=args.steps,
                seed=args.seed, device="cpu", progress=False)


def run_functa(name: str, train: Path, held: Path, args, work: Path) -> dict:
    out = work / f"clf-{train.stem}-seed{args.seed}.safetensors"
    start = time.perf_counter()
    metrics = train_classifier(str(train), out, eval=str(held), **{k: v for k, v in options(args, out).items()
                                                                    if k != "out"})
    params = sum(v.numel() for k, v in artifacts.read(out).tensors.items() if k.startswith("classifier."))
    return dict(input=name, data=str(train), top1=metrics["eval_top1"], top5=metrics["eval_top5"],
                params=params, seconds=time.perf_counter() - start)


def run_pixels(args, work: Path, model_for_artifact: Path) -> dict:
    """The same classifier on pixel patches; the artifact embeds a functa model only because the classifier
    kind carries one (it is a bench artifact, not for `classify`)."""
    train, held = (Functaset(None, *patches(s)) for s in ("train", "heldout"))
    fset, sha, classes = read_functaset(model_for_artifact)
    train.model = fset.model
    out = work / f"clf-pixels-seed{args.seed}.safetensors"
    cfg = build(ClassifierConfig, data="builtin:digits (4x4 pixel patches)", **options(args, out))
    start = time.perf_counter()
    metrics = fit_classifier(cfg, train, sha, classes, held)
    params = sum(v.numel() for k, v in artifacts.read(out).tensors.items() if k.startswith("classifier."))
    return dict(input="pixels (4x4 patches, 8x8x16)", data="builtin:digits", top1=metrics["eval_top1"],
                top5=metrics["eval_top5"], params=params, seconds=time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=Path, default=ROOT / "out" / "clf")
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "clf" / "bench")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--augment", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="the classifiers' initialisation and data order")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, stem in MODELS.items():
        sets = encode_sets(args.models / f"{stem}.safetensors", args.work, args.augment if stem == "sf8" else 0)
        rows.append(run_functa(name, sets["train"], sets["heldout"], args, args.work))
        if stem == "sf8" and args.augment:
            rows.append(run_functa(f"{name} + {args.augment} augmented copies", sets["augmented"], sets["heldout"],
                                   args, args.work))
        print(rows[-1] if stem != "sf8" or not args.augment else rows[-2:], flush=True)
    rows.append(run_pixels(args, args.work, args.work / "sf8-train.safetensors"))
    print(f"{'input':44s} {'top-1':>7s} {'top-5':>7s} {'params':>8s} {'seconds':>8s}")
    for r in rows:
        print(f"{r['input']:44s} {r['top1']:7.4f} {r['top5']:7.4f} {r['params']:8d} {r['seconds']:8.1f}")
    result = dict(args={k: str(v) for k, v in vars(args).items()}, rows=rows)
    name = "functa_classify.json" if args.seed == 0 else f"functa_classify-seed{args.seed}.json"
    (ROOT / "bench" / "results" / name).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
