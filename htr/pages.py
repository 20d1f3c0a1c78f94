"""Whole pages and paragraphs: segment an image into lines, recognise them in batches -> a PageLayout.

    from htr import load_model
    page = load_model("relu_add").transcribe_page("page.jpg")   # htr.layout.PageLayout
    print(page.text)
    from htr.writers import to_alto
    open("page.xml", "w").write(to_alto(page))

The segmentation is htr.segment.find_lines, the one the app uses (horizontal projection profiles:
short paragraphs and single-column pages of roughly horizontal lines). Each line gets its box, an
estimated baseline (the bottom of its x-height band), its text (spaces normalised: no leading,
trailing or repeated ones, so that ALTO's words give it back) and the recogniser's confidence;
lines are ids ``line_1``, ``line_2``... in one region ``region_1``, top to bottom.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from htr.layout import PageLayout, TextLine
from htr.segment import find_lines
from htr.text import BEAM_WIDTH

if TYPE_CHECKING:
    from htr.inference import ImageInput, Transcriber


def transcribe_page(model: "Transcriber", image: "ImageInput", segment: bool = True, decoder: str = "greedy",
                    beam_width: int = BEAM_WIDTH, batch_size: int = 16, name: str | None = None) -> PageLayout:
    """One page or paragraph image -> its PageLayout with every line's text and confidence.

    ``segment``: split into lines (htr.segment.find_lines, layout "auto": an image where at most one
    line is found stays one line); False: the whole image is one line. ``name`` is what the layout
    calls the image (default: the path as given, else "image"). Raises ImageError for a bad image.
    """
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if name is None:
        name = str(image) if isinstance(image, (str, Path)) else "image"
    gray, boxes = find_lines(image, "auto" if segment else "line")
    crops = [gray.crop(b.as_tuple()) for b in boxes]
    results = model.transcribe(crops, decoder=decoder, beam_width=beam_width, batch_size=batch_size)
    lines = []
    for i, (box, tr) in enumerate(zip(boxes, results), 1):
        baseline = None if box.baseline is None else [(box.x0, box.baseline), (box.x1 - 1, box.baseline)]
        text = " ".join(tr.text.split())  # no leading, trailing or repeated spaces: what ALTO words keep
        lines.append(TextLine(f"line_{i}", text, None, box.as_tuple(), baseline, tr.confidence, "region_1"))
    return PageLayout(name, gray.width, gray.height, lines)
