from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from htr.data.dataset import LineDataset, load_sample_image, prepare_samples
from htr.data.rimes import read_rimes_xml, split_pages
from htr.errors import DatasetError
from htr.text.codec import DEFAULT_CHARSET, Codec

XML = """<?xml version="1.0" encoding="utf-8"?>
<DocumentList>
  <SinglePage FileName="images_gray/page1.png">
    <Paragraph Bottom="300" Left="0" Right="400" Top="0" Value="">
      <Line Bottom="60" Left="-15" Right="380" Top="-5" Value="Monsieur &amp; Madame,"/>
      <Line Bottom="140" Left="20" Right="900" Top="80" Value="je vous &quot;remercie&quot; &#233;t&#233;"/>
      <Line Bottom="200" Left="30" Right="350" Top="150" Value="R&amp;eacute;f&amp;eacute;rence"/>
    </Paragraph>
  </SinglePage>
  <SinglePage FileName="page2.png">
    <Line Bottom="90" Left="10" Right="300" Top="20" Value="Cordialement &eacute;"/>
    <Line Bottom="10" Left="500" Right="600" Top="5" Value="hors page"/>
  </SinglePage>
</DocumentList>
"""


def make_rimes(root: Path) -> Path:
    (root / "images_gray").mkdir(parents=True)
    (root / "training_2011.xml").write_text(XML, encoding="utf-8")
    page = np.full((300, 400), 235, np.uint8)
    page[20:40, 10:390] = 20
    page[100:120, 30:390] = 20
    page[160:180, 40:340] = 20
    Image.fromarray(page).save(root / "images_gray" / "page1.png")
    Image.fromarray(page).save(root / "images_gray" / "page2.png")  # found by base name
    return root


def test_parse_unescape_and_boxes(tmp_path):
    root = make_rimes(tmp_path / "rimes")
    pages = read_rimes_xml(root / "training_2011.xml", root)
    assert list(pages) == ["images_gray/page1.png", "page2.png"]
    p1 = pages["images_gray/page1.png"]
    assert [s.text for s in p1] == ["Monsieur & Madame,", 'je vous "remercie" été', "Référence"]
    assert p1[0].box == (-15, -5, 380, 60) and p1[0].id == "page1-00"
    assert pages["page2.png"][0].text == "Cordialement é"  # HTML entity XML does not define
    assert pages["page2.png"][0].image_path == root / "images_gray" / "page2.png"


def test_crop_clamps_negative_and_overflowing_boxes(tmp_path):
    root = make_rimes(tmp_path / "rimes")
    p1 = read_rimes_xml(root / "training_2011.xml", root)["images_gray/page1.png"]
    assert load_sample_image(p1[0]).size == (380, 60)  # left/top clamped to 0
    assert load_sample_image(p1[1]).size == (380, 60)  # right clamped to the page width 400


def test_empty_box_is_a_counted_bad_image(tmp_path):
    root = make_rimes(tmp_path / "rimes")
    pages = read_rimes_xml(root / "training_2011.xml", root)
    samples = [s for lines in pages.values() for s in lines]
    kept, stats = prepare_samples(samples, Codec(DEFAULT_CHARSET), source="rimes")
    assert len(kept) == 4 and list(stats["bad_images"]) == ["page2-01"]
    assert "empty inside the 400x300 page" in stats["bad_images"]["page2-01"]
    # a box that went bad after setup is replaced at load time and recorded, not a crash
    ds = LineDataset(samples, Codec(DEFAULT_CHARSET))
    assert ds[4]["id"] == "page1-00" and "page2-01" in ds.stats["runtime_bad"]


def test_val_split_is_seeded_by_page():
    pages = [f"p{i:03d}.png" for i in range(50)]
    train, val = split_pages(pages, 0.1, seed=3)
    assert len(val) == 5 and not set(train) & set(val) and len(train) + len(val) == 50
    assert split_pages(list(reversed(pages)), 0.1, seed=3) == (train, val)  # input order does not matter
    assert split_pages(pages, 0.1, seed=4)[1] != val


def test_missing_xml(tmp_path):
    with pytest.raises(DatasetError, match="training_2011.xml"):
        read_rimes_xml(tmp_path / "training_2011.xml")
