"""Integer-only relu_add (htr.fhe.integer) and the clear integer cells of htr.fhe.quantize.

No concrete-python needed. Stated bounds:
- arithmetic: with 16-bit states and 12 fraction bits, the integer layer equals the float layer run on
  the same int8-rounded weights and inputs within 2e-3 (the grid, 1/32767 per step, accumulated);
- int8 end to end (8-bit states, default): single layer, T=30, mean |int - float| < 0.02, max < 0.25;
- fhe cells at 8-bit states, 8-bit weights, 10-bit lookups: max |int - float| < 0.1 on h_T (T=4).
- the fast kernels (htr.nn.kernels_int: "vnni" where the CPU has AVX-512 VNNI, "generic" everywhere) give
  exactly the reference kernel's integers, on random layers and on the shipped relu_add decoder;
- the shipped relu_add model with its integer decoder reads the app's poilus_1.png within 0.1 CER of the
  float model's text (measured: one character of 28).
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from htr.errors import CheckpointError
from htr.fhe.integer import IntegerReluAdd, _row_int8, agreement, swap_decoders
from htr.fhe.quantize import (
    ClearOps,
    QuantSpec,
    calibrate,
    quantize_gru,
    quantize_inputs,
    quantize_relu_add,
    random_inputs,
)
from htr.nn import build_recurrent, kernels_int


def _random_relu_add(seed: int, I: int = 16, H: int = 32, **kw):
    torch.manual_seed(seed)
    ra = build_recurrent("relu_add", I, H, **kw).eval()
    with torch.no_grad():
        for c in ra.cells:  # move the gate bias off -1 so that states change (the trained regime)
            nn.init.uniform_(c.bias, -0.5, 0.5)
    return ra


@pytest.mark.parametrize("seed", [0, 1])
def test_integer_arithmetic_matches_float_on_rounded_weights(seed):
    ra = _random_relu_add(seed)
    x = torch.randn(30, 3, 16)
    s = x.abs().amax(dim=(0, 2), keepdim=True) / 127  # (1, N, 1): each line's own scale
    x = torch.round(x / s) * s  # already on each line's int8 input grid
    ref = copy.deepcopy(ra)
    with torch.no_grad():
        for c in ref.cells:
            for p in (c.weight_ih, c.weight_hh):
                w, sc = _row_int8(p.double().numpy())
                p.copy_(torch.from_numpy(w.astype(np.float64) * sc[:, None]))
    with torch.inference_mode():
        want, _ = ref(x)
        got, _ = IntegerReluAdd.from_float(ra, state_bits=16, frac_bits=12)(x)
    assert float((got - want).abs().max()) < 2e-3


def test_int8_layer_close_to_float():
    ra = _random_relu_add(0)
    x = torch.randn(30, 4, 16)
    err = agreement(ra, x)
    assert err["mean_abs_err"] < 0.02 and err["max_abs_err"] < 0.25, err


def test_bidirectional_lengths_and_states():
    ra = _random_relu_add(2, I=8, H=12, num_layers=2, bidirectional=True)
    iq = IntegerReluAdd.from_float(ra)
    x = torch.randn(20, 3, 8)
    lengths = torch.tensor([20, 11, 1])
    with torch.inference_mode():
        out, state = iq(x, lengths)
        ref_out, ref_state = ra(x, lengths)
    assert out.shape == ref_out.shape == (20, 3, 24) and state.shape == ref_state.shape == (4, 3, 12)
    assert float(out[11:, 1].abs().max()) == 0.0 and float(out[1:, 2].abs().max()) == 0.0
    assert float((out - ref_out).abs().mean()) < 0.03


@pytest.mark.parametrize("pad", ["zeros", "in-range values"])
def test_padding_never_changes_integer_results(pad):
    """Sequence 1 (11 steps) alone, unpadded, and padded to 20 steps with its length given: the same
    outputs on the 11 valid steps, zeros after, the same final states (the backward direction starts at
    step 11, not 20). What the padding holds does not matter (see also
    test_a_line_reads_the_same_in_any_batch, with padding far outside the line's range)."""
    ra = _random_relu_add(2, I=8, H=12, num_layers=2, bidirectional=True)
    iq = IntegerReluAdd.from_float(ra)
    seq = torch.randn(20, 3, 8)[:11, 1:2]
    filler = torch.zeros(9, 1, 8) if pad == "zeros" else 0.9 * seq[:9].flip(0)
    padded = torch.cat([seq, filler])
    assert padded.shape == (20, 1, 8) and padded.abs().max() == seq.abs().max()
    with torch.inference_mode():
        alone, alone_state = iq(seq, torch.tensor([11]))
        got, got_state = iq(padded, torch.tensor([11]))
        no_lengths, _ = iq(seq, None)
    assert torch.equal(got[:11], alone) and float(got[11:].abs().max()) == 0.0
    assert torch.equal(got_state, alone_state)
    assert torch.equal(no_lengths, alone)  # no lengths: the whole sequence
    assert float(alone.abs().max()) > 0.05  # the layer does something to compare


def test_swap_decoders_replaces_every_relu_add():
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.decoder = build_recurrent("relu_add", 8, 8)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            return self.head(self.decoder(x)[0])

    m = Model().eval()
    q = swap_decoders(m)
    assert isinstance(q.decoder, IntegerReluAdd) and not isinstance(m.decoder, IntegerReluAdd)
    with torch.inference_mode():
        assert q(torch.randn(5, 2, 8)).shape == (5, 2, 3)
    with pytest.raises(TypeError):
        swap_decoders(nn.Linear(2, 2))


def test_clear_round_is_round_half_up():
    v = np.arange(-9, 10)
    got = ClearOps.round(v, 2)
    assert np.array_equal(got, np.floor((v + 2) / 4).astype(int) * 4)


@pytest.mark.parametrize("kind", ["relu_add", "gru", "gru_mv"])
def test_fhe_cells_close_to_float_at_wide_bit_widths(kind):
    from htr.bench.fhe import int_vs_float, make_cell

    spec = QuantSpec(input_bits=6, state_bits=8, weight_bits=8, acc_bits=10)
    cell, float_step = make_cell(kind, 8, 8, spec, seed=0)
    inputs = random_inputs(np.random.default_rng(0), spec, 4, 8, 40)
    calibrate(cell, inputs)
    err = int_vs_float(cell, float_step, inputs)
    assert err["max_abs_err"] < 0.1, err


def test_fhe_quantisers_shapes_and_ranges():
    spec = QuantSpec()
    torch.manual_seed(0)
    gru = nn.GRU(3, 5)
    cell = quantize_gru(gru.weight_ih_l0.detach(), gru.weight_hh_l0.detach(), gru.bias_ih_l0.detach(),
                        gru.bias_hh_l0.detach(), spec, 1.0 / spec.qx)
    assert cell.c >= 1 and cell.d >= 1 and np.abs(cell.win).max() <= spec.qw
    x = quantize_inputs(np.random.default_rng(0).uniform(-2, 2, (6, 3)), spec, 1.0 / spec.qx)
    assert np.abs(x).max() <= spec.qx
    h = cell.run(ClearOps, x)
    assert h.shape == (5,) and np.abs(h).max() <= spec.q
    ra = build_recurrent("relu_add", 3, 5).cell(0)
    rc = quantize_relu_add(ra.weight_ih.detach(), ra.weight_hh.detach(), ra.bias.detach(), spec, 1.0 / spec.qx)
    assert rc.run(ClearOps, x).shape == (5,)
    with pytest.raises(ValueError):
        QuantSpec(state_bits=1)


def test_swap_decoders_on_the_recogniser():
    from htr.nn.recognizer import Recognizer, RecognizerConfig

    torch.manual_seed(0)
    net = Recognizer(RecognizerConfig(cell="relu_add", hidden_size=16, num_layers=2, bidirectional=True), 10).eval()
    q = swap_decoders(net).eval()
    assert isinstance(q.decoder, IntegerReluAdd)
    images = torch.rand(2, 1, net.config.height, 96)
    widths = torch.tensor([96, 60])
    with torch.inference_mode():
        ref, lengths = net(images, widths)
        got, lengths_q = q(images, widths)
        features, frames = net.encode(images, widths)
        hidden, _ = net.decoder(features, frames, final_state=False)
        hidden_q, _ = q.decoder(features, frames, final_state=False)
        zero_decoder = net.classifier(torch.zeros_like(hidden)).log_softmax(-1)
    assert got.shape == ref.shape and torch.equal(lengths, lengths_q) and lengths.tolist() == [24, 15]
    valid = torch.arange(hidden.shape[0])[:, None] < lengths[None, :]  # (T, N)
    err = (hidden_q - hidden).abs()[valid]
    # the module's int8 bounds (mean < 0.02, max < 0.25) on the decoder's states, two layers deep; an
    # all-zero decoder would be off by the states' own size, about 0.1 on average
    assert float(err.mean()) < 0.02 and float(err.max()) < 0.25
    assert float(hidden.abs()[valid].mean()) > 0.05
    # and on the log-probabilities: within 0.03, where an all-zero decoder is off by more than 0.1
    assert float((got - ref).abs()[valid].max()) < 0.03
    assert float((zero_decoder - ref).abs()[valid].max()) > 0.1


# ---------------------------------------------------------------------------------- fast kernels
FAST_KERNELS = ["generic"] + (["vnni"] if kernels_int.HAS_VNNI else [])
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "app" / "examples" / "poilus_1.png"


@pytest.mark.parametrize("kernel", FAST_KERNELS)
@pytest.mark.parametrize("n", range(1, 10))
def test_matvec_is_exact_for_every_tile(kernel, n):
    """U (h + 128) for 1..9 sequences (the 4x4, 4x3, 4x2 and 8x1 tiles), rows and columns padded."""
    rng = np.random.default_rng(n)
    u = rng.integers(-127, 128, (300, 70)).astype(np.int8)
    packed, correction = kernels_int.pack(u, kernel)
    hb = rng.integers(0, 256, (n, 72)).astype(np.uint8)
    hb[:, 70:] = kernels_int.OFFSET  # padding columns hold h = 0
    acc = np.zeros((n, len(correction)), dtype=np.int32)
    (kernels_int.matvec_vnni if kernel == "vnni" else kernels_int.matvec_generic)(packed, hb, n, acc)
    want = hb[:, :70].astype(np.int64) @ u.T.astype(np.int64)
    assert len(correction) % kernels_int.ROW_ALIGN == 0 and np.array_equal(acc[:, :300], want)
    assert np.array_equal(acc[:, :300] - correction[None, :300], (hb[:, :70].astype(np.int64) - 128) @ u.T)


@pytest.mark.parametrize("kernel", FAST_KERNELS)
@pytest.mark.parametrize("I, H, layers, bidirectional, N", [(16, 32, 1, False, 1), (8, 12, 2, True, 3),
                                                            (24, 70, 1, True, 6), (256, 256, 2, True, 9),
                                                            (40, 144, 1, False, 16)])
def test_fast_kernels_equal_the_reference(kernel, I, H, layers, bidirectional, N):
    """The same integers as the reference kernel, outputs and final states, with lengths 1..T in one batch
    (H not a multiple of 16 runs the kernels' one-by-one tails; H > 64 more than one row group)."""
    ra = _random_relu_add(3, I=I, H=H, num_layers=layers, bidirectional=bidirectional)
    T = 25
    g = torch.Generator().manual_seed(N)
    x = 2 * torch.randn(T, N, I, generator=g)
    lengths = torch.randint(1, T + 1, (N,), generator=g)
    lengths[0] = T
    ref = IntegerReluAdd.from_float(ra, kernel="reference")
    fast = IntegerReluAdd.from_float(ra, kernel=kernel)
    want, want_last = ref.forward_int(x.numpy(), lengths.numpy())
    got, got_last = fast.forward_int(x.numpy(), lengths.numpy())
    assert got.dtype == np.int8 and np.array_equal(got, want) and np.array_equal(got_last, want_last)
    assert np.abs(want).mean() > 5  # states that move: something to compare
    with torch.inference_mode():
        a, sa = fast(x, lengths)
        b, sb = ref(x, lengths)
    assert torch.equal(a, b) and torch.equal(sa, sb)


@pytest.mark.parametrize("kernel", FAST_KERNELS)
def test_fast_kernels_on_other_grids(kernel):
    """Fewer state, input and weight bits and other gate fraction bits: still the reference's integers."""
    ra = _random_relu_add(4, I=12, H=20, bidirectional=True)
    x = torch.randn(15, 2, 12)
    for kw in (dict(state_bits=6, frac_bits=0), dict(state_bits=8, frac_bits=12, input_bits=6, weight_bits=5)):
        want = IntegerReluAdd.from_float(ra, kernel="reference", **kw).forward_int(x.numpy(), np.array([15, 9]))
        got = IntegerReluAdd.from_float(ra, kernel=kernel, **kw).forward_int(x.numpy(), np.array([15, 9]))
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), kw


