"""A page layout (htr.layout.PageLayout) as plain text, JSON, ALTO 4 or PAGE XML 2019.

What the XML writers produce is what the readers of htr.data.xml_lines take back (same lines, texts,
boxes, baselines and confidences: tests/test_pages.py), and follows the official schemas, checked
against ALTO 4.2 / 4.4 (``alto-4-4.xsd``) and PAGE 2019-07-15 (``pagecontent.xsd``):

- ALTO: ``alto > Description (MeasurementUnit pixel, sourceImageInformation/fileName, Processing) >
  Layout > Page (ID, PHYSICAL_IMG_NR, WIDTH, HEIGHT) > PrintSpace > TextBlock (ID, box) > TextLine
  (ID, box, BASELINE "x1,y1 x2,y2", Shape/Polygon) > String (CONTENT, WC) and SP``, one String per
  word (htr scores lines, so WC is the line's confidence on each of its words); a line without text
  keeps one empty String, as the schema wants at least one.
- PAGE: ``PcGts > Metadata (Creator, Created, LastChange) > Page (imageFilename, imageWidth,
  imageHeight) > ReadingOrder/OrderedGroup/RegionRefIndexed, TextRegion (id, Coords) > TextLine (id,
  Coords, Baseline, TextEquiv/@conf > Unicode)``; points are non-negative integers "x,y x,y ...".

Lines are grouped into blocks / regions by ``TextLine.region`` (in order of first appearance; lines
without one go to ``region_1``); a block's box is the union of its lines' boxes.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from typing import Any

from htr import __version__
from htr.layout import Box, PageLayout, Point, TextLine, box_polygon

ALTO_NS = "http://www.loc.gov/standards/alto/ns-v4#"
ALTO_XSD = "http://www.loc.gov/standards/alto/v4/alto-4-4.xsd"
PAGE_NS = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
PAGE_XSD = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15/pagecontent.xsd"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
FORMATS = ("text", "json", "alto", "page")
SUFFIXES = {"text": ".txt", "json": ".json", "alto": ".xml", "page": ".xml"}


def to_text(layout: PageLayout) -> str:
    """The lines' texts, one per line, in reading order."""
    return "".join(line.text + "\n" for line in layout.lines)


def to_json(layout: PageLayout, **extra: Any) -> dict[str, Any]:
    """A JSON-ready dict: image, size, text and per line id, text, confidence, box, baseline, polygon."""
    return {**extra, "image": layout.image, "width": layout.width, "height": layout.height, "text": layout.text,
            "lines": [{"id": ln.id, "region": ln.region, "text": ln.text, "confidence": ln.confidence,
                       "box": list(ln.bbox) if ln.bbox else None,
                       "baseline": [list(p) for p in ln.baseline] if ln.baseline else None,
                       "polygon": [list(p) for p in ln.polygon] if ln.polygon else None} for ln in layout.lines]}


def render(layout: PageLayout, fmt: str, **extra: Any) -> str:
    """The layout in one of FORMATS as a string (JSON: ``extra`` keys first, e.g. model=...)."""
    if fmt == "text":
        return to_text(layout)
    if fmt == "json":
        return json.dumps(to_json(layout, **extra), ensure_ascii=False, indent=1) + "\n"
    if fmt == "alto":
        return to_alto(layout)
    if fmt == "page":
        return to_page(layout)
    raise ValueError(f"format {fmt!r}; expected one of {', '.join(FORMATS)}")


# ---- shared geometry ----------------------------------------------------------------------------
def _regions(layout: PageLayout) -> list[tuple[str, list[TextLine]]]:
    groups: dict[str, list[TextLine]] = {}
    for line in layout.lines:
        groups.setdefault(line.region or "region_1", []).append(line)
    return list(groups.items())


def _line_box(line: TextLine, layout: PageLayout) -> Box:
    box = line.bbox
    if box is None:  # a line without geometry: the whole page
        box = (0, 0, max(1, int(layout.width)), max(1, int(layout.height)))
    return box


def _union(boxes: list[Box]) -> Box:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _points(points: list[Point], layout: PageLayout) -> str:
    """Non-negative integer "x,y x,y" points, clamped to the page when its size is known."""
    w, h = int(layout.width), int(layout.height)
    out = []
    for x, y in points:
        xi, yi = max(0, int(round(x))), max(0, int(round(y)))
        if w > 0 and h > 0:
            xi, yi = min(xi, w - 1), min(yi, h - 1)
        out.append(f"{xi},{yi}")
    return " ".join(out)


def _polygon(line: TextLine, layout: PageLayout) -> list[Point]:
    return line.polygon if line.polygon and len(line.polygon) >= 3 else box_polygon(_line_box(line, layout))


class _Ids:
    """Unique xsd:IDs (XML names not starting with a digit, no colon or space) from line / region ids."""

    def __init__(self, *taken: str) -> None:
        self.used = set(taken)

    def __call__(self, value: str, prefix: str, n: int) -> str:
        value = "".join(c if c.isalnum() or c in "_-." else "_" for c in value)
        value = value if value and (value[0].isalpha() or value[0] == "_") else f"{prefix}_{value or n}"
        out, k = value, 2
        while out in self.used:
            out, k = f"{value}_{k}", k + 1
        self.used.add(out)
        return out


