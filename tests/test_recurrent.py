"""htr.nn.recurrent's one interface to relu_add, gru and lstm: variable lengths, shapes, state dicts,
determinism, bad input; and the lstm forget-gate initialisation."""
from __future__ import annotations

import io
import math

import pytest
import torch
from recurrent_helpers import randomize_, states_of
from torch import nn

from htr.errors import ShapeError, UnknownCellError
from htr.nn import build_recurrent
from htr.nn.recurrent import TorchRecurrent

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one torch and BLAS thread

CELLS = ("relu_add", "gru", "lstm")


# --------------------------------------------------------------------------------------------------
# 1. Variable lengths, all cells
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CELLS)
def test_padding_never_changes_outputs_orstates_of(name):
    torch.manual_seed(10)
    layer = build_recurrent(name, 3, 4, num_layers=2, bidirectional=True).double()
    if name == "relu_add":
        randomize_(layer, seed=10)
    lengths = torch.tensor([6, 2, 4, 1])
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    with torch.no_grad():
        out, state = layer(x, lengths)
        for i, L in enumerate(lengths.tolist()):
            alone_out, alone_state = layer(x[:L, i:i + 1])  # unpadded, batch 1, no lengths
            torch.testing.assert_close(out[:L, i:i + 1], alone_out, atol=1e-12, rtol=0)
            for s, a in zip(states_of(state), states_of(alone_state)):
                torch.testing.assert_close(s[:, i:i + 1], a, atol=1e-12, rtol=0)
            assert torch.equal(out[L:, i], torch.zeros_like(out[L:, i]))  # exactly zero past the end
            # the backward direction starts at this sequence's own end
            torch.testing.assert_close(out[0, i, 4:], alone_out[0, 0, 4:], atol=1e-12, rtol=0)
        assert out[0, 1, 4:].abs().max() > 0.01  # ... and that half is not trivially zero


@pytest.mark.parametrize("name", CELLS)
def test_padding_content_does_not_matter(name):
    torch.manual_seed(11)
    layer = build_recurrent(name, 3, 4, bidirectional=True).double()
    if name == "relu_add":
        randomize_(layer, seed=11)
    lengths = torch.tensor([5, 2, 3])
    x = torch.randn(5, 3, 3, dtype=torch.float64)
    pad = torch.arange(5)[:, None] >= lengths[None, :]  # (T, N)
    garbage = x.clone()
    garbage[pad] = torch.randn(int(pad.sum()), 3, dtype=torch.float64) * 1e4
    x.requires_grad_(True)
    garbage.requires_grad_(True)
    out, state = layer(x, lengths)
    out_g, state_g = layer(garbage, lengths)
    assert torch.equal(out, out_g)
    for s, g in zip(states_of(state), states_of(state_g)):
        assert torch.equal(s, g)
    (grad,) = torch.autograd.grad(out.square().sum() + states_of(state)[0].sum(), [x])
    assert torch.equal(grad[pad], torch.zeros_like(grad[pad]))  # no gradient flows into padding
    assert grad[~pad].abs().sum() > 0


@pytest.mark.parametrize("name", ["gru", "lstm"])
@pytest.mark.parametrize("train", [False, True])
def test_outputs_only_path_matches_packed(name, train):
    """final_state=False runs torch's layers padded, each direction apart (the recogniser's CPU path):
    the same outputs and gradients as the packed run."""
    torch.manual_seed(13)
    layer = build_recurrent(name, 3, 4, num_layers=2, bidirectional=True).double().train(train)  # dropout 0
    lengths = torch.tensor([7, 2, 5, 1, 7])
    x = torch.randn(7, 5, 3, dtype=torch.float64, requires_grad=True)
    packed, _ = layer(x, lengths)
    padded, state = layer(x, lengths, final_state=False)
    assert state is None
    torch.testing.assert_close(padded, packed, atol=1e-12, rtol=0)
    weights = torch.randn_like(packed)
    (g_packed,) = torch.autograd.grad((packed * weights).sum(), [x])
    (g_padded,) = torch.autograd.grad((padded * weights).sum(), [x])
    torch.testing.assert_close(g_padded, g_packed, atol=1e-12, rtol=0)


