"""A training data stream that a checkpoint can stop and restart exactly.

Lightning 2.x saves the state of a stateful training loader in its checkpoints (the fit loop calls
``state_dict()`` on every train loader that has ``state_dict``/``load_state_dict``, and hands it back
with ``load_state_dict()`` before the loader's first ``iter()`` of a resumed run). ``ResumableLoader`` is
such a loader. Its state is small because the whole stream is a pure function of a few numbers:

* an epoch's order (shuffled indices, or a ``WeightedMix``'s weighted draw, synthetic share included)
  comes from ``torch.Generator().manual_seed(seed + epoch)``;
* every drawn line has its own augmentation seed, drawn from the same generator after the order and
  set on the augmenters just before the line is loaded, so a line's augmentation depends on its place
  in the epoch only: not on the worker that loads it nor on what was loaded before;
* width-bucketed batches (htr.data.bucketing) shuffle each pool with its own seeded ``random.Random``.

So the state is ``{seed, epoch, batches}``: batches served in that epoch. A resumed loader starts
the same epoch and skips what was served, without loading it (a width-bucketed pool that was half
served is loaded again to sort it). The loader also gets its own ``torch.Generator``, so that its
workers' base seed does not come from (and move) the global RNG that dropout uses.
"""
from __future__ import annotations

import logging
import os
import random
import signal
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from htr.data.dataset import _datasets, worker_init_fn

log = logging.getLogger(__name__)

STATE_VERSION = 1


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed + epoch)


def epoch_order(dataset: Any, generator: torch.Generator) -> tuple[list[int], list[int]]:
    """One epoch's indices (a weighted draw for a WeightedMix, else a permutation) and one
    augmentation seed per position, both from ``generator``."""
    if hasattr(dataset, "epoch_indices"):
        order = dataset.epoch_indices(generator)
    else:
        order = torch.randperm(len(dataset), generator=generator)
    seeds = torch.randint(0, 2**62, (len(order),), generator=generator)
    return order.tolist(), seeds.tolist()


def augmenters(dataset: Any) -> list[Any]:
    """The enabled augmenters of a dataset and of the datasets inside it (mixes, wrappers)."""
    found = []
    for ds in _datasets(dataset):
        aug = getattr(ds, "augmenter", None)
        if aug is not None and getattr(aug.config, "enabled", True) and hasattr(aug, "pipeline"):
            found.append(aug)
    return found


def seed_augmenters(augs: Sequence[Any], seed: int) -> None:
    """Give the augmenters the random stream of one line (albumentations' own generators)."""
    if not augs:
        return
    np_rng, py_rng = np.random.default_rng(seed), random.Random(seed)
    for aug in augs:
        aug.pipeline.set_random_state(np_rng, py_rng)


