"""A folder of line images with one TSV per split (the poilus layout):

    <root>/<split>.tsv          <image file name>\\t<transcription>, UTF-8, no header
    <root>/<image file name>    or <root>/images/<image file name>

The text is everything after the first tab (tabs inside it become spaces through normalisation).
``FolderSource`` is one such folder in a weighted training mix, with rules that bring its
transcription conventions to the reference set's.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from htr.data.dataset import LineSample
from htr.errors import DatasetError
from htr.textfile import read_text


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
    for n, line in enumerate(read_text(tsv, what="a UTF-8 TSV file").splitlines(), 1):
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


@dataclass
class FolderSource:
    """One folder of a training mix (``FolderMixDataModule``), with its weight and its text rules.

    Sets cut from different projects keep their own transcription conventions; ``replace`` maps them
    to the reference set's (applied in order, before normalisation) and ``drop_lines`` leaves out the
    lines whose text matches it (for instance deletion markup whose ink was never transcribed).

    Args:
        root: the folder, laid out as for ``FolderDataModule`` (``<split>.tsv`` files and images).
        weight: draws of each line per epoch, >= 0 (2: twice, 0.5: half of the lines, a new half each
            epoch, 0: none; htr.data.mixing).
        train_split: name of its training TSV, without ``.tsv``; null = not part of the training mix.
        val_split: name of its validation TSV; the first source that names one validates the run.
        drop_lines: regular expression searched in each line's text (after ``replace``); matching lines
            are left out and counted.
        replace: substring -> replacement, applied in order to each line's text, before normalisation.
        name: the source's name in messages and reports; null = the folder's name.
    """

    root: str
    weight: float = 1.0
    train_split: str | None = "train"
    val_split: str | None = None
    drop_lines: str | None = None
    replace: dict[str, str] = field(default_factory=dict)
    name: str | None = None

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise DatasetError(f"{self.root}: weight={self.weight}; expected >= 0")
        try:
            self._drop = re.compile(self.drop_lines) if self.drop_lines else None
        except re.error as e:
            raise DatasetError(f"{self.root}: drop_lines={self.drop_lines!r} "
                               f"is not a regular expression ({e})") from None

    @property
    def label(self) -> str:
        return self.name or Path(self.root).name

    def read(self, split: str) -> tuple[list[LineSample], int]:
        """The split's samples with the text rules applied, and how many lines ``drop_lines`` left out."""
        samples, dropped = [], 0
        for s in read_folder(self.root, split):
            text = s.text
            for old, new in self.replace.items():
                text = text.replace(old, new)
            if self._drop is not None and self._drop.search(text):
                dropped += 1
                continue
            samples.append(s if text == s.text else LineSample(s.id, text, s.image_path))
        return samples, dropped
