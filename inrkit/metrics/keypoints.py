"""Face keypoints for KPL: 68 iBUG landmarks per image, the convention of FAN/Super-FAN used by INR-GAN (App. B.2).

A keypoint extractor is any callable

    extractor(images uint8 (N, H, W, 3) or (N, H, W)) -> (keypoints float64 (N, 68, 2), found bool (N,))

with keypoints as (x, y) in [0, 1] image coordinates (pixel i of n sits at (i + 0.5) / n, as everywhere in inrkit)
and found False where no face was detected (its keypoints are NaN). `DlibKeypoints` is the default; another
extractor (FAN, mediapipe mapped to 68 points, ...) can replace it by following this interface.

dlib's HOG detector finds faces of about 80 pixels and more, so images are resized to `side` pixels (BICUBIC up,
LANCZOS down) before detection; landmarks come from the resized image when the input is smaller than `side` and
from the original otherwise. Where several faces are found, the largest one is used. The 68-point model is the
file that `face-recognition-models` ships; it is found through importlib without importing that package (whose
__init__ needs pkg_resources) and without any download.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from inrkit.core.errors import InrkitError

NUM_KEYPOINTS = 68
INSTALL_HINT = "pip install 'inrkit[kpl]'"
MODEL_FILE = "models/shape_predictor_68_face_landmarks.dat"


def _import_dlib():
    try:
        import dlib
    except ImportError:
        raise InrkitError(f"face keypoints need dlib and its 68-point model; install them with {INSTALL_HINT}.") \
            from None
    return dlib


def landmark_model_path() -> Path:
    """shape_predictor_68_face_landmarks.dat inside the installed face-recognition-models package."""
    spec = importlib.util.find_spec("face_recognition_models")
    paths = [Path(p) / MODEL_FILE for p in (spec.submodule_search_locations or [])] if spec else []
    for path in paths:
        if path.is_file():
            return path
    raise InrkitError(f"the dlib 68-point landmark model is not installed; install it with {INSTALL_HINT}.")


def _as_rgb(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W), (N, H, W, 1) or (N, H, W, 3) -> (N, H, W, 3)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(f"keypoint extraction wants uint8 (N, H, W[, C]) images, got {images.dtype} {images.shape}")
    if images.ndim == 3:
        images = images[..., None]
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


class DlibKeypoints:
    """dlib HOG face detector + the 68-point shape predictor (see the module docstring)."""

    name = "dlib HOG detector + shape_predictor_68_face_landmarks"

    def __init__(self, side: int = 200):
        dlib = _import_dlib()
        self.side = side  # detection size in pixels: HOG needs faces of about 80 px
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(landmark_model_path()))

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = _as_rgb(images)
        keypoints = np.full((len(images), NUM_KEYPOINTS, 2), np.nan)
        found = np.zeros(len(images), dtype=bool)
        for i, image in enumerate(images):
            points = self.one(image)
            if points is not None:
                keypoints[i], found[i] = points, True
        return keypoints, found

    def one(self, image: np.ndarray) -> np.ndarray | None:
        """uint8 (H, W, 3) -> (68, 2) (x, y) in [0, 1], or None when no face is found."""
        h, w = image.shape[:2]
        pil = Image.fromarray(image)
        small = max(h, w) < self.side
        resample = Image.BICUBIC if small else Image.LANCZOS
        scaled = np.asarray(pil.resize((self.side, self.side), resample)) if (h, w) != (self.side,) * 2 else image
        boxes = self.detector(scaled, 0)
        if len(boxes) == 0:
            return None
        box = max(boxes, key=lambda b: b.width() * b.height())
        if small:  # landmarks on the enlarged image
            target, sx, sy = scaled, self.side, self.side
        else:  # landmarks on the original, with the box mapped back
            import dlib

            fx, fy = w / self.side, h / self.side
            box = dlib.rectangle(round(box.left() * fx), round(box.top() * fy),
                                 round(box.right() * fx), round(box.bottom() * fy))
            target, sx, sy = image, w, h
        shape = self.predictor(np.ascontiguousarray(target), box)
        points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
        return (points + 0.5) / np.array([sx, sy])
