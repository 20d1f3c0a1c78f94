"""Training batches of lines of similar width: less of each step spent on padding.

A batch is padded to its widest line, and the encoder and the recurrent decoder run over the padding
too: with lines of very different lengths, a good part of a random batch is padding (how much, for the
synthetic recipe: docs/results/synthetic.md). A line's width is known only once it is loaded (rendered,
for synthetic lines), so batches cannot be planned from the indices alone; instead the epoch's random
order is cut into pools of ``pool_batches`` batches' worth of lines, and a data-loader worker loads a
pool, sorts it by width, cuts it into batches and yields them in random order. Every line is still drawn
once per epoch in a random order; only which lines share a batch changes (similar widths together), as
in the length bucketing of speech and translation toolkits.
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from htr.data.resumable import augmenters, epoch_generator, epoch_order, seed_augmenters


class WidthBucketedBatches(IterableDataset):
    """Collated training batches, drawn from ``dataset`` in pools sorted by image width.

    Use it with ``DataLoader(..., batch_size=None)``: it yields whole batches. ``seed`` and the epoch
    fix everything: the epoch's order and each line's augmentation seed (htr.data.resumable), and the
    order of each pool's batches. Pool ``p`` of an epoch goes to data-loader worker ``p % num_workers``;
    the DataLoader hands out its workers' batches in turn (worker 0's first, worker 1's first, ...), so
    a stream stopped after ``k`` batches restarts exactly with ``begin(epoch, k)`` (what a
    ``ResumableLoader`` does; ``resume_point``): whole pools already served are skipped without
    loading them, a pool served in part is loaded again.

    Each ``iter`` serves the epoch that ``begin`` set last, else the next one: without ``begin`` (a
    plain DataLoader) persistent workers (or none) are expected, as a fresh worker copy per epoch would
    start again at epoch 0.
    """

    def __init__(self, dataset: Dataset, batch_size: int, collate: Callable[[Sequence[dict[str, Any]]], Any],
                 pool_batches: int = 8, seed: int = 0) -> None:
        if batch_size < 1 or pool_batches < 1:
            raise ValueError(f"batch_size and pool_batches must be >= 1, got {batch_size} and {pool_batches}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.collate = collate
        self.pool_batches = pool_batches
        self.seed = seed
        self.epoch = 0
        # (epoch, skip, set) from ``begin``, in shared memory: persistent workers see what the main
        # process sets before each ``iter`` (their own copies' ``epoch`` counters would not)
        self._begin = torch.zeros(3, dtype=torch.int64).share_memory_()

    @property
    def datasets(self) -> list[Dataset]:  # what worker_init_fn walks to reseed augmentation
        return [self.dataset]

    def __len__(self) -> int:
        size = getattr(self.dataset, "epoch_size", None) or len(self.dataset)  # type: ignore[arg-type]
        return math.ceil(size / self.batch_size)

    def begin(self, epoch: int, skip: int = 0) -> None:
        """Serve ``epoch`` on the next ``iter``, without its first ``skip`` batches."""
        self._begin[:] = torch.tensor([epoch, skip, 1])

    def __iter__(self) -> Iterator[Any]:
        epoch, skip, set_ = self._begin.tolist()
        if not set_:
            epoch, skip = self.epoch, 0
        self.epoch = epoch + 1
        order, seeds = epoch_order(self.dataset, epoch_generator(self.seed, epoch))
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        pool_size = self.batch_size * self.pool_batches
        pools = [range(start, min(start + pool_size, len(order))) for start in range(0, len(order), pool_size)]
        batches_of = [math.ceil(len(pool) / self.batch_size) for pool in pools]
        # Stream s: the batches of pools s, s + workers, ...; worker w serves stream w, except when
        # the epoch resumes: then worker w serves stream (first + w), "first" being the stream whose
        # turn came next, so that the DataLoader's turns (worker 0 first) continue the same sequence.
        taken, first = resume_point([sum(batches_of[s::workers]) for s in range(workers)], skip)
        stream = (first + worker) % workers
        skip = taken[stream]
        augs = augmenters(self.dataset)
        for p in range(stream, len(pools), workers):
            if skip >= batches_of[p]:  # served before the stop: not even loaded
                skip -= batches_of[p]
                continue
            items = []
            for j in pools[p]:
                seed_augmenters(augs, seeds[j])
                items.append(self.dataset[order[j]])
            items.sort(key=lambda item: item["image"].shape[-1])  # (1, H, W): by width
            batches = [items[i:i + self.batch_size] for i in range(0, len(items), self.batch_size)]
            random.Random(f"{self.seed}:{epoch}:{p}").shuffle(batches)
            for batch in batches[skip:]:
                yield self.collate(batch)
            skip = 0


def resume_point(counts: Sequence[int], served: int) -> tuple[list[int], int]:
    """A DataLoader takes one batch from each of its workers in turn, skipping the finished ones: for
    workers with ``counts`` batches, how many of each are among the first ``served``, and whose turn
    comes next."""
    taken = [0] * len(counts)
    turn = 0
    while served > 0 and any(t < c for t, c in zip(taken, counts)):
        if taken[turn] < counts[turn]:
            taken[turn] += 1
            served -= 1
        turn = (turn + 1) % len(counts)
    for _ in range(len(counts)):  # the next worker that has batches left
        if taken[turn] < counts[turn]:
            return taken, turn
        turn = (turn + 1) % len(counts)
    return taken, 0  # none left
