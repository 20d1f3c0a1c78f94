"""Projection-profile line segmentation: a paragraph image -> one crop per text line.

Method (the classic horizontal projection profile, enough for short, roughly horizontal paragraphs):

1. Ink mask. The grayscale image is inverted (ink ~ 255) and thresholded with Otsu's method; when the
   image has too little contrast to hold ink (Otsu's two classes closer than ``min_contrast`` gray levels)
   there are no lines.
2. Profile. The ink pixels of each row are counted and the counts smoothed with a moving average of
   ``smooth`` (a fraction of the height estimated from the ink, at least 3 rows).
3. Bands. Rows whose smoothed count is above ``threshold`` x the 90th percentile of the non-empty rows
   are text rows; runs of text rows are bands (line cores: the x-height zone of each line).
4. Clean-up. Bands much shorter than the tallest ones (``min_band`` x the median band height: an accent
   row, a stray stroke, a capital's top) are merged into the nearest band when they are close to it
   (within one median band height) and dropped otherwise (rules, underlines, specks).
5. Crops. Each band is extended up and down into the gaps to its neighbours (up to the middle of each
   gap, at most ``extend`` band heights) so that ascenders and descenders are kept, then cut
   horizontally to the ink of that strip plus a margin.

A single text line gives one band; a blank image gives none. Skewed lines (more than about a line
height of drift across the width) or touching lines are beyond this method: they come out merged.
Each box also records an estimated ``baseline`` row: the bottom of its band (the x-height zone).

``find_lines`` is the entry point that the app and ``htr transcribe --segment`` share: an image file
(or bytes, or PIL image) and a layout (``line``: the whole image; ``paragraph``: split; ``auto``: split,
and keep the whole image when at most one line is found) -> the grayscale image and its line boxes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

LAYOUTS = ("auto", "line", "paragraph")


@dataclass(frozen=True)
class LineBox:
    """A line's box in image pixels: x0, y0 inclusive; x1, y1 exclusive (PIL crop order); ``baseline``:
    the estimated baseline row (image pixels) when the segmentation found one (not compared)."""

    x0: int
    y0: int
    x1: int
    y1: int
    baseline: int | None = field(default=None, compare=False)

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.x0, self.y0, self.x1, self.y1)


def otsu_threshold(values: np.ndarray) -> tuple[int, float]:
    """Otsu's threshold of uint8 values -> (threshold t: class 1 is values > t, distance of class means)."""
    hist = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    total = hist.sum()
    if total == 0:
        return 0, 0.0
    levels = np.arange(256, dtype=np.float64)
    w0 = np.cumsum(hist)  # pixels <= t
    s0 = np.cumsum(hist * levels)
    w1 = total - w0
    s1 = s0[-1] - s0
    with np.errstate(divide="ignore", invalid="ignore"):
        m0 = s0 / w0
        m1 = s1 / w1
        between = w0 * w1 * (m0 - m1) ** 2
    between[~np.isfinite(between)] = -1.0
    t = int(np.argmax(between))
    if between[t] <= 0:
        return t, 0.0
    return t, float(m1[t] - m0[t])


