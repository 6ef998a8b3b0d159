"""`inrkit classify`: a trained classifier on images (encoded through its functa model first) or on a functaset
of that same model; prints top-1/top-5 accuracy when labels exist, writes the predictions (.json or .csv) and a
confusion-matrix PNG beside them."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import torch

from inrkit.core import artifacts
from inrkit.core.checks import require_at_least, require_writable
from inrkit.core.errors import InrkitError
from inrkit.core.pictures import pyplot, save_figure
from inrkit.core.runtime import pick_device, print0
from inrkit.models import functa_family, registry
from inrkit.models.classifier_family import KIND
from inrkit.stages.encode import check_resolution, encode_dataset
from inrkit.train.classify import accuracy, topk_accuracy


def _functaset_latents(path: Path, clf) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """A functaset's latents and labels, refused unless it was encoded with the classifier's functa model."""
    art = artifacts.read(path, kind=functa_family.SET_KIND)
    if art.config.get("model_sha256", "") != clf.functa_sha256:
        raise InrkitError(f"{path} was encoded with another functa model than the classifier's (sha256 differs); "
                          "encode the images with the classifier's model, or pass the images themselves.")
    keys = [str(i) for i in range(len(art.tensors["latents"]))]
    return art.tensors["latents"], art.tensors.get("labels", torch.full((len(keys),), -1)), keys


def _image_latents(data: str, clf, *, split: str, count: int | None, resolution: int | None, steps: int,
                   batch: int, labels: bool, progress: bool):
    """Images encoded through the classifier's functa model (the inner loop, `steps` steps from zero)."""
    from inrkit.data import open_dataset

    res = check_resolution(clf.functa, resolution, "the classifier's functa model")
    dataset = open_dataset(data, res, clf.functa.config["channels"], labels=labels, split=split, count=count)
    latents, found, _ = encode_dataset(clf.functa, dataset, steps, batch, 0, progress)
    return latents, found, [dataset.key(i) for i in range(len(dataset))]


def _predictions_text(out: Path, keys: list[str], labels: torch.Tensor, logits: torch.Tensor) -> bytes:
    top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices.tolist()
    rows = [dict(item=k, label=int(y), prediction=t[0], top5=t) for k, y, t in zip(keys, labels.tolist(), top5,
                                                                                   strict=True)]
    if out.suffix.lower() == ".json":
        return (json.dumps(rows, indent=0) + "\n").encode()
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["item", "label", "prediction", "top5"])
    writer.writerows([r["item"], r["label"], r["prediction"], " ".join(map(str, r["top5"]))] for r in rows)
    return buf.getvalue().encode()


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, classes: int) -> np.ndarray:
    """(classes, classes) counts: row = true label, column = prediction (unlabelled items left out)."""
    known = labels >= 0
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels[known].numpy(), predictions[known].numpy()), 1)
    return matrix


def _confusion_png(path: Path, matrix: np.ndarray, names: list[str], top1: float) -> None:
    n = len(matrix)
    fig, ax = pyplot().subplots(figsize=(1.5 + 0.45 * n, 1.2 + 0.45 * n), dpi=120)
    ax.imshow(matrix, cmap="Blues")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color="white" if v > matrix.max() / 2 else "k")
    ticks = names if len(names) == n else [str(i) for i in range(n)]
    ax.set_xticks(range(n), ticks, fontsize=7)
    ax.set_yticks(range(n), ticks, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"top-1 {top1:.3f}")
    save_figure(path, fig)


def classify(classifier: Path, data: str, *, out: Path = Path("out/predictions.json"), split: str = "train",
             count: int | None = None, resolution: int | None = None, steps: int = 3, batch: int = 64,
             labels: bool = True, device: str = "auto", progress: bool = True) -> dict:
    """Predict every item of `data` (images or a functaset); write predictions and the confusion matrix."""
    out = require_writable(out, ".json", ".csv")
    require_at_least(0, steps=steps)
    require_at_least(1, batch=batch)
    clf = registry.load(classifier, KIND, pick_device(device))
    if str(data).endswith(".safetensors") and Path(data).is_file():
        latents, found, keys = _functaset_latents(Path(data), clf)
    else:
        latents, found, keys = _image_latents(data, clf, split=split, count=count, resolution=resolution,
                                              steps=steps, batch=batch, labels=labels, progress=progress)
    _, _, logits = accuracy(clf.net, latents, found)
    predictions = logits.argmax(dim=1)
    artifacts.atomic_write_bytes(out, _predictions_text(out, keys, found, logits))
    result = dict(count=len(keys), predictions=str(out))
    if bool((found >= 0).any()):
        known = found >= 0
        top1, top5 = topk_accuracy(logits[known], found[known])
        matrix = confusion_matrix(found, predictions, clf.net.config["classes"])
        _confusion_png(out.with_suffix(".png"), matrix, clf.classes, top1)
        result.update(top1=top1, top5=top5, labelled=int(known.sum()), confusion=str(out.with_suffix(".png")))
        print0(f"top-1 {top1:.4f}  top-5 {top5:.4f} on {int(known.sum())} labelled items -> {out}, "
               f"{out.with_suffix('.png')}")
    else:
        print0(f"{len(keys)} items have no labels: predictions only -> {out}")
    return result
