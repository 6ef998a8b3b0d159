"""Augmented copies of a dataset, for augmented functasets (spatial functa App. C.1 after App. B.1).

Item k of `Augmented(dataset, copies)` is a random augmentation of image k // copies: the image is padded with
zeros (black: pixel value 0, i.e. -1 in [-1, 1]) by `pad` pixels on every side and a random R x R crop is taken
(App. B.1: 32 x 32 crops of a 40 x 40 zero-padded image, pad = 4), then flipped left-right with probability 1/2
when `flip`. The randomness of item k is a function of (seed, k) alone, so any batch size, worker count or rank
split gives the same augmented set. Labels are the original image's.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F

from inrkit.core.errors import InrkitError


class Augmented(torch.utils.data.Dataset):
    """ds[k] -> (float32 (C, R, R) in [-1, 1], label) of a random crop-and-flip of image k // copies."""

    def __init__(self, dataset, copies: int, *, pad: int = 4, flip: bool = True, seed: int = 0):
        if copies < 1 or pad < 0:
            raise InrkitError(f"--augment must be at least 1 and --augment-pad at least 0, got {copies} and {pad}.")
        self.dataset, self.copies, self.pad, self.flip, self.seed = dataset, copies, pad, flip, seed
        self.spec = f"{dataset.spec} (x{copies} augmented: pad {pad}, crop{', flip' if flip else ''}, seed {seed})"
        self.split, self.resolution, self.channels = dataset.split, dataset.resolution, dataset.channels
        self.classes = dataset.classes
        recipe = f"{dataset.fingerprint}/{copies}/{pad}/{flip}/{seed}".encode()
        self.fingerprint = hashlib.blake2b(recipe, digest_size=8).hexdigest()

    def __len__(self) -> int:
        return len(self.dataset) * self.copies

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int]:
        image, label = self.dataset[k // self.copies]
        rng = np.random.default_rng([self.seed, k])
        dy, dx = (int(v) for v in rng.integers(0, 2 * self.pad + 1, size=2))
        size = image.shape[-1]
        padded = F.pad(image, (self.pad,) * 4, value=-1.0)  # zeros in pixel values
        crop = padded[:, dy:dy + size, dx:dx + size]
        if self.flip and rng.random() < 0.5:
            crop = crop.flip(-1)
        return crop.contiguous(), label
