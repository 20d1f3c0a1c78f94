"""ALTO (v2, v3, v4) and PAGE XML (2010 Point form, 2013, 2019) ground truth -> lines (htr.data.xml_lines,
htr.data.crop) and the XMLDataModule, down to a few training steps through `htr fit`.

Every fixture page is made here: rendered lines pasted on a gray page, and XML written by hand in each
format (not by htr.writers, which tests/test_pages.py checks against these readers).
"""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from htr.data import xml_lines
from htr.data.crop import crop_line, is_vertical
from htr.data.datamodule import XMLDataModule
from htr.data.images import load_image
from htr.data.synthetic import Renderer, SyntheticConfig, discover_fonts
from htr.errors import DatasetError

ROOT = Path(__file__).resolve().parents[1]
PAPER, INK = 230, 20
TEXTS = ["Paris, le 3 mars 1916", "Je lègue tous mes biens", "à ma femme et à mes enfants", "fait en double"]
ALTO = {v: f"http://www.loc.gov/standards/alto/ns-v{v}#" for v in (2, 3, 4)}
PAGE = {v: f"http://schema.primaresearch.org/PAGE/gts/pagecontent/{v}"
        for v in ("2010-03-19", "2013-07-15", "2019-07-15")}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread is faster


@pytest.fixture(scope="module")
def rendered() -> list[np.ndarray]:
    cfg = SyntheticConfig(font_size=(28, 28), blur_p=0.0, noise_std=(0.0, 0.0), rotate_deg=0.0, slant=0.0,
                          paper=(PAPER, PAPER), ink=(INK, INK), pad=(2, 2))
    renderer = Renderer(cfg)
    fonts = {f.family: f for f in discover_fonts()}
    font = fonts.get("indie-flower") or next(iter(fonts.values()))
    return [renderer.render(t, font, np.random.default_rng(i)) for i, t in enumerate(TEXTS)]


class Page:
    """A page image with lines pasted at known places; ``lines``: (text, box) in top-to-bottom order."""

    def __init__(self, rendered: list[np.ndarray], texts: list[str] = TEXTS, gap: int = 30, margin: int = 40) -> None:
        width = max(x.shape[1] for x in rendered) + 2 * margin
        height = sum(x.shape[0] for x in rendered) + gap * (len(rendered) - 1) + 2 * margin
        self.array = np.full((height, width), PAPER, np.uint8)
        self.lines: list[tuple[str, tuple[int, int, int, int]]] = []
        y = margin
        for text, x in zip(texts, rendered):
            self.array[y:y + x.shape[0], margin:margin + x.shape[1]] = x
            self.lines.append((text, (margin, y, margin + x.shape[1], y + x.shape[0])))
            y += x.shape[0] + gap

    def save(self, path: Path) -> Path:
        Image.fromarray(self.array, "L").save(path)
        return path


def rect(box, sep=","):
    x0, y0, x1, y1 = box
    return " ".join(f"{x}{sep}{y}" for x, y in [(x0, y0), (x1 - 1, y0), (x1 - 1, y1 - 1), (x0, y1 - 1)])


