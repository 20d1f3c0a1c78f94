"""Whole pages: the shared segmentation (htr.segment.find_lines), page transcription (htr.pages,
``Transcriber.transcribe_page``), the text / JSON / ALTO / PAGE writers (htr.writers) with the structure
the official schemas require, read back by htr's own readers (htr.data.xml_lines), and
``htr transcribe --segment --format ...`` from the command line."""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from htr.cli import main
from htr.data import xml_lines
from htr.errors import ImageError
from htr.layout import PageLayout, TextLine
from htr.segment import find_lines, segment_lines
from htr.writers import ALTO_NS, PAGE_NS, render, to_alto, to_json, to_page, to_text

ROOT = Path(__file__).resolve().parents[1]
PARAGRAPH = ROOT / "app" / "examples" / "poilus_paragraph.png"
LINE = ROOT / "app" / "examples" / "poilus_1.png"
POINTS = re.compile(r"([0-9]+,[0-9]+ )+([0-9]+,[0-9]+)")  # PAGE's PointsType pattern
DATETIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread is faster


@pytest.fixture(scope="module")
def model_name() -> str:
    from htr.inference import shipped_models

    shipped = shipped_models()
    if not shipped:
        pytest.skip("no shipped models in htr/models")
    return "gru" if "gru" in shipped else next(iter(shipped))


@pytest.fixture(scope="module")
def model(model_name):
    from htr.inference import load_model

    return load_model(model_name)


def sample_layout() -> PageLayout:
    """Two regions; a polygon line, a box-only line with a baseline, a line without text, ids that are
    not XML names, a quote and an ampersand to escape."""
    return PageLayout("scans/page 1.png", 400, 300, [
        TextLine("1", 'Le "3" mars & 1916', [(10, 10), (200, 12), (200, 50), (10, 48)], None,
                 [(10, 40), (200, 42)], 0.91, "r a"),
        TextLine("l:2", "fait en double", None, (20, 60, 220, 100), [(20, 90), (219, 90)], 0.5, "r a"),
        TextLine("l3", "", None, (20, 110, 120, 140), None, None, "r b"),
        TextLine("l4", "à Paris", None, (30, 150, 399, 299), None, 1.0, "r b"),
    ])


# ---- the structure the schemas require -------------------------------------------------------------
def local(el: ET.Element) -> str:
    return el.tag.split("}", 1)[-1]


def children(el: ET.Element) -> list[str]:
    return [local(c) for c in el]


def in_order(names: list[str], allowed: list[str]) -> bool:
    """Every name is allowed and they come in the schema's sequence order."""
    ranks = [allowed.index(n) for n in names if n in allowed]
    return len(ranks) == len(names) and ranks == sorted(ranks)


