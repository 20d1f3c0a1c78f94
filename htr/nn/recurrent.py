"""One factory for the three recurrent decoders, with one interface.

    layer = build_recurrent("relu_add", input_size=256, hidden_size=256, num_layers=2,
                            bidirectional=True, dropout=0.1)
    output, state = layer(x, lengths)      # x (T, N, C), or (N, T, C) with batch_first=True

output holds every step's top-layer state (both directions concatenated), zero past each sequence's
length; state is the final state at each sequence's own end: (L*D, N, H) for relu_add and gru,
a pair (h_n, c_n) for lstm, ordered as torch orders nn.GRU's. The backward direction starts at each
sequence's own last step, so padding never changes outputs or final states.
``layer(x, lengths, final_state=False)`` returns (output, None): a caller that needs only the outputs
(the recogniser) lets gru and lstm skip packing, which is slower on CPU (docs/results/cells.md).
"""
from __future__ import annotations

from typing import Union

import torch
from torch import _VF, Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from htr.errors import ShapeError, UnknownCellError
from htr.nn.relu_add import GATE_BIAS_INIT, ReluAddCell
from htr.nn.sequence import reverse_within_lengths

State = Union[Tensor, tuple[Tensor, Tensor]]
CELLS = ("relu_add", "gru", "lstm")