def alto_xml(version: int, image: str, lines, unit: str = "pixel", scale: float = 1.0, page_size=(0, 0),
             reading_order: list[str] | None = None) -> str:
    """ALTO as kraken / eScriptorium (v4: Shape/Polygon 'x y x y', BASELINE points) or ABBYY-era
    exporters (v2/v3: no line polygon, BASELINE a y, one String per word with SP) write it.
    ``lines``: (id, text, box, polygon or None, baseline points or None, block id)."""
    out = [f'<?xml version="1.0" encoding="UTF-8"?>\n<alto xmlns="{ALTO[version]}">',
           f"<Description><MeasurementUnit>{unit}</MeasurementUnit>"
           f"<sourceImageInformation><fileName>{image}</fileName></sourceImageInformation></Description>"]
    if reading_order:
        refs = "".join(f'<ElementRef ID="ref{k}" REF="{r}"/>' for k, r in enumerate(reading_order))
        out.append(f'<ReadingOrder><OrderedGroup ID="ro">{refs}</OrderedGroup></ReadingOrder>')
    w, h = page_size

    def pos(box) -> str:
        x0, y0, x1, y1 = (v * scale for v in box)
        return f'HPOS="{x0:g}" VPOS="{y0:g}" WIDTH="{x1 - x0:g}" HEIGHT="{y1 - y0:g}"'

    out.append(f'<Layout><Page ID="p1" PHYSICAL_IMG_NR="1" WIDTH="{w * scale:g}" HEIGHT="{h * scale:g}">'
               f'<PrintSpace {pos((0, 0, w, h))}>')
    block = None
    for line_id, text, box, polygon, baseline, block_id in lines:
        if block_id != block:
            if block is not None:
                out.append("</TextBlock>")
            boxes = [ln[2] for ln in lines if ln[5] == block_id]
            union = (min(b[0] for b in boxes), min(b[1] for b in boxes),
                     max(b[2] for b in boxes), max(b[3] for b in boxes))
            out.append(f'<TextBlock ID="{block_id}" {pos(union)}>')  # ALTO 2 requires a block's box
            block = block_id
        x0, y0, x1, y1 = (v * scale for v in box)
        attrs = f'ID="{line_id}" HPOS="{x0:g}" VPOS="{y0:g}" WIDTH="{x1 - x0:g}" HEIGHT="{y1 - y0:g}"'
        if baseline is not None:
            attrs += (f' BASELINE="{" ".join(f"{x * scale:g} {y * scale:g}" for x, y in baseline)}"' if version == 4
                      else f' BASELINE="{baseline[0][1] * scale:g}"')
        out.append(f"<TextLine {attrs}>")
        if polygon is not None and version == 4:
            out.append('<Shape><Polygon POINTS="'
                       f'{" ".join(f"{x * scale:g} {y * scale:g}" for x, y in polygon)}"/></Shape>')
        words = text.split() or [""]
        out.append("<SP/>".join(f'<String CONTENT="{w}" WC="0.9"/>' for w in words))
        out.append("</TextLine>")
    out.append("</TextBlock></PrintSpace></Page></Layout></alto>")
    return "\n".join(out)


def page_xml(version: str, image: str, size, regions, reading_order: list[str] | None = None) -> str:
    """PAGE as Transkribus writes it. ``regions``: (region id, [(id, text, polygon points, baseline, custom)])."""
    def coords(tag: str, points) -> str:
        if version == "2010-03-19":
            return f"<{tag}>" + "".join(f'<Point x="{x}" y="{y}"/>' for x, y in points) + f"</{tag}>"
        return f'<{tag} points="{" ".join(f"{x},{y}" for x, y in points)}"/>'

    out = [f'<?xml version="1.0" encoding="UTF-8"?>\n<PcGts xmlns="{PAGE[version]}">',
           "<Metadata><Creator>test</Creator><Created>2024-01-01T00:00:00</Created>"
           "<LastChange>2024-01-01T00:00:00</LastChange></Metadata>",
           f'<Page imageFilename="{image}" imageWidth="{size[0]}" imageHeight="{size[1]}">']
    if reading_order:
        refs = "".join(f'<RegionRefIndexed index="{k}" regionRef="{r}"/>' for k, r in
                       reversed(list(enumerate(reading_order))))  # written out of order: @index decides
        out.append(f'<ReadingOrder><OrderedGroup id="ro">{refs}</OrderedGroup></ReadingOrder>')
    for region_id, lines in regions:
        pts = [p for ln in lines for p in (ln[2] or [])] or [(0, 0), (1, 0), (1, 1)]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        out.append(f'<TextRegion id="{region_id}">' + coords("Coords", [(min(xs), min(ys)), (max(xs), min(ys)),
                                                                        (max(xs), max(ys)), (min(xs), max(ys))]))
        for line_id, text, polygon, baseline, custom in lines:
            attr = f' custom="{custom}"' if custom else ""
            body = coords("Coords", polygon) if polygon is not None else ""
            body += coords("Baseline", baseline) if baseline else ""
            body += f"<TextEquiv><Unicode>{text}</Unicode></TextEquiv>" if text is not None else ""
            out.append(f'<TextLine id="{line_id}"{attr}>{body}</TextLine>')
        out.append("</TextRegion>")
    out.append("</Page></PcGts>")
    return "\n".join(out)


