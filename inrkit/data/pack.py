"""`inrkit data pack`: any source -> webdataset tar shards at a fixed resolution.

Shards hold `{key}.{png|jpg|webp}` and, with labels, `{key}.cls` (the class number as text); keys
are the running sample number, zero-padded. Members have fixed mtime/uid/gid/mode and a fixed
order, and the encoders are deterministic, so packing the same input twice gives byte-identical
shards. `dataset.json` beside the shards records class names, counts and what was skipped.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from inrkit.core.checks import require_writable
from inrkit.core.errors import InrkitError
from inrkit.core.progress import progress_bar
from inrkit.data.dataset import ImageDataset, open_dataset
from inrkit.data.image import BadImage
from inrkit.data.sources import DATASET_JSON

FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}


@dataclass
class PackSummary:
    """What `pack_dataset` wrote."""

    out: Path
    written: int
    skipped: Counter = field(default_factory=Counter)
    classes: list[str] = field(default_factory=list)
    shards: list[str] = field(default_factory=list)
    bytes: int = 0

    def lines(self) -> list[str]:
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items())) or "none"
        classes = f"{len(self.classes)} ({', '.join(self.classes[:10])}{', ...' if len(self.classes) > 10 else ''})"
        size = f"{len(self.shards)} shards ({self.bytes / 1e6:.1f} MB)"
        return [f"written: {self.written} images in {size} to {self.out}",
                f"skipped: {skipped}",
                f"classes: {classes if self.classes else 'none'}"]


def encode(image: Image.Image, image_format: str, quality: int) -> bytes:
    """PNG (lossless), JPEG or WebP bytes; deterministic for a given Pillow build."""
    buffer = io.BytesIO()
    options = {} if image_format == "png" else {"quality": quality}
    image.save(buffer, FORMATS[image_format], **options)
    return buffer.getvalue()


class _Encoded(torch.utils.data.Dataset):
    """Item i -> (label, encoded bytes or None, skip reason or None); runs in loader workers."""

    def __init__(self, dataset: ImageDataset, image_format: str, quality: int) -> None:
        self.dataset, self.image_format, self.quality = dataset, image_format, quality

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[int, bytes | None, str | None]:
        try:
            image = self.dataset.image(i)
        except BadImage as err:
            return -1, None, str(err)
        return self.dataset.label(i), encode(image, self.image_format, self.quality), None


def _keep(item):
    return item  # DataLoader's collate_fn: items pass through as they are


class ShardWriter:
    """Writes samples into `{prefix}-000000.tar`, ... with at most shard_size samples each.

    Each shard is written to a temporary name and renamed when complete, so a killed pack never
    leaves a half-written shard under a shard's name.
    """

    def __init__(self, out: Path, prefix: str, shard_size: int) -> None:
        self.out, self.prefix, self.shard_size = out, prefix, shard_size
        self.count, self.shards, self.bytes = 0, [], 0
        self._tar: tarfile.TarFile | None = None

    def add(self, fields: dict[str, bytes]) -> None:
        if self.count % self.shard_size == 0:
            self._close_shard()
            self.shards.append(f"{self.prefix}-{len(self.shards):06d}.tar")
            self._tar = tarfile.open(self.out / f"{self.shards[-1]}.tmp", "w", format=tarfile.USTAR_FORMAT)
        key = f"{self.count:08d}"
        for ext, data in fields.items():
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode, info.uid, info.gid = len(data), 0, 0o644, 0, 0
            self._tar.addfile(info, io.BytesIO(data))
        self.count += 1

    def _close_shard(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None
            final = self.out / self.shards[-1]
            os.replace(f"{final}.tmp", final)
            self.bytes += final.stat().st_size

    def close(self) -> None:
        self._close_shard()
        # Shards of an earlier, larger pack into the same folder would otherwise be read as data.
        pattern = re.compile(rf"{re.escape(self.prefix)}-\d{{6}}\.tar")
        for stale in self.out.iterdir():
            if pattern.fullmatch(stale.name) and stale.name not in self.shards:
                stale.unlink()


def _check_options(shard_size: int, image_format: str, quality: int) -> None:
    if shard_size < 1:
        raise InrkitError(f"--shard-size must be at least 1, got {shard_size}.")
    if image_format not in FORMATS:
        raise InrkitError(f"unknown image format {image_format!r}; choose {', '.join(FORMATS)}.")
    if not 1 <= quality <= 100:
        raise InrkitError(f"--quality must be between 1 and 100, got {quality}.")


def _check_out(dataset: ImageDataset, out: Path) -> None:
    """Shards written over the shards being read, or into the image folder being read, corrupt the data."""
    if out.exists() and not out.is_dir():
        raise InrkitError(f"--out {out} is a file; give a folder for the shards.")
    target = out.resolve()
    shard_folders = {Path(s).resolve().parent for s in getattr(dataset.source, "shards", [])}
    root = getattr(dataset.source, "root", None)
    if target in shard_folders or (root is not None and target.is_relative_to(root.resolve())):
        raise InrkitError(f"--out {out} is inside the dataset being packed; choose another folder.")


def pack_dataset(src: str, out: Path, resolution: int, channels: int = 3, *, labels: bool = False,
                 shard_size: int = 1000, image_format: str = "png", quality: int = 95, split: str = "train",
                 count: int | None = None, seed: int = 0, workers: int = 2, progress: bool = True) -> PackSummary:
    """Convert `src` (any open_dataset spec) to shards `{split}-NNNNNN.tar` in `out`.

    Images are converted exactly as open_dataset converts them (centre crop, resize, channels),
    so with PNG the shards read back bit-identical to the source read at the same resolution.
    Undecodable images are skipped and counted, like the ones the scan already rejected.
    """
    _check_options(shard_size, image_format, quality)
    require_writable(out, folder=True)  # before the scan, which can take long
    dataset = open_dataset(src, resolution, channels, labels=labels, split=split, count=count, seed=seed)
    out = Path(out)
    _check_out(dataset, out)
    out.mkdir(parents=True, exist_ok=True)
    writer, skipped = ShardWriter(out, dataset.split, shard_size), Counter(dataset.skipped)
    items = torch.utils.data.DataLoader(_Encoded(dataset, image_format, quality), batch_size=None,
                                        num_workers=workers, collate_fn=_keep)
    with _write_errors(out), progress_bar("packing", len(dataset), enabled=progress, unit="img") as update:
        for label, data, reason in items:
            if reason:
                skipped[reason] += 1
            else:
                writer.add({image_format: data, **({"cls": str(label).encode()} if labels else {})})
            update(written=writer.count)
    if writer.count == 0:
        raise InrkitError(f"no image of {src} could be decoded, so nothing was packed.")
    with _write_errors(out):
        writer.close()
        summary = PackSummary(out, writer.count, +skipped, dataset.classes, writer.shards, writer.bytes)
        _write_meta(summary, dataset, image_format)
    return summary


@contextmanager
def _write_errors(out: Path):
    """A full disk or a lost permission while packing: one sentence (shards are renamed only when complete)."""
    try:
        yield
    except OSError as err:
        raise InrkitError(f"could not write the shards in {out} ({err.strerror}); the complete shards are kept, and "
                          "packing again gives the same bytes.") from None


def _write_meta(summary: PackSummary, dataset: ImageDataset, image_format: str) -> None:
    """dataset.json: what the shards hold (no timestamps, so it is as reproducible as the shards)."""
    meta = {"format": "webdataset", "source": dataset.spec, "source_fingerprint": dataset.fingerprint,
            "count": summary.written, "resolution": dataset.resolution, "channels": dataset.channels,
            "image_format": image_format, "classes": summary.classes, "shards": summary.shards,
            "skipped": dict(sorted(summary.skipped.items()))}
    path = summary.out / DATASET_JSON
    tmp = path.with_name(f"{path.name}.tmp")
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp, path)
