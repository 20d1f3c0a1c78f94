"""A folder of line images with one TSV per split (the poilus layout):

    <root>/<split>.tsv          <image file name>\\t<transcription>, UTF-8, no header
    <root>/<image file name>    or <root>/images/<image file name>

The text is everything after the first tab (tabs inside it become spaces through normalisation).
"""
from __future__ import annotations

from pathlib import Path

from htr.data.dataset import LineSample
from htr.errors import DatasetError


def read_folder(root: str | Path, split: str = "train") -> list[LineSample]:
    """Samples of ``<root>/<split>.tsv``; ids are the image file names without extension."""
    root = Path(root)
    tsv = root / f"{split}.tsv"
    if not tsv.is_file():
        found = sorted(p.name for p in root.glob("*.tsv")) if root.is_dir() else []
        raise DatasetError(f"{tsv}: split file not found; expected <root>/{split}.tsv with lines "
                           f"'<image file name>\\t<text>' (found: {found or 'no .tsv files'})")
    samples = []
    seen: dict[str, int] = {}
    for n, line in enumerate(tsv.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise DatasetError(f"{tsv}:{n}: {line[:80]!r} has no tab; expected '<image file name>\\t<text>'")
        name, text = line.split("\t", 1)
        name = name.strip()
        if name in seen:
            raise DatasetError(f"{tsv}:{n}: image {name!r} already listed on line {seen[name]}")
        seen[name] = n
        path = root / name
        if not path.is_file() and (root / "images" / name).is_file():
            path = root / "images" / name
        samples.append(LineSample(Path(name).stem, text, path))
    if not samples:
        raise DatasetError(f"{tsv}: no lines; expected '<image file name>\\t<text>' per line")
    return samples
