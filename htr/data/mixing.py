"""Several training sets in one epoch, each with a sampling weight.

A weight is the number of draws of each of the set's lines per epoch: 1 draws every line once, 2
twice, 0.5 a random half (a new half each epoch). ``WeightedMix`` concatenates the sets' index spaces
and ``epoch_indices`` draws one epoch's indices from them; ``MixSampler`` serves those to a plain
DataLoader and ``WidthBucketedBatches`` asks for them directly.
"""
from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from htr.data.resumable import SeededSampler
from htr.errors import DatasetError


class WeightedMix(Dataset):
    """The items of ``parts`` under one index space, drawn per epoch according to ``weights``."""

    def __init__(self, parts: Sequence[Dataset], weights: Sequence[float], names: Sequence[str] | None = None) -> None:
        if len(parts) != len(weights) or not parts:
            raise DatasetError("WeightedMix needs one weight per part, "
                               f"got {len(parts)} parts and {len(weights)} weights")
        if any(w < 0 for w in weights) or not any(w > 0 for w in weights):
            raise DatasetError(f"weights {list(weights)}: expected >= 0 and at least one > 0")
        self.parts = list(parts)
        self.weights = [float(w) for w in weights]
        self.names = list(names) if names is not None else [f"part {i}" for i in range(len(parts))]
        self.sizes = [len(p) for p in self.parts]  # type: ignore[arg-type]
        self.offsets = [sum(self.sizes[:i]) for i in range(len(self.sizes))]

    @property
    def datasets(self) -> list[Dataset]:  # what worker_init_fn walks to reseed augmentation
        return self.parts

    def __len__(self) -> int:
        return sum(self.sizes)

    def __getitem__(self, index: int) -> Any:
        part = bisect.bisect_right(self.offsets, index) - 1
        return self.parts[part][index - self.offsets[part]]

    def draws(self) -> list[int]:
        """Draws per epoch of each part."""
        return [round(w * n) for w, n in zip(self.weights, self.sizes)]

    @property
    def epoch_size(self) -> int:
        return sum(self.draws())

    def epoch_indices(self, generator: torch.Generator) -> torch.Tensor:
        """One epoch's indices, shuffled: ``round(weight * size)`` draws of each part, whole
        permutations first, then a random subset for the fractional part."""
        chosen = []
        for size, offset, draws in zip(self.sizes, self.offsets, self.draws()):
            while draws > 0:
                take = min(draws, size)
                chosen.append(torch.randperm(size, generator=generator)[:take] + offset)
                draws -= take
        order = torch.cat(chosen)
        return order[torch.randperm(len(order), generator=generator)]


class MixSampler(SeededSampler):
    """A DataLoader sampler over a ``WeightedMix``: a new seeded draw every epoch, from
    ``(seed, epoch)`` alone, so that a ``ResumableLoader`` can restart it mid-epoch (``begin``)."""

    def __init__(self, mix: WeightedMix, seed: int = 0, with_seeds: bool = False) -> None:
        super().__init__(mix, seed, with_seeds)
        self.mix = mix

    def __len__(self) -> int:
        return self.mix.epoch_size
