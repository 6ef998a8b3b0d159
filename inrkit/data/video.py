"""Videos for `fit`: the built-in camera-path video and video files (read through OpenCV's FFmpeg).

    builtin:pan   a smooth camera path of pans and zooms over a photo bundled with scikit-image, made the
                  same way every time (no registry ships a video; the Levels-of-Experts video of supp. C is a
                  cat close-up). Options ride on the spec as a query, all optional:
                  `builtin:pan?frames=32&size=128&photo=astronaut`.

The path is a closed loop in the time u = t / frames in [0, 1): the crop side breathes between 0.6 and 0.8 of
the photo's shorter side (one zoom in and out) while its centre draws a figure eight (one left-right swing, two
up-down), so the last frame leads back into the first and a GIF of it loops without a jump. Frame t depends only
on u, so `frames=2N` holds the N frames of `frames=N` at its even indices and the in-between frames at its odd
ones: the ground truth for a temporal superresolution (`inrkit render --fps-scale 2`) of a fit to `frames=N`.
At the defaults the view moves 2.1 pixels per frame on average (3.5 at most) and the zoom moves the frame's
edges by at most 1.8 pixels per frame.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np
from PIL import Image

from inrkit.core.errors import InrkitError

PAN = "pan"
PAN_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera")  # scikit-image photos that load offline
PAN_DEFAULTS = {"frames": 32, "size": 128, "photo": "astronaut"}
PAN_LIMITS = {"frames": (2, 4096), "size": (16, 1024)}
MAX_PIXELS = 2**27  # frames x size x size of a built-in or read video: 134M (e.g. 128 frames of 1024x1024)
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
# The camera path, in units of the photo's shorter side m (see the module docstring); every box stays inside the
# photo: 0.4 m (half the largest side) + 0.06 m (largest swing) < m / 2.
SIDE, BREATH = 0.7, 0.1  # crop side m (SIDE + BREATH cos 2 pi u)
SWING_X, SWING_Y = 0.06, 0.03  # centre + m (SWING_X sin 2 pi u, SWING_Y sin 4 pi u)


def is_pan(spec: str) -> bool:
    return spec.removeprefix("builtin:").partition("?")[0] == PAN


def parse_pan(spec: str) -> dict:
    """'builtin:pan?frames=8&size=64' -> {'frames': 8, 'size': 64, 'photo': 'astronaut'}; one sentence otherwise."""
    query = spec.removeprefix("builtin:").partition("?")[2]
    try:
        given = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise InrkitError(f"cannot read the options in {spec!r}; write them as "
                          "builtin:pan?frames=32&size=128&photo=astronaut.") from None
    options = dict(PAN_DEFAULTS)
    for key, value in given:
        if key not in PAN_DEFAULTS:
            raise InrkitError(f"unknown option {key!r} in {spec!r}; builtin:pan takes frames, size and photo.")
        options[key] = _pan_value(spec, key, value)
    pixels = options["frames"] * options["size"] ** 2
    if pixels > MAX_PIXELS:
        raise InrkitError(f"{spec!r} asks for {pixels:,} pixels (frames x size x size); the most is {MAX_PIXELS:,}.")
    return options


def _pan_value(spec: str, key: str, value: str) -> int | str:
    if key == "photo":
        if value not in PAN_PHOTOS:
            raise InrkitError(f"photo={value!r} in {spec!r} is not a bundled photo; choose {', '.join(PAN_PHOTOS)}.")
        return value
    lo, hi = PAN_LIMITS[key]
    if not (value.isascii() and value.isdigit() and lo <= int(value) <= hi):
        raise InrkitError(f"{key}={value!r} in {spec!r} must be a whole number from {lo} to {hi}.")
    return int(value)


def camera_path(frames: int, width: int, height: int) -> np.ndarray:
    """(frames, 4) crop boxes (left, top, right, bottom) in photo pixels, float64: frame t at u = t / frames."""
    m = min(width, height)
    u = np.arange(frames, dtype=np.float64) / frames
    side = m * (SIDE + BREATH * np.cos(2 * math.pi * u))
    cx = width / 2 + m * SWING_X * np.sin(2 * math.pi * u)
    cy = height / 2 + m * SWING_Y * np.sin(4 * math.pi * u)
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1)


def pan_frames(frames: int = 32, size: int = 128, photo: str = "astronaut") -> list[Image.Image]:
    """The built-in video: `frames` size x size frames of the camera path over `photo`, each resampled from
    the photo's sub-pixel crop box with LANCZOS (it shrinks the crop for every size below 0.6 m, 307 for the
    512x512 astronaut)."""
    import skimage.data

    image = Image.fromarray(getattr(skimage.data, photo)())
    return [image.resize((size, size), Image.Resampling.LANCZOS, box=tuple(float(v) for v in box))
            for box in camera_path(frames, *image.size)]


def builtin_video(spec: str) -> list[Image.Image]:
    """The frames `builtin:pan?...` names."""
    return pan_frames(**parse_pan(spec))


def read_video(path: Path) -> list[Image.Image]:
    """Every frame of a video file as RGB images, decoded by OpenCV's FFmpeg (installed with inrkit: the FID
    helper needs opencv-python); a file it cannot decode is one sentence, FFmpeg's own log stays quiet."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # read when cv2 is imported: FFmpeg prints nothing
    os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
    try:
        import cv2
    except ImportError:
        raise InrkitError(f"reading {path.suffix} videos needs OpenCV (pip install opencv-python); or give a "
                          "folder of frames or an animated GIF.") from None
    capture = cv2.VideoCapture(str(path))
    frames, pixels = [], 0
    try:
        while capture.isOpened():
            ok, bgr = capture.read()
            if not ok:
                break
            pixels += bgr.shape[0] * bgr.shape[1]
            if pixels > MAX_PIXELS:
                raise InrkitError(f"{path} holds more than {MAX_PIXELS:,} pixels (frames x height x width); cut it "
                                  "shorter or give a folder of fewer or smaller frames.")
            frames.append(Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    finally:
        capture.release()
    if not frames:
        raise InrkitError(f"{path} is not a readable video (FFmpeg decodes no frame of it).")
    return frames
