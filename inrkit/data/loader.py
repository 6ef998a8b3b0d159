"""make_loader: an infinite batch iterator over a dataset, split across ranks and worker processes.

The sampler runs in the main process and hands (position, index) pairs to the DataLoader, which
sends whole batches to workers round-robin and returns them in order. So the workers split the
work without any sharding logic of their own, and the batches are the same with 0 or 8 workers.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import torch

from inrkit.core import runtime
from inrkit.core.errors import InrkitError
from inrkit.data.dataset import ImageDataset
from inrkit.data.image import to_float
from inrkit.data.sampler import InfiniteSampler

_MASK = (1 << 64) - 1


def flip_coin(seed: int, position: int) -> bool:
    """A fair coin for each (seed, stream position): splitmix64 of the pair, lowest bit."""
    z = (seed * 0x9E3779B97F4A7C15 + position * 0xD1B54A32D192ED03 + 0x632BE59BD9B4E019) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return bool((z ^ (z >> 31)) & 1)


class _StreamItems(torch.utils.data.Dataset):
    """Wraps a dataset so that items are addressed by (position, index) and flipped per position.

    ImageDatasets hand over uint8 pixels and the float conversion runs once per batch (collate):
    cheaper than per image, and exact, since it is elementwise.
    """

    def __init__(self, dataset, seed: int, flip: bool) -> None:
        self.dataset, self.seed, self.flip = dataset, seed, flip
        self.uint8 = isinstance(dataset, ImageDataset)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int, bool]:
        """(image, label, whether a damaged image was replaced by the next good one)."""
        position, index = item
        image, label, used = self.dataset.decoded(index) if self.uint8 else (*self.dataset[index], index)
        if self.flip and flip_coin(self.seed, position):
            image = image.flip(-1)
        return image, label, used != index


def _collate(items: list[tuple[torch.Tensor, int, bool]]) -> tuple[torch.Tensor, torch.Tensor, int]:
    images = torch.stack([image for image, _, _ in items])
    labels = torch.tensor([label for _, label, _ in items], dtype=torch.int64)
    return (to_float(images) if images.dtype == torch.uint8 else images), labels, sum(r for _, _, r in items)


class Batches:
    """The loader's batches, (images, labels), and `skipped`: how many damaged images the batches handed out so
    far were replaced by the next good one (counted in the batches' order, so any number of workers gives the
    same count; the training loop reports it)."""

    def __init__(self, batches: Iterator) -> None:
        self.batches, self.skipped = batches, 0

    def __iter__(self) -> Batches:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels, replaced = next(self.batches)
        self.skipped += int(replaced)
        return images, labels


def _ignore_interrupts(worker: int) -> None:
    """Ctrl-C reaches the whole process group; the main process decides what it means (inrkit.train.loop ends
    the run after a snapshot), and a worker dead of it would turn that into 'worker exited unexpectedly'."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Positions:
    """The sampler's (position, index) stream as an iterable the DataLoader can batch."""

    def __init__(self, sampler: InfiniteSampler) -> None:
        self.sampler = sampler

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return self.sampler.stream()


def make_loader(dataset, batch_size: int, *, seed: int = 0, start: int = 0, flip: bool = False, workers: int = 2,
                rank: int | None = None, world_size: int | None = None, prefetch: int = 4,
                device: torch.device | str | None = None) -> Batches:
    """Infinite iterator of (images (B, C, R, R) float32, labels (B,) int64), counting replaced images in
    `skipped` (see Batches).

    seed:       shuffling and flips; the same seed gives the same stream.
    start:      images this rank already consumed; the stream continues exactly where it stopped.
    flip:       random horizontal flip, decided per stream position (the same at any batch size).
    workers:    decoding processes (0 decodes in this process).
    rank, world_size: default to torch.distributed / torchrun's RANK and WORLD_SIZE.
    prefetch:   batches each worker prepares ahead, so decoding overlaps the training step.
    device:     where the batches go: to CUDA they come in pinned memory, so the step's non_blocking copy
                overlaps the GPU's work (None: CUDA when the machine has it).
    """
    if batch_size < 1 or workers < 0:
        raise InrkitError(f"batch size must be at least 1 and workers at least 0, got {batch_size} and {workers}.")
    sampler = InfiniteSampler(len(dataset), seed=seed, start=start,
                              rank=runtime.rank() if rank is None else rank,
                              world_size=runtime.world_size() if world_size is None else world_size)
    loader = torch.utils.data.DataLoader(
        _StreamItems(dataset, seed, flip), batch_size=batch_size, sampler=_Positions(sampler), collate_fn=_collate,
        num_workers=workers, prefetch_factor=prefetch if workers > 0 else None,
        pin_memory=_pinned(device), persistent_workers=False, worker_init_fn=_ignore_interrupts if workers else None,
    )
    return Batches(iter(loader))


def _pinned(device) -> bool:
    """Pin batches bound for CUDA (pinning costs host time that a CPU run gets nothing for)."""
    if device is None:
        return torch.cuda.is_available()
    return torch.device(device).type == "cuda"
