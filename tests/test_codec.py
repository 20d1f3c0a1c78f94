import json
import string
from pathlib import Path

import pytest

from htr.errors import CodecError
from htr.text.codec import DEFAULT_CHARSET, Codec, clean_labels, normalize_text

# the characters of ../shared/realdata/poilus/charset.txt (poilus train+val), committed: no shared data needed
POILUS_CHARSET = Path(__file__).resolve().parent / "fixtures" / "poilus_charset.json"


def test_round_trip_and_indices():
    c = Codec("abc ")
    assert len(c) == 5  # 4 characters + blank
    assert c.encode("cab a") == [3, 1, 2, 4, 1]
    assert c.decode(c.encode("cab a")) == "cab a"
    assert c.charset == "abc "


def test_default_charset_round_trip_and_coverage():
    c = Codec(DEFAULT_CHARSET)
    assert c.decode(c.encode(DEFAULT_CHARSET)) == DEFAULT_CHARSET
    iam = ' !"#&\'()*+,-./:;?' + string.digits + string.ascii_letters
    french = "àâçéèêëîïôùûüÿœæÀÂÇÉÈÊËÎÏÔÙÛÜŸŒÆ€°’«»"
    assert not c.missing(iam + french + "ſ^<>=_*%")
    assert DEFAULT_CHARSET == Codec(DEFAULT_CHARSET).charset  # deterministic, validated


def test_default_charset_covers_poilus_after_normalisation():
    chars = json.loads(POILUS_CHARSET.read_text(encoding="utf-8"))["characters"]
    assert len(chars) == 100 and "\u00a0" in chars  # the NBSP normalises to a space
    assert not Codec(DEFAULT_CHARSET).missing(normalize_text("x".join(chars)))


def test_json_round_trip():
    c = Codec("xyzé")
    d = json.loads(json.dumps(c.to_dict()))
    assert Codec.from_dict(d) == c and d["blank"] == 0


@pytest.mark.parametrize("bad", ["", "abca", "e\u0301", "a\x00"])
def test_invalid_charsets(bad):
    with pytest.raises(CodecError):
        Codec(bad)


def test_duplicate_message_names_char_and_positions():
    with pytest.raises(CodecError, match=r"'a'.*positions 0 and 3"):
        Codec("abca")


def test_blank_and_range_errors():
    c = Codec("ab")
    with pytest.raises(CodecError, match="blank"):
        c.decode([1, 0, 2])
    assert c.decode([1, 0, 2], skip_blank=True) == "ab"
    with pytest.raises(CodecError, match="out of range"):
        c.decode([3])
    with pytest.raises(CodecError, match="not in the charset"):
        c.encode("abc")
    with pytest.raises(CodecError, match="blank=1"):
        Codec.from_dict({"charset": "ab", "blank": 1})


def test_normalize_text():
    assert normalize_text("  a\u00a0b  c\u202fd\t e ") == "a b c d e"
    assert normalize_text("e\u0301") == "é"  # NFC


def test_unknown_drop_counts():
    c = Codec("ab ")
    out, counts = clean_labels(["ab", "axb", "xx y"], c, "drop")
    assert out == ["ab", "ab", ""]
    assert counts == {"x": 3, "y": 1}


def test_unknown_skip_line():
    out, counts = clean_labels(["ab", "axb"], Codec("ab"), "skip_line")
    assert out == ["ab", None] and counts == {"x": 1}


def test_unknown_error_names_char_count_and_file():
    with pytest.raises(CodecError, match=r"train\.tsv.*'x' \(U\+0078\) x2"):
        clean_labels(["axx", "b"], Codec("ab"), "error", source="train.tsv")
    with pytest.raises(CodecError, match="unknown="):
        clean_labels(["a"], Codec("ab"), "ignore")  # type: ignore[arg-type]
