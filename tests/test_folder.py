from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from htr.data.dataset import LineDataset, prepare_samples
from htr.data.folder import read_folder
from htr.errors import DatasetError
from htr.text.codec import DEFAULT_CHARSET, Codec


def make_folder(root: Path, images_subdir: bool = True) -> Path:
    img_dir = root / "images" if images_subdir else root
    img_dir.mkdir(parents=True)
    rows = {"train": [("l1.png", "Ceci est mon testament"), ("l2.png", "à ma femme\u00a0:  1°")],
            "val": [("l3.png", "ſon frère’s")]}
    for split, items in rows.items():
        for name, _ in items:
            a = np.full((50, 200), 200, np.uint8)
            a[20:30, 10:190] = 40
            Image.fromarray(a).save(img_dir / name)
        (root / f"{split}.tsv").write_text("".join(f"{n}\t{t}\n" for n, t in items), encoding="utf-8")
    return root


@pytest.mark.parametrize("images_subdir", [True, False])
def test_reads_tsv_and_images(tmp_path, images_subdir):
    root = make_folder(tmp_path / "d", images_subdir)
    train = read_folder(root, "train")
    assert [s.id for s in train] == ["l1", "l2"]
    assert train[0].image_path.is_file()
    kept, stats = prepare_samples(train, Codec(DEFAULT_CHARSET), source="train.tsv")
    assert kept[1].text == "à ma femme : 1°"  # NBSP and the double space normalised
    assert stats["kept"] == 2 and not stats["unknown_chars"]
    item = LineDataset(kept, Codec(DEFAULT_CHARSET))[0]
    assert item["image"].shape[:2] == (1, 64) and item["text"] == "Ceci est mon testament"


def test_format_errors(tmp_path):
    root = make_folder(tmp_path / "d")
    with pytest.raises(DatasetError, match="test.tsv"):
        read_folder(root, "test")
    (root / "bad.tsv").write_text("l1.png no tab here\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"bad.tsv:1.*no tab"):
        read_folder(root, "bad")


def test_poilus_folder_if_present(shared_data):
    poilus = shared_data("realdata/poilus", "val.tsv")  # ../shared from the repository root, else a skip
    val = read_folder(poilus, "val")
    assert len(val) == 239
    kept, stats = prepare_samples(val, Codec(DEFAULT_CHARSET), source="poilus val", check_images=False)
    assert len(kept) == 239 and not stats["unknown_chars"]
    item = LineDataset(kept[:2], Codec(DEFAULT_CHARSET))[1]
    assert item["image"].shape[1] == 64 and len(item["target"]) == len(item["text"])
