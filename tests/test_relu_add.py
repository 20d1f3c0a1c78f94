"""The relu_add cell and layer against an independent reference: both drivers, the hand-written
backward, variable lengths, initialisation, and no product of two data-dependent values.

The reference below is written from the equations in htr.nn.relu_add's docstring with plain tensor
ops, one sequence at a time; it shares no code with the layer (neither its clip/inh helpers nor its
kernels nor reverse_within_lengths).
"""
from __future__ import annotations

import math
import operator

import pytest
import torch
from recurrent_helpers import randomize_, states_of
from torch import nn

import htr.nn.relu_add as relu_add_mod
from htr.nn import build_recurrent
from htr.nn.relu_add import ReluAddCell
from htr.nn.sequence import reverse_within_lengths

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one torch and BLAS thread

BIG = 10**9  # TORCH_MATMUL_MIN_BATCH that keeps every batch on the all-numba driver


# --------------------------------------------------------------------------------------------------
# Independent reference
# --------------------------------------------------------------------------------------------------

def _clip(v):
    return torch.relu(v + 1) - torch.relu(v - 1) - 1


def _inh(v, q):
    return torch.relu(v - q) - torch.relu(-v - q)


def reference_cell(cell: ReluAddCell, x, lengths, h0=None, reverse=False, clip=None):
    """x (T, N, I) -> outputs (T, N, H) (zero past each length), h_n (N, H); one sequence at a time.
    ``clip`` replaces the hard tanh (the surrogate-gradient test)."""
    _clip_ = clip or _clip
    H = cell.hidden_size
    W, U, b = cell.weight_ih, cell.weight_hh, cell.bias
    W_s, W_n, U_s, U_n, b_s, b_n = W[:H], W[H:], U[:H], U[H:], b[:H], b[H:]
    T, N, _ = x.shape
    outs, finals = [], []
    for i in range(N):
        L = int(lengths[i])
        h = x.new_zeros(H) if h0 is None else h0[i]
        col = [x.new_zeros(H) for _ in range(T)]
        for t in (range(L - 1, -1, -1) if reverse else range(L)):
            s = W_s @ x[t, i] + U_s @ h + b_s
            n = _clip_(W_n @ x[t, i] + U_n @ h + b_n)
            h = _clip_(_inh(h, torch.relu(s)) + _inh(n, torch.relu(-s)))
            col[t] = h
        outs.append(torch.stack(col))
        finals.append(h)
    return torch.stack(outs, dim=1), torch.stack(finals)


def reference_layer(layer, x, lengths):
    """Stacked (bi)directional reference with the layer's cells; x (T, N, C)."""
    finals = []
    for k in range(layer.num_layers):
        out, h = reference_cell(layer.cell(k), x, lengths)
        finals.append(h)
        if layer.bidirectional:
            out_r, h_r = reference_cell(layer.cell(k, reverse=True), x, lengths, reverse=True)
            out = torch.cat([out, out_r], dim=-1)
            finals.append(h_r)
        x = out
    return x, torch.stack(finals)


@pytest.fixture(params=["numba_loop", "torch_matmul"])
def driver(request, monkeypatch):
    """Both drivers of the compiled recurrence, whatever the batch size."""
    monkeypatch.setattr(relu_add_mod, "TORCH_MATMUL_MIN_BATCH", BIG if request.param == "numba_loop" else 1)
    return request.param


LENGTHS = torch.tensor([7, 3, 1, 7, 5])


