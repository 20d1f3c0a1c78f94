"""Checkpoint files without Lightning (cheap to import for `htr transcribe --ckpt`): ``atomic_save``
writes a file that a kill cannot leave half-written, ``read_checkpoint`` reads one with a
``CheckpointError`` that names the file and what was found. See htr.checkpointing for the rest."""
from __future__ import annotations

import os
import tempfile
import zipfile
from contextlib import suppress
from pathlib import Path
from typing import Any

import torch

from htr.errors import CheckpointError

TMP_SUFFIX = ".tmp"
_WRITING: set[str] = set()  # temporary files being written now (removed by a second signal's exit)
_UMASK = os.umask(0)
os.umask(_UMASK)


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}."


def remove_orphans(folder: str | Path, name: str | None = None) -> list[Path]:
    """Delete the temporary files a killed ``atomic_save`` left in ``folder`` (for ``name`` only, if
    given), except those being written by this process. Returns what was removed."""
    pattern = f".{name}.*{TMP_SUFFIX}" if name else f".*.ckpt.*{TMP_SUFFIX}"
    removed = []
    for p in Path(folder).glob(pattern):
        if str(p) not in _WRITING:
            with suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` into a temporary file beside ``path``, flushed and fsynced, then renamed over
    ``path``: readers see the old file or the new one, never part of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_tmp_prefix(path), suffix=TMP_SUFFIX)
    _WRITING.add(tmp)
    try:
        with suppress(OSError, AttributeError):
            os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; a checkpoint gets the usual mode
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        _WRITING.discard(tmp)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where folders cannot be opened)."""
    with suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_checkpoint(path: str | Path, **load_kwargs: Any) -> dict[str, Any]:
    """``torch.load`` (on the CPU, weights_only unless told otherwise) with a ``CheckpointError`` that
    names the file and what was found when it is missing, empty, truncated or unreadable."""
    path = Path(path)
    load_kwargs.setdefault("map_location", "cpu")
    load_kwargs.setdefault("weights_only", True)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes), not a checkpoint; it was cut short while "
                              f"it was written (a kill or a full disk): resume from another checkpoint")
    try:
        return torch.load(path, **load_kwargs)
    except Exception as e:  # noqa: BLE001 - classified below
        if not zipfile.is_zipfile(path):
            with path.open("rb") as f:
                head = f.read(4)
            found = ("the start of a checkpoint archive without its end: the file is truncated"
                     if head == b"PK\x03\x04" else f"no checkpoint archive (first bytes {head!r})")
            raise CheckpointError(f"{path}: {size} bytes, {found}; expected a complete checkpoint written by "
                                  f"`htr fit` (torch.load: {type(e).__name__}: {e})") from None
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e})") from None
