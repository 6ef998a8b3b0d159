"""Load the one signal that `fit` fits: an image file, a video (a video file, a folder of frames sorted by name,
or an animated GIF), a built-in image bundled with scikit-image, or the built-in video builtin:pan
(inrkit/data/video.py). Signals are float32 tensors in [0, 1] shaped (H, W, C) for images and (T, H, W, C)
for videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageSequence, UnidentifiedImageError

from inrkit.core.errors import InrkitError

# scikit-image images that load offline (ASSETS.md); the others need a download.
BUILTIN_IMAGES = ("astronaut", "brick", "camera", "chelsea", "coffee", "grass", "gravel", "hubble_deep_field",
                  "immunohistochemistry", "moon", "retina", "rocket")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _builtin(name: str) -> list[Image.Image]:
    if name not in BUILTIN_IMAGES:
        raise InrkitError(f"unknown built-in image {name!r}; choose one of {', '.join(BUILTIN_IMAGES)}, or the "
                          "video builtin:pan.")
    import skimage.data

    return [Image.fromarray(getattr(skimage.data, name)())]


def _open_image(path: Path) -> list[Image.Image]:
    """All frames of an image file (one for stills, every frame for an animated GIF)."""
    try:
        with Image.open(path) as im:
            frames = [f.copy() for f in ImageSequence.Iterator(im)]
            for f in frames:
                f.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise InrkitError(f"{path} is not a readable image ({e.__class__.__name__}).") from None
    return frames


def _frames(spec: str) -> tuple[list[str], list[Image.Image]]:
    """The frames of a signal and the name of each, for messages: a folder's file names, else 'frame k'."""
    from inrkit.data import video

    if spec.startswith("builtin:"):
        frames = video.builtin_video(spec) if video.is_pan(spec) else _builtin(spec.removeprefix("builtin:"))
    else:
        path = Path(spec)
        if not path.exists():
            raise InrkitError(f"{spec} does not exist (give an image, a video, a folder of frames, a GIF, "
                              "builtin:camera or builtin:pan).")
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise InrkitError(f"{path} holds no image frames ({', '.join(sorted(IMAGE_SUFFIXES))}).")
            return [f.name for f in files], [_open_image(f)[0] for f in files]
        frames = video.read_video(path) if path.suffix.lower() in video.VIDEO_SUFFIXES else _open_image(path)
    return [f"frame {k}" for k in range(len(frames))], frames


def _check_sizes(spec: str, names: list[str], frames: list[Image.Image]) -> None:
    """Frames of one size, or one sentence naming the first that differs from the first frame."""
    (w0, h0), odd = frames[0].size, next((k for k, f in enumerate(frames) if f.size != frames[0].size), None)
    if odd is not None:
        w, h = frames[odd].size
        raise InrkitError(f"the frames of {spec} differ in size: {names[odd]} is {w}x{h} (width x height) but "
                          f"{names[0]} is {w0}x{h0}; give frames of one size or pass --size to resample them all.")


def _to_array(frame: Image.Image, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    frame = frame.convert(mode)
    if size is not None and frame.size != (size[1], size[0]):
        frame = frame.resize((size[1], size[0]), Image.Resampling.LANCZOS)
    a = np.asarray(frame, dtype=np.float32) / 255.0
    return a[..., None] if a.ndim == 2 else a


def load_signal(spec: str, size: tuple[int, int] | None = None) -> torch.Tensor:
    """(H, W, C) for a still image, (T, H, W, C) for a video; `size` (H, W) resamples every frame."""
    names, frames = _frames(spec)
    modes = {f.mode for f in frames}
    mode = "L" if modes <= {"L", "1", "I", "I;16", "F"} else "RGB"
    if size is None:
        _check_sizes(spec, names, frames)
    arrays = [_to_array(f, mode, size) for f in frames]
    signal = torch.from_numpy(np.stack(arrays))
    return signal[0] if len(arrays) == 1 else signal
