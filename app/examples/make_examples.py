"""Regenerates the bundled example images (run from the repository root: python app/examples/make_examples.py).

Synthetic lines: htr.data.synthetic's Renderer with the two validation font families (never seen in
training), fixed texts and seeds. Real lines: validation lines of the poilus data set (CC-BY 4.0, see
ATTRIBUTION.md), downscaled to 80 px high; the paragraph example stacks three consecutive lines of one will.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from htr.data.synthetic import Renderer, SyntheticConfig, discover_fonts

HERE = Path(__file__).parent
POILUS = HERE.parents[1].parent / "shared" / "realdata" / "poilus" / "images"  # ../shared from the repository
SYNTHETIC = [  # (file, font family, text)
    ("synthetic_1.png", "indie-flower", "Paris, le 3 mars 1916"),
    ("synthetic_2.png", "satisfy", "Je lègue tous mes biens à ma femme"),
]
REAL = [  # (file, source line)
    ("poilus_1.png", "TestamentsDePoilus_will_AD78_0037-0_l000.png"),
    ("poilus_2.png", "TestamentsDePoilus_will_AN_0284-0_l010.png"),
    ("poilus_3.png", "TestamentsDePoilus_will_AD78_0069-1_l022.png"),
]
PARAGRAPH = ("poilus_paragraph.png", [f"TestamentsDePoilus_will_AD78_0069-1_l{i:03d}.png" for i in (20, 21, 22)])
HEIGHT = 80


def _small(path: Path, height: int = HEIGHT) -> Image.Image:
    im = Image.open(path).convert("L")
    return im.resize((max(1, round(im.width * height / im.height)), height), Image.Resampling.LANCZOS)


def main() -> None:
    cfg = SyntheticConfig(font_size=(44, 44), blur_p=0.0, noise_std=(2.0, 2.0), rotate_deg=0.5)
    renderer = Renderer(cfg)
    fonts = {f.family: f for f in discover_fonts()}
    for i, (name, family, text) in enumerate(SYNTHETIC):
        img = renderer.render(text, fonts[family], np.random.default_rng(i))
        Image.fromarray(img, "L").save(HERE / name, optimize=True)
    for name, source in REAL:
        _small(POILUS / source).save(HERE / name, optimize=True)
    name, sources = PARAGRAPH
    lines = [_small(POILUS / s, 64) for s in sources]
    paper = int(np.median(np.asarray(lines[0])))
    page = Image.new("L", (max(im.width for im in lines) + 32, sum(im.height for im in lines) + 16 * 4), paper)
    y = 16
    for im in lines:
        page.paste(im, (16, y))
        y += im.height + 16
    page.save(HERE / name, optimize=True)


if __name__ == "__main__":
    main()
