"""open_dataset: one `--data` string -> a map-style dataset of (C, R, R) tensors in [-1, 1] and labels."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections import Counter

import numpy as np
import torch
from PIL import Image

from inrkit.core.errors import InrkitError
from inrkit.core.runtime import print0
from inrkit.data.builtin import open_builtin, resolve_options
from inrkit.data.image import BadImage, convert, decode, to_float, to_uint8
from inrkit.data.sources import open_source

SPLITS = ("train", "heldout")
# The --data help every stage shows (typer folds it into one paragraph).
DATA_HELP = (
    "Images: a folder (searched recursively; with --labels, sub-folder names are the classes), "
    "a .zip, a folder of webdataset .tar shards, one .tar, a brace pattern such as "
    "'shards/train-{000000..000127}.tar', or builtin:photos, builtin:digits, builtin:faces "
    "with options, e.g. 'builtin:photos?count=2000&split=heldout&seed=1'."
)
# Part of every fingerprint: bump it when the conversion changes, so caches keyed on fingerprints
# (FID reference statistics, ...) are rebuilt instead of silently reused.
PIPELINE_VERSION = "inrkit-data-1"


def _reasons(skipped: Counter) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()))


class ImageDataset(torch.utils.data.Dataset):
    """ds[i] -> (float32 (C, R, R) in [-1, 1], label int or -1). Build it with open_dataset.

    An item that passed the scan but still fails to decode (corruption in the middle of a file)
    is replaced by the next good item (i+1, i+2, ...): a deterministic rule, so every run and
    every worker sees the same images, and a run never crashes on data. It is counted in
    `skipped` of the process that met it (a loader worker's count stays in the worker) and a
    warning names it.
    """

    def __init__(self, source, spec: str, resolution: int, channels: int, labels: bool, split: str, count: int):
        self.source, self.spec, self.split = source, spec, split
        self.resolution, self.channels, self.labels = resolution, channels, labels
        self.count = count
        self.classes: list[str] = list(source.classes)
        self.skipped: Counter[str] = Counter(source.skipped)
        self._bad: set[int] = set()  # items of this process found undecodable
        recipe = [PIPELINE_VERSION, source.content_id(count), resolution, channels, labels, split, count]
        self.fingerprint = hashlib.blake2b(json.dumps(recipe).encode(), digest_size=8).hexdigest()

    def __len__(self) -> int:
        return self.count

    @property
    def targets(self) -> np.ndarray:
        """Labels of all items (-1 when unlabelled), without decoding any image."""
        return self.source.targets[: self.count]

    def key(self, i: int) -> str:
        """Where item i comes from: a relative path, a sample key, or a built-in set and number."""
        return self.source.key(i)

    def label(self, i: int) -> int:
        return self.source.label(i)

    def original(self, i: int) -> Image.Image:
        """Item i as stored, before conversion; raises BadImage when it cannot be decoded."""
        try:
            data = self.source.read(i)
        except (OSError, zipfile.BadZipFile) as err:  # e.g. a file deleted or a disk error mid-run
            raise BadImage("unreadable file") from err
        return decode(data) if isinstance(data, bytes) else data

    def image(self, i: int) -> Image.Image:
        """Item i converted to R x R with the requested channels, as a uint8 PIL image."""
        return convert(self.original(i), self.resolution, self.channels)

    def pixels(self, i: int) -> tuple[torch.Tensor, int]:
        """(uint8 (C, R, R), label) of item i, or of the next decodable item (see the class doc)."""
        return self.decoded(i)[:2]

    def decoded(self, i: int) -> tuple[torch.Tensor, int, int]:
        """`pixels(i)` and the index of the item they come from: i, unless item i could not be decoded (the
        batch stream counts those, every time: a `skipped` count that does not depend on the workers)."""
        if not 0 <= i < self.count:
            raise IndexError(f"index {i} is out of range for a dataset of {self.count} images")
        for step in range(self.count):
            j = (i + step) % self.count
            if j in self._bad:
                continue
            try:
                return to_uint8(self.image(j)), self.label(j), j
            except BadImage as err:
                self._bad.add(j)
                self.skipped[str(err)] += 1
                print0(f"warning: skipping {self.key(j)} of {self.spec}: {err}")
        raise InrkitError(f"no image of {self.spec} could be decoded.")

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        pixels, label = self.pixels(i)
        return to_float(pixels), label

    def describe(self) -> str:
        """One line: source, count, size, classes and what was skipped."""
        mode = "grey" if self.channels == 1 else "RGB"
        size = f"{self.resolution}x{self.resolution}"
        text = f"{self.source.kind} {self.source.location}: {self.count} images at {size} {mode}"
        if self.classes:
            text += f", {len(self.classes)} classes"
        if self.skipped:
            text += f", skipped {sum(self.skipped.values())} ({_reasons(self.skipped)})"
        return text


def _check_arguments(resolution: int, channels: int, split: str, count: int | None, seed: int) -> None:
    if resolution < 1:
        raise InrkitError(f"resolution must be a positive number of pixels, got {resolution}.")
    if channels not in (1, 3):
        raise InrkitError(f"channels must be 1 (grey) or 3 (RGB), got {channels}.")
    if split not in SPLITS:
        raise InrkitError(f"unknown split {split!r}; choose {' or '.join(SPLITS)}.")
    if count is not None and count < 1:
        raise InrkitError(f"count must be at least 1, got {count}.")
    if seed < 0:
        raise InrkitError(f"seed must be zero or positive, got {seed}.")


def open_dataset(spec: str, resolution: int, channels: int = 3, *, labels: bool = False, split: str = "train",
                 count: int | None = None, seed: int = 0) -> ImageDataset:
    """Open any image source as a map-style dataset.

    spec:       a folder of images (recursive; with labels=True the first sub-folder is the class),
                a folder of .tar shards, a .zip, a .tar, a brace pattern `shards/train-{000000..000127}.tar`,
                or builtin:photos | builtin:digits | builtin:faces, with options `?count=N&split=S&seed=K`.
    resolution: output side R; images are centre-cropped to a square and resized (LANCZOS; BICUBIC up).
    channels:   1 (grey) or 3 (RGB).
    labels:     return class labels (folder/zip sub-folders, shard .cls, digits, photo names); else -1.
    split:      'train' or 'heldout' (built-in sets only; other sources are one split).
    count:      use the first `count` images (built-in photos: generate that many; default 1000).
    seed:       crop positions of builtin:photos.
    """
    spec = str(spec)  # a pathlib.Path is welcome too
    if spec.startswith("builtin:"):
        name, split, count, seed = resolve_options(spec, split, count, seed)
        _check_arguments(resolution, channels, split, count, seed)
        source = open_builtin(name, split, count, seed, labels)
    else:
        _check_arguments(resolution, channels, split, count, seed)
        if split != "train":
            raise InrkitError(f"split {split!r} exists only for builtin: sets; pass held-out images as a dataset.")
        source = open_source(spec, labels)
    if len(source) == 0:
        why = f" (skipped: {_reasons(source.skipped)})" if source.skipped else ""
        raise InrkitError(f"dataset {spec} holds no usable images{why}.")
    if count is not None and count > len(source):
        raise InrkitError(f"{count} images were asked for but dataset {spec} holds only {len(source)}.")
    return ImageDataset(source, spec, resolution, channels, labels, split, count or len(source))
