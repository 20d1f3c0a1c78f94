import datetime
import pickle
import random
import string

import numpy as np
import pytest
import torch
from PIL import Image

from htr.data.synthetic import (
    SYSTEM_HANDWRITING_FONTS,
    Renderer,
    SyntheticConfig,
    SyntheticLineDataset,
    TextSampler,
    discover_fonts,
    font_coverage,
    shear_and_rotate,
    system_handwriting_fonts,
)
from htr.errors import DatasetError
from htr.text.codec import DEFAULT_CHARSET, Codec

CODEC = Codec(DEFAULT_CHARSET)


@pytest.fixture(scope="module")
def fonts():
    found = discover_fonts()
    if not found:
        pytest.skip("no fontpkg-* handwriting fonts installed")
    return found


def test_fonts_are_found_in_a_fixed_order(fonts):
    assert fonts == discover_fonts()
    assert {"caveat", "indie-flower", "satisfy", "zeyada"} <= {f.family for f in fonts}


def test_system_fonts_are_one_family_per_debian_package_and_missing_ones_are_named(fonts, tmp_path, caplog):
    # A fake /usr/share/fonts: two files of one known package, one unknown folder, one non-font file.
    source = fonts[0].path
    for rel in ("truetype/kristi/Kristi.ttf", "opentype/comic-neue/A.otf", "opentype/comic-neue/B.otf",
                "truetype/dejavu/DejaVuSans.ttf", "truetype/kristi/README"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(source.read_bytes())
    with caplog.at_level("WARNING", logger="htr.data.synthetic"):
        found = system_handwriting_fonts(tmp_path)
    assert [(f.family, f.path.name) for f in found] == [
        ("system-comic-neue", "A.otf"), ("system-comic-neue", "B.otf"), ("system-kristi", "Kristi.ttf")]
    missing = set(SYSTEM_HANDWRITING_FONTS.values()) - {"fonts-kristi", "fonts-comic-neue"}
    assert f"{len(missing)} of {len(SYSTEM_HANDWRITING_FONTS)}" in caplog.text
    assert all(pkg in caplog.text for pkg in missing) and "fonts-kristi" not in caplog.text
    # System families train, never validate: the held-out families stay the validation fonts.
    cfg = SyntheticConfig(train_size=30, val_size=10)
    train = SyntheticLineDataset("train", CODEC, cfg, fonts=fonts + found)
    val = SyntheticLineDataset("val", CODEC, cfg, fonts=fonts + found)
    assert {"system-comic-neue", "system-kristi"} <= set(train.families)
    assert set(val.families) == set(cfg.val_fonts)


def test_same_seed_and_index_give_the_same_pixels(fonts):
    cfg = SyntheticConfig(seed=7, train_size=50)
    a, b = (SyntheticLineDataset("train", CODEC, cfg, fonts=fonts),
            SyntheticLineDataset("train", CODEC, cfg, fonts=fonts))
    b = pickle.loads(pickle.dumps(b))  # as a data-loader worker receives it
    for i in (0, 3, 49, 3):  # order of access does not matter
        ia, ta, _ = a.render(i)
        ib, tb, _ = b.render(i)
        assert ta == tb and np.array_equal(ia, ib)
    other = SyntheticLineDataset("train", CODEC, SyntheticConfig(seed=8, train_size=50), fonts=fonts)
    assert other.render(0)[1] != a.render(0)[1]
    assert len(a) == 50 and a.sample_id(3) == "synth-train-7-000003"


def test_validation_lines_are_rendered_once_per_process(fonts, monkeypatch):
    cfg = SyntheticConfig(train_size=4, val_size=4)
    val, train = (SyntheticLineDataset(split, CODEC, cfg, fonts=fonts) for split in ("val", "train"))
    first = [val[i] for i in range(4)]
    worker = pickle.loads(pickle.dumps(val))  # a loader worker starts with an empty store

    def no_render(index):
        raise AssertionError("rendered again")

    monkeypatch.setattr(val, "render", no_render)
    for i, item in enumerate(first):
        again = val[i]
        assert again["text"] == item["text"] and torch.equal(again["image"], item["image"])
    assert torch.equal(worker[2]["image"], first[2]["image"])
    train[0]
    monkeypatch.setattr(train, "render", no_render)
    with pytest.raises(AssertionError, match="rendered again"):  # training lines are not kept
        train[0]


def test_validation_fonts_are_held_out(fonts):
    cfg = SyntheticConfig(train_size=40, val_size=40)
    train = SyntheticLineDataset("train", CODEC, cfg, fonts=fonts)
    val = SyntheticLineDataset("val", CODEC, cfg, fonts=fonts)
    assert set(val.families) == set(cfg.val_fonts)
    assert not set(train.families) & set(val.families)
    assert {train.render(i)[2].family for i in range(40)} <= set(train.families)
    assert {val.render(i)[2].family for i in range(10)} <= set(cfg.val_fonts)
    with pytest.raises(DatasetError, match="not installed"):
        SyntheticLineDataset("val", CODEC, SyntheticConfig(val_fonts=("no-such-font",)), fonts=fonts)


def test_text_fits_codec_and_font_and_ink_stays_inside(fonts):
    small = Codec(string.ascii_lowercase + " ")
    ds = SyntheticLineDataset("train", small, SyntheticConfig(train_size=12, min_chars=5, max_chars=40), fonts=fonts)
    for i in range(12):
        img, text, font = ds.render(i)
        assert text and set(text) <= set(small.charset) and set(text) <= font_coverage(font.path)
        assert len(text) <= 40
        border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
        assert border.min() > 128, f"ink touches the border of line {i} ({font})"
        assert img.min() < 128  # there is ink
        item = ds[i]
        assert item["image"].shape[:2] == (1, 64) and small.decode(item["target"].tolist()) == text


def _ink_on_border(mask: Image.Image) -> int:
    a = np.asarray(mask)
    return int(np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]]).max())


