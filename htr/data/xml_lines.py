"""ALTO (v2 to v4) and PAGE XML (2013, 2019, and the 2010 ``<Point>`` form) ground truth -> lines.

The format is detected from the root element (``alto`` / ``PcGts``) and its namespace, e.g.
``http://www.loc.gov/standards/alto/ns-v4#`` or
``http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15``. What is read of a line:

- text: ALTO ``String/@CONTENT`` joined with spaces (``HYP`` appended); PAGE ``TextEquiv/Unicode``
  (the first-choice TextEquiv: no ``index``, else the lowest), else its ``Word`` texts;
- geometry: the boundary polygon (ALTO ``Shape/Polygon/@POINTS``, PAGE ``Coords``), else the box
  (ALTO ``HPOS VPOS WIDTH HEIGHT``; PAGE ``Coords`` of fewer than 3 points), and the baseline
  (ALTO ``@BASELINE``: a y in v2/v3, points in v4; PAGE ``Baseline``). ALTO coordinates in mm10 or
  inch1200 are converted to pixels with the page image's size;
- reading order: PAGE ``ReadingOrder`` (groups followed recursively, ordered groups by ``@index``)
  for regions, and Transkribus' ``custom="readingOrder {index:N;}"`` for lines (and for regions when
  there is no ReadingOrder); ALTO ``ReadingOrder`` (4.3+) ``ElementRef``s for blocks or lines; else
  document order;
- the page image: ALTO ``sourceImageInformation/fileName``, PAGE ``Page/@imageFilename``, looked
  up relative to the XML file, then by base name next to it and in ``image_dirs``, then by the XML's
  own stem with an image suffix. A missing image is a DatasetError naming the XML and the image.

``extract_lines`` decodes a page image once and cuts every line out of it (htr.data.crop: polygon
mask with the paper level, box fallback, vertical lines turned upright); the crops travel as PNG
bytes in ``LineSample.image_bytes`` (tens of kB per line), so training never reads a page again.
Lines without text or without geometry are left out and counted.
"""
from __future__ import annotations

import glob
import io
import logging
import random
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from htr.data.crop import crop_line, is_vertical, line_region
from htr.data.dataset import LineSample
from htr.data.images import MAX_PIXELS, load_image
from htr.errors import DatasetError
from htr.layout import PageLayout, Point, TextLine

log = logging.getLogger(__name__)

ALTO_NS = {"2": "http://www.loc.gov/standards/alto/ns-v2#", "3": "http://www.loc.gov/standards/alto/ns-v3#",
           "4": "http://www.loc.gov/standards/alto/ns-v4#"}
PAGE_NS_PREFIX = "http://schema.primaresearch.org/PAGE/gts/pagecontent/"
PAGE_NS = {"2013-07-15": PAGE_NS_PREFIX + "2013-07-15", "2019-07-15": PAGE_NS_PREFIX + "2019-07-15"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".jp2")
_READING_ORDER = re.compile(r"readingOrder\s*\{[^}]*index\s*:\s*(\d+)")
_ALTO_NS_VERSION = re.compile(r"alto/ns-v(\d+)#?$")


