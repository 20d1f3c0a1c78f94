"""CTC decoding: best path (greedy) and prefix beam search with an optional character LM.

Both take log-probabilities (log_softmax over classes, blank = index 0) and return class indices
with the blank removed and repeats collapsed, ready for ``Codec.decode``.

Confidence of a line (a number in (0, 1], higher is surer):

- greedy: exp of the mean of the per-frame max log-probability over the frames whose best class is
  not the blank (the frames that emit characters); over all frames if the line is empty. Blank frames
  are left out because they are almost always confident and would hide an unsure character.
- beam search: the CTC probability of the chosen labelling (summed over its alignments, LM excluded),
  normalised per frame: exp(log P(y | x) / T).
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import Tensor

from htr.errors import ShapeError, TimeLimitError
from htr.text import BEAM_WIDTH, INSERTION_BONUS, LM_WEIGHT

if TYPE_CHECKING:
    from htr.text.codec import Codec
    from htr.text.lm import CharNgramLM

BLANK = 0
NEG_INF = -math.inf
Impl = Literal["compiled", "python"]
IMPLS: tuple[str, ...] = ("compiled", "python")
_NUMPY_FLOATS = (torch.float16, torch.float32, torch.float64)  # widened to float64 by numpy: the values of .double()


def greedy_decode(log_probs: Tensor, lengths: Tensor | Sequence[int] | None = None,
                  blank: int = BLANK) -> list[tuple[list[int], float]]:
    """Best-path decoding: argmax per frame, collapse repeats, drop blanks.

    log_probs: (T, C) for one line or (T, N, C) for a batch (the layout of ``F.ctc_loss``).
    lengths: (N,) valid frames per line (padding frames are ignored); all T frames if None.
    Returns one ``(indices, confidence)`` per line: a list of length N (length 1 for a (T, C) input).
    """
    if log_probs.dim() == 2:
        log_probs = log_probs.unsqueeze(1)  # (T, C) -> (T, 1, C)
    if log_probs.dim() != 3:
        raise ShapeError(f"log_probs has shape {tuple(log_probs.shape)}; expected (T, C) or (T, N, C)")
    T, N, _ = log_probs.shape
    lens = _lengths(lengths, T, N)
    best, arg = log_probs.detach().float().max(dim=-1)  # (T, N) each
    best, arg = best.cpu().numpy(), arg.cpu().numpy()
    out = []
    for n in range(N):
        a, b = arg[: lens[n], n], best[: lens[n], n]
        if len(a) == 0:
            out.append(([], 1.0))
            continue
        # keep frame t if it is not blank and differs from frame t-1
        keep = (a != blank) & np.concatenate(([True], a[1:] != a[:-1]))
        emitting = a != blank
        conf = float(np.exp(b[emitting].mean() if emitting.any() else b.mean()))
        out.append(([int(i) for i in a[keep]], conf))
    return out


def _lengths(lengths: Tensor | Sequence[int] | None, T: int, N: int) -> list[int]:
    if lengths is None:
        return [T] * N
    lens = [int(x) for x in (lengths.tolist() if isinstance(lengths, Tensor) else lengths)]
    if len(lens) != N or any(not 0 <= x <= T for x in lens):
        raise ShapeError(f"lengths {lens} do not fit {N} lines of at most {T} frames")
    return lens


def beam_search(log_probs: Tensor, beam_width: int = BEAM_WIDTH, lm: CharNgramLM | None = None,
                lm_weight: float = LM_WEIGHT, codec: Codec | None = None, insertion_bonus: float = INSERTION_BONUS,
                char_prune: float = -10.0, blank: int = BLANK, deadline: float | None = None,
                impl: Impl = "compiled") -> tuple[list[int], float]:
    """CTC prefix beam search over one line; returns the best ``(indices, confidence)``.

    log_probs: (T, C) log-probabilities of one line (slice off padding frames first).
    Each prefix keeps two log-probabilities, ending in a blank (p_b) and ending in its last character
    (p_nb), summed over all alignments. Prefixes are ranked by
    ``log P_ctc(prefix) + lm_weight * log P_lm(prefix) + insertion_bonus * len(prefix)``; with an LM the
    final ranking adds the end-of-line probability. ``codec`` maps indices to the LM's characters and
    is required with ``lm``. Characters below ``char_prune`` (log-prob) in a frame are not tried.
    ``deadline`` (a ``time.perf_counter()`` value): past it, the search stops with TimeLimitError.
    ``impl``: "compiled" (numba, htr.text.beam_compiled; the default) or "python" (this module's
    reference code); both find the same labelling and confidence (they may differ only on exact ties
    of scores). The compiled search looks at the deadline every ``DEADLINE_FRAMES`` frames, the Python
    one at every frame.
    """
    if log_probs.dim() != 2:
        raise ShapeError(f"log_probs has shape {tuple(log_probs.shape)}; expected (T, C) for one line")
    if lm is not None and codec is None:
        raise ValueError("beam_search with an lm needs the codec that maps indices to characters")
    if lm is not None and blank != BLANK:
        raise ValueError(f"blank={blank} with an lm; expected the codec's blank, index {BLANK}")
    if beam_width < 1:
        raise ValueError(f"beam_width={beam_width}; expected >= 1")
    if impl not in IMPLS:
        raise ValueError(f"impl={impl!r}; expected one of {', '.join(map(repr, IMPLS))}")
    if impl == "compiled":
        from htr.text.beam_compiled import beam_search_compiled  # numba's kernels: compiled or cached on first use

        x = log_probs.detach().cpu()
        lp = np.asarray(x.numpy() if x.dtype in _NUMPY_FLOATS else x.double().numpy(), dtype=np.float64)
        tables = lm.tables() if lm is not None else None
        char_ids = lm.char_ids(codec.charset) if lm is not None else None  # type: ignore[union-attr]
        return beam_search_compiled(lp, beam_width, tables, char_ids, lm_weight, insertion_bonus, char_prune, blank,
                                    deadline)
    lp = log_probs.detach().double().cpu().numpy()
    return _beam_search_python(lp, beam_width, lm, lm_weight, codec, insertion_bonus, char_prune, blank, deadline)


def _beam_search_python(lp: np.ndarray, beam_width: int, lm: CharNgramLM | None, lm_weight: float,
                        codec: Codec | None, insertion_bonus: float, char_prune: float, blank: int,
                        deadline: float | None) -> tuple[list[int], float]:
    """The reference search over (T, C) float64 log-probabilities (see ``beam_search``)."""
    T, C = lp.shape
    if T == 0:
        return [], 1.0

    lm_cache: dict[tuple[int, ...], tuple[float, str]] = {(): (0.0, "")}  # prefix -> (log P_lm, its text)

    def lm_state(prefix: tuple[int, ...]) -> tuple[float, str]:
        """log P_lm(prefix) and its text, built one character at a time from the parent prefix."""
        v = lm_cache.get(prefix)
        if v is None:
            parent, text = lm_state(prefix[:-1])
            ch = codec.charset[prefix[-1] - 1]  # type: ignore[union-attr]
            v = (parent + lm.score(text, ch), text + ch)  # type: ignore[union-attr]
            lm_cache[prefix] = v
        return v

    def lm_logp(prefix: tuple[int, ...]) -> float:
        return lm_state(prefix)[0]

    def rank(prefix: tuple[int, ...], pb: float, pnb: float) -> float:
        s = np.logaddexp(pb, pnb) + insertion_bonus * len(prefix)
        return s + lm_weight * lm_logp(prefix) if lm is not None else s

    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}  # prefix -> (p_b, p_nb)
    for t in range(T):
        if deadline is not None and time.perf_counter() > deadline:
            raise TimeLimitError(f"beam search (width {beam_width}) stopped at frame {t} of {T}: past its time limit")
        frame = lp[t]
        chars = [c for c in np.argsort(frame)[::-1][:beam_width] if c != blank and frame[c] >= char_prune]
        nxt: dict[tuple[int, ...], list[float]] = {}

        def add(prefix: tuple[int, ...], b: float, nb: float) -> None:
            cur = nxt.get(prefix)
            if cur is None:
                nxt[prefix] = [b, nb]
            else:
                cur[0], cur[1] = np.logaddexp(cur[0], b), np.logaddexp(cur[1], nb)

        for prefix, (pb, pnb) in beams.items():
            total = np.logaddexp(pb, pnb)
            add(prefix, total + frame[blank], NEG_INF)  # a blank keeps the prefix, now ending in blank
            last = prefix[-1] if prefix else None
            if last is not None:
                add(prefix, NEG_INF, pnb + frame[last])  # the last char repeated without a blank: merged
            for c in chars:
                c = int(c)
                if c == last:
                    add(prefix + (c,), NEG_INF, pb + frame[c])  # "a-a" -> "aa" needs the blank between
                else:
                    add(prefix + (c,), NEG_INF, total + frame[c])
        ranked = sorted(nxt.items(), key=lambda kv: rank(kv[0], *kv[1]), reverse=True)[:beam_width]
        beams = {p: (v[0], v[1]) for p, v in ranked}

    def final(kv: tuple[tuple[int, ...], tuple[float, float]]) -> float:
        s = rank(kv[0], *kv[1])
        if lm is not None:
            s += lm_weight * lm.score(lm_state(kv[0])[1], lm.EOS)  # type: ignore[union-attr]
        return s

    prefix, (pb, pnb) = max(beams.items(), key=final)
    return list(prefix), float(math.exp(np.logaddexp(pb, pnb) / T))


def decode_batch(log_probs: Tensor, lengths: Tensor | Sequence[int] | None = None,
                 beam_width: int = 1, **beam_kwargs) -> list[tuple[list[int], float]]:
    """(T, N, C) -> one ``(indices, confidence)`` per line: greedy if ``beam_width == 1``, else beam search
    (``beam_kwargs`` go to ``beam_search``: lm, codec, lm_weight, insertion_bonus, deadline, impl, ...)."""
    if beam_width <= 1:
        return greedy_decode(log_probs, lengths)
    if log_probs.dim() != 3:
        raise ShapeError(f"log_probs has shape {tuple(log_probs.shape)}; expected (T, N, C)")
    T, N, _ = log_probs.shape
    lens = _lengths(lengths, T, N)
    return [beam_search(log_probs[: lens[n], n], beam_width=beam_width, **beam_kwargs) for n in range(N)]

