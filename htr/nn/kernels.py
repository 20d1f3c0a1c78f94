"""Compiled (numba) forward and backward recurrences of the relu_add cell.

The per-time-step loop is the only part of the layer that cannot be batched over time, so it runs
here, in machine code: one matrix product for h_{t-1} U^T per step, then one fused element-wise pass
(`forward_step` / `backward_step`). The input projections W x_t + b for all steps are computed before,
in one matrix product by torch, and the weight gradients after, in one matrix product too.

Two drivers share those element-wise kernels:
- `relu_add_forward` / `relu_add_backward` keep the whole loop in machine code (np.dot -> scipy's
  BLAS). Fastest for small batches, where per-step call overhead dominates.
- htr.nn.relu_add drives the loop from Python for large batches, with torch's (MKL) matrix product per
  step, which is faster than scipy's BLAS there (docs/results/cells.md); the per-step call overhead
  is then small against the product.

The equations are htr.nn.relu_add's; here the pre-activations g_t = Xp_t + h_{t-1} U^T (Xp_t = W x_t + b,
computed outside) are split into g = [s | a], the gate score s and the candidate's input a (n = clip(a)).
Derivatives follow ReLU'(v) = [v > 0], so they match torch autograd of the same expressions exactly;
with ``leak`` > 0 the backward uses a surrogate slope for the two clips instead: 1 inside [-1, 1],
``leak`` outside, where the exact slope is 0 (the forward is unchanged; see htr.nn.relu_add); with
``inward`` only where the gradient step moves the clipped value back towards [-1, 1].
Sequences of length L[b] < T keep their state after step L[b] and emit zeros there (packed semantics).
With reverse=True, step i of sequence b reads time L[b]-1-i, so the backward direction starts at each
sequence's own end; gates, states and grad_gates stay in step order, outputs in time order.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def _relu(v):
    return v if v > 0.0 else 0.0 * v


@njit(cache=True, inline="always")
def _ind(c):
    """Indicator [c] as a float: the derivative of ReLU at the argument's sign test."""
    return 1.0 if c else 0.0


@njit(cache=True, inline="always")
def _clip(v):
    return _relu(v + 1.0) - _relu(v - 1.0) - 1.0


@njit(cache=True, inline="always")
def _dclip(v, leak, inward, grad):
    """Slope of clip at v: 1 inside, 0 outside; ``leak`` outside when training with the surrogate,
    with ``inward`` only where grad (dL/dclip) points outwards, so that descent moves v back inside."""
    d = _ind(v + 1.0 > 0.0) - _ind(v - 1.0 > 0.0)
    return d + leak * (1.0 - d) * (_ind(grad * v > 0.0) if inward else 1.0)


@njit(cache=True, inline="always")
def _step(h_prev, s, a):
    """One unit of one step; returns (h_new, n, z) with z the pre-clip sum."""
    n = _clip(a)
    p = _relu(s)
    q = _relu(-s)
    z = (_relu(h_prev - p) - _relu(-h_prev - p)) + (_relu(n - q) - _relu(-n - q))
    return _clip(z), n, z


@njit(cache=True)
def forward_step(t, hu, xp, lengths, reverse, h_prev, h_new, out, gates_t):
    """Element-wise part of step t, given hu = h_{t-1} U^T (B, 2H). Writes h_new, out[.] and gates_t
    (B, 2H), the pre-activations of this step (gates_t may be hu itself when they need not be kept)."""
    B, H2 = hu.shape
    H = H2 // 2
    for b in range(B):
        if t >= lengths[b]:  # past this sequence's end: keep the state, emit zeros
            for j in range(H):
                h_new[b, j] = h_prev[b, j]
                out[t, b, j] = 0.0
            continue
        tb = lengths[b] - 1 - t if reverse else t  # time index read and written for this step
        for j in range(H2):
            gates_t[b, j] = hu[b, j] + xp[tb, b, j]
        for j in range(H):
            hn, _, _ = _step(h_prev[b, j], gates_t[b, j], gates_t[b, H + j])
            h_new[b, j] = hn
            out[tb, b, j] = hn


