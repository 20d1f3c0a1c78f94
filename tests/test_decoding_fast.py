"""The compiled beam search (htr.text.beam_compiled) against the Python reference: same texts, same confidences."""
import math
import random
import string
import types

import numpy as np
import pytest
import torch

from htr.errors import HTRError, ShapeError, TimeLimitError
from htr.text import beam_compiled
from htr.text.codec import Codec
from htr.text.decoding import beam_search, decode_batch
from htr.text.lm import EOS, CharNgramLM

CHARSET = string.ascii_letters + string.digits + " .,;:'-!?()\"&/"  # 79 characters: C = 80 classes
CODEC = Codec(CHARSET)
WORDS = ["the", "cat", "sat", "on", "mat", "Paris", "le", "soldat", "écrit", "lettre", "1916", "mère", "a",
         "chère", "je", "suis", "bien", "arrivé", "(and)", "it's", "fine!", "moi"]  # some characters not in CHARSET


@pytest.fixture(scope="module")
def lm() -> CharNgramLM:
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8))) for _ in range(300)]
    return CharNgramLM.train(texts, order=5)


def random_log_probs(seed: int, T: int, C: int = len(CODEC), kind: str = "peaked") -> torch.Tensor:
    """Network-like (peaked: most frames blank or one confident class) or flat (T, C) log-probabilities."""
    g = torch.Generator().manual_seed(seed)
    if kind == "flat":
        logits = torch.randn(T, C, generator=g, dtype=torch.float64) * 0.5
    else:
        logits = torch.randn(T, C, generator=g, dtype=torch.float64) * 2.0
        logits[:, 0] += 4.0 * torch.rand(T, 1, generator=g, dtype=torch.float64).squeeze(1)
        hot = torch.randint(1, C, (T,), generator=g)
        logits[torch.arange(T), hot] += 6.0 * torch.rand(T, generator=g, dtype=torch.float64)
    return logits.log_softmax(-1)


def assert_same(lp: torch.Tensor, **kwargs) -> tuple[list[int], float]:
    want_idx, want_conf = beam_search(lp, impl="python", **kwargs)
    got_idx, got_conf = beam_search(lp, impl="compiled", **kwargs)
    assert CODEC.decode(got_idx) == CODEC.decode(want_idx)
    assert got_idx == want_idx
    assert got_conf == pytest.approx(want_conf, rel=1e-6, abs=1e-9)
    return got_idx, got_conf


def test_lm_tables_score_like_the_model(lm):
    """Walking the tables' states along a line gives CharNgramLM.score for every next character."""
    tb = lm.tables()
    args = (tb.backoff, tb.total, tb.types, tb.ptr, tb.entry_char, tb.entry_count)
    chain = np.empty(tb.order + 1, dtype=np.int64)
    rng = random.Random(1)
    candidates = sorted(lm.vocab) + ["Z", "#"]  # two characters the model never saw
    for _ in range(20):
        text, state = "", tb.start
        for _ in range(rng.randint(0, 15)):
            for ch in candidates[::7] + [EOS]:
                cid = tb.chars.find(ch)
                got = beam_compiled.lm_logprob(state, cid, *args, tb.uniform, tb.discount, chain)
                assert got == pytest.approx(lm.score(text, ch), rel=1e-12, abs=1e-12), (text, ch)
            ch = rng.choice(candidates)
            state = beam_compiled._next_state(state, tb.chars.find(ch), tb.backoff, tb.ptr, tb.entry_char,
                                              tb.entry_next)
            text += ch
    assert CharNgramLM.from_dict(lm.to_dict()).tables().entry_count.sum() == tb.entry_count.sum()