def baseline_of(box):
    return [(box[0], box[3] - 8), (box[2] - 1, box[3] - 8)]


def alto_lines(page: Page):
    """All four lines: polygons (trapezoids) on the first three, the last with its box only."""
    rows = []
    for k, (text, box) in enumerate(page.lines):
        x0, y0, x1, y1 = box
        polygon = [(x0, y0), (x1 - 1, y0), (x1 - 1, y1 - 1), (x0, y1 - 1)] if k < 3 else None
        rows.append((f"l{k}", text, box, polygon, baseline_of(box), "b0" if k < 2 else "b1"))
    return rows


def page_regions(page: Page):
    lines = [(f"l{k}", text, [(b[0], b[1]), (b[2] - 1, b[1]), (b[2] - 1, b[3] - 1), (b[0], b[3] - 1)],
              baseline_of(b), "")
             for k, (text, b) in enumerate(page.lines)]
    return [("r0", lines[:2]), ("r1", lines[2:])]


def texts(samples):
    return [s.text for s in samples]


# ---- formats and versions ---------------------------------------------------------------------------
@pytest.mark.parametrize("version", [2, 3, 4])
def test_alto_versions(tmp_path, rendered, version):
    page = Page(rendered)
    image = page.save(tmp_path / "p.png")
    xml = tmp_path / "p.xml"
    xml.write_text(alto_xml(version, image.name, alto_lines(page), page_size=page.array.shape[::-1]), "utf-8")
    layout = xml_lines.parse_layout(xml)
    assert (layout.format, layout.version) == ("alto", str(version))
    assert [ln.text for ln in layout.lines] == TEXTS
    assert [ln.region for ln in layout.lines] == ["b0", "b0", "b1", "b1"]
    assert [ln.bbox for ln in layout.lines] == [b for _, b in page.lines]
    assert all(ln.baseline is not None for ln in layout.lines)
    assert layout.lines[0].confidence == pytest.approx(0.9)
    samples, counts = xml_lines.extract_lines(layout, xml_lines.find_image(layout, xml), "p", padding=0)
    assert texts(samples) == TEXTS and [s.id for s in samples] == ["p/l0", "p/l1", "p/l2", "p/l3"]
    assert counts["polygon"] == (3 if version == 4 else 0) and counts["box"] == (1 if version == 4 else 4)
    for s, (_, (x0, y0, x1, y1)) in zip(samples, page.lines):  # rectangles: the crop is the box's pixels
        np.testing.assert_array_equal(np.asarray(load_image(s.image_bytes)), page.array[y0:y1, x0:x1])


@pytest.mark.parametrize("version", ["2010-03-19", "2013-07-15", "2019-07-15"])
def test_page_versions(tmp_path, rendered, version):
    page = Page(rendered)
    image = page.save(tmp_path / "scan.png")
    xml = tmp_path / "page_1.xml"
    xml.write_text(page_xml(version, image.name, page.array.shape[::-1], page_regions(page)), "utf-8")
    layout = xml_lines.parse_layout(xml)
    assert (layout.format, layout.version) == ("page", version)
    assert [ln.text for ln in layout.lines] == TEXTS
    assert [ln.region for ln in layout.lines] == ["r0", "r0", "r1", "r1"]
    assert [ln.bbox for ln in layout.lines] == [b for _, b in page.lines]
    samples, counts = xml_lines.read_xml_lines(tmp_path, padding=2)
    assert texts(samples) == TEXTS and samples[0].id == "page_1/l0"
    assert counts == Counter(lines=4, kept=4, polygon=4, pages=1)


def test_alto_in_tenths_of_millimetres_is_scaled_to_pixels(tmp_path, rendered):
    page = Page(rendered)
    page.save(tmp_path / "p.png")
    xml = tmp_path / "p.xml"
    xml.write_text(alto_xml(4, "p.png", alto_lines(page), unit="mm10", scale=0.5, page_size=page.array.shape[::-1]))
    samples, _ = xml_lines.read_xml_lines(xml, padding=0)
    x0, y0, x1, y1 = page.lines[3][1]
    np.testing.assert_array_equal(np.asarray(load_image(samples[3].image_bytes)), page.array[y0:y1, x0:x1])


