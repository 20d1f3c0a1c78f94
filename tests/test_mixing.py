"""Weighted training mixes: WeightedMix and MixSampler, FolderSource's text rules and the
FolderMixDataModule that trains on several folders (htr.data.mixing, htr.data.folder)."""
import importlib.util
import logging
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from htr.data import FolderMixDataModule, FolderSource
from htr.data.bucketing import WidthBucketedBatches
from htr.data.mixing import MixSampler, WeightedMix
from htr.errors import DatasetError
from htr.text.codec import DEFAULT_CHARSET


class Numbers(Dataset):
    def __init__(self, start: int, n: int) -> None:
        self.start, self.n = start, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return self.start + i


def make_folder():
    spec = importlib.util.spec_from_file_location("_htr_test_folder", Path(__file__).with_name("test_folder.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_folder


def test_an_epoch_draws_each_part_by_its_weight():
    mix = WeightedMix([Numbers(0, 10), Numbers(100, 6), Numbers(200, 4)], [2.0, 0.5, 1.0])
    assert len(mix) == 20 and mix.draws() == [20, 3, 4] and mix.epoch_size == 27
    epochs = [Counter(mix[i] for i in mix.epoch_indices(torch.Generator().manual_seed(s)).tolist()) for s in (0, 1)]
    for seen in epochs:
        assert all(seen[k] == 2 for k in range(10))  # weight 2: every line twice
        assert sum(seen[k] for k in range(100, 106)) == 3 and max(seen[k] for k in range(100, 106)) == 1
        assert all(seen[k] == 1 for k in range(200, 204))
    halves = [{k for k in seen if 100 <= k < 106} for seen in epochs]
    assert halves[0] != halves[1]  # another half of the half-weighted part in the next epoch


def test_sampler_and_bucketed_batches_follow_the_weights():
    mix = WeightedMix([Numbers(0, 8), Numbers(100, 8)], [1.0, 0.25])
    sampler = MixSampler(mix, seed=3)
    first, second = list(sampler), list(sampler)
    assert len(first) == len(sampler) == 10 and sorted(first) != sorted(second)
    items = {i: {"image": torch.zeros(1, 4, 4 + i % 5)} for i in range(16)}
    sized = WeightedMix([_Items(items, 0, 8), _Items(items, 8, 8)], [1.0, 0.25])
    batches = list(WidthBucketedBatches(sized, batch_size=2, collate=lambda b: b, pool_batches=2))
    assert len(batches) == 5 and sum(len(b) for b in batches) == 10


class _Items(Dataset):
    def __init__(self, items, start, n):
        self.items, self.start, self.n = items, start, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.items[self.start + i]


def test_bad_weights_are_refused():
    with pytest.raises(DatasetError, match="one weight per part"):
        WeightedMix([Numbers(0, 2)], [1.0, 1.0])
    with pytest.raises(DatasetError, match="at least one > 0"):
        WeightedMix([Numbers(0, 2)], [0.0])
    with pytest.raises(DatasetError, match="weight=-1"):
        FolderSource("x", weight=-1)
    with pytest.raises(DatasetError, match="not a regular expression"):
        FolderSource("x", drop_lines="(")


def test_folder_source_rules_replace_then_drop(tmp_path):
    root = make_folder()(tmp_path / "f")
    (root / "train.tsv").write_text("l1.png\tl'homme &amp; >la< femme\nl2.png\tà ma femme\n", encoding="utf-8")
    source = FolderSource(str(root), replace={"'": "’", "&amp;": "&"}, drop_lines=r"^à")
    samples, dropped = source.read("train")
    assert dropped == 1 and [s.text for s in samples] == ["l’homme & >la< femme"]
    samples, dropped = FolderSource(str(root), drop_lines=r">[^<>]*<").read("train")
    assert dropped == 1 and [s.text for s in samples] == ["à ma femme"]


def test_mix_module_trains_on_every_source_and_validates_on_the_first_val_split(tmp_path, caplog):
    a = make_folder()(tmp_path / "a")
    b = make_folder()(tmp_path / "b")
    (b / "train.tsv").write_text("l1.png\tŁódź 'x'\nl2.png\tzzz\n", encoding="utf-8")
    dm = FolderMixDataModule(sources=[{"root": str(a), "weight": 2.0, "val_split": "val"},
                                      {"root": str(b), "replace": {"'": "’"}, "drop_lines": "zzz", "name": "other"}],
                             batch_size=2, extend_charset=True)
    # the characters of b's kept line that the default charset lacks (Ł, ź; ó is in it) join the codec
    assert dm.charset.startswith(DEFAULT_CHARSET) and set(dm.charset[len(DEFAULT_CHARSET):]) == set("Łź")
    with caplog.at_level(logging.INFO, logger="htr"):
        dm.setup("fit")
    assert dm.datasets["train"].draws() == [4, 1] and dm.datasets["train"].names == ["a", "other"]
    assert dm.rule_dropped == {"a": 0, "other": 1}
    assert [s.text for s in dm.datasets["train"].parts[1].samples] == ["Łódź ’x’"]
    assert [s.text for s in dm.datasets["val"].samples] == ["ſon frère’s"]
    assert dm.describe("val") == str(a / "val.tsv")
    report = caplog.text
    table = report[report.index("training sets:"):].splitlines()
    assert [line.split("|")[1].strip() for line in table[3:5]] == ["a", "other"]
    assert "'Ł' (U+0141) x1" in report  # every set's characters and counts
    batches = list(dm.train_dataloader())
    assert sum(len(b["texts"]) for b in batches) == 5