def test_input_quantisation_rounds_as_numpy():
    """Half-way values round to even, as np.rint; each line's scale is max |x| / 127 over its valid
    steps, as the reference's."""
    x = np.array([127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -126.5, 3.25], dtype=np.float32).reshape(8, 1, 1)
    got, scales = kernels_int.quantize_input(x, 127.0, np.array([8]))
    assert scales.tolist() == [1.0] and got.ravel().tolist() == [127, 0, 2, 2, 0, -2, -126, 3]
    x = np.random.default_rng(0).normal(size=(7, 3, 5)).astype(np.float32)
    lengths = np.array([7, 3, 5])
    got, scales = kernels_int.quantize_input(x, 127.0, lengths)
    for n, L in enumerate(lengths):
        s = max(float(np.abs(x[:L, n]).max()), 1e-12) / 127
        assert scales[n] == s
        assert np.array_equal(got[:, n], np.clip(np.rint(x[:, n] / np.float32(s)), -127, 127))


@pytest.mark.parametrize("kernel", FAST_KERNELS + ["reference"])
def test_a_line_reads_the_same_in_any_batch(kernel):
    """Each line is quantised on its own scale, over its own valid steps: its integers do not depend on
    the other lines of its batch or on its padding (a line next to a much louder one, or padded with
    large values, gives the integers it gives alone)."""
    ra = _random_relu_add(4, I=8, H=12, num_layers=2, bidirectional=True)
    iq = IntegerReluAdd.from_float(ra, kernel=kernel)
    x = torch.randn(16, 2, 8, generator=torch.Generator().manual_seed(4))
    x[:, 1] *= 20.0  # the loud neighbour
    x[9:, 0] = 30.0  # line 0's padding
    batched, batched_state = iq.forward_int(x.numpy(), np.array([9, 16]))
    alone, alone_state = iq.forward_int(x[:9, :1].contiguous().numpy(), np.array([9]))
    assert np.array_equal(batched[:9, :1], alone) and np.abs(alone).max() > 0
    assert np.array_equal(batched_state[:, :1], alone_state)


