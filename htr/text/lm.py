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
from typing import Any

BOS = "\x02"  # pads the start of every line, never a real character
EOS = "\x03"  # the end of a line, scored by ``score(prefix, EOS)``


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
