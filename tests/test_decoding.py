import itertools
import json
import math

import pytest
import torch

from htr.errors import ShapeError
from htr.text.codec import Codec
from htr.text.decoding import beam_search, decode_batch, greedy_decode
from htr.text.lm import CharNgramLM


def logp(rows):
    """Per-frame probabilities (rows sum to 1) -> (T, C) log-probabilities."""
    p = torch.tensor(rows, dtype=torch.float64)
    return (p / p.sum(-1, keepdim=True)).log()


def test_greedy_collapses_repeats_and_blanks():
    # classes: 0 blank, 1 'a', 2 'b'
    aa = logp([[0.1, 0.8, 0.1], [0.1, 0.8, 0.1]])  # a a -> "a"
    a_a = logp([[0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1]])  # a - a -> "aa"
    assert greedy_decode(aa)[0][0] == [1]
    assert greedy_decode(a_a)[0][0] == [1, 1]


def test_greedy_confidence_over_emitting_frames():
    lp = logp([[0.1, 0.6, 0.3], [0.9, 0.05, 0.05], [0.2, 0.2, 0.6]])
    (idx, conf), = greedy_decode(lp)
    assert idx == [1, 2]
    assert conf == pytest.approx(math.exp((math.log(0.6) + math.log(0.6)) / 2), rel=1e-5)
    (idx, conf), = greedy_decode(logp([[0.9, 0.05, 0.05]]))
    assert idx == [] and conf == pytest.approx(0.9, rel=1e-5)


def test_greedy_batch_with_lengths_ignores_padding():
    one = logp([[0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1]])
    batch = torch.stack([one, one], dim=1)  # (T, N, C)
    out = greedy_decode(batch, lengths=torch.tensor([3, 2]))
    assert [o[0] for o in out] == [[1, 2, 1], [1, 2]]
    with pytest.raises(ShapeError):
        greedy_decode(batch, lengths=[4, 1])
    with pytest.raises(ShapeError):
        greedy_decode(torch.zeros(2, 2, 2, 2))


def test_beam_beats_greedy():
    # Greedy picks blank-blank (p = 0.36); "a" sums aa + a- + -a = 0.16 + 0.24 + 0.24 = 0.64.
    lp = logp([[0.6, 0.4], [0.6, 0.4]])
    assert greedy_decode(lp)[0][0] == []
    idx, conf = beam_search(lp, beam_width=4)
    assert idx == [1]
    assert conf == pytest.approx(math.sqrt(0.64), rel=1e-6)  # P(y|x) normalised per frame


def test_beam_keeps_repeat_semantics():
    a_a = logp([[0.05, 0.9, 0.05], [0.9, 0.05, 0.05], [0.05, 0.9, 0.05]])
    assert beam_search(a_a, beam_width=5)[0] == [1, 1]
    aa = logp([[0.05, 0.9, 0.05], [0.05, 0.9, 0.05]])
    assert beam_search(aa, beam_width=5)[0] == [1]


def _exhaustive_best(lp):
    """Best labelling by summing every alignment's probability (small T and C only)."""
    T, C = lp.shape
    totals = {}
    for path in itertools.product(range(C), repeat=T):
        lab = tuple(c for i, c in enumerate(path) if c != 0 and (i == 0 or c != path[i - 1]))
        totals[lab] = totals.get(lab, 0.0) + math.exp(sum(lp[t, c].item() for t, c in enumerate(path)))
    best = max(totals, key=totals.get)
    return list(best), totals[best]


def test_beam_equals_exhaustive_search():
    torch.manual_seed(0)
    for _ in range(6):
        lp = (torch.randn(5, 3, dtype=torch.float64) * 1.5).log_softmax(-1)
        best, p = _exhaustive_best(lp)
        idx, conf = beam_search(lp, beam_width=50, char_prune=-1e9)
        assert idx == best
        assert conf == pytest.approx(p ** (1 / 5), rel=1e-6)


def test_lm_moves_beam_towards_preferred_string():
    codec = Codec("abc")
    # frame 1: clearly 'a'; frame 2: 'c' slightly more likely than 'b' acoustically
    lp = logp([[0.05, 0.9, 0.025, 0.025], [0.05, 0.001, 0.43, 0.519]])
    assert codec.decode(beam_search(lp, beam_width=5)[0]) == "ac"
    lm = CharNgramLM.train(["ab"] * 20 + ["ba"] * 5, order=3)
    assert codec.decode(beam_search(lp, beam_width=5, lm=lm, lm_weight=1.0, codec=codec)[0]) == "ab"
    with pytest.raises(ValueError):
        beam_search(lp, lm=lm)  # needs the codec


def test_decode_batch_dispatch():
    lp = logp([[0.6, 0.4], [0.6, 0.4]])
    batch = torch.stack([lp, lp], dim=1)
    assert [o[0] for o in decode_batch(batch)] == [[], []]
    assert [o[0] for o in decode_batch(batch, beam_width=3)] == [[1], [1]]


def test_lm_is_normalised_and_serialisable():
    lm = CharNgramLM.train(["the cat sat", "the hat", "a mat"], order=4)
    for ctx in ["", "th", "the c", "zzz"]:
        total = sum(math.exp(lm.score(ctx, ch)) for ch in sorted(lm.vocab) + [lm.EOS])
        total += math.exp(lm.score(ctx, "Q"))  # the one unseen-symbol slot
        assert total == pytest.approx(1.0)
    assert lm.score("th", "e") > lm.score("th", "x")
    lm2 = CharNgramLM.from_dict(json.loads(json.dumps(lm.to_dict())))
    assert lm2.score("the c", "a") == pytest.approx(lm.score("the c", "a"))
    assert lm2.score_text("the cat") == pytest.approx(lm.score_text("the cat"))


def test_beam_search_stops_at_its_deadline():
    import time

    from htr.errors import HTRError, TimeLimitError

    torch.manual_seed(0)
    lp = torch.randn(50, 6, dtype=torch.float64).log_softmax(-1)
    want = beam_search(lp, beam_width=4)
    assert beam_search(lp, beam_width=4, deadline=time.perf_counter() + 60) == want  # in time: the same
    with pytest.raises(TimeLimitError, match="frame 0 of 50") as info:
        beam_search(lp, beam_width=4, deadline=time.perf_counter() - 1)
    assert isinstance(info.value, HTRError)
    batch = lp.unsqueeze(1).repeat(1, 2, 1)
    with pytest.raises(TimeLimitError):
        decode_batch(batch, beam_width=4, deadline=time.perf_counter() - 1)
    assert decode_batch(batch, beam_width=1, deadline=time.perf_counter() - 1)  # greedy has no deadline
