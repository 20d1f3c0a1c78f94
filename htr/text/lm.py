"""A character n-gram language model with interpolated Kneser-Ney smoothing, for CTC beam search.

P(c | h) for a context h of the last n-1 characters (lines start with n-1 BOS padding characters):

    P(c | h) = max(N(h c) - D, 0) / N(h) + D * T(h) / N(h) * P(c | h')        h' = h without its first char

N is the raw count at the highest order and the continuation count (number of distinct characters
seen before ``h c``) at lower orders; T(h) the number of distinct characters seen after h; D a fixed
discount. When h was never seen the model backs off to h' entirely. The unigram level is interpolated
with a uniform distribution over the vocabulary plus one unseen symbol, so no character gets
probability zero. It is "Kneser-Ney-ish": one discount for all orders, no modified-KN count classes.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np

BOS = "\x02"  # pads the start of every line, never a real character
EOS = "\x03"  # the end of a line, scored by ``score(prefix, EOS)``


class LMTables(NamedTuple):
    """A CharNgramLM as flat arrays, for the compiled beam search (htr.text.beam_compiled).

    States are the contexts the model knows (those with counts), state 0 the empty context. Since
    P(c | h) only depends on the longest known suffix of h (unknown contexts back off entirely), a line
    so far is summed up by one state. Per state: ``total`` N(h) (0 for an empty context without counts),
    ``types`` T(h), ``backoff`` the state of h[1:] (its longest known suffix; -1 for state 0), and its
    entries ``ptr[s]:ptr[s+1]``: next-character ids (sorted), their counts and ``next``, the state after
    that character (-1 after EOS). Character ids index ``chars``; a character the model never saw is -1.
    """

    chars: str
    order: int
    discount: float
    uniform: float  # the unigram level's uniform floor, 1 / (len(vocab) + 2)
    start: int  # the state of an empty line (its BOS padding)
    eos: int  # the id of EOS
    backoff: np.ndarray  # int32 (S,)
    total: np.ndarray  # float64 (S,)
    types: np.ndarray  # float64 (S,)
    ptr: np.ndarray  # int64 (S + 1,)
    entry_char: np.ndarray  # int32 (E,)
    entry_count: np.ndarray  # float64 (E,)
    entry_next: np.ndarray  # int32 (E,)

    def char_ids(self, charset: str) -> np.ndarray:
        """int32 (len(charset) + 1,): codec index -> character id (-1 for the blank and unseen characters)."""
        ids = {ch: i for i, ch in enumerate(self.chars)}
        return np.array([-1] + [ids.get(ch, -1) for ch in charset], dtype=np.int32)


class CharNgramLM:
    """Character n-gram LM trained from plain strings.

    >>> lm = CharNgramLM.train(["the cat", "the hat"], order=3)
    >>> lm.score("th", "e") > lm.score("th", "x")
    True
    """

    BOS = BOS
    EOS = EOS

    def __init__(self, order: int = 5, discount: float = 0.75) -> None:
        if order < 1:
            raise ValueError(f"order={order}; expected >= 1")
        if not 0.0 < discount < 1.0:
            raise ValueError(f"discount={discount}; expected 0 < D < 1")
        self.order = order
        self.discount = discount
        # counts[k][context][char] for contexts of length k (0 .. order-1)
        self.counts: list[dict[str, dict[str, int]]] = [{} for _ in range(order)]
        self.vocab: set[str] = set()
        self._cache: dict[tuple[str, str], float] = {}
        self._totals: list[dict[str, tuple[int, int]]] = []
        self._tables: LMTables | None = None
        self._char_ids: dict[str, np.ndarray] = {}

    @classmethod
    def train(cls, texts: Iterable[str], order: int = 5, discount: float = 0.75) -> CharNgramLM:
        """Count n-grams of every line of ``texts`` (each line scored from BOS to EOS)."""
        lm = cls(order, discount)
        raw: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))  # full-order contexts
        seen: list[set[tuple[str, str]]] = [set() for _ in range(order)]  # distinct (context, char) per order
        for text in texts:
            lm.vocab.update(text)
            padded = BOS * (order - 1) + text + EOS
            for i in range(order - 1, len(padded)):
                ch = padded[i]
                raw[padded[i - order + 1:i]][ch] += 1
                for k in range(order):
                    seen[k].add((padded[i - k:i], ch))
        lm.counts[order - 1] = {h: dict(c) for h, c in raw.items()}
        # Lower orders use continuation counts: in how many distinct contexts one char longer h c occurs.
        for k in range(order - 2, -1, -1):
            cont: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
            for h, ch in seen[k + 1]:
                cont[h[1:]][ch] += 1
            lm.counts[k] = {h: dict(c) for h, c in cont.items()}
        lm._index()
        return lm

    def _index(self) -> None:
        """Per-context totals N(h) and T(h), and a fresh score cache."""
        self._totals = [{h: (sum(c.values()), len(c)) for h, c in level.items()} for level in self.counts]
        self._cache = {}
        self._tables = None
        self._char_ids = {}

    def _prob(self, context: str, ch: str) -> float:
        k = len(context)
        if k == 0:
            lower = 1.0 / (len(self.vocab) + 2)  # uniform over vocab + EOS + one unseen symbol
        else:
            lower = self._prob(context[1:], ch)
        total = self._totals[k].get(context)
        if total is None:
            return lower
        n, types = total
        c = self.counts[k][context].get(ch, 0)
        return max(c - self.discount, 0.0) / n + self.discount * types / n * lower

    def score(self, prev_chars: str, next_char: str) -> float:
        """log P(next_char | the last order-1 characters of prev_chars); natural log.

        ``prev_chars`` is the line so far (shorter lines are BOS-padded); ``next_char`` may be ``EOS``.
        """
        context = (BOS * (self.order - 1) + prev_chars)[len(prev_chars):] if self.order > 1 else ""
        key = (context, next_char)
        value = self._cache.get(key)
        if value is None:
            value = math.log(self._prob(context, next_char))
            self._cache[key] = value
        return value

    def score_text(self, text: str, eos: bool = True) -> float:
        """log P(text) as a sum of per-character scores (plus the end of line if ``eos``)."""
        total = sum(self.score(text[:i], ch) for i, ch in enumerate(text))
        return total + (self.score(text, EOS) if eos else 0.0)

    def tables(self) -> LMTables:
        """The model as flat arrays for compiled decoding (htr.text.beam_compiled); built on first use, in one
        pass over its contexts, and kept until the counts are re-indexed."""
        if self._tables is None:
            self._tables = self._build_tables()
        return self._tables

    def char_ids(self, charset: str) -> np.ndarray:
        """``tables().char_ids(charset)``, kept per charset: codec index -> the tables' character id."""
        ids = self._char_ids.get(charset)
        if ids is None:
            ids = self._char_ids[charset] = self.tables().char_ids(charset)
        return ids

    def _build_tables(self) -> LMTables:
        n = self.order - 1
        ids: dict[str, int] = {"": 0}
        for k in range(1, self.order):
            for h in self._totals[k]:
                ids.setdefault(h, len(ids))

        def known_suffix(text: str) -> int:
            """The state of the longest suffix of ``text`` the model knows."""
            for i in range(len(text) + 1):
                s = ids.get(text[i:])
                if s is not None:
                    return s
            return 0

        chars = "".join(sorted(self.vocab | {ch for level in self.counts for c in level.values() for ch in c} - {EOS}))
        chars += EOS
        char_id = {ch: i for i, ch in enumerate(chars)}
        S = len(ids)
        backoff = np.full(S, -1, dtype=np.int32)
        total = np.zeros(S)
        types = np.zeros(S)
        ptr = np.zeros(S + 1, dtype=np.int64)
        entry_char: list[int] = []
        entry_count: list[int] = []
        entry_next: list[int] = []
        for h, s in ids.items():  # insertion order = state order
            k = len(h)
            if k:
                backoff[s] = known_suffix(h[1:])
            if h in self._totals[k]:
                total[s], types[s] = self._totals[k][h]
            for ch, c in sorted(self.counts[k].get(h, {}).items(), key=lambda kv: char_id[kv[0]]):
                entry_char.append(char_id[ch])
                entry_count.append(c)
                entry_next.append(-1 if ch == EOS else known_suffix((h + ch)[max(len(h) + 1 - n, 0):]))
            ptr[s + 1] = len(entry_char)
        return LMTables(chars, self.order, self.discount, 1.0 / (len(self.vocab) + 2), known_suffix(BOS * n),
                        char_id[EOS], backoff, total, types, ptr, np.array(entry_char, dtype=np.int32),
                        np.array(entry_count, dtype=np.float64), np.array(entry_next, dtype=np.int32))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: order, discount, vocabulary and counts."""
        return {"type": "char_ngram_kn", "order": self.order, "discount": self.discount,
                "vocab": "".join(sorted(self.vocab)), "counts": self.counts}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharNgramLM:
        if d.get("type") != "char_ngram_kn" or len(d.get("counts", ())) != d.get("order"):
            raise ValueError(f"not a CharNgramLM dict (type={d.get('type')!r}, order={d.get('order')!r})")
        lm = cls(int(d["order"]), float(d["discount"]))
        lm.vocab = set(d["vocab"])
        lm.counts = [{h: {ch: int(n) for ch, n in c.items()} for h, c in level.items()} for level in d["counts"]]
        lm._index()
        return lm

    def __repr__(self) -> str:
        return f"CharNgramLM(order={self.order}, discount={self.discount}, vocab={len(self.vocab)})"