def check_alto(text: str) -> ET.Element:
    """ALTO 4 (alto-4-4.xsd): element order, required attributes, types, unique IDs."""
    root = ET.fromstring(text)
    assert root.tag == f"{{{ALTO_NS}}}alto"
    assert (in_order(children(root), ["Description", "Styles", "Tags", "ReadingOrder", "Layout"])
            and "Layout" in children(root))
    desc = root.find(f"{{{ALTO_NS}}}Description")
    assert children(desc)[0] == "MeasurementUnit" and desc[0].text in ("pixel", "mm10", "inch1200")
    assert in_order(children(desc), ["MeasurementUnit", "sourceImageInformation", "OCRProcessing", "Processing"])
    for proc in desc.iter(f"{{{ALTO_NS}}}Processing"):
        assert proc.get("ID") and in_order(children(proc), ["processingCategory", "processingDateTime",
                                                            "processingAgency",
                                                            "processingStepDescription", "processingStepSettings",
                                                            "processingSoftware"])
        assert DATETIME.fullmatch(proc.findtext(f"{{{ALTO_NS}}}processingDateTime"))
    ids = [el.get("ID") for el in root.iter() if el.get("ID") is not None]
    assert len(ids) == len(set(ids)) and all(re.fullmatch(r"[A-Za-z_][\w.-]*", i) for i in ids)  # xsd:ID
    pages = list(root.iter(f"{{{ALTO_NS}}}Page"))
    assert pages
    for page in pages:
        assert page.get("ID") and float(page.get("PHYSICAL_IMG_NR")) >= 0
        assert in_order(children(page), ["TopMargin", "LeftMargin", "RightMargin", "BottomMargin", "PrintSpace"])
    for el in root.iter():
        for a in ("HPOS", "VPOS", "WIDTH", "HEIGHT"):
            if el.get(a) is not None:
                float(el.get(a))
    for block in root.iter(f"{{{ALTO_NS}}}TextBlock"):
        assert block.get("ID") and in_order(children(block), ["Shape", "TextLine"])
    for line in root.iter(f"{{{ALTO_NS}}}TextLine"):
        names = children(line)
        body = [n for n in names if n not in ("Shape", "HYP")]
        assert names[:1] == ["Shape"] or "Shape" not in names
        assert body and body[0] == "String" and all(n in ("String", "SP") for n in body)
        assert "SP SP" not in " ".join(body)  # (String, SP?)+
        if line.get("BASELINE"):
            assert len(xml_lines.parse_points(line.get("BASELINE"), Path("x"), "BASELINE")) >= 2
        for s in line.iter(f"{{{ALTO_NS}}}String"):
            assert s.get("CONTENT") is not None
            assert s.get("WC") is None or 0.0 <= float(s.get("WC")) <= 1.0
        for poly in line.iter(f"{{{ALTO_NS}}}Polygon"):
            assert len(xml_lines.parse_points(poly.get("POINTS"), Path("x"), "POINTS")) >= 3
    return root


def check_page(text: str) -> ET.Element:
    """PAGE 2019-07-15 (pagecontent.xsd): element order, required attributes, points, confidences,
    ids and reading-order references."""
    root = ET.fromstring(text)
    q = lambda name: f"{{{PAGE_NS}}}{name}"  # noqa: E731
    assert root.tag == q("PcGts") and children(root) == ["Metadata", "Page"]
    meta = root.find(q("Metadata"))
    assert children(meta)[:3] == ["Creator", "Created", "LastChange"]
    assert DATETIME.fullmatch(meta.findtext(q("Created"))) and DATETIME.fullmatch(meta.findtext(q("LastChange")))
    page = root.find(q("Page"))
    assert page.get("imageFilename") and int(page.get("imageWidth")) > 0 and int(page.get("imageHeight")) > 0
    order = ["AlternativeImage", "Border", "PrintSpace", "ReadingOrder", "Layers", "Relations", "TextStyle",
             "UserDefined", "Labels", "TextRegion"]
    assert in_order(children(page), order)
    ids = [el.get("id") for el in root.iter() if el.get("id") is not None]
    assert len(ids) == len(set(ids)) and all(re.fullmatch(r"[A-Za-z_][\w.-]*", i) for i in ids)
    regions = {r.get("id") for r in page.iter(q("TextRegion"))}
    for ref in page.iter(q("RegionRefIndexed")):
        assert ref.get("regionRef") in regions and int(ref.get("index")) >= 0
    for region in page.iter(q("TextRegion")):
        assert children(region)[0] == "Coords"
        assert in_order(children(region), ["AlternativeImage", "Coords", "UserDefined", "Labels", "Roles",
                                           "TextRegion", "TextLine", "TextEquiv", "TextStyle"])
    for line in page.iter(q("TextLine")):
        assert line.get("id")
        assert in_order(children(line), ["AlternativeImage", "Coords", "Baseline", "Word", "TextEquiv", "TextStyle",
                                         "UserDefined", "Labels"]) and "Coords" in children(line)
    for el in page.iter():
        if local(el) in ("Coords", "Baseline"):
            assert POINTS.fullmatch(el.get("points")), el.get("points")
        if el.get("conf") is not None:
            assert 0.0 <= float(el.get("conf")) <= 1.0
        if local(el) == "TextEquiv":
            assert in_order(children(el), ["PlainText", "Unicode"]) and "Unicode" in children(el)
    return root


