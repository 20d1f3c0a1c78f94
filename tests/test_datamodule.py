import importlib.util
from pathlib import Path

import pytest
import torch

from htr.data import FolderDataModule, IAMDataModule, RIMESDataModule, SyntheticDataModule
from htr.errors import CodecError
from htr.text.codec import DEFAULT_CHARSET


def _fixture_module(name):
    """The fixture builders of a sibling test file (tests/ need not be a package)."""
    spec = importlib.util.spec_from_file_location(f"_htr_{name}", Path(__file__).with_name(f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def check_batch(batch, n):
    assert batch["images"].dtype == torch.float32 and batch["images"].shape[:3] == (n, 1, 64)
    assert batch["images"].shape[3] % 8 == 0 and batch["widths"].max() <= batch["images"].shape[3]
    assert batch["targets"].dtype == torch.int64 and batch["target_lengths"].sum() == len(batch["targets"])
    assert [len(t) for t in batch["texts"]] == batch["target_lengths"].tolist()  # (no unknown characters)
    assert len(batch["ids"]) == n


def test_synthetic_module_and_workers_agree():
    dm = SyntheticDataModule(train_size=6, val_size=4, batch_size=2, num_workers=0)
    assert dm.charset == DEFAULT_CHARSET and len(dm.codec) == len(DEFAULT_CHARSET) + 1  # before setup
    dm.setup("fit")
    check_batch(next(iter(dm.train_dataloader())), 2)
    single = list(dm.val_dataloader())
    dm2 = SyntheticDataModule(train_size=6, val_size=4, batch_size=2, num_workers=2)
    dm2.setup("fit")
    multi = list(dm2.val_dataloader())
    assert [b["ids"] for b in single] == [b["ids"] for b in multi]
    assert all(torch.equal(a["images"], b["images"]) for a, b in zip(single, multi))


def test_folder_module_with_synthetic_mix(tmp_path):
    root = _fixture_module("test_folder").make_folder(tmp_path / "f")
    dm = FolderDataModule(str(root), batch_size=2, synthetic_ratio=1.0, augment=True)
    dm.setup("fit")
    train = dm.datasets["train"]
    assert train.draws() == [2, 2] and len(dm.datasets["val"]) == 1  # 2 real + 2 synthetic per epoch
    assert len(dm.train_dataloader()) == 2  # 4 lines per epoch, batches of 2
    check_batch(next(iter(dm.train_dataloader())), 2)
    check_batch(next(iter(dm.val_dataloader())), 1)
    assert dm.stats["train"]["kept"] == 2
    check_batch(next(iter(dm.predict_dataloader())), 1)  # no test split: predicts on val


def test_unknown_error_fails_at_setup_naming_the_file(tmp_path):
    root = _fixture_module("test_folder").make_folder(tmp_path / "f")
    dm = FolderDataModule(str(root), charset="abcdefghijklmnopqrstuvwxyz ", unknown="error")
    with pytest.raises(CodecError, match=r"train\.tsv.*'C'"):
        dm.setup("fit")
    dm = FolderDataModule(str(root), charset="abcdefghijklmnopqrstuvwxyz ", unknown="drop", batch_size=2)
    dm.setup("fit")
    assert dm.stats["train"]["unknown_chars"]["C"] == 1
    item = dm.datasets["train"][0]
    assert item["text"] == "Ceci est mon testament"  # the reference keeps 'C': metrics count it as an error
    assert dm.codec.decode(item["target"].tolist()) == "eci est mon testament"  # the target drops it


def test_iam_module(tmp_path):
    root = _fixture_module("test_iam").make_iam(tmp_path / "iam")
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("a01-000u\nb02-010\n")
    (root / "splits" / "val.txt").write_text("a01-000x-00\n")
    (root / "splits" / "test.txt").write_text("a01-000x\n")
    dm = IAMDataModule(str(root), batch_size=3)
    dm.setup("fit")
    check_batch(next(iter(dm.train_dataloader())), 3)
    dm.setup("test")
    assert next(iter(dm.test_dataloader()))["texts"] == ['He said: "I\'ll don\'t go, sir" (maybe).']


def test_rimes_module(tmp_path):
    root = _fixture_module("test_rimes").make_rimes(tmp_path / "rimes")
    dm = RIMESDataModule(str(root), test_xml=None, val_fraction=0.5, batch_size=8)
    dm.setup("fit")
    train_ids = {s.id for s in dm.datasets["train"].samples}
    val_ids = {s.id for s in dm.datasets["val"].samples}
    assert not train_ids & val_ids and len({i.split("-")[0] for i in val_ids}) == 1  # one whole page
    batch = next(iter(dm.train_dataloader()))
    check_batch(batch, len(train_ids))