# ---- reading order ----------------------------------------------------------------------------------
def test_page_reading_order_and_transkribus_line_order(tmp_path, rendered):
    page = Page(rendered)
    page.save(tmp_path / "p.png")
    (r0, first), (r1, second) = page_regions(page)
    # lines of r1 in reverse document order by their readingOrder index; regions: r1 before r0
    second = [(i, t, p, b, f"readingOrder {{index:{1 - k};}}") for k, (i, t, p, b, _) in enumerate(second)]
    xml = tmp_path / "p.xml"
    xml.write_text(page_xml("2019-07-15", "p.png", page.array.shape[::-1], [(r0, first), (r1, second)],
                            reading_order=["r1", "r0"]))
    assert [ln.text for ln in xml_lines.parse_layout(xml).lines] == [TEXTS[3], TEXTS[2], TEXTS[0], TEXTS[1]]
    # without a ReadingOrder, Transkribus' region custom attribute decides, else the document order
    xml.write_text(page_xml("2013-07-15", "p.png", page.array.shape[::-1], [(r0, first), (r1, second)]))
    assert [ln.text for ln in xml_lines.parse_layout(xml).lines] == [TEXTS[0], TEXTS[1], TEXTS[3], TEXTS[2]]


def test_alto_reading_order(tmp_path, rendered):
    page = Page(rendered)
    page.save(tmp_path / "p.png")
    xml = tmp_path / "p.xml"
    xml.write_text(alto_xml(4, "p.png", alto_lines(page), page_size=page.array.shape[::-1], reading_order=["b1", "b0"]))
    assert [ln.text for ln in xml_lines.parse_layout(xml).lines] == [TEXTS[2], TEXTS[3], TEXTS[0], TEXTS[1]]


# ---- cutting lines out ------------------------------------------------------------------------------
def test_polygon_mask_fills_outside_with_the_paper_level():
    page = np.full((60, 100), 200, np.uint8)
    page[25:35, 10:90] = 50  # "ink" inside the polygon
    page[2:12, 70:93] = 0  # the line above: inside the bounding box, outside the polygon
    polygon = [(10, 5), (89, 18), (89, 45), (10, 45)]  # a slanted top edge
    crop = crop_line(page, polygon, padding=3)
    assert crop.shape == (45 - 5 + 1 + 6, 89 - 10 + 1 + 6)  # the polygon's box plus padding
    assert crop.min() == 50 and (crop == 0).sum() == 0  # nothing of the line above is left
    paper = 200  # the median inside the polygon (a line is mostly paper)
    assert crop[0, 0] == paper and crop[3 + 5, 3 + 70] == paper  # padding, and the cut-off corner
    np.testing.assert_array_equal(crop[3 + 20:3 + 30, 3:3 + 80], page[25:35, 10:90])  # inside: untouched


def test_box_fallback_and_clamping():
    page = np.arange(50 * 80, dtype=np.int64).reshape(50, 80).astype(np.uint8)
    np.testing.assert_array_equal(crop_line(page, None, (5, 6, 30, 20), padding=2), page[4:22, 3:32])
    np.testing.assert_array_equal(crop_line(page, None, (-10, -10, 10, 10), padding=0), page[0:10, 0:10])
    assert crop_line(page, None, (100, 100, 120, 120)) is None  # off the page
    assert crop_line(page, None, None) is None


