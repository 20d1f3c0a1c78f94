"""Compiled (numba) forward and backward recurrences of the relu_add cell.

The per-time-step loop is the only part of the layer that cannot be batched over time, so it runs
here, in machine code: one BLAS call (np.dot -> scipy's BLAS) for h_{t-1} U^T per step, then one
fused element-wise pass. The input projections W x_t + b for all steps are computed before, in one
matrix product by torch, and the weight gradients after, in one matrix product too.

Equations (H hidden units; g = [s | a] are the two H-wide halves of the pre-activations):
    g_t   = Xp_t + h_{t-1} U^T                 Xp_t = W x_t + b, computed outside
    s_t   = g_t[:H]                             gate score
    n_t   = clip(g_t[H:])                       candidate
    h_t   = clip(inh(h_{t-1}, ReLU(s_t)) + inh(n_t, ReLU(-s_t)))
    clip(v)   = ReLU(v + 1) - ReLU(v - 1) - 1
    inh(v, q) = ReLU(v - q) - ReLU(-v - q)
Derivatives follow ReLU'(v) = [v > 0], so they match torch autograd of the same expressions exactly.
Sequences of length L[b] < T keep their state after step L[b] and emit zeros there (packed semantics).
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
def _step(h_prev, s, a):
    """One unit of one step; returns (h_new, n, z) with z the pre-clip sum."""
    n = _clip(a)
    p = _relu(s)
    q = _relu(-s)
    z = (_relu(h_prev - p) - _relu(-h_prev - p)) + (_relu(n - q) - _relu(-n - q))
    return _clip(z), n, z


@njit(cache=True)
def relu_add_forward(xp, u_t, h0, lengths, out, states, gates):
    """Run the recurrence.

    xp      (T, B, 2H)  input projections W x_t + b
    u_t     (H, 2H)     recurrent weights, transposed (g += h @ u_t)
    h0      (B, H)      initial state
    lengths (B,) int64  valid steps per sequence
    out     (T, B, H)   written: h_t, zero past each sequence's length
    states  (T+1, B, H) written: h_0 .. h_T (frozen past each length); needed by the backward
    gates   (T, B, 2H)  written: pre-activations g_t; needed by the backward
    """
    T, B, H2 = xp.shape
    H = H2 // 2
    h = h0.copy()
    states[0] = h
    hu = np.empty((B, H2), dtype=xp.dtype)
    for t in range(T):
        np.dot(h, u_t, hu)  # (B, H) @ (H, 2H) -> (B, 2H)
        for b in range(B):
            if t >= lengths[b]:
                for j in range(H):
                    out[t, b, j] = 0.0
                continue
            for j in range(H2):
                gates[t, b, j] = hu[b, j] + xp[t, b, j]
            for j in range(H):
                hn, _, _ = _step(h[b, j], gates[t, b, j], gates[t, b, H + j])
                h[b, j] = hn
                out[t, b, j] = hn
        states[t + 1] = h


@njit(cache=True)
def relu_add_backward(gates, states, u, lengths, grad_out, grad_hn, grad_gates):
    """Back-propagate through time; returns dL/dh_0 and fills grad_gates (= dL/dXp).

    u (2H, H) is the untransposed recurrent weight (dh_{t-1} += dg_t @ u).
    grad_out (T, B, H) and grad_hn (B, H) are the incoming gradients.
    """
    T, B, H2 = gates.shape
    H = H2 // 2
    dh = grad_hn.copy()
    dhu = np.empty((B, H), dtype=gates.dtype)
    for t in range(T - 1, -1, -1):
        for b in range(B):
            if t >= lengths[b]:
                for j in range(H2):
                    grad_gates[t, b, j] = 0.0
                continue  # the frozen state passes its gradient straight through
            for j in range(H):
                hp = states[t, b, j]
                s = gates[t, b, j]
                a = gates[t, b, H + j]
                n = _clip(a)
                p = _relu(s)
                q = _relu(-s)
                z = (_relu(hp - p) - _relu(-hp - p)) + (_relu(n - q) - _relu(-n - q))
                dz = (dh[b, j] + grad_out[t, b, j]) * (_ind(z + 1.0 > 0.0) - _ind(z - 1.0 > 0.0))
                # inh(v, q): d/dv = [v-q>0] + [-v-q>0];  d/dq = [-v-q>0] - [v-q>0]
                hp_pos = _ind(hp - p > 0.0)
                hp_neg = _ind(-hp - p > 0.0)
                n_pos = _ind(n - q > 0.0)
                n_neg = _ind(-n - q > 0.0)
                dp = dz * (hp_neg - hp_pos)
                dq = dz * (n_neg - n_pos)
                dn = dz * (n_pos + n_neg)
                grad_gates[t, b, j] = dp * _ind(s > 0.0) - dq * _ind(-s > 0.0)
                grad_gates[t, b, H + j] = dn * (_ind(a + 1.0 > 0.0) - _ind(a - 1.0 > 0.0))
                dh[b, j] = dz * (hp_pos + hp_neg)
        np.dot(grad_gates[t], u, dhu)  # (B, 2H) @ (2H, H) -> (B, H)
        for b in range(B):
            for j in range(H):
                dh[b, j] += dhu[b, j]
    return dh
