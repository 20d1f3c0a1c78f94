"""Helpers shared by the recurrent-layer tests (test_relu_add, test_recurrent, test_adding)."""
from __future__ import annotations

import torch
from torch import nn


def randomize_(module: nn.Module, scale: float = 0.8, seed: int = 0) -> nn.Module:
    """Parameters ~ N(0, scale^2): gates and candidates then switch on and off along a sequence (the
    default init keeps the state at exactly 0 for small inputs, which would make comparisons weak)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return module


def states_of(state):
    """A layer's final state as a list (an LSTM returns (h, c), the others h)."""
    return list(state) if isinstance(state, tuple) else [state]