def test_kernel_choice():
    ra = _random_relu_add(0, I=4, H=4)
    assert IntegerReluAdd.from_float(ra).kernel == ("vnni" if kernels_int.HAS_VNNI else "generic")
    assert IntegerReluAdd.from_float(ra, state_bits=16).kernel == "reference"  # int16 states: the reference only
    with pytest.raises(ValueError, match="state_bits must be <= 8"):
        IntegerReluAdd.from_float(ra, state_bits=12, kernel="generic")
    with pytest.raises(ValueError, match="kernel must be one of"):
        IntegerReluAdd.from_float(ra, kernel="avx")
    if not kernels_int.HAS_VNNI:
        with pytest.raises(ValueError, match="AVX-512 VNNI"):
            IntegerReluAdd.from_float(ra, kernel="vnni")


@pytest.mark.skipif(not kernels_int.HAS_VNNI, reason="this CPU has no AVX-512 VNNI")
def test_vnni_kernel_runs_the_dot_product_instruction():
    """The compiled step product is VPDPBUSD on 512-bit registers (not a widening multiply-add)."""
    import re

    from numba import njit

    fn = njit(kernels_int.matvec_vnni.py_func)  # compiled afresh: numba shows no assembly of cached code
    packed, _ = kernels_int.pack(np.ones((128, 8), dtype=np.int8), "vnni")
    fn(packed, np.ones((5, 8), np.uint8), 5, np.empty((5, 128), np.int32))
    asm = fn.inspect_asm(fn.signatures[0])
    assert len(re.findall(r"vpdpbusd\s+[^\n]*zmm", asm)) >= 8 + 4 * 4