def ink_mask(gray: np.ndarray, min_contrast: float = 40.0) -> np.ndarray:
    """Boolean (H, W) ink mask of a uint8 grayscale image (dark ink on light paper)."""
    ink = 255 - gray
    t, contrast = otsu_threshold(ink)
    if contrast < min_contrast:
        return np.zeros(gray.shape, dtype=bool)
    return ink > t


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) runs of True in a 1-D boolean array."""
    padded = np.concatenate([[False], flags, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def find_bands(mask: np.ndarray, threshold: float = 0.15, smooth: float = 0.25,
               min_band: float = 0.4) -> list[tuple[int, int]]:
    """Line cores [y0, y1) from the horizontal projection profile of an ink mask (steps 2-4)."""
    profile = mask.sum(axis=1).astype(np.float64)
    if profile.sum() == 0:
        return []
    # window from a first estimate of the core height: rows above the threshold, per run
    def bands_for(p: np.ndarray) -> list[tuple[int, int]]:
        nonzero = p[p > 0]
        level = threshold * np.percentile(nonzero, 90)
        return _runs(p > level)

    first = bands_for(profile)
    core = np.median([b - a for a, b in first]) if first else 3
    win = max(3, int(round(core * smooth)) | 1)
    smoothed = np.convolve(profile, np.ones(win) / win, mode="same")
    bands = bands_for(smoothed)
    if len(bands) <= 1:
        return bands
    changed = True
    while changed and len(bands) > 1:
        changed = False
        heights = np.array([b - a for a, b in bands], dtype=np.float64)
        med = float(np.median(heights[heights >= min_band * heights.max()]))
        for i, (a, b) in enumerate(bands):
            if b - a >= min_band * med:
                continue
            gaps = []
            if i > 0:
                gaps.append((a - bands[i - 1][1], i - 1))
            if i + 1 < len(bands):
                gaps.append((bands[i + 1][0] - b, i + 1))
            gap, j = min(gaps)
            if gap <= med:
                lo, hi = min(i, j), max(i, j)
                bands[lo:hi + 1] = [(bands[lo][0], bands[hi][1])]
            else:  # far from any line: a rule, an underline, a stray mark
                del bands[i]
            changed = True
            break
    return bands


def segment_lines(image: Image.Image | np.ndarray, threshold: float = 0.15, smooth: float = 0.25,
                  min_band: float = 0.4, extend: float = 0.8, margin: int = 4) -> list[LineBox]:
    """Boxes of the text lines of a paragraph image, top to bottom (see the module docstring).

    ``image``: PIL image (any mode, converted to "L") or uint8 (H, W) array, dark ink on light paper.
    """
    gray = np.asarray(image.convert("L") if isinstance(image, Image.Image) else image)
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"segment_lines: expected a uint8 (H, W) grayscale image, got {gray.dtype} {gray.shape}")
    h, w = gray.shape
    mask = ink_mask(gray)
    bands = find_bands(mask, threshold, smooth, min_band)
    boxes = []
    for i, (a, b) in enumerate(bands):
        reach = int(round(extend * (b - a)))
        top_gap = a - (bands[i - 1][1] if i > 0 else 0)
        bottom_gap = (bands[i + 1][0] if i + 1 < len(bands) else h) - b
        # to the middle of a gap between two lines, the whole way to the image edge
        y0 = a - min(reach, top_gap // 2 if i > 0 else top_gap)
        y1 = b + min(reach, bottom_gap - bottom_gap // 2 if i + 1 < len(bands) else bottom_gap)
        cols = np.flatnonzero(mask[y0:y1].any(axis=0))
        if cols.size == 0:
            continue
        x0, x1 = max(0, int(cols[0]) - margin), min(w, int(cols[-1]) + 1 + margin)
        top, bottom = max(0, y0), min(h, y1)
        boxes.append(LineBox(x0, top, x1, bottom, baseline=min(max(b - 1, top), bottom - 1)))
    return boxes


def crop_lines(image: Image.Image, boxes: list[LineBox] | None = None, **kwargs) -> list[Image.Image]:
    """The line crops of a paragraph image (``boxes`` from segment_lines if not given)."""
    boxes = segment_lines(image, **kwargs) if boxes is None else boxes
    return [image.crop(b.as_tuple()) for b in boxes]


def find_lines(source: Any, layout: str = "auto", tight: bool = False, max_lines: int | None = None
               ) -> tuple[Image.Image, list[LineBox]]:
    """Image file / bytes / PIL image -> (grayscale image, line boxes, top to bottom). Raises ImageError.

    layout "line": the whole image is one line; "paragraph": split into lines by projection profiles
    (ImageError when no line is found); "auto": split, and keep the whole image when at most one line is
    found (``tight``: that line's box instead, for drawings, whose canvas is mostly empty). More than
    ``max_lines`` lines (when given) is an ImageError.
    """
    from htr.data.images import load_image
    from htr.errors import ImageError

    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    gray = load_image(source)
    lo, hi = gray.getextrema()
    if hi - lo < 8:
        raise ImageError(f"the image is blank ({gray.width}x{gray.height} pixels of one gray level, {lo}); "
                         f"expected handwriting")
    whole = LineBox(0, 0, gray.width, gray.height)
    if layout == "line":
        return gray, [whole]
    boxes = segment_lines(gray)
    if max_lines is not None and len(boxes) > max_lines:
        raise ImageError(f"{len(boxes)} text lines found; expected a line or a short paragraph "
                         f"(at most {max_lines} lines)")
    if len(boxes) <= 1:
        if layout == "paragraph" and not boxes:
            raise ImageError("no text line found in the paragraph (too little ink contrast); try layout 'line'")
        if tight and boxes:
            return gray, boxes
        return gray, [whole]
    return gray, boxes