@pytest.mark.parametrize("kind", ["peaked", "flat"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compiled_equals_python_without_lm(seed, kind):
    T = (200, 57, 123)[seed]
    for width in (1, 4, 10):
        assert_same(random_log_probs(seed, T, kind=kind), beam_width=width)
    assert_same(random_log_probs(seed + 10, T, kind=kind), beam_width=10, insertion_bonus=0.5)


@pytest.mark.parametrize("kind", ["peaked", "flat"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compiled_equals_python_with_lm(seed, kind, lm):
    T = (200, 88, 31)[seed]
    lp = random_log_probs(seed + 100, T, kind=kind)
    assert_same(lp, beam_width=10, lm=lm, codec=CODEC, lm_weight=0.8, insertion_bonus=2.0)
    assert_same(lp, beam_width=5, lm=lm, codec=CODEC, lm_weight=0.5, insertion_bonus=0.0, char_prune=-5.0)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_compiled_equals_python_with_small_orders_and_an_empty_lm(order):
    lp = random_log_probs(7, 60)
    assert_same(lp, beam_width=6, lm=CharNgramLM.train(["the cat sat", "on the mat"], order=order), codec=CODEC,
                lm_weight=1.0, insertion_bonus=1.0)
    assert_same(lp, beam_width=6, lm=CharNgramLM.train([], order=order), codec=CODEC, lm_weight=1.0)


def test_edge_cases(lm):
    C = len(CODEC)
    for kwargs in ({}, {"lm": lm, "codec": CODEC, "lm_weight": 0.8, "insertion_bonus": 2.0}):
        assert beam_search(torch.zeros(0, C), **kwargs) == ([], 1.0)  # no frames
        assert_same(random_log_probs(3, 1), beam_width=10, **kwargs)  # one frame
        blank = torch.full((40, C), -20.0, dtype=torch.float64)
        blank[:, 0] = 0.0
        idx, conf = assert_same(blank.log_softmax(-1), beam_width=10, **kwargs)  # all blank
        assert idx == [] and conf == pytest.approx(1.0, abs=1e-6)
        assert_same(torch.zeros(12, C).log_softmax(-1), beam_width=10, **kwargs)  # uniform: every value tied
        assert_same(random_log_probs(4, 30).float(), beam_width=3, **kwargs)  # float32 input
        assert_same(random_log_probs(5, 30).bfloat16(), beam_width=3, **kwargs)  # widened through .double()
    two = torch.tensor([[0.6, 0.4]] * 3).log()  # tied frames, two classes, beam wider than the classes
    assert beam_search(two, beam_width=4) == beam_search(two, beam_width=4, impl="python")
    with pytest.raises(ValueError, match="impl='fast'"):
        beam_search(two, impl="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="blank=2 with an lm"):
        beam_search(two, lm=lm, codec=CODEC, blank=2)  # the codec's blank is 0: index 0 would be read as a char
    with pytest.raises(ShapeError, match="3 classes"):
        beam_search(torch.zeros(2, 3).log_softmax(-1), lm=lm, codec=Codec("a"))


def test_decode_batch_uses_the_compiled_search(lm, monkeypatch):
    lps = [random_log_probs(s, 50) for s in range(3)]
    batch = torch.stack(lps, dim=1)
    lengths = [50, 20, 1]
    kwargs = {"beam_width": 8, "lm": lm, "codec": CODEC, "lm_weight": 0.8, "insertion_bonus": 2.0}
    want = decode_batch(batch, lengths, impl="python", **kwargs)
    calls = []
    original = beam_compiled.beam_search_compiled
    monkeypatch.setattr(beam_compiled, "beam_search_compiled", lambda *a, **k: calls.append(1) or original(*a, **k))
    got = decode_batch(batch, lengths, **kwargs)
    assert len(calls) == 3
    assert [g[0] for g in got] == [w[0] for w in want]
    assert [g[1] for g in got] == pytest.approx([w[1] for w in want], rel=1e-6)


def test_compiled_search_stops_at_its_deadline(lm, monkeypatch):
    lp = random_log_probs(0, 200)
    with pytest.raises(TimeLimitError, match="frame 0 of 200") as info:
        beam_search(lp, beam_width=4, deadline=-math.inf)
    assert isinstance(info.value, HTRError)
    with pytest.raises(TimeLimitError):
        decode_batch(lp.unsqueeze(1), beam_width=4, lm=lm, codec=CODEC, deadline=-math.inf)
    # a clock that passes the deadline after the first look: the search stops at its next look, at most
    # DEADLINE_FRAMES frames later (it also looks when it grows its node table)
    clock = iter([0.0, 2.0, 3.0, 4.0])
    monkeypatch.setattr(beam_compiled, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    with pytest.raises(TimeLimitError, match=r"frame \d+ of 200") as info:
        beam_search(lp, beam_width=4, deadline=1.0)
    assert 0 < int(str(info.value).split("frame ")[1].split()[0]) <= beam_compiled.DEADLINE_FRAMES
    monkeypatch.undo()
    assert beam_search(lp, beam_width=4, deadline=math.inf) == beam_search(lp, beam_width=4)  # in time: the same


def test_bench_decode_on_the_examples_and_a_folder(tmp_path, capsys):
    """`htr bench decode` at one repeat: the report's structure, no disagreement, the CER with --data."""
    import json
    import shutil

    from threadpoolctl import threadpool_limits

    from htr.bench import decode
    from htr.cli import main

    threads = torch.get_num_threads()
    try:
        with threadpool_limits(1):
            report = decode.run(repeats=1, beam_width=4)
            assert report["n_lines"] == 3 and report["model"] == "relu_add"
            assert set(report["ms_per_line"]) == {"greedy", "beam", "beam+lm"}
            assert set(report["ms_per_line"]["beam+lm"]) == {"python", "compiled"}
            assert all(d["text"] == 0 and d["max_confidence_diff"] < 1e-6 for d in report["disagreements"].values())
            assert "beam+lm" in decode.to_table(report) and "cer" not in report
            lines = [p.name for p in sorted(decode.EXAMPLES.glob("poilus_[0-9].png"))]
            for name in lines:
                shutil.copy(decode.EXAMPLES / name, tmp_path / name)
            (tmp_path / "val.tsv").write_text("".join(f"{n}\tune ligne\n" for n in lines), encoding="utf-8")
            main(["bench", "decode", "--data", str(tmp_path), "--limit", "2", "--repeats", "1", "--json"])
    finally:
        torch.set_num_threads(threads)
    out = json.loads(capsys.readouterr().out)
    assert out["n_lines"] == 2 and out["cer"]["python"] == out["cer"]["compiled"]