class SeededSampler(Sampler):
    """Each epoch's indices of ``dataset`` from ``(seed, epoch)``; with ``with_seeds`` it yields
    ``(index, augmentation seed)`` keys for a ``SeededItems`` dataset.

    ``begin(epoch, skip)`` sets the next epoch and how many of its first draws to leave out (what a
    ``ResumableLoader`` does on every ``iter``); left alone, each ``iter`` serves the next epoch.
    """

    def __init__(self, dataset: Any, seed: int = 0, with_seeds: bool = False) -> None:
        self.dataset = dataset
        self.seed = seed
        self.with_seeds = with_seeds
        self.epoch = 0
        self._skip = 0

    def __len__(self) -> int:
        return getattr(self.dataset, "epoch_size", None) or len(self.dataset)

    def begin(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self._skip = epoch, skip

    def __iter__(self) -> Iterator[Any]:
        epoch, skip = self.epoch, self._skip
        self.epoch, self._skip = epoch + 1, 0
        order, seeds = epoch_order(self.dataset, epoch_generator(self.seed, epoch))
        if self.with_seeds:
            return iter(list(zip(order, seeds))[skip:])
        return iter(order[skip:])


class SeededItems(Dataset):
    """``dataset`` indexed by ``(index, seed)`` keys: the augmenters get ``seed`` before the item loads."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self._augs: list[Any] | None = None

    @property
    def datasets(self) -> list[Dataset]:  # what worker_init_fn and augmenters() walk
        return [self.dataset]

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        if self._augs is None:
            self._augs = augmenters(self.dataset)
        seed_augmenters(self._augs, seed)
        return self.dataset[index]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_augs": None}  # the worker's copies of the augmenters, found again there


def train_worker_init_fn(worker_id: int) -> None:
    """worker_init_fn, and the worker leaves SIGINT and SIGTERM to the main process: Ctrl-C reaches
    the whole process group and a scheduler may signal every process of a job, and a worker that died
    of it would fail the step that the main process finishes before it writes its interrupt
    checkpoint. A SIGTERM from the main process itself (multiprocessing's terminate at shutdown) still
    ends the worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "sigwaitinfo") and threading.current_thread() is threading.main_thread():
        parent = os.getppid()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # taken by the thread below only

        def wait_for_parent() -> None:
            while signal.sigwaitinfo({signal.SIGTERM}).si_pid != parent:
                pass
            os._exit(0)  # a clean exit: torch's SIGCHLD check reports no failed worker

        threading.Thread(target=wait_for_parent, name="sigterm-from-parent", daemon=True).start()
    worker_init_fn(worker_id)


class ResumableLoader(DataLoader):
    """A DataLoader over a seeded stream (a ``SeededSampler`` or an IterableDataset with ``begin``)
    whose position Lightning saves in checkpoints: ``state_dict`` / ``load_state_dict``.

    Lightning must not prefetch past the batch in training for the count to be right: it does not
    when the loader has a length, which these loaders have.
    """

    def __init__(self, *args: Any, start_epoch: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.next_epoch = start_epoch
        self.epoch = start_epoch  # the epoch being served
        self.served = 0  # its batches handed out so far
        self._resume: tuple[int, int] | None = None
        self._unstarted: tuple[int, int] | None = None  # (epoch, skip) of an iterator that served nothing yet

    @property
    def stream(self) -> Any:
        """What holds the seed and ``begin``: the IterableDataset, else the sampler."""
        return self.dataset if isinstance(self.dataset, IterableDataset) else self.sampler

    def _skip_unit(self) -> int:
        # An IterableDataset skips batches; a sampler skips draws, batch_size of them per batch.
        return 1 if isinstance(self.dataset, IterableDataset) else (self.batch_size or 1)

    def __iter__(self) -> Iterator[Any]:
        resumed = self._resume is not None
        if resumed:
            epoch, skip = self._resume
            self._resume = None
        elif self._unstarted is not None:  # the last iterator served nothing: begin where it would have
            epoch, skip = self._unstarted  # (Lightning resuming at an epoch's end makes two iterators)
        else:
            epoch, skip = self.next_epoch, 0
        self._unstarted = (epoch, skip)
        self.epoch, self.served, self.next_epoch = epoch, skip, epoch + 1
        stream = self.stream
        if hasattr(stream, "begin"):
            stream.begin(epoch, skip * self._skip_unit())
        elif resumed and (epoch or skip):  # e.g. Lightning's DistributedSamplerWrapper under DDP
            log.warning("the training loader's %s cannot start at epoch %d, batch %d: the resumed run's data "
                        "differ from an uninterrupted run's", type(stream).__name__, epoch, skip)
        return self._count(super().__iter__())

    def _count(self, batches: Iterator[Any]) -> Iterator[Any]:
        for batch in batches:
            self.served += 1
            self._unstarted = None
            yield batch

    def state_dict(self) -> dict[str, Any]:
        epoch, served = self.epoch, self.served
        if served >= len(self):  # the epoch was served to its end: the next one starts afresh
            epoch, served = epoch + 1, 0
        return {"version": STATE_VERSION, "seed": int(getattr(self.stream, "seed", 0)), "epoch": epoch,
                "batches": served, "batches_per_epoch": len(self)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            log.warning("training data state of an unknown version %r: the data restart from epoch %d's "
                        "first batch", state.get("version"), self.next_epoch)
            return
        if state["batches_per_epoch"] != len(self):
            log.warning("the checkpoint's training data had %d batches per epoch, this run's has %d (another "
                        "dataset, batch size or mix?): the stream resumes at epoch %d, batch %d, but not with "
                        "the batches an uninterrupted run would have seen", state["batches_per_epoch"], len(self),
                        state["epoch"], state["batches"])
        stream = self.stream
        if hasattr(stream, "seed"):
            stream.seed = int(state["seed"])
        batches = min(int(state["batches"]), len(self))
        self._resume = (int(state["epoch"]), batches)
        self._unstarted = None
        self.epoch, self.served, self.next_epoch = int(state["epoch"]), batches, int(state["epoch"])