# ---- parsing ------------------------------------------------------------------------------------
def parse_layout(path: str | Path) -> PageLayout:
    """One ALTO or PAGE XML file -> its PageLayout (all lines, empty ones included, in reading order).

    Raises DatasetError naming the file for: a missing file, XML that is not well-formed, a root
    element that is neither ``alto`` nor ``PcGts``, and malformed coordinates.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: XML file not found")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise DatasetError(f"{path}: not well-formed XML ({e}); expected an ALTO or PAGE XML file") from None
    ns, local = _split_tag(root.tag)
    if local == "alto":
        layout = _parse_alto(root, ns, path)
    elif local == "PcGts":
        layout = _parse_page(root, ns, path)
    else:
        raise DatasetError(f"{path}: root element <{local}> (namespace {ns or 'none'}); expected <alto> (ALTO) "
                           f"or <PcGts> (PAGE XML)")
    layout.source = str(path)
    return layout


def _split_tag(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


def parse_points(text: str | None, path: Path, what: str) -> list[Point]:
    """ "x1,y1 x2,y2 ..." or "x1 y1 x2 y2 ..." -> [(x, y), ...]; DatasetError naming the file."""
    if text is None or not text.strip():
        return []
    try:
        values = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise DatasetError(f"{path}: {what}: points {text[:60]!r} are not numbers; "
                           "expected 'x1,y1 x2,y2 ...'") from None
    if len(values) % 2:
        raise DatasetError(f"{path}: {what}: {len(values)} coordinates in {text[:60]!r}; expected x,y pairs")
    return list(zip(values[::2], values[1::2]))


def _float(value: str | None, path: Path, what: str) -> float | None:
    if value is None or value.strip() == "":
        return None
    try:
        return float(value)
    except ValueError:
        raise DatasetError(f"{path}: {what}={value!r}; expected a number") from None


def _ordered(lines: list[tuple[tuple, TextLine]]) -> list[TextLine]:
    return [ln for _, ln in sorted(lines, key=lambda item: item[0])]


# ---- ALTO ---------------------------------------------------------------------------------------
def _parse_alto(root: ET.Element, ns: str, path: Path) -> PageLayout:
    def q(name: str) -> str:
        return f"{{{ns}}}{name}" if ns else name

    m = _ALTO_NS_VERSION.search(ns)
    version = m.group(1) if m else (root.get("SCHEMAVERSION") or "")
    desc = root.find(q("Description"))
    unit = "pixel"
    image = ""
    if desc is not None:
        unit = (desc.findtext(q("MeasurementUnit")) or "pixel").strip() or "pixel"
        info = desc.find(q("sourceImageInformation"))
        if info is not None:
            image = (info.findtext(q("fileName")) or "").strip()
    if unit not in ("pixel", "mm10", "inch1200"):
        raise DatasetError(f"{path}: MeasurementUnit {unit!r}; expected pixel, mm10 or inch1200")
    pages = root.findall(f"{q('Layout')}/{q('Page')}")
    if not pages:
        raise DatasetError(f"{path}: ALTO file without Layout/Page; expected <Layout><Page ...>")
    if len(pages) > 1:
        log.warning("%s: %d ALTO pages; their lines are read as lines of one page image", path, len(pages))
    width = _float(pages[0].get("WIDTH"), path, "Page WIDTH") or 0
    height = _float(pages[0].get("HEIGHT"), path, "Page HEIGHT") or 0

    rank = _alto_reading_order(root, q)
    far = len(rank)
    lines: list[tuple[tuple, TextLine]] = []
    n = 0
    for page in pages:
        for b, block in enumerate(page.iter(q("TextBlock"))):
            block_id = block.get("ID") or f"b{b}"
            for tl in block.findall(q("TextLine")):
                line_id = tl.get("ID") or f"l{n}"
                what = f"TextLine {line_id}"
                words = [s.get("CONTENT") or "" for s in tl.findall(q("String"))]
                text = " ".join(w for w in words if w)
                hyp = tl.find(q("HYP"))
                if hyp is not None and hyp.get("CONTENT"):
                    text += hyp.get("CONTENT")
                wcs = [_float(s.get("WC"), path, f"{what} String WC") for s in tl.findall(q("String"))]
                wcs = [w for w in wcs if w is not None]
                polygon = None
                shape = tl.find(q("Shape"))
                if shape is not None and shape.find(q("Polygon")) is not None:
                    polygon = parse_points(shape.find(q("Polygon")).get("POINTS"), path, f"{what} Polygon") or None
                box = None
                hpos, vpos = _float(tl.get("HPOS"), path, f"{what} HPOS"), _float(tl.get("VPOS"), path, f"{what} VPOS")
                w, h = _float(tl.get("WIDTH"), path, f"{what} WIDTH"), _float(tl.get("HEIGHT"), path, f"{what} HEIGHT")
                if None not in (hpos, vpos, w, h):
                    box = (hpos, vpos, hpos + w, vpos + h)  # type: ignore[operator]
                    if unit == "pixel":  # other units: rounded once converted (PageLayout.in_pixels)
                        box = tuple(round(v) for v in box)  # type: ignore[assignment]
                baseline = _alto_baseline(tl.get("BASELINE"), box, path, what)
                line = TextLine(line_id, text, polygon if polygon and len(polygon) >= 3 else None, box, baseline,
                                round(sum(wcs) / len(wcs), 6) if wcs else None, block_id)
                if polygon and len(polygon) < 3 and box is None:
                    line.box = _points_box(polygon)
                key = (rank.get(line_id, rank.get(block_id, far)), n)
                lines.append((key, line))
                n += 1
    return PageLayout(image, width, height, _ordered(lines), unit, "alto", version)


def _alto_baseline(value: str | None, box: tuple[int, int, int, int] | None, path: Path, what: str
                   ) -> list[Point] | None:
    """ALTO v2/v3 BASELINE is one y (horizontal across the line box); v4 allows a point list."""
    if value is None or not value.strip():
        return None
    parts = value.replace(",", " ").split()
    if len(parts) == 1:
        y = _float(parts[0], path, f"{what} BASELINE")
        return [(box[0], y), (box[2] - 1, y)] if box is not None and y is not None else None
    pts = parse_points(value, path, f"{what} BASELINE")
    return pts if len(pts) >= 2 else None


def _alto_reading_order(root: ET.Element, q) -> dict[str, int]:
    """ALTO 4.3+ ``ReadingOrder``: the ids its ElementRefs name (blocks or lines), in order."""
    ro = root.find(q("ReadingOrder"))
    rank: dict[str, int] = {}
    if ro is None:
        return rank
    for ref in ro.iter(q("ElementRef")):
        for target in (ref.get("REF") or "").split():
            rank.setdefault(target, len(rank))
    return rank


# ---- PAGE ---------------------------------------------------------------------------------------
def _parse_page(root: ET.Element, ns: str, path: Path) -> PageLayout:
    def q(name: str) -> str:
        return f"{{{ns}}}{name}" if ns else name

    version = ns[len(PAGE_NS_PREFIX):] if ns.startswith(PAGE_NS_PREFIX) else ""
    page = root.find(q("Page"))
    if page is None:
        raise DatasetError(f"{path}: PAGE file without a Page element; expected <PcGts><Page imageFilename=...>")
    image = (page.get("imageFilename") or "").strip()
    width = _float(page.get("imageWidth"), path, "Page imageWidth") or 0
    height = _float(page.get("imageHeight"), path, "Page imageHeight") or 0

    regions = list(page.iter(q("TextRegion")))
    rank = _page_reading_order(page.find(q("ReadingOrder")), q)
    if not rank:  # no ReadingOrder: Transkribus' custom readingOrder on the regions, else document order
        custom = [_custom_index(r) for r in regions]
        if regions and all(c is not None for c in custom):
            order = sorted(range(len(regions)), key=lambda i: (custom[i], i))
            rank = {regions[i].get("id") or f"r{i}": k for k, i in enumerate(order)}
    far = len(rank) + len(regions)
    lines: list[tuple[tuple, TextLine]] = []
    n = 0
    for r, region in enumerate(regions):
        region_id = region.get("id") or f"r{r}"
        region_rank = rank.get(region_id, far + r)
        tls = region.findall(q("TextLine"))
        custom = [_custom_index(t) for t in tls]
        use_custom = bool(tls) and all(c is not None for c in custom)
        for k, tl in enumerate(tls):
            line_id = tl.get("id") or f"l{n}"
            what = f"TextLine {line_id}"
            coords = _page_points(tl.find(q("Coords")), q, path, f"{what} Coords")
            baseline = _page_points(tl.find(q("Baseline")), q, path, f"{what} Baseline") or None
            text, conf = _page_text(tl, q, path, what)
            line = TextLine(line_id, text, coords if len(coords) >= 3 else None,
                            _points_box(coords) if 0 < len(coords) < 3 else None,
                            baseline if baseline and len(baseline) >= 2 else None, conf, region_id)
            lines.append(((region_rank, custom[k] if use_custom else k, n), line))
            n += 1
    return PageLayout(image, width, height, _ordered(lines), "pixel", "page", version)


def _points_box(points: list[Point]) -> tuple[int, int, int, int] | None:
    """A box from one or two points (a degenerate Coords): None when it has no area."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    box = (round(min(xs)), round(min(ys)), round(max(xs)) + 1, round(max(ys)) + 1)
    return box if box[2] - box[0] > 1 and box[3] - box[1] > 1 else None


