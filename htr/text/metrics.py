"""Character and word error rates, corpus-level (datasets.md conventions).

CER = total character edit distance over all lines / total number of reference characters; WER the
same over whitespace-separated words. Not the mean of per-line rates: a long line weighs more. Both are
case-sensitive unless ``ignore_case``; neither normalises anything else (normalise labels and
hypotheses with ``htr.text.codec.normalize_text`` before scoring, as the data module does).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import editdistance
import torch
from torchmetrics import Metric

Unit = Literal["char", "word"]


def _tokens(text: str, unit: Unit, ignore_case: bool) -> Sequence[str]:
    if ignore_case:
        text = text.casefold()
    return text.split() if unit == "word" else text


def edit_counts(refs: Sequence[str], hyps: Sequence[str], unit: Unit = "char",
                ignore_case: bool = False) -> tuple[int, int]:
    """(total edits, total reference tokens) over aligned lists of reference and hypothesis lines."""
    if isinstance(refs, str) or isinstance(hyps, str):
        raise TypeError("refs and hyps are lists of lines, not single strings; wrap a line in a list")
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses; expected one per line")
    edits = total = 0
    for r, h in zip(refs, hyps):
        rt, ht = _tokens(r, unit, ignore_case), _tokens(h, unit, ignore_case)
        edits += editdistance.eval(rt, ht)
        total += len(rt)
    return edits, total


def _rate(edits: int, total: int) -> float:
    # No reference tokens: 0 if the hypotheses are empty too, else every hypothesis token is an error.
    return edits / total if total else (0.0 if edits == 0 else float(edits))


def cer(refs: Sequence[str], hyps: Sequence[str], ignore_case: bool = False) -> float:
    """Corpus-level character error rate in [0, inf) (a fraction, not a percentage)."""
    return _rate(*edit_counts(refs, hyps, "char", ignore_case))


def wer(refs: Sequence[str], hyps: Sequence[str], ignore_case: bool = False) -> float:
    """Corpus-level word error rate; words are whitespace-separated tokens."""
    return _rate(*edit_counts(refs, hyps, "word", ignore_case))


class ErrorRate(Metric):
    """Accumulating corpus-level CER or WER, a torchmetrics ``Metric`` (summed across DDP processes).

    Use one object per stage in a LightningModule (``self.val_cer = ErrorRate("char")``) and log it:
    ``update(refs, hyps)`` per batch, ``compute()`` the rate as a 0-dim tensor, ``reset()``.
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, unit: Unit = "char", ignore_case: bool = False) -> None:
        super().__init__()
        if unit not in ("char", "word"):
            raise ValueError(f"unit={unit!r}; expected 'char' or 'word'")
        self.unit: Unit = unit
        self.ignore_case = ignore_case
        self.add_state("edits", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, refs: Sequence[str], hyps: Sequence[str]) -> None:  # type: ignore[override]
        e, t = edit_counts(refs, hyps, self.unit, self.ignore_case)
        self.edits += e
        self.total += t

    def compute(self) -> torch.Tensor:
        return torch.tensor(_rate(int(self.edits), int(self.total)), dtype=torch.float32)
