"""The adding problem, a test of long-term memory (Hochreiter & Schmidhuber 1997): data and model.

Each sequence has two channels: a value drawn uniformly from [0, 1], and a marker that is 1 at exactly
two positions, one in each half of the sequence. The target is the sum of the two marked values; the
loss is the mean squared error. Always answering 1.0 scores the variance of the sum (``BASELINE_MSE``),
so a cell that beats that by orders of magnitude carries information across about T/2 steps.

Shared by `htr bench adding` (htr.bench.adding) and the encrypted end-to-end run (htr.fhe.adding).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from htr.nn import build_recurrent

BASELINE_MSE = 1 / 6  # variance of the sum of two U(0, 1) values: the score of always answering 1.0


def adding_batch(batch: int, steps: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Returns inputs (T, N, 2) and targets (N,)."""
    values = torch.rand(steps, batch, generator=generator)
    half = steps // 2
    first = torch.randint(0, half, (batch,), generator=generator)
    second = torch.randint(half, steps, (batch,), generator=generator)
    markers = torch.zeros(steps, batch)
    cols = torch.arange(batch)
    markers[first, cols] = 1.0
    markers[second, cols] = 1.0
    target = values[first, cols] + values[second, cols]
    return torch.stack([values, markers], dim=-1), target  # (T, N) x 2 -> (T, N, 2)


class AddingModel(nn.Module):
    """Recurrent layer, then a linear read-out of the final state."""

    def __init__(self, cell: str, hidden_size: int) -> None:
        super().__init__()
        self.recurrent = build_recurrent(cell, 2, hidden_size)
        self.readout = nn.Linear(hidden_size, 1)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.recurrent(x)
        return self.readout(out[-1]).squeeze(-1)  # (T, N, H) -> (N, H) -> (N,)


__all__ = ["BASELINE_MSE", "AddingModel", "adding_batch"]
