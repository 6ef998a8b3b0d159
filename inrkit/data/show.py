"""`inrkit data show`: a PNG grid of a dataset's first images with their labels, and a summary."""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from inrkit.core.artifacts import atomic_write_bytes
from inrkit.core.checks import require_writable
from inrkit.core.errors import InrkitError
from inrkit.core.pictures import image_grid, to_uint8, zoom_factor
from inrkit.data.dataset import open_dataset
from inrkit.data.image import BadImage, convert

MIN_TILE = 64  # small images (8x8 digits) are enlarged (nearest, whole factors) to about this size to be seen
CAPTION = 14  # pixels of caption strip under each tile when there are labels


@dataclass
class ShowReport:
    """What `show_dataset` found; lines() is what the CLI prints."""

    description: str
    count: int
    resolution: int
    sizes: Counter = field(default_factory=Counter)  # (w, h) of the shown images as stored
    classes: list[str] = field(default_factory=list)
    class_counts: list[int] = field(default_factory=list)
    grid: Path | None = None
    shown: int = 0

    def lines(self) -> list[str]:
        lines = [self.description, f"count: {self.count}",
                 f"resolution: {self.resolution}x{self.resolution} (stored as {self._stored()})"]
        if self.classes:
            pairs = ", ".join(f"{c} ({n})" for c, n in zip(self.classes[:20], self.class_counts, strict=False))
            lines.append(f"classes: {len(self.classes)}: {pairs}{', ...' if len(self.classes) > 20 else ''}")
        else:
            lines.append("classes: none")
        lines.append(f"grid: {self.grid} (first {self.shown} images)")
        return lines


    def _stored(self) -> str:
        """The stored sizes of the shown images: each one when few, else the range."""
        if len(self.sizes) <= 3:
            return ", ".join(f"{w}x{h} ({n})" for (w, h), n in self.sizes.most_common())
        small, large = (min(self.sizes, key=lambda s: s[0] * s[1]), max(self.sizes, key=lambda s: s[0] * s[1]))
        return f"{small[0]}x{small[1]} to {large[0]}x{large[1]} among the first {self.shown}"


def labelled_grid(tiles: list[Image.Image], captions: list[str] | None, columns: int) -> Image.Image:
    """Tiles in rows of `columns` (core.pictures.image_grid, enlarged towards MIN_TILE), with a caption strip
    under every tile when captions are given."""
    images = torch.stack([torch.from_numpy(np.asarray(t.convert("RGB"), dtype=np.float32) / 255) for t in tiles])
    strip = CAPTION if captions else 0
    sheet = image_grid(images, columns, gap=(strip, 0), zoom_to=MIN_TILE)
    sheet = torch.cat([sheet, torch.ones(strip, *sheet.shape[1:])])  # the last row's captions need a strip too
    grid = Image.fromarray(to_uint8(sheet))
    if captions:
        side = tiles[0].width * zoom_factor(tiles[0].width, MIN_TILE)
        draw, font = ImageDraw.Draw(grid), ImageFont.load_default()
        for i, caption in enumerate(captions):
            x, y = (i % columns) * side, (i // columns) * (side + strip)
            draw.text((x + 2, y + side + 1), caption[: side // 6], fill="black", font=font)
    return grid


def show_dataset(spec: str, out: Path, *, num: int = 64, columns: int = 8, resolution: int = 64, channels: int = 3,
                 labels: bool = False, split: str = "train", count: int | None = None, seed: int = 0) -> ShowReport:
    """Write a grid of the first `num` images of `spec` to `out` (PNG) and report count, sizes and classes."""
    require_writable(out, ".png")
    dataset = open_dataset(spec, resolution, channels, labels=labels, split=split, count=count, seed=seed)
    tiles, captions, sizes = [], [], Counter()
    for i in range(len(dataset)):
        if len(tiles) == num:
            break
        try:
            original = dataset.original(i)
        except BadImage as err:
            dataset.skipped[str(err)] += 1
            continue
        sizes[original.size] += 1
        tiles.append(convert(original, resolution, channels))
        captions.append(dataset.classes[dataset.label(i)] if labels else "")
    if not tiles:
        raise InrkitError(f"no image of {spec} could be decoded.")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()  # written atomically, like every output: a full disk leaves the previous picture
    labelled_grid(tiles, captions if labels else None, min(columns, len(tiles))).save(buf, format="PNG")
    atomic_write_bytes(out, buf.getvalue())
    counts = np.bincount(dataset.targets, minlength=len(dataset.classes)).tolist() if labels else []
    return ShowReport(dataset.describe(), len(dataset), resolution, sizes, dataset.classes, counts, out, len(tiles))