@pytest.mark.parametrize("slant, angle", [(0.0, 0.0), (0.3, 1.5), (-0.3, -1.5), (0.3, -10.0)])
def test_slant_and_rotation_keep_all_the_ink(slant, angle):
    """Shear and rotation preserve area, so a canvas that holds the result keeps the ink's mass."""
    mask = Image.new("L", (120, 30), 0)
    mask.paste(255, (4, 4, 116, 26))  # ink up to 4 px from each edge, as Renderer.draw leaves it
    out = shear_and_rotate(mask, slant, angle)
    assert _ink_on_border(out) == 0
    assert np.asarray(out, dtype=float).sum() == pytest.approx(np.asarray(mask, dtype=float).sum(), rel=0.01)


def test_every_font_draws_inside_its_canvas(fonts):
    """The canvas comes from the font's ink box: glyphs that overhang it would be cut."""
    renderer = Renderer(SyntheticConfig())
    text = "Jy Qg fj ,;' ÉÀçœ 0(9) ~_|"
    for spec in fonts + system_handwriting_fonts():
        font = renderer.font(spec, 60)
        for stroke in (0, 1):
            mask = renderer.draw("".join(ch for ch in text if ch in font_coverage(spec.path)), font, stroke)
            assert _ink_on_border(mask) == 0, f"{spec} cuts ink (stroke {stroke})"


def test_default_lines_use_the_full_charset_variety(fonts):
    ds = SyntheticLineDataset("train", CODEC, SyntheticConfig(train_size=60), fonts=fonts)
    texts = [ds.render(i)[1] for i in range(60)]
    chars = set("".join(texts))
    assert chars <= set(DEFAULT_CHARSET)
    assert any(c.isdigit() for c in chars) and any(c in "éèàçê" for c in chars) and any(c in ",.;:" for c in chars)
    assert len(set(texts)) == 60


def test_line_texts_do_not_depend_on_the_clock(monkeypatch):
    """Faker's dates run from 1970 to "now" by default; a line must be a function of its seed alone,
    or the validation set changes from one day (or run) to the next."""
    import faker.providers.date_time as faker_dates

    sampler = TextSampler(("en_US", "fr_FR"))

    def lines() -> list[str]:
        return [sampler.line(random.Random(i), set(DEFAULT_CHARSET), 6, 60, 0.1) for i in range(300)]

    today = lines()

    class TenYearsLater(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.datetime.now(tz) + datetime.timedelta(days=3653)

    monkeypatch.setattr(faker_dates, "datetime", TenYearsLater)
    assert lines() == today
