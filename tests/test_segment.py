"""Projection-profile line segmentation (htr.segment) on rendered paragraphs and the bundled examples."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from htr.data.synthetic import Renderer, SyntheticConfig, discover_fonts
from htr.segment import LineBox, crop_lines, find_bands, ink_mask, otsu_threshold, segment_lines

EXAMPLES = Path(__file__).resolve().parents[1] / "app" / "examples"
TEXTS = ["Paris, le 3 mars 1916", "Je lègue tous mes biens", "à ma femme et à mes enfants", "fait en double"]


@pytest.fixture(scope="module")
def rendered():
    cfg = SyntheticConfig(font_size=(40, 40), blur_p=0.0, noise_std=(0.0, 0.0), rotate_deg=0.0, slant=0.0,
                          paper=(240, 240), ink=(20, 20), pad=(2, 2))
    renderer = Renderer(cfg)
    fonts = {f.family: f for f in discover_fonts()}
    font = fonts.get("indie-flower") or next(iter(fonts.values()))
    return [renderer.render(t, font, np.random.default_rng(i)) for i, t in enumerate(TEXTS)]


def paragraph(lines: list[np.ndarray], gap: int, margin: int = 20) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Stack lines with `gap` px between them; returns the page and each line's [y0, y1)."""
    w = max(x.shape[1] for x in lines) + 2 * margin
    h = sum(x.shape[0] for x in lines) + gap * (len(lines) - 1) + 2 * margin
    page = np.full((h, w), 240, np.uint8)
    spans, y = [], margin
    for x in lines:
        page[y:y + x.shape[0], margin:margin + x.shape[1]] = np.minimum(
            page[y:y + x.shape[0], margin:margin + x.shape[1]], x)
        spans.append((y, y + x.shape[0]))
        y += x.shape[0] + gap
    return page, spans


@pytest.mark.parametrize("gap", [0, 10, 40])
def test_rendered_paragraph_gives_one_box_per_line(rendered, gap):
    page, spans = paragraph(rendered, gap)
    boxes = segment_lines(page)
    assert len(boxes) == len(TEXTS)
    cores = [np.percentile(np.flatnonzero((page[y0:y1] < 128).any(axis=1)) + y0, (25, 75)) for y0, y1 in spans]
    for i, (box, core) in enumerate(zip(boxes, cores)):
        assert box.y0 <= core[0] and box.y1 >= core[1]  # the line's core is inside its box
        # and the box reaches no neighbouring line's core (its middle half of ink rows)
        assert i == 0 or box.y0 > cores[i - 1][1], (i, box, cores[i - 1])
        assert i == len(boxes) - 1 or box.y1 < cores[i + 1][0], (i, box, cores[i + 1])
    assert all(a.y1 <= b.y0 for a, b in zip(boxes, boxes[1:]))  # top to bottom, no two boxes overlap


def test_single_line_and_blank(rendered):
    [box] = segment_lines(rendered[1])
    assert box.height >= 0.9 * rendered[1].shape[0]
    assert segment_lines(np.full((80, 300), 250, np.uint8)) == []
    assert segment_lines(Image.new("RGB", (300, 80), "white")) == []


def test_specks_and_rules_far_from_text_are_dropped(rendered):
    page, _ = paragraph(rendered[:1], 0, margin=60)
    page[5:7, 10:12] = 0  # a speck far above the line
    page[-8:-6, 30:-30] = 0  # a rule far below
    assert len(segment_lines(page)) == 1


def test_bundled_examples():
    for name in ("synthetic_1", "synthetic_2", "poilus_1", "poilus_2", "poilus_3"):
        assert len(segment_lines(Image.open(EXAMPLES / f"{name}.png"))) == 1, name
    page = Image.open(EXAMPLES / "poilus_paragraph.png")
    crops = crop_lines(page)
    assert len(crops) == 3 and all(c.height >= 40 for c in crops)


def _ruled_page(lines: int) -> np.ndarray:
    """`lines` dark bars 8 px high, 24 px apart: as many text lines for the projection profile."""
    page = np.full((24 * lines + 40, 300), 245, np.uint8)
    for i in range(lines):
        page[20 + 24 * i: 28 + 24 * i, 20:280] = 20
    return page


def test_app_refuses_pages_of_more_than_40_lines():
    """The app's requests (htr.compare, MAX_LINES = 40) take a line or a short paragraph: 41 lines are
    refused with a message naming the count and the limit, 40 are split and kept."""
    from htr import compare
    from htr.errors import ImageError
    from htr.segment import find_lines

    assert compare.MAX_LINES == 40
    _, boxes, crops = compare.read_lines(Image.fromarray(_ruled_page(40)))
    assert len(boxes) == len(crops) == 40
    with pytest.raises(ImageError, match=r"41 text lines found; expected a line or a short paragraph \(at most 40"):
        compare.read_lines(Image.fromarray(_ruled_page(41)))
    assert len(find_lines(Image.fromarray(_ruled_page(41)), "paragraph")[1]) == 41  # the library has no limit


def test_otsu_and_mask():
    values = np.array([10] * 50 + [200] * 50, np.uint8)
    t, contrast = otsu_threshold(values)
    assert 10 <= t < 200 and contrast == pytest.approx(190)
    assert otsu_threshold(np.full(10, 7, np.uint8))[1] == 0.0
    gray = np.full((20, 20), 230, np.uint8)
    gray[5:8, 2:18] = 30
    mask = ink_mask(gray)
    assert mask.sum() == 3 * 16 and mask[6, 10]
    [(a, b)] = find_bands(mask)  # the smoothing window widens a band by at most a row or two
    assert 3 <= a <= 5 and 8 <= b <= 10


def test_rejects_bad_arrays():
    with pytest.raises(ValueError, match="uint8"):
        segment_lines(np.zeros((10, 10), np.float32))
    assert LineBox(1, 2, 5, 9).as_tuple() == (1, 2, 5, 9)
