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


# ---- the data rules through a data module: unknown characters, bad images, their warnings ------------
SNOWMAN = "\u2603"  # not in DEFAULT_CHARSET


def _tsv_folder(root: Path, bad_image: bool = True) -> Path:
    """train: 4 lines, one with an unknown character twice, one (when ``bad_image``) a corrupt file;
    val: 2 lines, one with the unknown character."""
    import numpy as np
    from PIL import Image

    (root / "images").mkdir(parents=True)
    rows = {"train": [("t0.png", "le chat"), ("t1.png", f"a{SNOWMAN}b{SNOWMAN}"), ("t2.png", "noir"),
                      ("t3.png", "bleu")],
            "val": [("v0.png", "une maison"), ("v1.png", f"x{SNOWMAN}")]}
    for split, items in rows.items():
        for name, _ in items:
            a = np.full((40, 160), 230, np.uint8)
            a[15:25, 10:150] = 30
            Image.fromarray(a).save(root / "images" / name)
        (root / f"{split}.tsv").write_text("".join(f"{n}\t{t}\n" for n, t in items), encoding="utf-8")
    if bad_image:
        (root / "images" / "t3.png").write_bytes(b"not an image at all\n" * 10)
    return root


def test_unknown_skip_line_and_bad_images_skip_through_a_data_module(tmp_path, caplog):
    import logging

    dm = FolderDataModule(root=str(_tsv_folder(tmp_path / "d")), unknown="skip_line", bad_images="skip",
                          batch_size=8, num_workers=0)
    with caplog.at_level(logging.WARNING, logger="htr"):
        dm.setup("fit")
        dm.setup("fit")  # a second setup (Lightning calls it per stage) warns nothing again
        texts = [t for b in dm.train_dataloader() for t in b["texts"]]
        texts += [t for b in dm.train_dataloader() for t in b["texts"]]
        val = [t for b in dm.val_dataloader() for t in b["texts"]]
    assert sorted(set(texts)) == ["le chat", "noir"]  # the unknown line and the bad image are left out
    assert val == ["une maison"]
    assert dm.stats["train"]["skipped_unknown"] == 1 and dm.stats["val"]["skipped_unknown"] == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    unknown = [w for w in warnings if "characters not in the charset" in w]
    assert len(unknown) == 2, warnings  # once per split
    assert any("train.tsv" in w and SNOWMAN in w for w in unknown) and any("val.tsv" in w for w in unknown)
    bad = [w for w in warnings if "bad images skipped" in w]
    assert len(bad) == 1 and "train.tsv" in bad[0] and "t3" in bad[0], warnings  # names the file


def test_unknown_error_and_bad_images_error_through_a_data_module(tmp_path):
    from htr.errors import ImageError

    with pytest.raises(ImageError, match="t3.png"):
        FolderDataModule(root=str(_tsv_folder(tmp_path / "bad")), bad_images="error", num_workers=0).setup("fit")
    with pytest.raises(CodecError, match=r"train\.tsv.*U\+2603"):
        FolderDataModule(root=str(_tsv_folder(tmp_path / "unknown", bad_image=False)), unknown="error",
                         num_workers=0).setup("fit")