@njit(cache=True)
def backward_step(t, dh, gates, states, lengths, reverse, grad_out, grad_gates, leak, inward):
    """Element-wise part of the backward of step t.

    On entry dh = dL/dh_t from later steps; on exit dh holds only the direct part of dL/dh_{t-1}
    (through inh(h_{t-1}, .)), and grad_gates[t] = dL/dg_t. The caller adds grad_gates[t] @ U to dh.
    leak: the clips' surrogate slope outside [-1, 1] (0: the exact derivative); inward: only where
    descent moves the value back inside.
    """
    B, H2 = grad_gates.shape[1:]
    H = H2 // 2
    for b in range(B):
        if t >= lengths[b]:  # the frozen state passes its gradient straight through
            for j in range(H2):
                grad_gates[t, b, j] = 0.0
            continue
        for j in range(H):
            hp = states[t, b, j]
            go = grad_out[lengths[b] - 1 - t, b, j] if reverse else grad_out[t, b, j]
            s = gates[t, b, j]
            a = gates[t, b, H + j]
            n = _clip(a)
            p = _relu(s)
            q = _relu(-s)
            z = (_relu(hp - p) - _relu(-hp - p)) + (_relu(n - q) - _relu(-n - q))
            gz = dh[b, j] + go
            dz = gz * _dclip(z, leak, inward, gz)
            # inh(v, q): d/dv = [v-q>0] + [-v-q>0];  d/dq = [-v-q>0] - [v-q>0]
            hp_pos = _ind(hp - p > 0.0)
            hp_neg = _ind(-hp - p > 0.0)
            n_pos = _ind(n - q > 0.0)
            n_neg = _ind(-n - q > 0.0)
            dp = dz * (hp_neg - hp_pos)
            dq = dz * (n_neg - n_pos)
            dn = dz * (n_pos + n_neg)
            grad_gates[t, b, j] = dp * _ind(s > 0.0) - dq * _ind(-s > 0.0)
            grad_gates[t, b, H + j] = dn * _dclip(a, leak, inward, dn)
            dh[b, j] = dz * (hp_pos + hp_neg)


@njit(cache=True)
def relu_add_forward(xp, u_t, lengths, reverse, out, states, gates):
    """Run the recurrence with the loop in machine code.

    xp      (T, B, 2H)  input projections W x_t + b
    u_t     (H, 2H)     recurrent weights, transposed (g += h @ u_t)
    lengths (B,) int64  valid steps per sequence
    reverse  bool       run each sequence from its own last step to its first
    out     (T, B, H)   written: h_t, zero past each sequence's length
    states  (T+1, B, H) states[0] = h_0 on entry; written: h_1 .. h_T (frozen past each length)
    gates   (T, B, 2H)  written: pre-activations g_t, kept for the backward
    """
    T, B, H2 = xp.shape
    hu = np.empty((B, H2), dtype=xp.dtype)
    for t in range(T):
        np.dot(states[t], u_t, hu)  # (B, H) @ (H, 2H) -> (B, 2H)
        forward_step(t, hu, xp, lengths, reverse, states[t], states[t + 1], out, gates[t])


@njit(cache=True)
def relu_add_infer(xp, u_t, lengths, reverse, h, out):
    """`relu_add_forward` for inference: nothing kept for a backward, so the state lives in two
    (B, H) buffers and the pre-activations in one (B, 2H) row. h (B, H) is h_0 on entry; returns h_n."""
    T, B, H2 = xp.shape
    hu = np.empty((B, H2), dtype=xp.dtype)
    h, h_next = h.copy(), np.empty_like(h)
    for t in range(T):
        np.dot(h, u_t, hu)  # (B, H) @ (H, 2H) -> (B, 2H)
        forward_step(t, hu, xp, lengths, reverse, h, h_next, out, hu)
        h, h_next = h_next, h
    return h


@njit(cache=True)
def relu_add_backward(gates, states, u, lengths, reverse, grad_out, grad_hn, grad_gates, leak, inward):
    """Back-propagate through time with the loop in machine code; returns dL/dh_0.

    u (2H, H) is the untransposed recurrent weight (dh_{t-1} += dg_t @ u); grad_out (T, B, H) and
    grad_hn (B, H) are the incoming gradients; grad_gates (T, B, 2H) is written with dL/dXp, in step
    order (the caller maps it back to time order when reverse); leak, inward as in `backward_step`.
    """
    T = gates.shape[0]
    dh = grad_hn.copy()
    dhu = np.empty_like(dh)
    for t in range(T - 1, -1, -1):
        backward_step(t, dh, gates, states, lengths, reverse, grad_out, grad_gates, leak, inward)
        np.dot(grad_gates[t], u, dhu)  # (B, 2H) @ (2H, H) -> (B, H)
        dh += dhu
    return dh