@pytest.mark.parametrize("direction", ["down", "up"])
def test_vertical_line_is_turned_upright(tmp_path, rendered, direction):
    line = rendered[0]
    # written top to bottom: the line turned clockwise (its top faces right); bottom to top: anticlockwise
    turned = np.rot90(line, k=-1 if direction == "down" else 1)
    page = np.full((turned.shape[0] + 80, turned.shape[1] + 80), PAPER, np.uint8)
    page[40:40 + turned.shape[0], 40:40 + turned.shape[1]] = turned
    x0, y0, x1, y1 = 40, 40, 40 + turned.shape[1], 40 + turned.shape[0]
    down = [(x1 - 8, y0), (x1 - 8, y1 - 1)]
    baseline = down if direction == "down" else down[::-1]
    assert is_vertical(baseline) == (1 if direction == "down" else -1)
    Image.fromarray(page).save(tmp_path / "v.png")
    xml = tmp_path / "v.xml"
    polygon = [(x0, y0), (x1 - 1, y0), (x1 - 1, y1 - 1), (x0, y1 - 1)]
    xml.write_text(page_xml("2019-07-15", "v.png", page.shape[::-1], [("r", [("l", TEXTS[0], polygon, baseline, "")])]))
    [sample], counts = xml_lines.read_xml_lines(xml, padding=0)
    assert counts["vertical"] == 1
    np.testing.assert_array_equal(np.asarray(load_image(sample.image_bytes)), line)  # upright, as rendered


def test_lines_without_text_or_geometry_are_skipped_and_counted(tmp_path, rendered):
    page = Page(rendered)
    page.save(tmp_path / "p.png")
    (r0, lines), (r1, more) = page_regions(page)
    lines = [lines[0], ("empty", "  ", *lines[1][2:]), ("no_equiv", None, *lines[1][2:]),
             ("nowhere", "lost text", None, None, "")]
    xml = tmp_path / "p.xml"
    xml.write_text(page_xml("2019-07-15", "p.png", page.array.shape[::-1], [(r0, lines), (r1, more)]))
    samples, counts = xml_lines.read_xml_lines(xml)
    assert texts(samples) == [TEXTS[0], TEXTS[2], TEXTS[3]]
    assert counts["no_text"] == 2 and counts["no_geometry"] == 1 and counts["kept"] == 3 and counts["lines"] == 6


def test_degenerate_page_coords_fall_back_to_their_box(tmp_path, rendered):
    page = Page(rendered)
    page.save(tmp_path / "p.png")
    x0, y0, x1, y1 = page.lines[0][1]
    xml = tmp_path / "p.xml"
    xml.write_text(page_xml("2019-07-15", "p.png", page.array.shape[::-1],
                            [("r", [("l", TEXTS[0], [(x0, y0), (x1 - 1, y1 - 1)], None, "")])]))
    [sample], counts = xml_lines.read_xml_lines(xml, padding=0)
    assert counts["box"] == 1
    np.testing.assert_array_equal(np.asarray(load_image(sample.image_bytes)), page.array[y0:y1, x0:x1])


# ---- errors -------------------------------------------------------------------------------------
def test_missing_image_names_the_xml_and_the_image(tmp_path, rendered):
    page = Page(rendered)
    xml = tmp_path / "p.xml"
    xml.write_text(alto_xml(4, "scans/missing.jpg", alto_lines(page), page_size=page.array.shape[::-1]))
    with pytest.raises(DatasetError, match=r"p\.xml: page image 'scans/missing\.jpg' not found"):
        xml_lines.read_xml_lines(xml)
    # the image by base name next to the XML, or in image_dirs, is found
    (tmp_path / "imgs").mkdir()
    page.save(tmp_path / "imgs" / "missing.jpg")
    assert len(xml_lines.read_xml_lines(xml, image_dirs=[tmp_path / "imgs"])[0]) == 4
    # in the data module: an error by default, counted and skipped on request
    other = tmp_path / "q.xml"
    other.write_text(alto_xml(4, "q.png", alto_lines(page), page_size=page.array.shape[::-1]))
    page.save(tmp_path / "q.png")
    with pytest.raises(DatasetError, match="missing.jpg"):
        XMLDataModule(train=str(tmp_path), val_fraction=0.0).read_split("train")
    dm = XMLDataModule(train=[str(xml), str(other)], val_fraction=0.0, missing_images="skip")
    assert len(dm.read_split("train")) == 4 and dm.xml_stats["train"]["missing_image"] == 1