def _page_points(el: ET.Element | None, q, path: Path, what: str) -> list[Point]:
    """``points="x,y x,y"`` (2013 on) or ``<Point x= y=/>`` children (2010)."""
    if el is None:
        return []
    if el.get("points") is not None:
        return parse_points(el.get("points"), path, what)
    pts = []
    for p in el.findall(q("Point")):
        x, y = _float(p.get("x"), path, f"{what} Point x"), _float(p.get("y"), path, f"{what} Point y")
        if x is None or y is None:
            raise DatasetError(f"{path}: {what}: a Point without x or y")
        pts.append((x, y))
    return pts


def _page_text(tl: ET.Element, q, path: Path, what: str) -> tuple[str, float | None]:
    """The first-choice TextEquiv of a line (no index, else the lowest), else its words joined."""
    equivs = tl.findall(q("TextEquiv"))
    if equivs:
        def index(e: ET.Element) -> float:
            i = _float(e.get("index"), path, f"{what} TextEquiv index")
            return -1.0 if i is None else i

        best = min(equivs, key=index)
        return (best.findtext(q("Unicode")) or "").strip(), _float(best.get("conf"), path, f"{what} TextEquiv conf")
    words = [(w.findtext(f"{q('TextEquiv')}/{q('Unicode')}") or "").strip() for w in tl.findall(q("Word"))]
    return " ".join(w for w in words if w), None


