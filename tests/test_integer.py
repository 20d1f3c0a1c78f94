"""Integer-only relu_add (htr.fhe.integer) and the clear integer cells of htr.fhe.quantize.

No concrete-python needed. Stated bounds:
- arithmetic: with 16-bit states and 12 fraction bits, the integer layer equals the float layer run on
  the same int8-rounded weights and inputs within 2e-3 (the grid, 1/32767 per step, accumulated);
- int8 end to end (8-bit states, default): single layer, T=30, mean |int - float| < 0.02, max < 0.25;
- fhe cells at 8-bit states, 8-bit weights, 10-bit lookups: max |int - float| < 0.1 on h_T (T=4).
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

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
from htr.nn import build_recurrent


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
    s = x.abs().max() / 127
    x = torch.round(x / s) * s  # already on the int8 input grid
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
    step 11, not 20). The input scale is per call (the largest |x|), so the padding keeps within the
    sequence's own range here; what it holds does not matter."""
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