# --------------------------------------------------------------------------------------------------
# 1. Step and layer against the reference
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("reverse", [False, True])
def test_cell_matches_reference(driver, dtype, tol, reverse):
    torch.manual_seed(1)
    cell = randomize_(ReluAddCell(3, 6), scale=0.5).to(dtype)
    x = torch.randn(7, 5, 3, dtype=dtype)
    h0 = torch.rand(5, 6, dtype=dtype) * 2 - 1  # a non-zero initial state too
    with torch.no_grad():
        out, h_n = cell(x, LENGTHS, h0, reverse=reverse)
        ref_out, ref_h = reference_cell(cell, x, LENGTHS, h0, reverse=reverse)
    assert out.dtype == dtype and out.shape == (7, 5, 6) and h_n.shape == (5, 6)
    # the reference is not trivial: the state moves and takes many values
    assert ref_out.abs().max() > 0.3 and ref_out.unique().numel() > 40
    torch.testing.assert_close(out, ref_out, atol=tol, rtol=0)
    torch.testing.assert_close(h_n, ref_h, atol=tol, rtol=0)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_layer_matches_reference(driver, dtype, tol):
    torch.manual_seed(2)
    layer = randomize_(build_recurrent("relu_add", 3, 5, num_layers=2, bidirectional=True), seed=2).to(dtype)
    x = torch.randn(7, 5, 3, dtype=dtype)
    with torch.no_grad():
        out, state = layer(x, LENGTHS)
        ref_out, ref_state = reference_layer(layer, x, LENGTHS)
    assert ref_out.abs().max() > 0.3
    torch.testing.assert_close(out, ref_out, atol=tol, rtol=0)
    torch.testing.assert_close(state, ref_state, atol=tol, rtol=0)