# --------------------------------------------------------------------------------------------------
# 2. Shapes
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (1, True), (3, False), (2, True)])
def test_shapes(name, num_layers, bidirectional):
    T, N, C, H = 6, 3, 5, 4
    D = 2 if bidirectional else 1
    torch.manual_seed(13)
    layer = build_recurrent(name, C, H, num_layers=num_layers, bidirectional=bidirectional)
    torch.manual_seed(13)
    layer_bf = build_recurrent(name, C, H, num_layers=num_layers, bidirectional=bidirectional, batch_first=True)
    assert layer.output_size == D * H
    x = torch.randn(T, N, C)
    lengths = torch.tensor([6, 3, 5])
    out, state = layer(x, lengths)
    out_bf, state_bf = layer_bf(x.transpose(0, 1), lengths)
    assert out.shape == (T, N, D * H)
    assert out_bf.shape == (N, T, D * H)
    if name == "lstm":
        assert isinstance(state, tuple) and len(state) == 2
    else:
        assert isinstance(state, torch.Tensor)
    for s in states_of(state) + states_of(state_bf):
        assert s.shape == (num_layers * D, N, H)
    # batch_first only changes the layout
    torch.testing.assert_close(out_bf.transpose(0, 1), out, atol=1e-6, rtol=0)
    for s, s_bf in zip(states_of(state), states_of(state_bf)):
        torch.testing.assert_close(s, s_bf, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", CELLS)
def test_final_state_is_top_layer_output_at_each_end(name):
    """State ordering follows nn.GRU's: index layer*D + direction; forward state = output at L-1,
    backward state = backward output at t=0."""
    torch.manual_seed(14)
    layer = build_recurrent(name, 3, 4, num_layers=2, bidirectional=True).double()
    lengths = torch.tensor([5, 2, 4])
    with torch.no_grad():
        out, state = layer(torch.randn(5, 3, 3, dtype=torch.float64), lengths)
    h = states_of(state)[0]
    for i, L in enumerate(lengths.tolist()):
        torch.testing.assert_close(h[2, i], out[L - 1, i, :4], atol=1e-12, rtol=0)
        torch.testing.assert_close(h[3, i], out[0, i, 4:], atol=1e-12, rtol=0)


# --------------------------------------------------------------------------------------------------
# 3. State dict
# --------------------------------------------------------------------------------------------------

EXPECTED_NAMES = {
    "relu_add": [f"cells.{k}.{p}" for k in range(4) for p in ("weight_ih", "weight_hh", "bias")],
    "gru": [f"rnn.{p}_l{k}{s}" for k in range(2) for s in ("", "_reverse")
            for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")],
}
EXPECTED_NAMES["lstm"] = EXPECTED_NAMES["gru"]


@pytest.mark.parametrize("name", CELLS)
def test_state_dict_round_trip(name, tmp_path):
    torch.manual_seed(15)
    layer = build_recurrent(name, 3, 4, num_layers=2, bidirectional=True)
    randomize_(layer, 0.5, seed=15)  # relu_add's default init outputs exact zeros for this small input
    assert list(layer.state_dict()) == EXPECTED_NAMES[name]
    if name == "relu_add":
        shapes = {k: tuple(v.shape) for k, v in layer.state_dict().items()}
        assert shapes["cells.0.weight_ih"] == (8, 3) and shapes["cells.2.weight_ih"] == (8, 8)
        assert shapes["cells.3.weight_hh"] == (8, 4) and shapes["cells.1.bias"] == (8,)
    x, lengths = torch.randn(5, 3, 3), torch.tensor([5, 1, 3])
    with torch.no_grad():
        out, state = layer(x, lengths)
    assert out.abs().max() > 0.01
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    torch.save(layer.state_dict(), tmp_path / "layer.pt")
    for source in (io.BytesIO(buf.getvalue()), tmp_path / "layer.pt"):
        torch.manual_seed(99)  # different initial parameters
        fresh = build_recurrent(name, 3, 4, num_layers=2, bidirectional=True)
        with torch.no_grad():
            before, _ = fresh(x, lengths)  # also fills relu_add's cached U^T with the old weights
        assert not torch.equal(before, out)
        fresh.load_state_dict(torch.load(source, weights_only=True))
        with torch.no_grad():
            out2, state2 = fresh(x, lengths)
        assert torch.equal(out, out2)
        for s, s2 in zip(states_of(state), states_of(state2)):
            assert torch.equal(s, s2)


# --------------------------------------------------------------------------------------------------
# 4. Determinism
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CELLS)
def test_build_is_deterministic_under_seed(name):
    def build():
        torch.manual_seed(16)
        return build_recurrent(name, 3, 4, num_layers=2, bidirectional=True)

    a, b = build(), build()
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb and torch.equal(pa, pb)
    torch.manual_seed(17)
    c = build_recurrent(name, 3, 4, num_layers=2, bidirectional=True)
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))
    x = torch.randn(5, 2, 3)
    with torch.no_grad():
        assert torch.equal(a(x, torch.tensor([5, 3]))[0], b(x, torch.tensor([5, 3]))[0])


