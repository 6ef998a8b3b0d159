"""Sampling for training: determinism, exact resume, rank splits, and the loader built on them."""

from __future__ import annotations

from itertools import islice

import pytest
import torch

from inrkit.core.errors import InrkitError
from inrkit.data import InfiniteSampler, make_loader, open_dataset
from inrkit.data.loader import flip_coin

N = 301  # odd, so epochs do not split evenly between two ranks


class Numbered(torch.utils.data.Dataset):
    """Item i: an asymmetric 1x2x3 image marked i + 1 in its first column, and label i."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.tensor([[[i + 1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]), i


def take(sampler: InfiniteSampler, k: int) -> list[int]:
    return list(islice(sampler, k))


def test_same_seed_same_first_1000_indices():
    first = take(InfiniteSampler(N, seed=7), 1000)
    assert first == take(InfiniteSampler(N, seed=7), 1000)
    assert first != take(InfiniteSampler(N, seed=8), 1000)
    for epoch in range(3):  # each epoch is a permutation, and a different one each time
        assert sorted(first[epoch * N : (epoch + 1) * N]) == list(range(N))
    assert first[:N] != first[N : 2 * N] and first[:N] != list(range(N))


@pytest.mark.parametrize("k", [1, 150, N - 1, N, 2 * N + 17])
def test_resumed_sampler_continues_the_stream(k):
    full = take(InfiniteSampler(N, seed=3), k + 400)
    assert take(InfiniteSampler(N, seed=3, start=k), 400) == full[k:]


def test_two_ranks_split_each_epoch_disjointly():
    full = take(InfiniteSampler(N, seed=5), 2 * N)
    ranks = [take(InfiniteSampler(N, seed=5, rank=r, world_size=2), N) for r in (0, 1)]
    assert ranks[0] == full[0::2] and ranks[1] == full[1::2]  # the global stream, dealt out
    epoch0 = [set(ranks[r][: (N - r + 1) // 2]) for r in (0, 1)]  # positions below N
    assert not epoch0[0] & epoch0[1] and epoch0[0] | epoch0[1] == set(range(N))
    resumed = take(InfiniteSampler(N, seed=5, rank=1, world_size=2, start=100), 50)
    assert resumed == ranks[1][100:150]


def test_sampler_rejects_bad_arguments():
    with pytest.raises(InrkitError):
        InfiniteSampler(0)
    with pytest.raises(InrkitError):
        InfiniteSampler(10, rank=2, world_size=2)
    with pytest.raises(InrkitError):
        InfiniteSampler(10, start=-1)


def _stream(loader, batches: int) -> tuple[torch.Tensor, torch.Tensor]:
    got = list(islice(loader, batches))
    return torch.cat([x for x, _ in got]), torch.cat([y for _, y in got])


def test_loader_batches_resume_and_flips_are_exact():
    ds = Numbered(N)
    images, labels = _stream(make_loader(ds, 8, seed=2, flip=True, workers=0), 40)
    assert images.shape == (320, 1, 2, 3) and labels.dtype == torch.int64
    assert labels.tolist() == take(InfiniteSampler(N, seed=2), 320)
    flipped = images[:, 0, 0, 2] == labels + 1.0  # the marker moved from column 0 to column 2
    assert 100 < int(flipped.sum()) < 220  # about half the images are flipped
    assert all(flip_coin(2, p) == bool(f) for p, f in enumerate(flipped))
    small_images, small_labels = _stream(make_loader(ds, 5, seed=2, flip=True, workers=0), 64)
    assert torch.equal(small_images, images) and torch.equal(small_labels, labels)  # batch size is free
    resumed_images, resumed_labels = _stream(make_loader(ds, 8, seed=2, flip=True, start=37, workers=0), 10)
    assert torch.equal(resumed_images, images[37:117]) and torch.equal(resumed_labels, labels[37:117])


def test_loader_on_images_matches_dataset_items():
    """The loader's uint8 fast path (float conversion per batch) gives exactly ds[i], flipped by the coin."""
    ds = open_dataset("builtin:digits?count=50", 8, labels=True)
    images, labels = _stream(make_loader(ds, 7, seed=3, flip=True, workers=0), 10)
    indices = take(InfiniteSampler(50, seed=3), 70)
    expected = [ds[i][0].flip(-1) if flip_coin(3, p) else ds[i][0] for p, i in enumerate(indices)]
    assert torch.equal(images, torch.stack(expected)) and labels.tolist() == [ds.label(i) for i in indices]


def test_loader_with_workers_gives_the_same_batches():
    ds = Numbered(N)
    alone = _stream(make_loader(ds, 16, seed=1, flip=True, workers=0), 12)
    shared = _stream(make_loader(ds, 16, seed=1, flip=True, workers=2), 12)
    assert torch.equal(alone[0], shared[0]) and torch.equal(alone[1], shared[1])


def test_loader_splits_across_torchrun_ranks(monkeypatch):
    ds = Numbered(N)
    seen = []
    for r in (0, 1):
        monkeypatch.setenv("RANK", str(r))
        monkeypatch.setenv("WORLD_SIZE", "2")
        seen.append(_stream(make_loader(ds, 10, seed=4, workers=0), 15)[1].tolist())
    full = take(InfiniteSampler(N, seed=4), 300)
    assert seen[0] == full[0::2] and seen[1] == full[1::2]
    assert not set(seen[0]) & set(seen[1])  # 150 + 150 positions, all within epoch 0