def _custom_index(el: ET.Element) -> int | None:
    m = _READING_ORDER.search(el.get("custom") or "")
    return int(m.group(1)) if m else None


def _page_reading_order(ro: ET.Element | None, q) -> dict[str, int]:
    """Region id -> position from PAGE's ReadingOrder (ordered groups by @index, recursively)."""
    rank: dict[str, int] = {}
    if ro is None:
        return rank

    def visit(group: ET.Element) -> None:
        if group.get("regionRef"):
            rank.setdefault(group.get("regionRef"), len(rank))  # type: ignore[arg-type]
        children = [c for c in group if _split_tag(c.tag)[1] in (
            "RegionRefIndexed", "OrderedGroupIndexed", "UnorderedGroupIndexed", "RegionRef", "OrderedGroup",
            "UnorderedGroup")]
        if _split_tag(group.tag)[1].startswith("OrderedGroup"):
            children.sort(key=lambda c: int(c.get("index") or 0))
        for c in children:
            if _split_tag(c.tag)[1].startswith("RegionRef"):
                rank.setdefault(c.get("regionRef") or "", len(rank))
            else:
                visit(c)

    for group in ro:
        visit(group)
    return rank


# ---- files and images ---------------------------------------------------------------------------
def root_element(path: Path) -> str:
    """The local name of an XML file's root element, read without parsing the rest of the file."""
    try:
        for _, el in ET.iterparse(path, events=("start",)):
            return _split_tag(el.tag)[1]
    except ET.ParseError as e:
        raise DatasetError(f"{path}: not well-formed XML ({e}); expected an ALTO or PAGE XML file") from None
    return ""


def find_xml_files(sources: str | Path | Sequence[str | Path]) -> list[tuple[Path, Path]]:
    """Folders (their ``*.xml`` files, recursively), files and globs -> [(xml file, base folder)],
    sorted within each source; the base folder names the document (``document_key``).

    In a folder, XML files that are neither ALTO nor PAGE (an export's METS.xml or Transkribus'
    doc.xml, say) are passed over with a log line; named files and glob matches are all kept."""
    items = [sources] if isinstance(sources, (str, Path)) else list(sources)
    out: list[tuple[Path, Path]] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.suffix.lower() == ".xml" and q.is_file())
            other = [q for q in found if root_element(q) not in ("alto", "PcGts")]
            if other:
                log.info("%s: %d XML files that are neither ALTO nor PAGE passed over: %s", p, len(other),
                         ", ".join(str(q.relative_to(p)) for q in other[:5]) + (" ..." if len(other) > 5 else ""))
            found = [q for q in found if q not in other]
            if not found:
                raise DatasetError(f"{p}: no ALTO or PAGE .xml files in this folder")
            out += [(q, p) for q in found]
        elif p.is_file():
            out.append((p, p.parent))
        else:
            matches = sorted(Path(m) for m in glob.glob(str(item), recursive=True))
            matches = [m for m in matches if m.is_file()]
            if not matches:
                raise DatasetError(f"{item}: no such XML file, folder or glob match")
            out += [(m, m.parent) for m in matches]
    seen: set[Path] = set()
    unique = []
    for xml, base in out:
        if xml.resolve() not in seen:
            seen.add(xml.resolve())
            unique.append((xml, base))
    return unique


def document_key(xml: Path, base: Path) -> str:
    """The XML's path under its base folder, without suffix, with '/' (e.g. ``ms1/page_003``)."""
    try:
        rel = xml.relative_to(base)
    except ValueError:
        rel = Path(xml.name)
    return rel.with_suffix("").as_posix()


