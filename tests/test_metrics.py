import pytest
import torch

from htr.text.metrics import ErrorRate, cer, wer


def test_cer_is_corpus_level():
    refs, hyps = ["abc", "de"], ["abd", ""]
    assert cer(refs, hyps) == pytest.approx(3 / 5)  # not the mean of 1/3 and 1


def test_wer_on_whitespace_words():
    assert wer(["the cat sat", "a  dog"], ["the bat sat", "a dog"]) == pytest.approx(1 / 5)
    assert wer(["a b"], ["a b c"]) == pytest.approx(1 / 2)


def test_case_insensitive_flag():
    assert cer(["ABC"], ["abc"]) == pytest.approx(1.0)
    assert cer(["ABC"], ["abc"], ignore_case=True) == 0.0
    assert wer(["The Cat"], ["the cat"], ignore_case=True) == 0.0


def test_empty_references():
    assert cer([""], [""]) == 0.0
    assert cer([""], ["ab"]) == 2.0


def test_length_mismatch_and_strings_rejected():
    with pytest.raises(ValueError):
        cer(["a"], ["a", "b"])
    with pytest.raises(TypeError):
        cer("abc", "abd")


def test_error_rate_accumulates_and_resets():
    m = ErrorRate("char")
    m.update(["abc"], ["abd"])
    m.update(["de"], [""])
    assert torch.isclose(m.compute(), torch.tensor(3 / 5))
    m.reset()
    m.update(["ab"], ["ab"])
    assert m.compute().item() == 0.0
    w = ErrorRate("word", ignore_case=True)
    w.update(["The cat sat", "a dog"], ["the bat sat", "a dog"])
    assert w.compute().item() == pytest.approx(1 / 5)
    with pytest.raises(ValueError):
        ErrorRate("line")  # type: ignore[arg-type]
