"""Image bytes -> checked, decoded, converted tensors.

Every source (folder, zip, shards, built-in sets) ends here, so one conversion defines what an
image means in inrkit: centre crop to a square, resize to R x R in uint8 (LANCZOS; BICUBIC when
enlarging), so that an image packed at R and re-read is bit-identical to the original read at R;
then values in [-1, 1].
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
import torch
from PIL import Image

# File name endings read as images; anything else in a folder or zip is skipped and counted.
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
HEAD_BYTES = 16  # enough for every magic number below
TAIL_BYTES = 4096  # end markers sit in the last bytes; some writers append a little after them


class BadImage(Exception):
    """An item that cannot be used; its message is the skip reason shown in summaries."""


def check_bytes(head: bytes, tail: bytes, size: int) -> str | None:
    """Why an image file is unusable, judged from its first and last bytes only; None when it looks whole.

    Cheap enough to run on every file when a dataset is opened, so truncated, empty and non-image
    files are known (and counted) before sampling starts, and `len(ds)` is exact.
    """
    if size == 0:
        return "empty file"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return None if b"IEND" in tail else "truncated image"
    if head.startswith(b"\xff\xd8\xff"):
        # Entropy-coded JPEG data never holds FF D9 (0xFF is byte-stuffed), so only the EOI marker does.
        return None if b"\xff\xd9" in tail else "truncated image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return None if int.from_bytes(head[4:8], "little") + 8 <= size else "truncated image"
    if head[:2] == b"BM":
        return None if int.from_bytes(head[2:6], "little") <= size else "truncated image"
    return "not an image"


def signature(key: str, size: int, head: bytes, tail: bytes) -> int:
    """A 64-bit digest of what was read while checking: the fingerprint of a source hashes these."""
    h = hashlib.blake2b(digest_size=8)
    for part in (key.encode(), size.to_bytes(8, "little"), head, tail):
        h.update(len(part).to_bytes(8, "little") + part)
    return int.from_bytes(h.digest(), "little")


def decode(data: bytes) -> Image.Image:
    """Fully decode image bytes; raises BadImage (never anything else) when that fails."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()  # Image.open is lazy: truncation and corrupt data only show up here
    except Exception as err:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        raise BadImage("undecodable image") from err
    return image


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and float images scaled to 0..255 (PIL's own conversion clips them instead)."""
    array = np.asarray(image, dtype=np.float64)
    if image.mode == "F" and array.max() <= 1.0:
        scale = 255.0  # float images in [0, 1]
    elif array.max() > 255:
        scale = 255.0 / 65535.0  # 16-bit data
    else:
        scale = 1.0
    return Image.fromarray(np.clip(np.rint(array * scale), 0, 255).astype(np.uint8))


def to_mode(image: Image.Image, channels: int) -> Image.Image:
    """Convert to 'L' (1 channel) or 'RGB' (3 channels); transparency is composited onto white."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        image = _to_8bit(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return image.convert("L" if channels == 1 else "RGB")


def square_resize(image: Image.Image, resolution: int) -> Image.Image:
    """Centre crop to a square, then resize to resolution x resolution (skipped when equal)."""
    w, h = image.size
    side = min(w, h)
    if w != h:
        left, top = (w - side) // 2, (h - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if side != resolution:
        # LANCZOS is the sharpest clean filter for shrinking; blowing up (8x8 digits) it rings
        # visibly, so enlarging uses BICUBIC.
        shrink = side > resolution
        image = image.resize((resolution, resolution),
                             Image.Resampling.LANCZOS if shrink else Image.Resampling.BICUBIC)
    return image


def convert(image: Image.Image, resolution: int, channels: int) -> Image.Image:
    """The one conversion every source goes through: mode first (uint8), then crop and resize."""
    return square_resize(to_mode(image, channels), resolution)


def to_uint8(image: Image.Image) -> torch.Tensor:
    """uint8 'L' or 'RGB' image -> uint8 (C, H, W) tensor."""
    tensor = torch.from_numpy(np.array(image, dtype=np.uint8))  # a copy: torch wants a writable buffer
    return tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)


def to_float(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [-1, 1] (0 -> -1 and 255 -> 1 exactly); elementwise, so batching it is exact."""
    return pixels.float().div_(127.5).sub_(1.0)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """uint8 'L' or 'RGB' image -> float32 (C, H, W) in [-1, 1]."""
    return to_float(to_uint8(image))


def to_image(tensor: torch.Tensor) -> Image.Image:
    """Inverse of to_tensor, for grids and previews: (C, H, W) in [-1, 1] -> uint8 PIL image."""
    array = ((tensor.detach().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    array = array[0].numpy() if array.shape[0] == 1 else array.permute(1, 2, 0).numpy()
    return Image.fromarray(array)
