"""RIMES (ICDAR 2011 line release): lines cut out of gray page images with the boxes of the XML.

    <SinglePage FileName="images_gray/xxx.png"> ... <Line Top=".." Bottom=".." Left=".." Right=".." Value="..."/>

``Value`` is HTML-escaped: it is unescaped after XML parsing (``&amp;quot;`` -> ``"``). HTML entities that
XML does not define (``&eacute;``) are tolerated. Boxes may be negative or past the page edge: they are
clamped when the line is cropped (htr.data.dataset.load_sample_image). Page images are looked up by
``FileName`` relative to the XML's folder or the root, else by base name anywhere under the root.

Validation is carved out of training by pages (never splitting a page), see ``split_pages``.
"""
from __future__ import annotations

import html
import random
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from htr.data.dataset import LineSample
from htr.errors import DatasetError

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
# '&' not starting one of XML's own entities or a character reference: escape it so the parser survives.
_BARE_AMP = re.compile(r"&(?!(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)")


def _parse_xml(path: Path) -> ET.Element:
    data = path.read_bytes()
    try:
        return ET.fromstring(data)
    except ET.ParseError:
        pass
    enc = re.search(rb'encoding="([^"]+)"', data[:200])
    text = data.decode(enc.group(1).decode() if enc else "utf-8", errors="replace")
    text = re.sub(r"<\?xml[^>]*\?>", "", text, count=1)  # the declaration would contradict the str input
    try:
        return ET.fromstring(_BARE_AMP.sub("&amp;", text))
    except ET.ParseError as e:
        raise DatasetError(f"{path}: not well-formed XML ({e}); expected the RIMES 2011 line XML") from None


def _int(attr: str | None, path: Path, page: str, what: str) -> int:
    try:
        return int(round(float(attr)))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: page {page}: Line {what}={attr!r}; expected an integer pixel coordinate") from None


class _ImageIndex:
    """Finds a page image from the XML's FileName."""

    def __init__(self, bases: Sequence[Path]) -> None:
        self.bases = [b for b in bases if b.is_dir()]
        self._by_name: dict[str, Path] | None = None

    def find(self, file_name: str) -> Path | None:
        for base in self.bases:
            p = base / file_name
            if p.is_file():
                return p
        if self._by_name is None:  # scan once, only if the direct paths failed
            self._by_name = {}
            for base in self.bases:
                for p in sorted(base.rglob("*")):
                    if p.suffix.lower() in IMAGE_SUFFIXES:
                        self._by_name.setdefault(p.name, p)
        return self._by_name.get(Path(file_name.replace("\\", "/")).name)


def read_rimes_xml(xml_path: str | Path, image_root: str | Path | None = None) -> dict[str, list[LineSample]]:
    """One RIMES XML -> {page file name: its line samples, in XML order}.

    A page whose image cannot be found keeps its samples with a non-existent path, so that
    ``prepare_samples`` counts them as bad images instead of dropping them unseen.
    """
    xml_path = Path(xml_path)
    if not xml_path.is_file():
        raise DatasetError(f"{xml_path}: RIMES XML not found (see data/README.md for the layout)")
    root_el = _parse_xml(xml_path)
    index = _ImageIndex([xml_path.parent] + ([Path(image_root)] if image_root else []))
    pages: dict[str, list[LineSample]] = {}
    for page in root_el.iter("SinglePage"):
        name = page.get("FileName")
        if not name:
            raise DatasetError(f"{xml_path}: a SinglePage element has no FileName attribute")
        image = index.find(name) or (xml_path.parent / name)
        stem = Path(name.replace("\\", "/")).stem
        lines = []
        for k, line in enumerate(page.iter("Line")):
            value = line.get("Value")
            if value is None:
                raise DatasetError(f"{xml_path}: page {name}: Line {k} has no Value attribute")
            box = tuple(_int(line.get(a), xml_path, name, a) for a in ("Left", "Top", "Right", "Bottom"))
            lines.append(LineSample(f"{stem}-{k:02d}", html.unescape(value), image, box))  # type: ignore[arg-type]
        pages[name] = lines
    if not pages:
        raise DatasetError(f"{xml_path}: no SinglePage elements; expected the RIMES 2011 line XML")
    return pages


def split_pages(pages: Sequence[str], val_fraction: float = 0.1, seed: int = 0) -> tuple[list[str], list[str]]:
    """Carve validation pages out of training pages: (train, val).

    Rule: sort the page file names, shuffle them with ``random.Random(seed)``, the first
    ``round(val_fraction * n)`` pages are validation. Lines of one page never straddle the split.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction}; expected 0 <= fraction < 1")
    order = sorted(pages)
    random.Random(seed).shuffle(order)
    n_val = round(val_fraction * len(order))
    val = set(order[:n_val])
    return [p for p in sorted(pages) if p not in val], sorted(val)
