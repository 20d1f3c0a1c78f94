"""Reading the project's text files (TSV splits, writer/document lists, split files) with errors that
name the file and the line: a file that is not UTF-8 is a DatasetError ``<file>:<line>:<column>: ...``,
not a bare UnicodeDecodeError."""
from __future__ import annotations

from pathlib import Path

from htr.errors import DatasetError


def read_text(path: str | Path, encoding: str = "utf-8-sig", what: str = "a UTF-8 text file") -> str:
    """The file's text; DatasetError naming the file, line and column of the first byte that does not decode."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        bad = data[e.start:e.end].hex(" ")
        raise DatasetError(f"{path}:{line}:{column}: byte(s) {bad} are not valid {encoding.split('-sig')[0].upper()} "
                           f"({e.reason}); expected {what} (convert it, e.g. `iconv -f latin1 -t utf-8`)") from None
