"""An infinite, deterministic, resumable sampler that splits one global stream across ranks.

The global stream is epoch after epoch of permutations of range(n); the permutation of epoch e
comes from a generator seeded by (seed, e) alone. Global position g holds perm_{g // n}[g % n].
Rank r of W takes positions r, r + W, r + 2W, ... so within an epoch the ranks see disjoint items
whose union is the epoch, and the stream does not depend on W at all. A rank's position is one
integer (images it consumed), so resuming at k is exact: no state but `start`.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator

import numpy as np
import torch

from inrkit.core.errors import InrkitError


@functools.lru_cache(maxsize=4)
def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The order of epoch `epoch`: a permutation of range(n) seeded by (seed, epoch), or range(n)."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


class InfiniteSampler(torch.utils.data.Sampler[int]):
    """Yields dataset indices forever: this rank's share of the global stream, from `start` on.

    n:          dataset size.
    seed:       seeds the per-epoch permutations (must be >= 0).
    rank, world_size: this process's share; rank r takes every world_size-th global position.
    start:      images this rank already consumed (resume); 0 for a fresh run.
    shuffle:    False gives 0, 1, ..., n-1 repeated (still split across ranks).
    """

    def __init__(self, n: int, seed: int = 0, rank: int = 0, world_size: int = 1, start: int = 0,
                 shuffle: bool = True) -> None:
        if n < 1:
            raise InrkitError("cannot sample from an empty dataset.")
        if not 0 <= rank < world_size:
            raise InrkitError(f"rank {rank} is outside a world of {world_size} processes.")
        if start < 0 or seed < 0:
            raise InrkitError(f"start and seed must be zero or positive, got start={start}, seed={seed}.")
        self.n, self.seed, self.rank, self.world_size = n, seed, rank, world_size
        self.start, self.shuffle = start, shuffle

    def position(self, k: int) -> int:
        """Global stream position of this rank's k-th image (k counts from the very first, not from start)."""
        return k * self.world_size + self.rank

    def index_at(self, position: int) -> int:
        epoch, offset = divmod(position, self.n)
        return int(epoch_order(self.n, self.seed, epoch, self.shuffle)[offset])

    def stream(self) -> Iterator[tuple[int, int]]:
        """(global position, dataset index) pairs; the position lets per-sample randomness (flips) be
        a function of the stream alone, independent of batch size and worker count."""
        for k in itertools.count(self.start):
            position = self.position(k)
            yield position, self.index_at(position)

    def __iter__(self) -> Iterator[int]:
        return (index for _, index in self.stream())
