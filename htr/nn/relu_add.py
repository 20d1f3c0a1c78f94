"""The relu_add recurrent cell: a gated recurrence built from additions and ReLUs only.

For hidden size H, one step reads (x_t input, h_{t-1} state, h_0 = 0):

    clip(v)   = ReLU(v + 1) - ReLU(v - 1) - 1        hard tanh, written with ReLUs and additions
    inh(v, q) = ReLU(v - q) - ReLU(-v - q)          shrinks v towards 0 by q >= 0
    s_t = W_s x_t + U_s h_{t-1} + b_s               gate score (replaces the sigmoid's input)
    n_t = clip(W_n x_t + U_n h_{t-1} + b_n)         candidate
    h_t = clip(inh(h_{t-1}, ReLU(s_t)) + inh(n_t, ReLU(-s_t)))

W x and U h are products with learned weights; no step multiplies two data-dependent values and
there is no sigmoid, tanh or exp. Large s replaces the state by the candidate, very negative s keeps
the state, s near 0 adds the candidate to it. Two weight blocks per step (GRU: three, LSTM: four).

Initialisation: U orthogonal scaled by 0.5; W and b_n uniform in +-1/sqrt(input size), as nn.Linear
(with torch's GRU scale, +-1/sqrt(H), |W x| stays below |b_s| = 1, the candidate is shrunk to exactly
0 and no gradient reaches the gate); b_s = ``gate_bias``. The cell's default -1 starts it keeping its
state, the long-memory start the adding problem wants. The recogniser starts forgetful at +1
(htr.nn.recognizer): with b_s <= 0 the state integrates its candidates over a line and saturates in
the clip. Measurements: docs/results/adding.md (initial scale), docs/results/synthetic.md (gate bias).

Parameters are stored as W = [W_s; W_n] (2H, I), U = [U_s; U_n] (2H, H), b = [b_s; b_n] (2H):
rows [0, H) give the gate score, rows [H, 2H) the candidate. U's memory holds U^T (the parameter is a
transposed view), the layout every step reads; state dicts and checkpoints see plain (2H, H) values.

Training option ``clip_grad_leak``: the backward gives both clips a surrogate slope of ``leak``
outside [-1, 1] instead of 0 (the forward, hence inference, is unchanged), so that units whose
candidate or state sits in the clip still receive a gradient (docs/results/recognition.md). With
``clip_grad_inward`` the slope applies only where the descent step moves the clipped value back
towards [-1, 1]: where the loss asks for more of a clipped value, the exact zero stays.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from htr.nn import kernels
from htr.nn.sequence import reverse_within_lengths

GATE_BIAS_INIT = -1.0
RECURRENT_GAIN = 0.5


def clip(v: Tensor) -> Tensor:
    """Hard tanh from ReLUs and additions."""
    return F.relu(v + 1) - F.relu(v - 1) - 1


def inh(v: Tensor, q: Tensor) -> Tensor:
    """Shrink v towards 0 by q >= 0 (soft-thresholding from two ReLUs)."""
    return F.relu(v - q) - F.relu(-v - q)


def relu_add_update(h_prev: Tensor, gates: Tensor) -> Tensor:
    """The data-dependent part of a step: new state from the old one and the pre-activations.

    gates (..., 2H) = W x_t + U h_{t-1} + b. Only additions, negations and ReLUs.
    """
    s, a = gates.chunk(2, dim=-1)
    return clip(inh(h_prev, F.relu(s)) + inh(clip(a), F.relu(-s)))


# From this batch size on, the per-step product runs in torch (MKL) and only the element-wise
# step in numba; below it the whole loop stays in numba (see htr.nn.kernels).
TORCH_MATMUL_MIN_BATCH = 8

try:  # the Triton step kernels (htr.nn.kernels_cuda) serve CUDA tensors when Triton is installed
    import triton  # noqa: F401

    _HAS_TRITON = True
except ImportError:
    _HAS_TRITON = False


def _np(t: Tensor):
    """A numpy view of a contiguous CPU tensor (no copy)."""
    return t.detach().numpy()


def _forward_step_fn(hu: Tensor, xp: Tensor, lengths: Tensor, reverse: bool, out: Tensor, states: Tensor,
                     gates: Tensor):
    """step(t): the element-wise part of step t given hu = h_{t-1} U^T; numba on CPU, Triton on CUDA."""
    if xp.is_cuda:
        from htr.nn import kernels_cuda

        lengths = lengths.to(xp.device)
        return lambda t: kernels_cuda.forward_step(t, hu, xp, lengths, reverse, states[t], states[t + 1], out, gates)
    hu_np, xp_np, lengths_np, out_np, states_np, gates_np = (
        _np(hu), _np(xp), lengths.numpy(), _np(out), _np(states), _np(gates))
    return lambda t: kernels.forward_step(t, hu_np, xp_np, lengths_np, reverse, states_np[t], states_np[t + 1],
                                          out_np, gates_np[t])


def _backward_step_fn(dh: Tensor, gates: Tensor, states: Tensor, lengths: Tensor, reverse: bool,
                      grad_out: Tensor, grad_gates: Tensor, leak: float, inward: bool):
    """step(t): the element-wise backward of step t (see kernels.backward_step)."""
    if dh.is_cuda:
        from htr.nn import kernels_cuda

        if leak:
            raise NotImplementedError(f"clip_grad_leak={leak}: the surrogate clip slope is implemented for the "
                                      f"CPU kernels only; expected 0 on CUDA")
        lengths = lengths.to(dh.device)
        return lambda t: kernels_cuda.backward_step(t, dh, gates, states, lengths, reverse, grad_out, grad_gates)
    args = [_np(dh), _np(gates), _np(states), lengths.numpy(), reverse, _np(grad_out), _np(grad_gates), leak, inward]
    return lambda t: kernels.backward_step(t, *args)


def _sequence_forward(xp: Tensor, u: Tensor, h0: Tensor, lengths: Tensor, reverse: bool):
    """Returns outputs (T, B, H) in time order, states (T+1, B, H) with states[0] = h0 and
    gates (T, B, 2H), both in step order. u = U (2H, H)."""
    T, B, H2 = xp.shape
    xp = xp.detach().contiguous()
    out = xp.new_empty(T, B, H2 // 2)
    states = xp.new_empty(T + 1, B, H2 // 2)
    states[0] = h0
    gates = torch.empty_like(xp)
    # BLAS and torch.mm read a contiguous U^T faster than a transposed view (docs/results/cells.md).
    u_t = u.t().contiguous()  # (2H, H) -> (H, 2H): no copy with ReluAddCell's layout
    if not xp.is_cuda and B < TORCH_MATMUL_MIN_BATCH:
        kernels.relu_add_forward(_np(xp), _np(u_t), lengths.numpy(), reverse, _np(out), _np(states), _np(gates))
        return out, states, gates
    hu = xp.new_empty(B, H2)
    step = _forward_step_fn(hu, xp, lengths, reverse, out, states, gates)
    for t in range(T):
        torch.mm(states[t], u_t, out=hu)  # (B, H) @ (H, 2H) -> (B, 2H)
        step(t)
    return out, states, gates


def _sequence_infer(xp: Tensor, u: Tensor, h0: Tensor, lengths: Tensor, reverse: bool) -> tuple[Tensor, Tensor]:
    """`_sequence_forward` on CPU when no gradient is needed: keeps neither states nor gates and skips
    the autograd Function, which matter at batch 1. Returns outputs (T, B, H), h_n (B, H)."""
    T, B, H2 = xp.shape
    xp_np, lengths_np = _np(xp.contiguous()), lengths.numpy()
    out = xp.new_empty(T, B, H2 // 2)
    u_t = _np(u.detach().t().contiguous())  # (2H, H) -> (H, 2H): no copy with ReluAddCell's layout
    h = _np(h0.detach().contiguous())
    if B < TORCH_MATMUL_MIN_BATCH:
        return out, torch.from_numpy(kernels.relu_add_infer(xp_np, u_t, lengths_np, reverse, h, _np(out)))
    h, h_next, hu = h.copy(), np.empty_like(h), np.empty((B, H2), dtype=h.dtype)
    h_t, h_next_t, hu_t, u_tt = (torch.from_numpy(a) for a in (h, h_next, hu, u_t))
    out_np = _np(out)
    for t in range(T):
        torch.mm(h_t, u_tt, out=hu_t)  # (B, H) @ (H, 2H) -> (B, 2H)
        kernels.forward_step(t, hu, xp_np, lengths_np, reverse, h, h_next, out_np, hu)
        h, h_next, h_t, h_next_t = h_next, h, h_next_t, h_t
    return out, torch.from_numpy(h)


def _sequence_backward(gates: Tensor, states: Tensor, weight_hh: Tensor, lengths: Tensor, reverse: bool,
                       grad_out: Tensor, grad_hn: Tensor, leak: float = 0.0,
                       inward: bool = False) -> tuple[Tensor, Tensor]:
    """Returns dL/dg (T, B, 2H) in step order and dL/dh0 (B, H); leak, inward: kernels.backward_step's."""
    grad_gates = torch.empty_like(gates)
    u = weight_hh.detach().contiguous()
    grad_out, grad_hn = grad_out.contiguous(), grad_hn.contiguous()
    if not gates.is_cuda and gates.shape[1] < TORCH_MATMUL_MIN_BATCH:
        dh = kernels.relu_add_backward(_np(gates), _np(states), _np(u), lengths.numpy(), reverse, _np(grad_out),
                                       _np(grad_hn), _np(grad_gates), leak, inward)
        return grad_gates, torch.from_numpy(dh)
    dh = grad_hn.clone()
    step = _backward_step_fn(dh, gates, states, lengths, reverse, grad_out, grad_gates, leak, inward)
    for t in range(gates.shape[0] - 1, -1, -1):
        step(t)
        dh.addmm_(grad_gates[t], u)  # (B, 2H) @ (2H, H) -> (B, H)
    return grad_gates, dh