class RecurrentLayer(nn.Module):
    """Shared interface and input checks; subclasses implement `_run` on validated (T, N, C) input."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False,
                 dropout: float = 0.0, batch_first: bool = False) -> None:
        super().__init__()
        if input_size < 1 or hidden_size < 1 or num_layers < 1:
            raise ValueError(f"input_size, hidden_size and num_layers must be >= 1, got "
                             f"{input_size}, {hidden_size}, {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.dropout = dropout
        self.batch_first = batch_first

    @property
    def output_size(self) -> int:
        return self.hidden_size * self.num_directions

    def forward(self, x: Tensor, lengths: Tensor | None = None,
                final_state: bool = True) -> tuple[Tensor, State | None]:
        if x.dim() != 3:
            layout = "(N, T, C)" if self.batch_first else "(T, N, C)"
            raise ShapeError(f"recurrent input must have rank 3 {layout}, got shape {tuple(x.shape)}")
        if x.shape[-1] != self.input_size:
            raise ShapeError(f"recurrent input has {x.shape[-1]} features, expected input_size={self.input_size}")
        if self.batch_first:
            x = x.transpose(0, 1)  # (N, T, C) -> (T, N, C)
        T, N, _ = x.shape
        lengths = self._check_lengths(lengths, T, N)
        output, state = self._run(x, lengths, final_state)
        if not final_state:
            state = None  # the same answer from every cell, whether or not it had the state at hand
        if self.batch_first:
            output = output.transpose(0, 1)  # (T, N, D*H) -> (N, T, D*H)
        return output, state

    @staticmethod
    def _check_lengths(lengths: Tensor | None, T: int, N: int) -> Tensor:
        if lengths is None:
            return torch.full((N,), T, dtype=torch.int64)
        lengths = torch.as_tensor(lengths).to("cpu", torch.int64)
        if lengths.shape != (N,):
            raise ShapeError(f"lengths must have shape ({N},) (one per sequence), got {tuple(lengths.shape)}")
        if N and (int(lengths.max()) > T or int(lengths.min()) < 1):
            raise ShapeError(f"lengths must lie in [1, {T}] (the padded sequence length), "
                             f"got min {int(lengths.min())}, max {int(lengths.max())}")
        return lengths

    def _run(self, x: Tensor, lengths: Tensor, final_state: bool) -> tuple[Tensor, State | None]:
        raise NotImplementedError


class TorchRecurrent(RecurrentLayer):
    """torch's native nn.GRU / nn.LSTM behind the shared interface.

    Sequences of different lengths run packed, except on CPU when no final state is wanted: then each
    layer and direction runs padded, the backward direction on sequences reversed within their lengths
    (same outputs as packing, faster: docs/results/cells.md). The weights stay in the one
    nn.GRU / nn.LSTM module, so state dicts are torch's own.
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0, batch_first: bool = False,
                 forget_bias: float | None = None) -> None:
        super().__init__(input_size, hidden_size, num_layers, bidirectional, dropout, batch_first)
        module = {"gru": nn.GRU, "lstm": nn.LSTM}[cell]
        self.rnn = module(input_size, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                          dropout=dropout if num_layers > 1 else 0.0)
        if forget_bias is not None:
            if cell != "lstm":
                raise ValueError(f"forget_bias is an lstm initialisation, got it for cell {cell!r}")
            self._init_forget_bias(forget_bias)

    @torch.no_grad()
    def _init_forget_bias(self, value: float) -> None:
        """Start every forget gate at sigmoid(value) (Jozefowicz et al. 2015; Keras' unit_forget_bias).

        torch orders an LSTM's gate rows (input, forget, cell, output) and adds bias_ih and bias_hh.
        """
        H = self.hidden_size
        for name, bias in self.rnn.named_parameters():
            if name.startswith("bias_"):
                bias[H:2 * H] = value if name.startswith("bias_ih") else 0.0

    def _run(self, x: Tensor, lengths: Tensor, final_state: bool) -> tuple[Tensor, State | None]:
        T = x.shape[0]
        if bool((lengths == T).all()):
            return self.rnn(x)
        if not final_state and x.device.type == "cpu":
            return self._run_padded(x, lengths), None
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        output, state = self.rnn(packed)
        output, _ = pad_packed_sequence(output, total_length=T)
        return output, state

    def _direction(self, x: Tensor, layer: int, reverse: bool) -> Tensor:
        """One layer, one direction, forward in time over padded (T, N, C) -> (T, N, H)."""
        rnn, suffix = self.rnn, f"_l{layer}" + ("_reverse" if reverse else "")
        weights = [getattr(rnn, f"{name}{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        h0 = x.new_zeros(1, x.shape[1], self.hidden_size)
        # The entry points nn.GRU / nn.LSTM.forward call, here with one layer's weights.
        if isinstance(rnn, nn.LSTM):
            return _VF.lstm(x, (h0, h0), weights, True, 1, 0.0, self.training, False, False)[0]
        return _VF.gru(x, h0, weights, True, 1, 0.0, self.training, False, False)[0]

    def _run_padded(self, x: Tensor, lengths: Tensor) -> Tensor:
        T = x.shape[0]
        for k in range(self.num_layers):
            if k > 0:
                x = F.dropout(x, self.rnn.dropout, self.training)  # as nn.GRU: between layers only
            out = self._direction(x, k, reverse=False)
            if self.bidirectional:
                x_rev = reverse_within_lengths(x, lengths)  # (T, N, C): each line read backwards
                out_rev = self._direction(x_rev, k, reverse=True)
                out_rev = reverse_within_lengths(out_rev, lengths)  # back to reading order
                out = torch.cat([out, out_rev], dim=-1)  # (T, N, H) x 2 -> (T, N, 2H)
            x = out
        valid = torch.arange(T, device=x.device).unsqueeze(1) < lengths.to(x.device).unsqueeze(0)  # (T, N)
        return x * valid.unsqueeze(-1)  # zero past each length, as pad_packed_sequence leaves it


class ReluAddRecurrent(RecurrentLayer):
    """Stacked, optionally bidirectional relu_add layers (see htr.nn.relu_add for the equations)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bidirectional: bool = False,
                 dropout: float = 0.0, batch_first: bool = False, gate_bias: float = GATE_BIAS_INIT,
                 clip_grad_leak: float = 0.0, clip_grad_inward: bool = False) -> None:
        super().__init__(input_size, hidden_size, num_layers, bidirectional, dropout, batch_first)
        self.cells = nn.ModuleList(
            ReluAddCell(input_size if k == 0 else self.output_size, hidden_size, gate_bias, clip_grad_leak,
                        clip_grad_inward)
            for k in range(num_layers) for _ in range(self.num_directions))
        self.between_layers = nn.Dropout(dropout)

    def cell(self, layer: int, reverse: bool = False) -> ReluAddCell:
        return self.cells[layer * self.num_directions + int(reverse)]

    def _run(self, x: Tensor, lengths: Tensor, final_state: bool) -> tuple[Tensor, State | None]:
        N = x.shape[1]
        h0 = x.new_zeros(N, self.hidden_size)
        finals = []
        for k in range(self.num_layers):
            if k > 0:
                x = self.between_layers(x)
            out, h_n = self.cell(k)(x, lengths, h0)
            finals.append(h_n)
            if self.bidirectional:
                out_rev, h_rev = self.cell(k, reverse=True)(x, lengths, h0, reverse=True)
                out = torch.cat([out, out_rev], dim=-1)  # (T, N, H) x 2 -> (T, N, 2H)
                finals.append(h_rev)
            x = out
        return x, torch.stack(finals)  # (L*D, N, H)


def build_recurrent(name: str, input_size: int, hidden_size: int, num_layers: int = 1,
                    bidirectional: bool = False, dropout: float = 0.0, batch_first: bool = False,
                    gate_bias: float = GATE_BIAS_INIT, forget_bias: float | None = None,
                    clip_grad_leak: float = 0.0, clip_grad_inward: bool = False) -> RecurrentLayer:
    """Build a recurrent layer by cell name: one of relu_add, gru, lstm.

    gate_bias is relu_add's initial gate-score bias b_s; forget_bias, when given, lstm's initial
    forget-gate bias (torch's default init otherwise). Each is ignored by the other cells.
    """
    kwargs = dict(num_layers=num_layers, bidirectional=bidirectional, dropout=dropout, batch_first=batch_first)
    if name == "relu_add":
        return ReluAddRecurrent(input_size, hidden_size, gate_bias=gate_bias, clip_grad_leak=clip_grad_leak,
                                clip_grad_inward=clip_grad_inward, **kwargs)
    if name == "lstm":
        return TorchRecurrent(name, input_size, hidden_size, forget_bias=forget_bias, **kwargs)
    if name == "gru":
        return TorchRecurrent(name, input_size, hidden_size, **kwargs)
    raise UnknownCellError(f"unknown recurrent cell {name!r}: expected one of {', '.join(CELLS)}")
