"""The page layout that the ALTO / PAGE XML readers produce and the writers consume.

A ``PageLayout`` is one page image with its text lines in reading order; a ``TextLine`` has an id,
its text, and as much geometry as is known: a boundary ``polygon``, a bounding ``box`` and a
``baseline``, all in page pixels (x to the right, y down, origin at the top-left corner; in the file's
unit for an ALTO file in mm10 / inch1200 until ``PageLayout.in_pixels``). It carries
no pixels: ``htr.data.xml_lines`` crops the lines out of the page image, ``htr.writers`` serialises a
layout, ``htr.pages`` builds one from a segmented and recognised page.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

Point = tuple[float, float]
Box = tuple[int, int, int, int]  # left, top, right, bottom; right and bottom exclusive (PIL crop order)


@dataclass
class TextLine:
    """One text line. ``region`` is the id of its block (ALTO TextBlock, PAGE TextRegion)."""

    id: str
    text: str = ""
    polygon: list[Point] | None = None  # boundary, at least 3 points
    box: Box | None = None  # bounding box when there is no polygon (or besides it)
    baseline: list[Point] | None = None  # at least 2 points, in writing direction
    confidence: float | None = None
    region: str = ""

    @property
    def bbox(self) -> Box | None:
        """The polygon's bounding box (its last column and row included), else ``box``, else None."""
        if self.polygon and len(self.polygon) >= 3:
            return points_bbox(self.polygon)
        return self.box

    def scaled(self, sx: float, sy: float) -> "TextLine":
        """The line with every coordinate multiplied by (sx, sy) (ALTO files in mm10 or inch1200)."""
        def pts(p: list[Point] | None) -> list[Point] | None:
            return None if p is None else [(x * sx, y * sy) for x, y in p]

        box = None if self.box is None else (round(self.box[0] * sx), round(self.box[1] * sy),
                                             round(self.box[2] * sx), round(self.box[3] * sy))
        return replace(self, polygon=pts(self.polygon), baseline=pts(self.baseline), box=box)


@dataclass
class PageLayout:
    """One page: its image (as named in the file, or a path), its size and its lines in reading order.

    ``width`` / ``height`` are in the file's unit (``unit``: "pixel", or ALTO's "mm10" / "inch1200");
    0 when the file does not say. ``source`` is the XML file it was read from, if any.
    """

    image: str
    width: float = 0
    height: float = 0
    lines: list[TextLine] = field(default_factory=list)
    unit: str = "pixel"
    format: str = ""  # "alto" or "page" for a layout read from a file
    version: str = ""  # e.g. "4" (ALTO), "2019-07-15" (PAGE)
    source: str = ""

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    def in_pixels(self, image_size: tuple[int, int]) -> "PageLayout":
        """The layout in pixels of an image of ``image_size`` (w, h): unchanged when the unit is pixel,
        scaled by image size / page size otherwise (ALTO mm10 / inch1200 files)."""
        if self.unit == "pixel":
            return self
        if not self.width or not self.height:
            raise ValueError(f"{self.source or self.image}: coordinates in {self.unit} but the page has no "
                             f"WIDTH/HEIGHT to convert them to pixels")
        sx, sy = image_size[0] / self.width, image_size[1] / self.height
        return replace(self, lines=[ln.scaled(sx, sy) for ln in self.lines], unit="pixel",
                       width=image_size[0], height=image_size[1])


def points_bbox(points: list[Point]) -> Box:
    """Bounding box of points: (min x, min y, max x + 1, max y + 1), rounded to pixels."""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return (int(round(min(xs))), int(round(min(ys))), int(round(max(xs))) + 1, int(round(max(ys))) + 1)


def box_polygon(box: Box) -> list[Point]:
    """The four corners of a box (right and bottom exclusive -> last column and row), clockwise."""
    x0, y0, x1, y1 = box
    return [(x0, y0), (x1 - 1, y0), (x1 - 1, y1 - 1), (x0, y1 - 1)]