def _root(tag: str, ns: str, schema: str) -> ET.Element:
    """The root element with the format's default namespace and its schema location (elements are
    built with local names: ElementTree cannot write unqualified attributes under a default namespace)."""
    return ET.Element(tag, {"xmlns": ns, "xmlns:xsi": XSI, "xsi:schemaLocation": f"{ns} {schema}"})


def _tostring(root: ET.Element) -> str:
    ET.indent(root, space=" ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- ALTO ---------------------------------------------------------------------------------------
def to_alto(layout: PageLayout, created: str | None = None) -> str:
    """ALTO 4 XML of a layout in pixels (see the module docstring)."""
    def el(parent: ET.Element, tag: str, **attrs: Any) -> ET.Element:
        return ET.SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None})

    def pos(box: Box) -> dict[str, str]:
        return {"HPOS": str(box[0]), "VPOS": str(box[1]), "WIDTH": str(box[2] - box[0]), "HEIGHT": str(box[3] - box[1])}

    root = _root("alto", ALTO_NS, ALTO_XSD)
    desc = el(root, "Description")
    el(desc, "MeasurementUnit").text = "pixel"
    el(el(desc, "sourceImageInformation"), "fileName").text = layout.image
    proc = el(desc, "Processing", ID="htr_processing")
    el(proc, "processingDateTime").text = created or _now()
    soft = el(proc, "processingSoftware")
    el(soft, "softwareName").text = "htr"
    el(soft, "softwareVersion").text = __version__
    w, h = max(1, int(layout.width)), max(1, int(layout.height))
    page = el(el(root, "Layout"), "Page", ID="page_1", PHYSICAL_IMG_NR="1", WIDTH=str(w), HEIGHT=str(h))
    space = el(page, "PrintSpace", HPOS="0", VPOS="0", WIDTH=str(w), HEIGHT=str(h))
    ids = _Ids("htr_processing", "page_1")
    n = 0
    for b, (region, lines) in enumerate(_regions(layout), 1):
        boxes = [_line_box(ln, layout) for ln in lines]
        block = el(space, "TextBlock", ID=ids(region, "block", b), **pos(_union(boxes)))
        for line, box in zip(lines, boxes):
            n += 1
            baseline = _points(line.baseline, layout) if line.baseline and len(line.baseline) >= 2 else None
            tl = el(block, "TextLine", ID=ids(line.id, "line", n), **pos(box), BASELINE=baseline)
            el(el(tl, "Shape"), "Polygon", POINTS=_points(_polygon(line, layout), layout))
            wc = None if line.confidence is None else f"{min(1.0, max(0.0, line.confidence)):.4f}"
            words = line.text.split() or [""]
            for k, word in enumerate(words):
                if k:
                    el(tl, "SP")
                el(tl, "String", CONTENT=word, WC=wc)
    return _tostring(root)


# ---- PAGE ---------------------------------------------------------------------------------------
def to_page(layout: PageLayout, created: str | None = None) -> str:
    """PAGE XML 2019-07-15 of a layout in pixels (see the module docstring)."""
    def el(parent: ET.Element, tag: str, **attrs: Any) -> ET.Element:
        return ET.SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None})

    stamp = created or _now()
    root = _root("PcGts", PAGE_NS, PAGE_XSD)
    meta = el(root, "Metadata")
    el(meta, "Creator").text = f"htr {__version__}"
    el(meta, "Created").text = stamp
    el(meta, "LastChange").text = stamp
    w, h = max(1, int(layout.width)), max(1, int(layout.height))
    page = el(root, "Page", imageFilename=layout.image, imageWidth=str(w), imageHeight=str(h))
    regions = _regions(layout)
    unique = _Ids("reading_order")
    ids = [unique(r, "region", k) for k, (r, _) in enumerate(regions, 1)]
    if regions:
        group = el(el(page, "ReadingOrder"), "OrderedGroup", id="reading_order")
        for k, rid in enumerate(ids):
            el(group, "RegionRefIndexed", index=str(k), regionRef=rid)
    n = 0
    for k, ((_, lines), rid) in enumerate(zip(regions, ids)):
        boxes = [_line_box(ln, layout) for ln in lines]
        region = el(page, "TextRegion", id=rid, custom=f"readingOrder {{index:{k};}}")
        el(region, "Coords", points=_points(box_polygon(_union(boxes)), layout))
        for j, line in enumerate(lines):
            n += 1
            tl = el(region, "TextLine", id=unique(line.id, "line", n), custom=f"readingOrder {{index:{j};}}")
            el(tl, "Coords", points=_points(_polygon(line, layout), layout))
            if line.baseline and len(line.baseline) >= 2:
                el(tl, "Baseline", points=_points(line.baseline, layout))
            conf = None if line.confidence is None else f"{min(1.0, max(0.0, line.confidence)):.4f}"
            el(el(tl, "TextEquiv", conf=conf), "Unicode").text = line.text
        el(el(region, "TextEquiv"), "Unicode").text = "\n".join(ln.text for ln in lines)
    return _tostring(root)
