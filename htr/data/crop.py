"""Cutting one text line out of a page image by its polygon (or box) and turning vertical lines upright.

Rule (``crop_line``):

1. Region: the bounding box of the polygon (or the line's box when it has no polygon) grown by
   ``padding`` pixels on each side and clamped to the page.
2. Mask: with a polygon, the pixels of the region outside the polygon are set to the paper level, the
   median gray of the pixels inside the polygon (a line is mostly paper), so that the ink of the lines
   above and below does not leak into this one; the padding is paper too. Without a polygon the box
   is taken as it is.
3. Orientation: a line whose baseline runs more vertically than horizontally (from its first point to
   its last) is turned by a quarter turn so that it reads left to right: a baseline going down is
   turned counter-clockwise, one going up clockwise. Slightly skewed lines are left as they are.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from htr.layout import Box, Point, points_bbox

MIN_SIDE = 2  # a region narrower or shorter than this holds no line


def line_region(polygon: Sequence[Point] | None, box: Box | None, page_size: tuple[int, int],
                padding: int = 4) -> Box | None:
    """The page region a line is cut from (step 1), or None when nothing of it lies on the page."""
    bbox = points_bbox(list(polygon)) if polygon and len(polygon) >= 3 else box
    if bbox is None:
        return None
    w, h = page_size
    x0, y0 = max(0, bbox[0] - padding), max(0, bbox[1] - padding)
    x1, y1 = min(w, bbox[2] + padding), min(h, bbox[3] + padding)
    if x1 - x0 < MIN_SIDE or y1 - y0 < MIN_SIDE:
        return None
    return (x0, y0, x1, y1)


def is_vertical(baseline: Sequence[Point] | None) -> int:
    """+1 for a baseline going down, -1 going up, 0 for a horizontal one (or none)."""
    if not baseline or len(baseline) < 2:
        return 0
    dx = baseline[-1][0] - baseline[0][0]
    dy = baseline[-1][1] - baseline[0][1]
    if abs(dy) <= abs(dx):
        return 0
    return 1 if dy > 0 else -1


def crop_line(page: np.ndarray, polygon: Sequence[Point] | None = None, box: Box | None = None,
              baseline: Sequence[Point] | None = None, padding: int = 4) -> np.ndarray | None:
    """A line's uint8 (H, W) image out of a uint8 (H, W) grayscale page (see the module docstring);
    None when its region is empty on this page."""
    if page.ndim != 2 or page.dtype != np.uint8:
        raise ValueError(f"crop_line: expected a uint8 (H, W) page, got {page.dtype} {page.shape}")
    h, w = page.shape
    region = line_region(polygon, box, (w, h), padding)
    if region is None:
        return None
    x0, y0, x1, y1 = region
    crop = page[y0:y1, x0:x1]
    if polygon and len(polygon) >= 3:
        mask_im = Image.new("1", (x1 - x0, y1 - y0), 0)
        ImageDraw.Draw(mask_im).polygon([(x - x0, y - y0) for x, y in polygon], fill=1, outline=1)
        mask = np.asarray(mask_im, dtype=bool)
        inside = crop[mask]
        if inside.size == 0:  # a polygon thinner than a pixel: keep the box
            crop = crop.copy()
        else:
            paper = np.uint8(np.median(inside))
            crop = np.where(mask, crop, paper).astype(np.uint8)
    else:
        crop = crop.copy()
    turn = is_vertical(baseline)
    if turn:
        crop = np.ascontiguousarray(np.rot90(crop, k=1 if turn > 0 else -1))  # k=1: counter-clockwise
    return crop