def test_step_matches_reference():
    """ReluAddCell.step (the plain-torch step, the one traced in the no-multiplication test)."""
    torch.manual_seed(3)
    cell = randomize_(ReluAddCell(3, 6), seed=3).double()
    x, h = torch.randn(1, 4, 3, dtype=torch.float64), torch.rand(4, 6, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        _, ref = reference_cell(cell, x, torch.ones(4, dtype=torch.int64), h)
        torch.testing.assert_close(cell.step(x[0], h), ref, atol=1e-12, rtol=0)


@pytest.mark.parametrize("reverse", [False, True])
def test_accelerator_loop_matches_compiled(reverse):
    """The torch-loop path used off CPU, run on CPU the way forward() runs it off CPU."""
    torch.manual_seed(4)
    cell = randomize_(ReluAddCell(3, 6), seed=4).double()
    x, h0 = torch.randn(7, 5, 3, dtype=torch.float64), torch.rand(5, 6, dtype=torch.float64) - 0.5
    with torch.no_grad():
        out, h_n = cell(x, LENGTHS, h0, reverse=reverse)
        xp = nn.functional.linear(x, cell.weight_ih, cell.bias)
        if reverse:
            loop_out, loop_h = cell._forward_loop(reverse_within_lengths(xp, LENGTHS), LENGTHS, h0)
            loop_out = reverse_within_lengths(loop_out, LENGTHS)
        else:
            loop_out, loop_h = cell._forward_loop(xp, LENGTHS, h0)
    torch.testing.assert_close(loop_out, out, atol=1e-12, rtol=0)
    torch.testing.assert_close(loop_h, h_n, atol=1e-12, rtol=0)


# --------------------------------------------------------------------------------------------------
# 2. Hand-written backward through time: gradcheck
# --------------------------------------------------------------------------------------------------

def test_gradcheck_whole_layer(driver):
    torch.manual_seed(5)
    layer = randomize_(build_recurrent("relu_add", 3, 4, num_layers=2, bidirectional=True), seed=5).double()
    names = [n for n, _ in layer.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in layer.parameters()]
    x = torch.randn(5, 3, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([5, 2, 4])

    def f(x, *ps):
        return torch.func.functional_call(layer, dict(zip(names, ps)), (x, lengths))

    # not vacuous: every input and every parameter receives a non-zero gradient
    out, state = f(x, *params)
    grads = torch.autograd.grad(out.sum() + state.square().sum(), [x, *params])
    assert all(g.abs().sum() > 0 for g in grads), [n for n, g in zip(["x", *names], grads) if g.abs().sum() == 0]
    # seed 5 is not special (seeds 0-7 all pass with both drivers): random float64 values sit far
    # from ReLU kinks compared with eps=1e-6
    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("reverse", [False, True])
def test_gradcheck_cell_with_initial_state(driver, reverse):
    torch.manual_seed(6)
    cell = randomize_(ReluAddCell(2, 3), seed=6).double()
    names = [n for n, _ in cell.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in cell.parameters()]
    x = torch.randn(4, 3, 2, dtype=torch.float64, requires_grad=True)
    h0 = (torch.rand(3, 3, dtype=torch.float64) - 0.5).requires_grad_(True)
    lengths = torch.tensor([4, 1, 3])

    def f(x, h0, *ps):
        return torch.func.functional_call(cell, dict(zip(names, ps)), (x, lengths, h0), {"reverse": reverse})

    out, h_n = f(x, h0, *params)
    g_h0, = torch.autograd.grad(out.sum() + h_n.sum(), [h0])
    assert g_h0.abs().sum() > 0
    assert torch.autograd.gradcheck(f, (x, h0, *params), eps=1e-6, atol=1e-7, rtol=1e-5)


class _SurrogateClip(torch.autograd.Function):
    """clip(v) forward; slope 1 inside [-1, 1] and ``leak`` outside backward (exact at the kinks: a
    forward written as clip(v) + leak * (v - clip(v)) - detached(same) would round off them); with
    ``inward``, ``leak`` only where grad * v > 0 (descent moves v back towards [-1, 1]), else 0."""

    @staticmethod
    def forward(ctx, v, leak, inward):
        ctx.save_for_backward(v)
        ctx.leak, ctx.inward = leak, inward
        return _clip(v)

    @staticmethod
    def backward(ctx, grad):
        (v,) = ctx.saved_tensors
        inside = ((v + 1 > 0) & ~(v - 1 > 0)).to(grad.dtype)  # the kernels' and torch's ReLU'(0) = 0
        leak = ctx.leak * (grad * v > 0).to(grad.dtype) if ctx.inward else ctx.leak
        return grad * (inside + leak * (1 - inside)), None, None


def _surrogate_cell(cell: ReluAddCell, x, leak, inward):
    """The cell over full-length sequences with the surrogate clips, its gates summed in the kernels'
    order ((W x + b) + h U^T): ties at the kinks then fall the same way in both."""
    xp = torch.nn.functional.linear(x, cell.weight_ih, cell.bias)  # (T, N, 2H)
    h, outs = x.new_zeros(x.shape[1], cell.hidden_size), []
    for t in range(x.shape[0]):
        s, a = (xp[t] + h @ cell.weight_hh.t()).chunk(2, dim=-1)
        n = _SurrogateClip.apply(a, leak, inward)
        h = _SurrogateClip.apply(_inh(h, torch.relu(s)) + _inh(n, torch.relu(-s)), leak, inward)
        outs.append(h)
    return torch.stack(outs)


@pytest.mark.parametrize("inward", [False, True])
def test_clip_grad_leak_is_a_surrogate_slope(driver, inward):
    """clip_grad_leak changes the backward only: the outputs stay those of the exact cell, and the
    gradients are those of the same equations with the clips' slope set to the leak outside [-1, 1]
    (with clip_grad_inward, only where descent moves the value back inside)."""
    leak, T, N = 0.1, 9, 5
    cell = randomize_(ReluAddCell(5, 7, clip_grad_leak=leak, clip_grad_inward=inward), scale=2.0, seed=3).double()
    x = torch.randn(T, N, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3), requires_grad=True)
    out, _ = cell(x, torch.full((N,), T), x.new_zeros(N, 7))
    want = _surrogate_cell(cell, x, leak, inward)
    assert torch.allclose(out, want, atol=1e-12)  # the forward of the exact cell
    weights = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    params = [x, cell.weight_ih, cell.weight_hh, cell.bias]
    got = torch.autograd.grad((out * weights).sum(), params)
    for g, w in zip(got, torch.autograd.grad((want * weights).sum(), params)):
        assert torch.allclose(g, w, atol=1e-10)
    other = _surrogate_cell(cell, x, leak, not inward)  # the two surrogates differ: the test tells them apart
    assert not all(torch.allclose(g, o, atol=1e-6)
                   for g, o in zip(got, torch.autograd.grad((other * weights).sum(), params)))
    cell.clip_grad_leak = 0.0  # the exact derivative differs: saturated units get no gradient there
    exact = torch.autograd.grad((cell(x, torch.full((N,), T), x.new_zeros(N, 7))[0] * weights).sum(), params)
    assert not all(torch.allclose(g, e, atol=1e-6) for g, e in zip(got, exact))
    with pytest.raises(ValueError, match="clip_grad_leak=1.5"):
        ReluAddCell(5, 7, clip_grad_leak=1.5)


def test_recurrent_weight_sees_in_place_data_updates():
    """Changing U in place through .data (gradcheck, weight clamping, old-style EMA code) changes the
    output: the kernels read U's own memory, nothing derived from it is cached."""
    torch.manual_seed(7)
    layer = randomize_(build_recurrent("relu_add", 3, 4), seed=7)
    x = torch.randn(6, 2, 3)
    with torch.no_grad():
        before, _ = layer(x)
        layer.cell(0).weight_hh.data.mul_(-1.0)
        after, _ = layer(x)
        expected, _ = reference_layer(layer, x, torch.tensor([6, 6]))
    assert not torch.equal(before, expected)  # the change matters
    torch.testing.assert_close(after, expected, atol=1e-5, rtol=0)


def test_recurrent_weight_follows_optimizer_and_load():
    """The supported ways of changing U (optimiser steps, load_state_dict, no_grad in-place ops)."""
    torch.manual_seed(8)
    layer = randomize_(build_recurrent("relu_add", 3, 4), seed=8)
    x, lengths = torch.randn(6, 2, 3), torch.tensor([6, 6])
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    out, _ = layer(x)  # fills the cache
    out.square().sum().backward()
    opt.step()
    with torch.no_grad():
        torch.testing.assert_close(layer(x)[0], reference_layer(layer, x, lengths)[0], atol=1e-5, rtol=0)
        layer.cell(0).weight_hh.mul_(-1.0)
        torch.testing.assert_close(layer(x)[0], reference_layer(layer, x, lengths)[0], atol=1e-5, rtol=0)
        other = randomize_(build_recurrent("relu_add", 3, 4), seed=9)
        layer.load_state_dict(other.state_dict())
        torch.testing.assert_close(layer(x)[0], other(x)[0], atol=0, rtol=0)


@pytest.mark.parametrize("reverse", [False, True])
def test_inference_path_matches_training_path(driver, reverse):
    """Without autograd the layer takes a leaner path (no saved states or gates): same numbers."""
    torch.manual_seed(10)
    cell = randomize_(ReluAddCell(3, 6), scale=0.5)
    x, h0 = torch.randn(7, 5, 3), torch.rand(5, 6) - 0.5
    with torch.no_grad():
        out_infer, h_infer = cell(x, LENGTHS, h0, reverse=reverse)
    out_train, h_train = cell(x.requires_grad_(), LENGTHS, h0, reverse=reverse)
    assert out_train.requires_grad
    torch.testing.assert_close(out_infer, out_train.detach(), atol=0, rtol=0)
    torch.testing.assert_close(h_infer, h_train.detach(), atol=0, rtol=0)


def test_recurrent_weight_layout_changes_speed_only():
    """U is stored as U^T in memory (no transposed copy per call); a contiguous U gives the same result."""
    torch.manual_seed(11)
    cell = randomize_(ReluAddCell(3, 6), scale=0.5)
    assert cell.weight_hh.shape == (12, 6) and cell.weight_hh.t().is_contiguous()
    x = torch.randn(7, 5, 3)
    with torch.no_grad():
        expected, _ = cell(x, LENGTHS, torch.zeros(5, 6))
        cell.weight_hh.data = cell.weight_hh.data.contiguous()
        assert not cell.weight_hh.t().is_contiguous()
        out, _ = cell(x, LENGTHS, torch.zeros(5, 6))
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------------------------------
# 3. Variable lengths, both drivers
# --------------------------------------------------------------------------------------------------

def test_padding_both_drivers_relu_add(driver):
    """The same for relu_add with each driver, including batches above the driver switch."""
    torch.manual_seed(12)
    layer = randomize_(build_recurrent("relu_add", 3, 4, bidirectional=True), seed=12).double()
    lengths = torch.tensor([6, 1, 3, 6, 2, 5, 4, 6, 3])
    x = torch.randn(6, 9, 3, dtype=torch.float64)
    with torch.no_grad():
        out, state = layer(x, lengths)
        for i, L in enumerate(lengths.tolist()):
            a_out, a_state = layer(x[:L, i:i + 1])
            torch.testing.assert_close(out[:L, i:i + 1], a_out, atol=1e-12, rtol=0)
            torch.testing.assert_close(state[:, i:i + 1], a_state, atol=1e-12, rtol=0)
            assert torch.equal(out[L:, i], torch.zeros_like(out[L:, i]))


# --------------------------------------------------------------------------------------------------
# 4. Initialisation
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("I, H", [(24, 16), (256, 128)])
def test_relu_add_initialisation(I, H):
    """htr.nn.relu_add's stated initialisation: U_s and U_n each orthogonal scaled by 0.5 (U U^T = 0.25 I),
    W and b_n uniform in +-1/sqrt(I) (nn.Linear's fan-in bound, filled out to it), b_s = -1 (the cell's
    default: keep the state)."""
    torch.manual_seed(0)
    cell = ReluAddCell(I, H)
    bound = 1 / math.sqrt(I)
    with torch.no_grad():
        for block in cell.weight_hh.split(H):
            assert torch.allclose(block @ block.t(), 0.25 * torch.eye(H), atol=1e-5)
        W, b = cell.weight_ih, cell.bias
        assert W.shape == (2 * H, I) and W.abs().max() <= bound and W.abs().max() > 0.95 * bound
        assert W.std() == pytest.approx(bound / math.sqrt(3), rel=0.1)  # uniform, not a narrower spread
        assert torch.all(b[:H] == -1.0)
        assert b[H:].abs().max() <= bound and b[H:].std() > 0.3 * bound
    assert relu_add_mod.GATE_BIAS_INIT == -1.0 and relu_add_mod.RECURRENT_GAIN == 0.5


# --------------------------------------------------------------------------------------------------
# 5. No multiplication of two data-dependent values
# --------------------------------------------------------------------------------------------------

_MUL_FUNCTIONS = {operator.mul, operator.imul, operator.matmul, operator.imatmul, torch.mul, torch.matmul, torch.mm,
                  torch.bmm, torch.einsum, torch.addmm, torch.baddbmm, torch.outer, torch.dot, torch.mv,
                  nn.functional.linear, nn.functional.bilinear, torch.prod}
_MUL_METHODS = {"mul", "mul_", "matmul", "mm", "bmm", "addmm", "addmm_", "mv", "dot", "outer", "prod", "__mul__",
                "__matmul__"}
_FORBIDDEN = {"sigmoid", "tanh", "exp", "exp2", "expm1", "softmax", "log", "log_softmax", "div", "truediv",
              "true_divide", "floordiv", "pow", "sqrt", "rsqrt", "reciprocal", "softplus", "gelu", "silu",
              "hardsigmoid"}


def _target_name(node) -> str:
    t = node.target
    return t if isinstance(t, str) else getattr(t, "__name__", str(t))


def audit_products(gm: torch.fx.GraphModule) -> tuple[list, list, list]:
    """Returns (products, products of two data-dependent values, forbidden non-linearities).

    A node is data-dependent when a placeholder (an input of the traced function) is among its
    ancestors; parameters (get_attr) and constants are not."""
    data: set = set()
    products, bad, forbidden = [], [], []
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            data.add(node)
            continue
        if any(a in data for a in node.all_input_nodes):
            data.add(node)
        if node.op == "call_module":
            sub = gm.get_submodule(node.target)
            is_mul = isinstance(sub, (nn.Linear, nn.Bilinear))
            name = type(sub).__name__.lower()
        else:
            is_mul = (node.op == "call_function" and node.target in _MUL_FUNCTIONS) or (
                node.op == "call_method" and node.target in _MUL_METHODS)
            name = _target_name(node).lower()
        if node.op in ("call_function", "call_method", "call_module") and name.strip("_") in _FORBIDDEN:
            forbidden.append(node)
        if is_mul:
            products.append(node)
            # (a call_module Linear's weight is its own parameter, never an input node)
            if sum(a in data for a in node.all_input_nodes) >= 2:
                bad.append(node)
    return products, bad, forbidden


class _Step(nn.Module):
    def __init__(self, cell: ReluAddCell) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, x, h):
        return self.cell.step(x, h)