# ---- writers ---------------------------------------------------------------------------------------
def test_alto_and_page_follow_the_schemas():
    layout = sample_layout()
    alto = check_alto(to_alto(layout))
    page = check_page(to_page(layout))
    assert alto.find(f".//{{{ALTO_NS}}}fileName").text == "scans/page 1.png"
    assert (len(list(alto.iter(f"{{{ALTO_NS}}}TextBlock"))) == 2
            and len(list(page.iter(f"{{{PAGE_NS}}}TextRegion"))) == 2)
    # a line without text keeps one empty String (ALTO wants one); every word is a String
    strings = [[s.get("CONTENT") for s in tl.iter(f"{{{ALTO_NS}}}String")]
               for tl in alto.iter(f"{{{ALTO_NS}}}TextLine")]
    assert strings == [['Le', '"3"', 'mars', '&', '1916'], ["fait", "en", "double"], [""], ["à", "Paris"]]


def test_what_htr_writes_htr_reads_back(tmp_path):
    layout = sample_layout()
    for fmt, version in (("alto", "4"), ("page", "2019-07-15")):
        path = tmp_path / f"{fmt}.xml"
        path.write_text(render(layout, fmt), encoding="utf-8")
        back = xml_lines.parse_layout(path)
        assert ((back.format, back.version, back.image, back.width, back.height)
                == (fmt, version, layout.image, 400, 300))
        assert [ln.text for ln in back.lines] == [ln.text for ln in layout.lines]
        assert [ln.bbox for ln in back.lines] == [ln.bbox for ln in layout.lines]
        assert [ln.baseline for ln in back.lines] == [ln.baseline for ln in layout.lines]
        assert back.lines[0].polygon == layout.lines[0].polygon
        assert [ln.confidence for ln in back.lines] == pytest.approx([0.91, 0.5, None, 1.0])
        assert [ln.id for ln in back.lines] == ["line_1", "l_2", "l3", "l4"]  # made XML names, unique
        assert len({ln.region for ln in back.lines}) == 2


def test_text_and_json():
    layout = sample_layout()
    assert to_text(layout) == 'Le "3" mars & 1916\nfait en double\n\nà Paris\n'
    data = json.loads(render(layout, "json", model="m"))
    assert data["model"] == "m" and data["width"] == 400 and len(data["lines"]) == 4
    assert data["lines"][1] == {"id": "l:2", "region": "r a", "text": "fait en double", "confidence": 0.5,
                                "box": [20, 60, 220, 100], "baseline": [[20, 90], [219, 90]], "polygon": None}
    assert to_json(layout)["lines"][0]["box"] == [10, 10, 201, 51]
    with pytest.raises(ValueError, match="format 'hocr'"):
        render(layout, "hocr")


# ---- the shared segmentation ------------------------------------------------------------------------
def test_find_lines_is_the_apps_segmentation():
    gray, boxes = find_lines(PARAGRAPH)
    assert len(boxes) == 3 and boxes == segment_lines(gray)
    assert all(b.y0 <= b.baseline < b.y1 for b in boxes)
    assert find_lines(PARAGRAPH, "line")[1] == [type(boxes[0])(0, 0, gray.width, gray.height)]
    gray1, [whole] = find_lines(LINE)  # auto: one line found -> the whole image
    assert whole.as_tuple() == (0, 0, gray1.width, gray1.height)
    with pytest.raises(ImageError, match="3 text lines found"):
        find_lines(PARAGRAPH, max_lines=2)
    with pytest.raises(ImageError, match="blank"):
        find_lines(Image.new("L", (50, 20), 255))
    with pytest.raises(ValueError, match="layout 'page'"):
        find_lines(PARAGRAPH, "page")
    served = (ROOT / "htr" / "compare.py").read_text()
    assert "find_lines(" in served and "segment_lines(" not in served  # the app's requests use the same code


