"""Padded batches of sequences: (T, N, ...) tensors whose sequence n holds ``lengths[n]`` steps, then padding."""
from __future__ import annotations

import torch
from torch import Tensor


def reverse_within_lengths(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each sequence of x (T, N, ...) within its own length; padding stays in place.

    lengths (N,) int64 on CPU, x on any device. Reversing twice gives x back, so the same call reads a
    sequence backwards and puts a backward pass's outputs back in reading order.
    """
    T = x.shape[0]
    t = torch.arange(T)[:, None]  # (T, 1)
    idx = torch.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)  # (T, N)
    idx = idx.to(x.device).view(T, -1, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(0, idx)