class _GatedToy(nn.Module):
    """A GRU-like step: the check must reject it (sigmoid, and gate * state)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 4))

    def forward(self, x, h):
        z = torch.sigmoid(x @ self.w)
        return z * h + (1 - z) * torch.tanh(x @ self.w)


def test_step_has_no_data_products_fx():
    torch.manual_seed(19)
    cell = randomize_(ReluAddCell(3, 4), seed=19)
    gm = torch.fx.symbolic_trace(_Step(cell))
    x, h = torch.randn(5, 3), torch.rand(5, 4) - 0.5
    torch.testing.assert_close(gm(x, h), cell.step(x, h), atol=0, rtol=0)  # the trace is the real step
    products, bad, forbidden = audit_products(gm)
    assert len(products) >= 2, gm.graph  # W x and U h are seen
    assert bad == [], [f"{n.op} {n.target}({n.args})" for n in bad]
    assert forbidden == [], [f"{n.op} {n.target}" for n in forbidden]
    assert sum(_target_name(n) == "relu" for n in gm.graph.nodes) >= 6  # clip x2, inh x2, ReLU(+-s)

    # the audit can fail
    _, bad_toy, forbidden_toy = audit_products(torch.fx.symbolic_trace(_GatedToy()))
    assert bad_toy and {_target_name(n) for n in forbidden_toy} >= {"sigmoid", "tanh"}


def _curved_fraction(layer, T=8, N_dirs=1, alphas=None, seed=20) -> float:
    """Fraction of grid points along a random line x0 + alpha d where the layer's outputs and final
    states have a non-zero second finite difference (the whole alpha grid runs as one batch)."""
    g = torch.Generator().manual_seed(seed)
    C = layer.input_size
    x0 = torch.randn(T, 1, C, generator=g, dtype=torch.float64)
    d = torch.randn(T, 1, C, generator=g, dtype=torch.float64)
    x = x0 + alphas[None, :, None] * d  # (T, K, C): one grid point per sequence of the batch
    with torch.no_grad():
        out, state = layer(x)
    y = torch.cat([out.transpose(0, 1).reshape(len(alphas), -1),
                   torch.cat(states_of(state), 0).transpose(0, 1).reshape(len(alphas), -1)], 1)  # (K, F)
    assert y.abs().max() > 0.1  # the function does something along the line
    d2 = (y[2:] - 2 * y[1:-1] + y[:-2]).abs().amax(dim=1)  # (K-2,)
    # float64 rounding leaves |d2| ~ 1e-14 on linear pieces; a smooth cell gives f'' * 2.5e-9 here
    return float((d2 > 1e-11 * (1 + y.abs().max())).double().mean())


def test_compiled_layer_is_piecewise_linear_gru_is_not():
    """Black-box check of the compiled kernel (both directions, two layers): along random lines in
    input space the output is piecewise linear (second differences vanish except near kinks), as a
    composition of affine maps and ReLUs must be. The same check finds curvature everywhere in a GRU."""
    alphas = torch.linspace(-0.1, 0.1, 4001, dtype=torch.float64)  # step 5e-5
    torch.manual_seed(21)
    relu_add = randomize_(build_recurrent("relu_add", 3, 6, num_layers=2, bidirectional=True), 0.6, seed=21).double()
    gru = build_recurrent("gru", 3, 6, num_layers=2, bidirectional=True).double()
    for seed in (20, 22):
        # a few points sit next to a kink; GRU's are all curved
        assert 0 < _curved_fraction(relu_add, alphas=alphas, seed=seed) < 0.1
        assert _curved_fraction(gru, alphas=alphas, seed=seed) > 0.9