@pytest.mark.parametrize("content, words", [
    ('<alto xmlns="http://www.loc.gov/standards/alto/ns-v4#"><Layout><Page', "not well-formed"),
    ("", "not well-formed"),
    ('<TEI xmlns="http://www.tei-c.org/ns/1.0"/>', "root element <TEI>"),
    ('<PcGts xmlns="http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"/>', "without a Page"),
    ('<PcGts><Page imageFilename="x.png"><TextRegion id="r"><TextLine id="l"><Coords points="1,2 3"/>'
     '</TextLine></TextRegion></Page></PcGts>', "TextLine l Coords: 3 coordinates"),
    ('<alto><Layout><Page ID="p"><PrintSpace><TextBlock ID="b"><TextLine ID="l" HPOS="x"/></TextBlock>'
     '</PrintSpace></Page></Layout></alto>', "TextLine l HPOS='x'"),
])
def test_malformed_xml_names_the_file(tmp_path, content, words):
    xml = tmp_path / "broken.xml"
    xml.write_text(content)
    with pytest.raises(DatasetError, match="broken.xml") as e:
        xml_lines.parse_layout(xml)
    assert words in str(e.value)


def test_folders_pass_over_other_xml_and_name_missing_sources(tmp_path, rendered):
    with pytest.raises(DatasetError, match="no such XML file"):
        xml_lines.find_xml_files(str(tmp_path / "nothing*.xml"))
    with pytest.raises(DatasetError, match="no ALTO or PAGE .xml files"):
        xml_lines.find_xml_files(tmp_path)
    # an eScriptorium export: ALTO pages beside their METS.xml
    page = Page(rendered)
    page.save(tmp_path / "p.png")
    (tmp_path / "p.xml").write_text(alto_xml(4, "p.png", alto_lines(page), page_size=page.array.shape[::-1]))
    (tmp_path / "METS.xml").write_text('<mets:mets xmlns:mets="http://www.loc.gov/METS/"/>')
    assert [x.name for x, _ in xml_lines.find_xml_files(tmp_path)] == ["p.xml"]
    (tmp_path / "broken.xml").write_text("<alto")
    with pytest.raises(DatasetError, match="broken.xml: not well-formed"):
        xml_lines.find_xml_files(tmp_path)


# ---- the data module ---------------------------------------------------------------------------------
def write_collection(root: Path, rendered, fmt: str, docs: int = 4, folders: bool = False) -> list[Path]:
    """``docs`` pages of four lines each (alternating versions of the format); with ``folders``, two
    pages per sub-folder (two "manuscripts")."""
    paths = []
    for d in range(docs):
        folder = root / f"ms{d // 2}" if folders else root
        folder.mkdir(parents=True, exist_ok=True)
        texts_d = [f"{t} {d}" for t in TEXTS]
        page = Page(rendered, texts_d)
        page.save(folder / f"page{d}.png")
        xml = folder / f"page{d}.xml"
        if fmt == "alto":
            xml.write_text(alto_xml((2, 3, 4)[d % 3], f"page{d}.png", alto_lines(page),
                                    page_size=page.array.shape[::-1]))
        else:
            xml.write_text(page_xml(("2013-07-15", "2019-07-15")[d % 2], f"page{d}.png", page.array.shape[::-1],
                                    page_regions(page)))
        paths.append(xml)
    return paths


def test_split_by_document_is_seeded_and_stated():
    keys = [f"doc{i}" for i in range(10)]
    train, val = xml_lines.split_documents(keys, 0.2, seed=0)
    assert len(val) == 2 and sorted(train + val) == sorted(keys)
    assert xml_lines.split_documents(reversed(keys), 0.2, seed=0) == (train, val)  # order of discovery is irrelevant
    assert xml_lines.split_documents(keys, 0.2, seed=1) != (train, val)
    assert xml_lines.split_documents(keys[:3], 0.1, 0)[1] != []  # at least one validation document
    assert xml_lines.split_documents(["only"], 0.5, 0) == (["only"], [])
    assert xml_lines.split_documents(keys, 0.0, 0) == (sorted(keys), [])