@pytest.mark.parametrize("name", CELLS)
def test_training_is_deterministic(name):
    def train() -> list[float]:
        torch.manual_seed(18)
        layer = build_recurrent(name, 3, 6, num_layers=2, bidirectional=True, dropout=0.2)
        head = nn.Linear(12, 1)
        opt = torch.optim.Adam([*layer.parameters(), *head.parameters()], lr=1e-2)
        x, y = torch.randn(8, 10, 3), torch.randn(10)
        lengths = torch.tensor([8, 3, 5, 8, 1, 2, 7, 8, 6, 4])  # 10 >= 8: relu_add's torch-matmul driver
        losses = []
        for _ in range(3):
            out, _ = layer(x, lengths)
            loss = nn.functional.mse_loss(head(out.sum(0)).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    first, second = train(), train()
    assert first == second
    assert len(set(first)) == 3  # the steps change the model


# --------------------------------------------------------------------------------------------------
# 5. Bad input
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CELLS)
def test_bad_input_is_rejected_with_clear_errors(name):
    layer = build_recurrent(name, 8, 4)
    x = torch.randn(5, 2, 8)
    with pytest.raises(ShapeError, match=r"rank 3 \(T, N, C\).*\(5, 8\)"):
        layer(torch.randn(5, 8))
    with pytest.raises(ShapeError, match=r"rank 3 \(N, T, C\)"):
        build_recurrent(name, 8, 4, batch_first=True)(torch.randn(1, 2, 5, 8))
    with pytest.raises(ShapeError, match="input_size=8") as err:
        layer(torch.randn(5, 2, 7))
    assert "7 features" in str(err.value)
    with pytest.raises(ShapeError, match=r"\[1, 5\].*max 6"):
        layer(x, torch.tensor([6, 2]))
    with pytest.raises(ShapeError, match=r"\[1, 5\].*min 0"):
        layer(x, torch.tensor([5, 0]))
    with pytest.raises(ShapeError, match=r"\[1, 5\].*min -1"):
        layer(x, torch.tensor([-1, 3]))
    with pytest.raises(ShapeError, match=r"shape \(2,\).*\(3,\)"):
        layer(x, torch.tensor([5, 5, 5]))
    with pytest.raises(ShapeError, match=r"shape \(2,\).*\(1, 2\)"):
        layer(x, torch.tensor([[5, 5]]))
    assert issubclass(ShapeError, ValueError)
    # lists and other integer dtypes are accepted
    out_list, _ = layer(x, [5, 2])
    out_t, _ = layer(x, torch.tensor([5, 2], dtype=torch.int32))
    assert torch.equal(out_list, out_t)


def test_unknown_cell_name():
    with pytest.raises(UnknownCellError, match=r"'rnn'.*relu_add, gru, lstm"):
        build_recurrent("rnn", 8, 4)
    with pytest.raises(UnknownCellError, match="relu_add, gru, lstm"):
        build_recurrent("RELU_ADD", 8, 4)
    assert issubclass(UnknownCellError, ValueError)


@pytest.mark.parametrize("kwargs,match", [(dict(input_size=0), "input_size"), (dict(hidden_size=0), "hidden_size"),
                                          (dict(num_layers=0), "num_layers"), (dict(dropout=1.0), "dropout")])
def test_bad_construction_arguments(kwargs, match):
    args = dict(input_size=8, hidden_size=4) | kwargs
    with pytest.raises(ValueError, match=match):
        build_recurrent("relu_add", **args)


# --------------------------------------------------------------------------------------------------
# 6. lstm initialisation
# --------------------------------------------------------------------------------------------------

def test_lstm_forget_bias_sets_only_the_forget_gate_rows():
    H = 4
    torch.manual_seed(0)
    plain = build_recurrent("lstm", 8, H, num_layers=2, bidirectional=True)
    torch.manual_seed(0)
    biased = build_recurrent("lstm", 8, H, num_layers=2, bidirectional=True, forget_bias=1.0)
    forget = slice(H, 2 * H)  # torch's gate order: input, forget, cell, output
    names = [n for n, _ in plain.rnn.named_parameters() if n.startswith("bias_")]
    assert len(names) == 8  # 2 layers x 2 directions x (ih, hh)
    for name in names:
        before, after = getattr(plain.rnn, name), getattr(biased.rnn, name)
        assert torch.all(after[forget] == (1.0 if name.startswith("bias_ih") else 0.0)), name
        keep = torch.ones(4 * H, dtype=torch.bool)
        keep[forget] = False
        assert torch.equal(before[keep], after[keep]), name
    # A zero input and state now open every forget gate to sigmoid(1), as Keras' unit_forget_bias does.
    cell_bias = biased.rnn.bias_ih_l0 + biased.rnn.bias_hh_l0
    assert torch.allclose(torch.sigmoid(cell_bias[forget]), torch.full((H,), math.exp(1) / (1 + math.exp(1))))
    with pytest.raises(ValueError, match="lstm initialisation.*'gru'"):
        TorchRecurrent("gru", 8, H, forget_bias=1.0)
    assert build_recurrent("gru", 8, H, forget_bias=1.0).rnn.bias_ih_l0.abs().max() < 1  # ignored by gru
