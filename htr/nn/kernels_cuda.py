"""Triton (CUDA) versions of the element-wise step kernels of htr.nn.kernels.

Same equations, masks and reverse-direction indexing as the numba `forward_step` / `backward_step`;
the per-step matrix products stay in torch (cuBLAS), driven by the same Python loop as on the CPU
(htr.nn.relu_add). One program handles BLOCK units of the (B, H) state; nothing here builds an
autograd graph, so a step costs two kernel launches forward and two backward.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 256


@triton.jit
def _clip(v):
    return tl.maximum(v + 1.0, 0.0) - tl.maximum(v - 1.0, 0.0) - 1.0


@triton.jit
def _step(h_prev, s, a):
    """One step's element-wise part: candidate n, inhibitions p and q, pre-clip sum z."""
    n = _clip(a)
    p = tl.maximum(s, 0.0)
    q = tl.maximum(-s, 0.0)
    z = ((tl.maximum(h_prev - p, 0.0) - tl.maximum(-h_prev - p, 0.0))
         + (tl.maximum(n - q, 0.0) - tl.maximum(-n - q, 0.0)))
    return n, p, q, z


@triton.jit
def _lanes(t, len_ptr, B, H, REVERSE: tl.constexpr, BLOCK: tl.constexpr):
    """This program's BLOCK units of the (B, H) state: flat index, row b, unit j, in-range and
    still-running masks, and the time index tb that step t reads and writes (padding keeps t)."""
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    inside = idx < B * H
    b = idx // H
    j = idx % H
    length = tl.load(len_ptr + b, mask=inside, other=0)
    live = inside & (t < length)
    if REVERSE:
        tb = length - 1 - t
    else:
        tb = length * 0 + t
    return idx, b, j, inside, live, tl.where(live, tb, t)


@triton.jit
def _forward_step_kernel(t, hu_ptr, xp_ptr, len_ptr, h_prev_ptr, h_new_ptr, out_ptr, gates_ptr, B, H,
                         REVERSE: tl.constexpr, BLOCK: tl.constexpr):
    idx, b, j, inside, live, tb = _lanes(t, len_ptr, B, H, REVERSE, BLOCK)
    h_prev = tl.load(h_prev_ptr + idx, mask=inside, other=0.0)
    s = (tl.load(hu_ptr + b * 2 * H + j, mask=live, other=0.0)
         + tl.load(xp_ptr + (tb * B + b) * 2 * H + j, mask=live, other=0.0))
    a = (tl.load(hu_ptr + b * 2 * H + H + j, mask=live, other=0.0)
         + tl.load(xp_ptr + (tb * B + b) * 2 * H + H + j, mask=live, other=0.0))
    tl.store(gates_ptr + (t * B + b) * 2 * H + j, s, mask=live)
    tl.store(gates_ptr + (t * B + b) * 2 * H + H + j, a, mask=live)
    n, p, q, z = _step(h_prev, s, a)
    h = _clip(z)
    tl.store(h_new_ptr + idx, tl.where(live, h, h_prev), mask=inside)
    tl.store(out_ptr + (tb * B + b) * H + j, tl.where(live, h, 0.0), mask=inside)


@triton.jit
def _backward_step_kernel(t, dh_ptr, gates_ptr, states_ptr, len_ptr, grad_out_ptr, grad_gates_ptr, B, H,
                          REVERSE: tl.constexpr, BLOCK: tl.constexpr):
    idx, b, j, inside, live, tb = _lanes(t, len_ptr, B, H, REVERSE, BLOCK)
    hp = tl.load(states_ptr + (t * B + b) * H + j, mask=live, other=0.0)
    s = tl.load(gates_ptr + (t * B + b) * 2 * H + j, mask=live, other=0.0)
    a = tl.load(gates_ptr + (t * B + b) * 2 * H + H + j, mask=live, other=0.0)
    dh = tl.load(dh_ptr + idx, mask=inside, other=0.0)
    go = tl.load(grad_out_ptr + (tb * B + b) * H + j, mask=live, other=0.0)
    n, p, q, z = _step(hp, s, a)
    dz = (dh + go) * ((z + 1.0 > 0.0).to(tl.float32) - (z - 1.0 > 0.0).to(tl.float32))
    hp_pos = (hp - p > 0.0).to(tl.float32)
    hp_neg = (-hp - p > 0.0).to(tl.float32)
    n_pos = (n - q > 0.0).to(tl.float32)
    n_neg = (-n - q > 0.0).to(tl.float32)
    dp = dz * (hp_neg - hp_pos)
    dq = dz * (n_neg - n_pos)
    dn = dz * (n_pos + n_neg)
    ds = dp * (s > 0.0).to(tl.float32) - dq * (-s > 0.0).to(tl.float32)
    da = dn * ((a + 1.0 > 0.0).to(tl.float32) - (a - 1.0 > 0.0).to(tl.float32))
    tl.store(grad_gates_ptr + (t * B + b) * 2 * H + j, tl.where(live, ds, 0.0), mask=inside)
    tl.store(grad_gates_ptr + (t * B + b) * 2 * H + H + j, tl.where(live, da, 0.0), mask=inside)
    tl.store(dh_ptr + idx, tl.where(live, dz * (hp_pos + hp_neg), dh), mask=inside)


def _grid(B: int, H: int) -> tuple[int]:
    return (triton.cdiv(B * H, BLOCK),)


def forward_step(t: int, hu: torch.Tensor, xp: torch.Tensor, lengths: torch.Tensor, reverse: bool,
                 h_prev: torch.Tensor, h_new: torch.Tensor, out: torch.Tensor, gates: torch.Tensor) -> None:
    B, H = h_prev.shape
    _forward_step_kernel[_grid(B, H)](t, hu, xp, lengths, h_prev, h_new, out, gates, B, H,
                                      REVERSE=reverse, BLOCK=BLOCK)


def backward_step(t: int, dh: torch.Tensor, gates: torch.Tensor, states: torch.Tensor, lengths: torch.Tensor,
                  reverse: bool, grad_out: torch.Tensor, grad_gates: torch.Tensor) -> None:
    B, H = dh.shape
    _backward_step_kernel[_grid(B, H)](t, dh, gates, states, lengths, grad_out, grad_gates, B, H,
                                       REVERSE=reverse, BLOCK=BLOCK)
