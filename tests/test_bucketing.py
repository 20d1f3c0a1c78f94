"""Width-bucketed training batches: every line once per epoch, less padding, reproducible order."""
from __future__ import annotations

from functools import partial

import torch
from torch.utils.data import DataLoader, Dataset

from htr.data.bucketing import WidthBucketedBatches
from htr.data.dataset import worker_init_fn
from htr.data.images import collate


class Lines(Dataset):
    """Line items whose width is a scrambled function of the index (10 to 400 px)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        w = 10 + (i * 7919) % 391
        return {"image": torch.full((1, 4, w), float(i)), "target": torch.tensor([1 + i % 5]), "text": "x",
                "id": str(i)}


def _batches(n: int = 100, batch_size: int = 8, pool: int = 4, seed: int = 0, workers: int = 0) -> list[list[dict]]:
    """Epochs of batches, as (ids, padded width) lists; two epochs from one loader."""
    bucketed = WidthBucketedBatches(Lines(n), batch_size, partial(collate, pad_to_multiple=1), pool, seed=seed)
    loader = DataLoader(bucketed, batch_size=None, num_workers=workers, worker_init_fn=worker_init_fn,
                        persistent_workers=workers > 0)
    return [[{"ids": b["ids"], "width": b["images"].shape[-1], "widths": b["widths"].tolist()} for b in loader]
            for _ in range(2)]


def test_every_line_once_per_epoch_in_full_batches():
    for workers in (0, 2):
        for epoch in _batches(n=100, batch_size=8, workers=workers):
            ids = [i for b in epoch for i in b["ids"]]
            assert sorted(ids, key=int) == [str(i) for i in range(100)]
            assert sum(len(b["ids"]) < 8 for b in epoch) <= max(1, workers)  # one short batch per worker at most
    assert len(WidthBucketedBatches(Lines(100), 8, collate)) == 13


def test_batches_pad_less_than_random_batches():
    epoch = _batches(n=256, batch_size=8, pool=8)[0]
    padded = sum(b["width"] * len(b["ids"]) for b in epoch)
    ink = sum(sum(b["widths"]) for b in epoch)
    plain = DataLoader(Lines(256), batch_size=8, shuffle=True, collate_fn=collate,
                       generator=torch.Generator().manual_seed(0))
    padded_plain = sum(b["images"].shape[-1] * len(b["ids"]) for b in plain)
    assert ink / padded > 0.9 > ink / padded_plain


def test_order_is_seeded_and_changes_between_epochs():
    first, second = _batches(seed=3)
    assert _batches(seed=3)[0] == first
    assert [b["ids"] for b in first] != [b["ids"] for b in second]
    assert [b["ids"] for b in _batches(seed=4)[0]] != [b["ids"] for b in first]


def test_synthetic_datamodule_serves_bucketed_training_batches():
    from htr.data import SyntheticDataModule

    dm = SyntheticDataModule(train_size=24, val_size=4, batch_size=4, height=32, bucket_batches=3, augment=False)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 6 and all(b["images"].shape[:3] == (4, 1, 32) for b in batches)
    assert sorted(i for b in batches for i in b["ids"]) == sorted(dm.datasets["train"].sample_id(i) for i in range(24))
    assert len(next(iter(dm.val_dataloader()))["ids"]) == 4  # validation keeps plain batches
