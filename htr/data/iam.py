"""IAM handwriting database, line level (layout in ../shared/reference/datasets.md and data/README.md).

    <root>/ascii/lines.txt                       id status graylevel components x y w h transcription
    <root>/lines/a01/a01-000u/a01-000u-00.png    line images

Transcriptions join words with ``|`` (read as a space). ``status`` is the word segmentation result:
``err`` lines are valid line transcriptions and are kept unless ``drop_err``.

Token re-joining (``rejoin_tokens=True``). The ASCII ground truth is tokenised; we undo it so labels
read like the handwriting (and WER counts written words). Rules, in order:
    ``word ,`` ``word .`` ``word ;`` ``word :`` ``word ?`` ``word !`` ``word )``  -> no space before
    ``( word``                                                              -> no space after
    ``I 'll`` ``it 's`` ``do n't`` (``'s 'S 'll 're 've 'd 'm 't n't`` and upper case) -> no space before
    ``" quoted "``: only when the line holds an even number of ``"``: the 1st, 3rd, ... open (no space
    after), the 2nd, 4th, ... close (no space before). Odd counts (quotes spanning lines) are left alone.
Published numbers differ on this; report whether it was on.

Splits are files listing line ids (``a01-000u-00``) or form ids (``a01-000u``), one per line, either
kind (or mixed); blank lines and ``#`` comments are ignored, file extensions stripped.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path

from htr.data.dataset import LineSample
from htr.errors import DatasetError
from htr.textfile import read_text

log = logging.getLogger(__name__)

_BEFORE_PUNCT = re.compile(r" ([,.;:?!)])")
_AFTER_OPEN = re.compile(r"\( ")
_CONTRACTION = re.compile(r" ('(?:s|S|ll|LL|re|RE|ve|VE|d|D|m|M|t|T)\b|n't\b|N'T\b)")


def rejoin_tokens(text: str) -> str:
    """Undo IAM's ASCII tokenisation (rules in the module docstring)."""
    text = _CONTRACTION.sub(r"\1", text)
    text = _BEFORE_PUNCT.sub(r"\1", text)
    text = _AFTER_OPEN.sub("(", text)
    if text.count('"') and text.count('"') % 2 == 0:
        parts = text.split('"')  # odd-numbered parts lie inside a pair of quotes
        for k in range(1, len(parts), 2):
            parts[k] = parts[k].strip(" ")
        text = '"'.join(parts)
    return text


def parse_lines_txt(path: str | Path, drop_err: bool = False) -> list[tuple[str, str, str]]:
    """``ascii/lines.txt`` -> [(line id, status, raw transcription with | as spaces)]."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: IAM lines.txt not found; expected <root>/ascii/lines.txt (see data/README.md)")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split(maxsplit=8)  # the 9th field is the transcription, whatever it holds
        if len(fields) < 9 or fields[1] not in ("ok", "err"):
            raise DatasetError(f"{path}:{n}: {line[:80]!r}; expected 'id ok|err graylevel components x y w h text'")
        lid, status, text = fields[0], fields[1], fields[8]
        if drop_err and status == "err":
            continue
        rows.append((lid, status, text.replace("|", " ")))
    return rows


def line_image_path(root: str | Path, line_id: str) -> Path:
    """``a01-000u-00`` -> ``<root>/lines/a01/a01-000u/a01-000u-00.png``."""
    parts = line_id.split("-")
    if len(parts) < 3:
        raise DatasetError(f"IAM line id {line_id!r}; expected writer-form-line like 'a01-000u-00'")
    return Path(root) / "lines" / parts[0] / f"{parts[0]}-{parts[1]}" / f"{line_id}.png"


def form_id(line_id: str) -> str:
    """``a01-000u-00`` -> ``a01-000u``."""
    return "-".join(line_id.split("-")[:2])


def read_split_ids(path: str | Path) -> set[str]:
    """A split file -> its ids (line or form ids; extensions and comments removed)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: IAM split file not found; expected one line or form id per line")
    ids = set()
    for line in read_text(path, "utf-8").splitlines():
        tok = line.split("#", 1)[0].strip()
        if tok:
            ids.add(Path(tok.split()[0]).name.split(".")[0])
    if not ids:
        raise DatasetError(f"{path}: no ids; expected one IAM line id (a01-000u-00) or form id (a01-000u) per line")
    return ids


def select(rows: Iterable[tuple[str, str, str]], ids: set[str]) -> list[tuple[str, str, str]]:
    """Rows whose line id or form id is in ``ids``."""
    return [r for r in rows if r[0] in ids or form_id(r[0]) in ids]


def read_iam(root: str | Path, split: str | Path | Iterable[str] | None = None, drop_err: bool = False,
             rejoin: bool = True) -> list[LineSample]:
    """Samples of one IAM split. ``split``: a split file, an iterable of ids, or None for every line.

    Image files are not opened here (``prepare_samples`` checks them and counts the missing ones).
    """
    root = Path(root)
    rows = parse_lines_txt(root / "ascii" / "lines.txt", drop_err)
    if split is not None:
        ids = read_split_ids(split) if isinstance(split, (str, Path)) else set(split)
        chosen = select(rows, ids)
        known = {r[0] for r in rows} | {form_id(r[0]) for r in rows}
        unknown = ids - known
        if unknown:
            log.warning("IAM split %s: %d ids not found in lines.txt (or dropped as err), e.g. %s",
                        split if isinstance(split, (str, Path)) else "<ids>", len(unknown), sorted(unknown)[:5])
        rows = chosen
    return [LineSample(lid, rejoin_tokens(text) if rejoin else text, line_image_path(root, lid))
            for lid, _status, text in rows]
