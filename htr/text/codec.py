"""Characters <-> class indices for CTC, the label normaliser and the rule for unknown characters.

Index 0 is the CTC blank; character i of the charset is index i + 1, so ``len(codec)`` (the number of
output classes of the network) is ``len(charset) + 1``.

Every label goes through :func:`normalize_text` before it meets the codec, on every path (readers,
synthetic lines, metrics of the CLI): Unicode NFC, no-break/odd spaces -> space, runs of spaces -> one,
strip. Characters still missing from the charset are handled by the ``unknown`` rule of
:func:`clean_labels`:

- ``"drop"`` (default): remove the character from the training target and count it (the data
  modules keep it in the reference text, so CER/WER still count it as an error);
- ``"skip_line"``: leave the whole line out and count it;
- ``"error"``: raise :class:`~htr.errors.CodecError` naming each character, its count and the file.
"""
from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from htr.errors import CodecError

BLANK = 0
UnknownRule = Literal["drop", "skip_line", "error"]
UNKNOWN_RULES = ("drop", "skip_line", "error")

# The default charset: IAM's ~79 symbols (printable ASCII), RIMES's French and the poilus set
# (../shared/realdata/poilus/charset.txt: ’ ° ſ œ ^ < > = _ * ...). Fixed order, written out, so that a
# checkpoint's output layer means the same thing on every machine.
_ASCII = " " + string.digits + string.ascii_uppercase + string.ascii_lowercase + string.punctuation
_FRENCH_LOWER = "àâäæçéèêëîïôöœùûüÿ"
_FRENCH_UPPER = "ÀÂÄÆÇÉÈÊËÎÏÔÖŒÙÛÜŸ"
_OTHER_LATIN = "áíóúñßãõåø"  # names and loanwords in RIMES letters and faker's output
_SYMBOLS = "’‘“”«»–—…€£°§µ²³ſ"
DEFAULT_CHARSET: str = _ASCII + _FRENCH_LOWER + _FRENCH_UPPER + _OTHER_LATIN + _SYMBOLS

# Spaces that typists and OCR exports use instead of U+0020 (the poilus labels hold U+00A0).
_SPACES = re.compile(r"[\u00a0\u2000-\u200a\u202f\u205f\u3000\t]")
_RUNS_OF_SPACES = re.compile(r" {2,}")


def normalize_text(text: str) -> str:
    """NFC, exotic spaces (U+00A0, U+202F, tabs, ...) -> space, runs of spaces -> one, strip."""
    text = unicodedata.normalize("NFC", text)
    text = _SPACES.sub(" ", text)
    return _RUNS_OF_SPACES.sub(" ", text).strip()