def find_image(layout: PageLayout, xml: Path, image_dirs: Sequence[str | Path] = ()) -> Path:
    """The page image of a layout read from ``xml`` (see the module docstring); DatasetError if none."""
    name = layout.image.replace("\\", "/")
    candidates: list[Path] = []
    if name:
        if Path(name).is_absolute():
            candidates.append(Path(name))
        candidates += [xml.parent / name, xml.parent / Path(name).name]
        for d in image_dirs:
            candidates += [Path(d) / name, Path(d) / Path(name).name]
    for d in [xml.parent, *map(Path, image_dirs)]:
        candidates += [d / (xml.stem + s) for s in IMAGE_SUFFIXES]
    for c in candidates:
        if c.is_file():
            return c
    what = f"page image {layout.image!r}" if name else "no page image named in the file"
    looked = ", ".join(dict.fromkeys(str(c) for c in candidates[:4]))
    raise DatasetError(f"{xml}: {what} not found (looked for {looked}{', ...' if len(candidates) > 4 else ''}); "
                       f"expected the image next to the XML file or in image_dirs")


# ---- cutting lines out --------------------------------------------------------------------------
def extract_lines(layout: PageLayout, image: str | Path | Image.Image, doc: str = "", padding: int = 4,
                  max_pixels: int = MAX_PIXELS) -> tuple[list[LineSample], Counter]:
    """Decode the page image once and cut every line with text out of it, in reading order.

    Returns (samples, counts). Sample ids are ``<doc>/<line id>``; each carries its crop as PNG bytes
    (and the page path in ``image_path``, for messages). counts: ``lines`` (in the file), ``kept``,
    ``no_text`` and ``no_geometry`` (left out), ``off_page`` (region outside the image, left out),
    ``polygon`` / ``box`` (how the kept ones were cut) and ``vertical`` (turned upright).
    """
    page = load_image(image, max_pixels=max_pixels)  # ImageError naming the file when it is bad
    layout = layout.in_pixels(page.size)
    arr = np.asarray(page, dtype=np.uint8)
    path = Path(image) if isinstance(image, (str, Path)) else None
    counts: Counter = Counter(lines=len(layout.lines))
    samples = []
    for line in layout.lines:
        if not line.text.strip():
            counts["no_text"] += 1
            continue
        if line.polygon is None and line.box is None:
            counts["no_geometry"] += 1
            continue
        if line_region(line.polygon, line.box, page.size, padding) is None:
            counts["off_page"] += 1
            continue
        crop = crop_line(arr, line.polygon, line.box, line.baseline, padding)
        if crop is None:  # pragma: no cover - line_region said it is on the page
            counts["off_page"] += 1
            continue
        counts["polygon" if line.polygon is not None else "box"] += 1
        counts["vertical"] += bool(is_vertical(line.baseline))
        buf = io.BytesIO()
        Image.fromarray(crop, "L").save(buf, "PNG", compress_level=1)
        samples.append(LineSample(f"{doc}/{line.id}" if doc else line.id, line.text, path, None, buf.getvalue()))
    counts["kept"] = len(samples)
    return samples, counts


def read_xml_lines(sources: str | Path | Sequence[str | Path], padding: int = 4,
                   image_dirs: Sequence[str | Path] = ()) -> tuple[list[LineSample], Counter]:
    """Every line with text of the ALTO / PAGE files under ``sources`` (folders, files, globs), page by
    page in file order and reading order within a page; counts summed over the pages (``pages`` too)."""
    total: Counter = Counter()
    samples: list[LineSample] = []
    for xml, base in find_xml_files(sources):
        layout = parse_layout(xml)
        got, counts = extract_lines(layout, find_image(layout, xml, image_dirs), document_key(xml, base), padding)
        samples += got
        total.update(counts)
        total["pages"] += 1
    return samples, total


def split_documents(keys: Iterable[str], val_fraction: float = 0.1, seed: int = 0) -> tuple[list[str], list[str]]:
    """Train / validation documents: (train, val), both sorted.

    Rule: sort the distinct document keys, shuffle them with ``random.Random(seed)``; the first
    ``max(1, round(val_fraction * n))`` are validation (none when ``val_fraction`` is 0 or there is a
    single document). Lines of one document never straddle the split.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction}; expected 0 <= fraction < 1")
    order = sorted(set(keys))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(val_fraction * len(order))) if val_fraction > 0 and len(order) > 1 else 0
    val = set(order[:n_val])
    return sorted(k for k in order if k not in val), sorted(val)