@pytest.fixture(scope="module")
def shipped_relu_add():
    from htr.inference import load_model, shipped_models

    if "relu_add" not in shipped_models():
        pytest.skip("no shipped relu_add model")
    return load_model("relu_add")


def test_fast_kernels_equal_the_reference_on_the_shipped_decoder(shipped_relu_add):
    """The shipped model's two bidirectional layers on the encoder's features of the app's example lines
    (one batch of five widths): every kernel gives the same integers."""
    from htr.data.images import collate

    model = shipped_relu_add
    images = [model.preprocess(p) for p in sorted((ROOT / "app" / "examples").glob("*_[0-9].png"))]
    batch = collate([{"image": im} for im in images], pad_to_multiple=8)
    with torch.inference_mode():
        features, frames = model.net.encode(batch["images"], batch["widths"])
    assert len(set(frames.tolist())) > 1
    want = IntegerReluAdd.from_float(model.net.decoder, kernel="reference").forward_int(features.numpy(),
                                                                                        frames.numpy())
    for kernel in FAST_KERNELS:
        got = IntegerReluAdd.from_float(model.net.decoder, kernel=kernel).forward_int(features.numpy(), frames.numpy())
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), kernel


def test_load_model_integer_reads_the_poilus_example_as_the_float_model(shipped_relu_add):
    from htr.inference import load_model
    from htr.text.metrics import cer

    model = load_model("relu_add", integer=True)
    assert model.name == "relu_add-integer" and isinstance(model.net.decoder, IntegerReluAdd)
    assert not isinstance(shipped_relu_add.net.decoder, IntegerReluAdd)  # the float model is left as it was
    from conftest import POILUS_EXAMPLE_LINES as lines

    refs = [t.text for t in shipped_relu_add.transcribe(lines)]
    got = [t.text for t in model.transcribe(lines)]
    assert len(lines) == 3 and sum(map(len, refs)) > 60 and cer(refs, got) < 0.1, list(zip(refs, got))