class Codec:
    """Maps characters to CTC class indices (blank = 0) and back.

    >>> c = Codec("ab")
    >>> c.encode("ba"), c.decode([2, 1]), len(c)
    ([2, 1], 'ba', 3)
    """

    def __init__(self, charset: str) -> None:
        if not isinstance(charset, str) or not charset:
            raise CodecError(f"charset must be a non-empty string, got {charset!r}")
        if unicodedata.normalize("NFC", charset) != charset:  # e.g. 'e' + combining acute: labels hold 'é'
            raise CodecError(f"charset {charset[:40]!r}... is not in Unicode NFC; expected precomposed "
                             f"characters (labels are NFC-normalised and would never match)")
        seen: dict[str, int] = {}
        for i, ch in enumerate(charset):
            if ch in seen:
                raise CodecError(f"charset has the character {ch!r} (U+{ord(ch):04X}) twice, "
                                 f"at positions {seen[ch]} and {i}; expected unique characters")
            seen[ch] = i
            # Labels are NFC-normalised, so a decomposed character in the charset could never match.
            if unicodedata.normalize("NFC", ch) != ch or unicodedata.category(ch) in ("Cc", "Cf"):
                raise CodecError(f"charset character {ch!r} (U+{ord(ch):04X}) at position {i} is a control "
                                 f"or non-NFC character; expected printable NFC characters")
        self.charset = charset
        self._index = {ch: i + 1 for i, ch in enumerate(charset)}  # + 1: index 0 is the blank

    def __len__(self) -> int:
        """Number of output classes, blank included."""
        return len(self.charset) + 1

    def __contains__(self, ch: object) -> bool:
        return ch in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Codec) and other.charset == self.charset

    def __hash__(self) -> int:
        return hash(self.charset)

    def __repr__(self) -> str:
        return f"Codec({len(self.charset)} characters + blank)"

    def missing(self, text: str) -> list[str]:
        """Characters of ``text`` that the codec cannot encode, in order of appearance, repeated."""
        return [ch for ch in text if ch not in self._index]

    def encode(self, text: str) -> list[int]:
        """Characters -> indices in [1, len(self)). Raises CodecError on a character outside the charset."""
        try:
            return [self._index[ch] for ch in text]
        except KeyError as e:
            ch = e.args[0]
            raise CodecError(f"character {ch!r} (U+{ord(ch):04X}) of {text!r} is not in the charset; "
                             f"clean labels with htr.text.codec.clean_labels first") from None

    def decode(self, indices: Iterable[int], skip_blank: bool = False) -> str:
        """Indices -> characters, one for one (no CTC collapse: use htr.text.decoding first).

        The blank (0) has no character: it raises CodecError unless ``skip_blank``.
        """
        out = []
        n = len(self)
        for i in indices:
            i = int(i)
            if i == BLANK:
                if skip_blank:
                    continue
                raise CodecError("index 0 is the CTC blank and has no character; collapse CTC output "
                                 "with htr.text.decoding.greedy_decode or pass skip_blank=True")
            if not 0 < i < n:
                raise CodecError(f"index {i} is out of range; expected 1..{n - 1} for {n - 1} characters")
            out.append(self.charset[i - 1])
        return "".join(out)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description, stored in checkpoints."""
        return {"charset": self.charset, "blank": BLANK}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Codec:
        if not isinstance(d, dict) or "charset" not in d:
            raise CodecError(f"expected a dict with a 'charset' key, got {d!r:.200}")
        if d.get("blank", BLANK) != BLANK:
            raise CodecError(f"codec dict has blank={d['blank']!r}; this package always uses blank=0")
        return cls(d["charset"])


def clean_labels(texts: Sequence[str], codec: Codec, unknown: UnknownRule = "drop",
                 source: str = "<labels>") -> tuple[list[str | None], Counter[str]]:
    """Normalise labels and apply the unknown-character rule to all of them at once.

    Returns the cleaned labels (``None`` for a line left out by ``"skip_line"``) and the count of every
    unknown character met. Doing it for a whole split at setup time means a wrong charset shows up as
    one message naming the file, never as a crash deep in training.
    """
    if unknown not in UNKNOWN_RULES:
        raise CodecError(f"unknown={unknown!r}; expected one of {UNKNOWN_RULES}")
    counts: Counter[str] = Counter()
    out: list[str | None] = []
    for text in texts:
        text = normalize_text(text)
        missing = codec.missing(text)
        if not missing:
            out.append(text)
            continue
        counts.update(missing)
        if unknown == "skip_line":
            out.append(None)
        else:
            out.append(normalize_text("".join(ch for ch in text if ch in codec)))
    if counts and unknown == "error":
        raise CodecError(f"{source}: characters not in the charset: {format_counts(counts)}; expected "
                         f"labels within the codec's charset (or unknown='drop' / 'skip_line')")
    return out, counts


def format_counts(counts: Counter[str]) -> str:
    """``'ж' (U+0436) x3, ...`` most frequent first: for log messages."""
    return ", ".join(f"{ch!r} (U+{ord(ch):04X}) x{n}" for ch, n in counts.most_common())