class _ReluAddSequence(torch.autograd.Function):
    """Whole-sequence recurrence in compiled code, with a hand-written backward through time."""

    @staticmethod
    def forward(ctx, xp: Tensor, weight_hh: Tensor, h0: Tensor, lengths: Tensor,  # type: ignore[override]
                reverse: bool, leak: float = 0.0, inward: bool = False):
        out, states, gates = _sequence_forward(xp, weight_hh.detach(), h0, lengths, reverse)
        ctx.save_for_backward(weight_hh, gates, states, lengths)
        ctx.reverse, ctx.leak, ctx.inward = reverse, leak, inward
        return out, states[-1].clone()

    @staticmethod
    def backward(ctx, grad_out: Tensor, grad_hn: Tensor):  # type: ignore[override]
        weight_hh, gates, states, lengths = ctx.saved_tensors
        grad_gates, grad_h0 = _sequence_backward(gates, states, weight_hh, lengths, ctx.reverse, grad_out, grad_hn,
                                                 ctx.leak, ctx.inward)
        H = states.shape[-1]
        # dU = sum_t dg_t^T h_{t-1}: one product over all steps. (T, B, 2H) -> (T*B, 2H)
        grad_w = grad_gates.reshape(-1, 2 * H).t() @ states[:-1].reshape(-1, H)
        grad_xp = reverse_within_lengths(grad_gates, lengths) if ctx.reverse else grad_gates  # step -> time order
        return grad_xp, grad_w, grad_h0, None, None, None, None