@pytest.mark.parametrize("split_by", ["file", "folder"])
def test_datamodule_splits_by_document(tmp_path, rendered, split_by):
    write_collection(tmp_path, rendered, "page", docs=4, folders=True)
    dm = XMLDataModule(train=str(tmp_path), val_fraction=0.25, split_by=split_by, augment=False, batch_size=2)
    train, val = dm.read_split("train"), dm.read_split("val")
    docs = {"train": {s.id.rsplit("/", 1)[0] for s in train}, "val": {s.id.rsplit("/", 1)[0] for s in val}}
    assert not docs["train"] & docs["val"] and len(train) + len(val) == 16
    if split_by == "file":
        assert len(docs["val"]) == 1
    else:  # a whole manuscript (folder) on one side
        assert {d.split("/")[0] for d in docs["val"]} == {"ms0"} or {d.split("/")[0] for d in docs["val"]} == {"ms1"}
        assert len(docs["val"]) == 2
    assert dm.read_split("test") is None and not dm.read_split_available("test")


def test_datamodule_reads_each_page_image_once(tmp_path, rendered, monkeypatch):
    write_collection(tmp_path / "train", rendered, "alto", docs=3)
    write_collection(tmp_path / "val", rendered, "page", docs=2)
    calls: Counter = Counter()

    def counting(real):
        def load(source, *a, **k):
            if not isinstance(source, (bytes, bytearray)):
                calls[str(source)] += 1
            return real(source, *a, **k)
        return load

    from htr.data import dataset

    monkeypatch.setattr(xml_lines, "load_image", counting(xml_lines.load_image))
    monkeypatch.setattr(dataset, "load_image", counting(dataset.load_image))  # checks and training items
    dm = XMLDataModule(train=str(tmp_path / "train"), val=str(tmp_path / "val"), test=str(tmp_path / "val"),
                       augment=False, batch_size=4, extend_charset=True)
    assert dm.charset  # reads the training pages (extend_charset) before setup
    dm.setup("fit")
    dm.setup("test")
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape[0] == 4 and batch["images"].shape[2] == dm.height
    for split in ("train", "val", "test"):
        for i in range(len(dm.datasets[split])):
            dm.datasets[split][i]
    assert len(calls) == 5 and set(calls.values()) == {1}, calls  # five pages, each decoded once
    assert len(dm.datasets["train"]) == 12 and len(dm.datasets["val"]) == 8
    assert dm.stats["train"]["xml"] == {"lines": 12, "kept": 12, "polygon": 3, "box": 9, "vertical": 0, "pages": 3}
    assert dm.stats["val"]["kept"] == 8


@pytest.mark.parametrize("fmt", ["alto", "page"])
def test_fit_a_few_steps_on_an_xml_folder(tmp_path, rendered, fmt, monkeypatch):
    """`htr fit` with the XMLDataModule on a folder of generated pages: two steps, then a checkpoint
    that transcribes one of the lines."""
    from htr.cli import main
    from htr.inference import load_model

    data = tmp_path / "data"
    write_collection(data, rendered, fmt, docs=3)
    config = {
        "seed_everything": 0,
        "trainer": {"max_steps": 2, "val_check_interval": 2, "check_val_every_n_epoch": None, "log_every_n_steps": 1,
                    "enable_progress_bar": False, "enable_model_summary": False,
                    "default_root_dir": str(tmp_path / "runs")},
        "model": {"recognizer": {"cell": "gru", "height": 48, "hidden_size": 16, "feature_size": 32,
                                 "channels": [8, 16, 16, 16]}, "lr": 0.002, "warmup_steps": 1},
        "data": {"class_path": "htr.data.XMLDataModule",
                 "init_args": {"train": str(data), "val_fraction": 0.34, "batch_size": 4, "num_workers": 0,
                               "height": 48, "augment": False}},
    }
    cfg = tmp_path / "xml.yaml"
    cfg.write_text(yaml.safe_dump(config))
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", ["htr"])
    main(["fit", "--config", str(cfg)])
    [last] = sorted((tmp_path / "runs").rglob("last.ckpt"))
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2
    model = load_model(last)
    sample = xml_lines.read_xml_lines(data / "page0.xml")[0][0]
    [result] = model.transcribe([sample.image_bytes])
    assert isinstance(result.text, str) and 0.0 <= result.confidence <= 1.0
