"""Built-in image sets made from data that ships inside scikit-image and scikit-learn (no download).

    builtin:photos   random square crops of bundled colour photos; any count; deterministic by seed.
                     train and heldout crops come from disjoint photo sets. Labels: the photo name.
    builtin:digits   scikit-learn's 1,797 8x8 handwritten digits, labels 0-9 (train 1,500, heldout 297).
    builtin:faces    scikit-image's lfw_subset faces, 25x25 grey, no labels (train 80, heldout 20).

Options ride on the spec as a query, e.g. `builtin:photos?count=2000&split=heldout&seed=3`; they
override the count/split/seed keyword arguments of open_dataset (and the CLI flags).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np
from PIL import Image

from inrkit.core.errors import InrkitError

NAMES = ("photos", "digits", "faces")
OPTIONS = ("count", "split", "seed")
# Disjoint photo sets so that held-out crops (e.g. FID references) never share a photo with training.
# stereo_motorcycle's right view is left out: it is nearly the left view.
PHOTOS = {
    "train": ("astronaut", "chelsea", "hubble_deep_field", "immunohistochemistry", "retina",
              "motorcycle_left", "china"),
    "heldout": ("coffee", "rocket", "flower"),
}
DEFAULT_PHOTO_COUNT = 1000
MIN_CROP_SCALE = 1 / 8  # crop sides are log-uniform in [1/8, 1] of the photo's shorter side
DIGITS_TRAIN = 1500
FACES_TRAIN = 80


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """'builtin:photos?count=20&seed=1' -> ('photos', {'count': '20', 'seed': '1'})."""
    name, _, query = spec.removeprefix("builtin:").partition("?")
    if name not in NAMES:
        raise InrkitError(f"unknown built-in set {spec!r}; choose builtin:{', builtin:'.join(NAMES)}.")
    try:
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise InrkitError(f"cannot read the options in {spec!r}; write them as ?count=N&split=S&seed=K.") from None
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise InrkitError(f"unknown option {unknown[0]!r} in {spec!r}; the options are {', '.join(OPTIONS)}.")
    return name, options


def _int_option(options: dict[str, str], name: str, default: int | None, spec: str) -> int | None:
    if name not in options:
        return default
    try:
        return int(options[name])
    except ValueError:
        raise InrkitError(f"option {name}={options[name]!r} in {spec!r} is not an integer.") from None


def resolve_options(spec: str, split: str, count: int | None, seed: int) -> tuple[str, str, int | None, int]:
    """The set's name and its split, count and seed: spec options win over the keyword arguments."""
    name, options = parse_spec(spec)
    return (name, options.get("split", split), _int_option(options, "count", count, spec),
            _int_option(options, "seed", seed, spec))


@functools.cache
def _photo(name: str) -> Image.Image:
    """One bundled photo as a PIL image, loaded once per process."""
    if name in ("china", "flower"):
        # Opened from sklearn's package folder: importing sklearn.datasets alone takes over a second.
        path = Path(find_spec("sklearn").submodule_search_locations[0]) / "datasets" / "images" / f"{name}.jpg"
        if path.is_file():
            return Image.open(path).convert("RGB")
        from sklearn.datasets import load_sample_image

        return Image.fromarray(load_sample_image(f"{name}.jpg"))
    import skimage.data

    array = skimage.data.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(skimage.data, name)()
    return Image.fromarray(array)


def _library_versions() -> str:
    import skimage
    import sklearn

    return f"skimage {skimage.__version__} sklearn {sklearn.__version__}"


class BuiltinSource:
    """Shared accessors; subclasses set names, targets, classes and read()."""

    kind = "builtin"
    skipped: Counter[str] = Counter()  # bundled data has nothing to skip

    def __len__(self) -> int:
        return len(self.targets)

    def key(self, i: int) -> str:
        return f"{self.location}/{i:06d}"

    def label(self, i: int) -> int:
        return int(self.targets[i])

    def content_id(self, n: int) -> str:
        """The recipe (set, split, seed, count) and the library versions that hold the pixels."""
        recipe = [self.location, getattr(self, "seed", None), n, self.classes, _library_versions()]
        return hashlib.blake2b(json.dumps(recipe).encode(), digest_size=16).hexdigest()


class PhotoSource(BuiltinSource):
    """Random square crops of bundled photos. Crop i depends only on (seed, split, i), so any count
    is a prefix of a larger one and a run can be reproduced crop by crop."""

    def __init__(self, split: str, count: int | None, seed: int, labels: bool) -> None:
        self.names, self.seed, self.location = PHOTOS[split], seed, f"builtin:photos/{split}"
        self._split_id = list(PHOTOS).index(split)
        n = DEFAULT_PHOTO_COUNT if count is None else count
        self._crops = [self._crop(i) for i in range(n)]
        self.targets = np.array([p if labels else -1 for p, _ in self._crops], dtype=np.int64)
        self.classes = list(self.names) if labels else []

    def _crop(self, i: int) -> tuple[int, tuple[int, int, int, int]]:
        """(photo index, crop box) of crop i: a random photo, a log-uniform side, a uniform position."""
        rng = np.random.default_rng([self.seed, self._split_id, i])
        p = int(rng.integers(len(self.names)))
        w, h = _photo(self.names[p]).size
        side = max(1, round(min(w, h) * MIN_CROP_SCALE ** rng.uniform(0.0, 1.0)))
        x, y = int(rng.integers(w - side + 1)), int(rng.integers(h - side + 1))
        return p, (x, y, x + side, y + side)

    def read(self, i: int) -> Image.Image:
        p, box = self._crops[i]
        return _photo(self.names[p]).crop(box)


class ArraySource(BuiltinSource):
    """A stack of small uint8 grey images held in memory (digits, faces)."""

    def __init__(self, location: str, images: np.ndarray, targets: np.ndarray, classes: list[str]) -> None:
        self.location, self.images, self.targets, self.classes = location, images, targets, classes

    def read(self, i: int) -> Image.Image:
        return Image.fromarray(self.images[i])


def _digits(split: str, labels: bool) -> ArraySource:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * (255 / 16)).astype(np.uint8)  # pixel values are 0..16
    part = slice(0, DIGITS_TRAIN) if split == "train" else slice(DIGITS_TRAIN, None)
    targets = digits.target[part].astype(np.int64) if labels else np.full(len(images[part]), -1)
    classes = [str(c) for c in range(10)] if labels else []
    return ArraySource(f"builtin:digits/{split}", images[part], targets, classes)


def _faces(split: str, labels: bool) -> ArraySource:
    if labels:
        raise InrkitError("builtin:faces has no labels; leave out --labels.")
    import skimage.data

    faces = np.rint(skimage.data.lfw_subset()[:100] * 255).astype(np.uint8)  # the first 100 are faces
    part = slice(0, FACES_TRAIN) if split == "train" else slice(FACES_TRAIN, None)
    return ArraySource(f"builtin:faces/{split}", faces[part], np.full(len(faces[part]), -1), [])


def open_builtin(name: str, split: str, count: int | None, seed: int, labels: bool) -> BuiltinSource:
    """The built-in set `name` (see the module docstring); split is 'train' or 'heldout'."""
    if name == "photos":
        return PhotoSource(split, count, seed, labels)
    if name == "digits":
        return _digits(split, labels)
    return _faces(split, labels)