def test_integer_is_refused_for_gru_and_lstm(capsys):
    from htr.cli import main
    from htr.inference import load_model, shipped_models

    for cell in ("gru", "lstm"):
        if cell not in shipped_models():
            pytest.skip(f"no shipped {cell} model")
        with pytest.raises(CheckpointError, match=f"decoder is {cell}"):
            load_model(cell, integer=True)
    with pytest.raises(SystemExit) as e:
        main(["transcribe", str(EXAMPLE), "--model", "gru", "--integer"], clean_errors=True)
    out, err = capsys.readouterr()
    assert e.value.code == 1 and out == "" and err.count("\n") == 1
    assert err.startswith("htr: error: gru: the integer decoder replaces a relu_add decoder; this model's "
                          "decoder is gru")


def test_transcribe_integer_on_the_command_line(capsys, shipped_relu_add):
    from htr.cli import main

    main(["transcribe", str(EXAMPLE), "--model", "relu_add", "--integer"], clean_errors=True)
    out, _ = capsys.readouterr()
    name, image, text, *_ = out.rstrip("\n").split("\t")
    assert name == "relu_add-integer" and image == str(EXAMPLE) and len(text) > 20


def test_bench_integer_reports_every_layer(capsys):
    from htr.bench import integer

    layers = integer.make_layers(8, 8, bidirectional=True)
    assert type(layers["gru int8"]).__module__.startswith("torch.ao.nn.quantized.dynamic")
    assert type(layers["lstm int8"]).__module__.startswith("torch.ao.nn.quantized.dynamic")
    report = integer.run(input_size=8, hidden_size=8, steps=4, batches=(1,), repeats=1)
    assert [(r["batch"], r["bidirectional"]) for r in report["results"]] == [(1, False), (1, True)]
    for r in report["results"]:
        assert set(r["ms"]) == set(integer.LAYERS) and r["target"] == 0.5
        assert r["integer/relu_add float"] == r["ms"]["relu_add integer"] / r["ms"]["relu_add float"]
    assert "int/relu_add" in integer.to_table(report)