def _masked_step(h: Tensor, gates: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """One step for a batch where `keep` (B, 1) marks the sequences still running: (new state, output)."""
    h_new = relu_add_update(h, gates)
    return torch.where(keep, h_new, h), torch.where(keep, h_new, torch.zeros_like(h_new))


class ReluAddCell(nn.Module):
    """One direction of one relu_add layer: parameters, a single step, and the whole sequence."""

    def __init__(self, input_size: int, hidden_size: int, gate_bias: float = GATE_BIAS_INIT,
                 clip_grad_leak: float = 0.0, clip_grad_inward: bool = False) -> None:
        super().__init__()
        if not 0.0 <= clip_grad_leak <= 1.0:
            raise ValueError(f"clip_grad_leak={clip_grad_leak}; expected a slope in [0, 1]")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.gate_bias = gate_bias
        self.clip_grad_leak = clip_grad_leak
        self.clip_grad_inward = clip_grad_inward
        self.weight_ih = nn.Parameter(torch.empty(2 * hidden_size, input_size))
        # U (2H, H), laid out in memory as U^T (H, 2H): every step computes h @ U^T, so U^T is read
        # without a per-call transposed copy (docs/results/cells.md). Any layout stays correct.
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, 2 * hidden_size).t())
        self.bias = nn.Parameter(torch.empty(2 * hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        H = self.hidden_size
        bound = 1.0 / math.sqrt(self.input_size)
        nn.init.uniform_(self.weight_ih, -bound, bound)
        with torch.no_grad():
            for block in self.weight_hh.split(H):  # U_s and U_n, each (H, H)
                nn.init.orthogonal_(block, gain=RECURRENT_GAIN)
        nn.init.uniform_(self.bias, -bound, bound)
        with torch.no_grad():
            self.bias[:H].fill_(self.gate_bias)

    def step(self, x_t: Tensor, h_prev: Tensor) -> Tensor:
        """One step in plain torch: (B, I), (B, H) -> (B, H)."""
        return relu_add_update(h_prev, F.linear(x_t, self.weight_ih, self.bias) + h_prev @ self.weight_hh.t())

    def forward(self, x: Tensor, lengths: Tensor, h0: Tensor, reverse: bool = False) -> tuple[Tensor, Tensor]:
        """x (T, B, I), lengths (B,) int64 on CPU, h0 (B, H) -> outputs (T, B, H), h_n (B, H).

        reverse=True runs each sequence from its own last step back to its first (outputs stay in
        time order), which is the backward direction of a bidirectional layer.
        """
        xp = F.linear(x, self.weight_ih, self.bias)  # (T, B, I) -> (T, B, 2H), all steps at once
        if xp.device.type == "cpu" and not (torch.is_grad_enabled() and (xp.requires_grad or h0.requires_grad)):
            return _sequence_infer(xp, self.weight_hh, h0, lengths, reverse)
        if xp.device.type == "cpu" or (xp.is_cuda and _HAS_TRITON and xp.dtype == torch.float32):
            return _ReluAddSequence.apply(xp, self.weight_hh, h0, lengths, reverse, self.clip_grad_leak,
                                          self.clip_grad_inward)
        if self.clip_grad_leak:
            raise NotImplementedError(f"clip_grad_leak={self.clip_grad_leak} on {xp.device} ({xp.dtype}): the "
                                      f"surrogate slope needs the compiled kernels (CPU, or CUDA float32 with Triton)")
        if reverse:
            out, h_n = self._forward_loop(reverse_within_lengths(xp, lengths), lengths, h0)
            return reverse_within_lengths(out, lengths), h_n
        return self._forward_loop(xp, lengths, h0)

    def _forward_loop(self, xp: Tensor, lengths: Tensor, h0: Tensor) -> tuple[Tensor, Tensor]:
        """Fallback for accelerators without the Triton kernels (or dtypes other than float32): a loop
        of torch ops with the compiled kernels' semantics; launch-bound, so many times slower."""
        h, outputs = h0, []
        valid = torch.arange(xp.shape[0], device=xp.device)[:, None] < lengths.to(xp.device)[None, :]  # (T, B)
        u_t = self.weight_hh.t()
        for t in range(xp.shape[0]):
            h, out = _masked_step(h, xp[t] + h @ u_t, valid[t, :, None])
            outputs.append(out)
        return torch.stack(outputs), h

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, hidden_size={self.hidden_size}"