# ---- the Python API ---------------------------------------------------------------------------------
def test_transcribe_page(model):
    page = model.transcribe_page(PARAGRAPH)
    assert (isinstance(page, PageLayout) and len(page.lines) == 3
            and (page.width, page.height) == Image.open(PARAGRAPH).size)
    direct = model.transcribe([Image.open(PARAGRAPH).convert("L").crop(ln.box) for ln in page.lines])
    assert [ln.text for ln in page.lines] == [" ".join(tr.text.split()) for tr in direct]
    assert [ln.confidence for ln in page.lines] == pytest.approx([tr.confidence for tr in direct])
    assert all(ln.baseline and ln.box[1] <= ln.baseline[0][1] < ln.box[3] for ln in page.lines)
    assert page.image == str(PARAGRAPH) and page.lines[0].id == "line_1"
    one = model.transcribe_page(np.asarray(Image.open(PARAGRAPH).convert("L")), segment=False)
    assert len(one.lines) == 1 and one.lines[0].box == (0, 0, page.width, page.height) and one.image == "image"


# ---- the command line -------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["alto", "page"])
def test_cli_writes_xml_that_the_reader_reads_back(tmp_path, capsys, model, model_name, fmt):
    """`htr transcribe app/examples/poilus_paragraph.png --segment --format alto|page`: the reader of
    the training data gets back the same lines and texts."""
    main(["transcribe", str(PARAGRAPH), "--segment", "--format", "json", "--model", model_name])
    expected = json.loads(capsys.readouterr().out)
    main(["transcribe", str(PARAGRAPH), "--segment", "--format", fmt, "--model", model_name])
    printed = capsys.readouterr().out
    (check_alto if fmt == "alto" else check_page)(printed)
    main(["transcribe", str(PARAGRAPH), "--segment", "--format", fmt, "--model", model_name, "--out", str(tmp_path)])
    written = tmp_path / "poilus_paragraph.xml"
    back = xml_lines.parse_layout(written)
    assert [ln.text for ln in back.lines] == [ln["text"] for ln in expected["lines"]]
    assert [list(ln.bbox) for ln in back.lines] == [ln["box"] for ln in expected["lines"]]
    assert [ln.confidence for ln in back.lines] == pytest.approx([ln["confidence"] for ln in expected["lines"]],
                                                                 abs=1e-4)
    assert xml_lines.find_image(back, written).resolve() == PARAGRAPH.resolve()  # named relative to the XML
    samples, counts = xml_lines.read_xml_lines(written)  # as training data: the same texts, cut from the page
    assert [s.text for s in samples] == [ln["text"] for ln in expected["lines"] if ln["text"]]
    assert counts["lines"] == 3


def test_cli_text_and_folders(tmp_path, capsys, model_name):
    main(["transcribe", str(PARAGRAPH), "--segment", "--model", model_name])
    assert len(capsys.readouterr().out.splitlines()) == 3
    pages = tmp_path / "pages"
    pages.mkdir()
    for name in ("a.png", "b.png"):
        (pages / name).write_bytes(PARAGRAPH.read_bytes())
    with pytest.raises(SystemExit, match="needs --out"):
        main(["transcribe", str(pages), "--segment", "--format", "page", "--model", model_name])
    main(["transcribe", str(pages / "*.png"), "--segment", "--format", "alto", "--model", model_name,
          "--out", str(tmp_path / "out")])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.xml", "b.xml"]
    assert "wrote 2 alto files" in capsys.readouterr().err
    main(["transcribe", str(pages), "--segment", "--json", "--model", model_name])
    data = json.loads(capsys.readouterr().out)
    assert [len(p["lines"]) for p in data] == [3, 3]
    # without --segment, --format still writes each image as one line
    main(["transcribe", str(LINE), "--format", "page", "--model", model_name])
    assert len(list(check_page(capsys.readouterr().out).iter(f"{{{PAGE_NS}}}TextLine"))) == 1
