"""Integer-only relu_add recurrent layer: a drop-in for a trained `ReluAddRecurrent` at inference.

    layer = IntegerReluAdd.from_float(recurrent)          # recurrent: a trained ReluAddRecurrent
    output, state = layer(x, lengths)                      # same interface: (T, N, C) -> (T, N, D*H)

Number formats (per cell = one layer and direction):
- weights W (2H, I) and U (2H, H): int8, one scale per row: W_int = rint(W / s_w), s_w = max|W_row| / 127;
- input of the first layer: int8 with one dynamic scale per line, x_int = rint(x / s_x),
  s_x = max|x| / 127 over the line's valid steps (torch's dynamic quantisation takes one per tensor:
  a line would then read differently with other lines in its batch, or more padding); later layers
  read the previous layer's integer states directly (scale 1 / Q);
- state h: integer in [-Q, Q], Q = 2^(state_bits - 1) - 1 (default 127), h ~= h_int / Q;
- accumulation: exact int32 sums W_int x_int and U_int h_int;
- requantisation: the two accumulators and the bias meet on one fixed-point grid of 1 / (Q 2^F),
  g = (acc_x M_x + acc_h M_h + B + 2^(S-1)) >> S with int64 multipliers M = rint(scale Q 2^(F+S)),
  i.e. round half up (S = 20 shift bits, F = frac_bits extra fraction bits for the gates);
- the step itself, in integers on that grid (QF = Q 2^F):
      q = clamp(s, 0, QF), r = clamp(-s, 0, QF), n = clamp(a, -QF, QF), hF = h_int 2^F
      u = relu(hF - q) - relu(-hF - q), v = relu(n - r) - relu(-n - r)
      h_int' = clamp((u + v + 2^(F-1)) >> F, -Q, Q)          round half up
  No float is used between the input quantisation and the output (h_int / Q).

Kernels (``kernel=``), all with these integer results, bit for bit:
- "vnni" (the default where the CPU has AVX-512 VNNI) and "generic" (any CPU), htr.nn.kernels_int: the
  input projection of all steps as one int8 x int8 -> int32 GEMM (torch._int_mm), the recurrence for the
  whole batch in numba, U_int h_int per step with VPDPBUSD (vnni) or plain loops (generic), int8 states
  and outputs. They need int8 states (state_bits <= 8).
- "reference": the first implementation, kept to check the others against: the input projection by
  float32 BLAS on the integer values (exact: every partial sum is an integer below 2^24), one sequence
  at a time in numba with int16 x int16 -> int32 sums; any state_bits up to 16.
"""
from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor, nn

from htr.nn import kernels_int
from htr.nn.recurrent import RecurrentLayer, ReluAddRecurrent

SHIFT = kernels_int.SHIFT
KERNELS = ("auto", "vnni", "generic", "reference")


@njit(cache=True)
def _recurrence(accx, u_int, mx, mh, bias, lengths, reverse, Q, F, out_int, h_last):
    """accx (T, N, 2H) int32 = W_int x_int; u_int (2H, H) int8 values held as int16, because
    int16 x int16 -> int32 dot products vectorise better than int8 x int32 ones (docs/results/fhe.md);
    mx (N, 2H), mh and bias (2H,) int64 fixed point (mx: one row per line, from its input scale).

    Writes out_int (T, N, H) int32 (zeros past each length) and h_last (N, H) int32.
    """
    T, N, H2 = accx.shape
    H = H2 // 2
    QF = Q << F
    half = 1 << (SHIFT - 1)
    fhalf = (1 << (F - 1)) if F > 0 else 0
    for b in prange(N):
        h = np.zeros(H, dtype=np.int16)
        hn = np.zeros(H, dtype=np.int16)
        g = np.zeros(H2, dtype=np.int64)
        accs = np.zeros(H2, dtype=np.int32)
        L = lengths[b]
        for i in range(L):
            t = L - 1 - i if reverse else i
            for j in range(H2):  # U_int h_int: a tight int16 x int16 -> int32 dot product per row
                acc = np.int32(0)
                for k in range(H):
                    acc += np.int32(u_int[j, k]) * np.int32(h[k])
                accs[j] = acc
            for j in range(H2):  # requantise both accumulators and the bias onto the gate grid
                g[j] = (np.int64(accx[t, b, j]) * mx[b, j] + np.int64(accs[j]) * mh[j] + bias[j] + half) >> SHIFT
            for j in range(H):
                s = g[j]
                a = g[H + j]
                q = min(max(s, 0), QF)
                r = min(max(-s, 0), QF)
                n = min(max(a, -QF), QF)
                hf = np.int64(h[j]) << F
                u = max(hf - q, 0) - max(-hf - q, 0)
                v = max(n - r, 0) - max(-n - r, 0)
                z = (u + v + fhalf) >> F
                hn[j] = min(max(z, -Q), Q)
            for j in range(H):
                h[j] = hn[j]
                out_int[t, b, j] = hn[j]
        for j in range(H):
            h_last[b, j] = h[j]


def _row_int8(w: np.ndarray, bits: int = 8) -> tuple[np.ndarray, np.ndarray]:
    qmax = 2 ** (bits - 1) - 1
    scale = np.maximum(np.abs(w).max(axis=1), 1e-12) / qmax
    return np.clip(np.rint(w / scale[:, None]), -qmax, qmax).astype(np.int8), scale


class _IntCell:
    def __init__(self, cell, weight_bits: int) -> None:
        W = cell.weight_ih.detach().double().numpy()
        U = cell.weight_hh.detach().double().numpy()
        self.hidden_size = U.shape[1]
        self.w_int, self.sw = _row_int8(W, weight_bits)
        self.u_int, self.su = _row_int8(U, weight_bits)
        self.u_int16 = self.u_int.astype(np.int16)  # same int8 values; int16 storage for the kernel
        self.b = cell.bias.detach().double().numpy()
        self.w_f32 = self.w_int.astype(np.float32).T.copy()  # (I, 2H) for the exact float32 product
        self.w_t = np.ascontiguousarray(self.w_int.T)  # (I, 2H) int8 for the integer GEMM
        self._fast: dict[tuple, tuple] = {}

    def fast_constants(self, kernel: str, Q: int, F: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For the vnni / generic kernels, made once: U in the kernel's layout (htr.nn.kernels_int.pack),
        the row scales s_w, M_h and C0 = B + 2^(S-1) - M_h 128 sum_k U[j, k], zero-padded to its rows."""
        key = (kernel, Q, F)
        if key not in self._fast:
            packed, correction = kernels_int.pack(self.u_int, kernel)
            mh, bias = self.multipliers(Q, F)
            sw, mh, bias = (np.concatenate([v, np.zeros(len(correction) - len(v), v.dtype)])
                            for v in (self.sw, mh, bias))
            self._fast[key] = (packed, sw, mh, bias + (1 << (SHIFT - 1)) - mh * correction)
        return self._fast[key]

    def input_multipliers(self, x_scales: np.ndarray, Q: int, F: int, sw: np.ndarray | None = None) -> np.ndarray:
        """M_x (N, rows) int64 on the gate grid 1 / (Q 2^F): one row per line, from its input scale
        (N,); sw: the row scales (default this cell's; the fast kernels pass their zero-padded copy)."""
        sw = self.sw if sw is None else sw
        return np.rint(np.asarray(x_scales, dtype=np.float64)[:, None] * sw[None, :] * float(Q * 2 ** F)
                       * 2 ** SHIFT).astype(np.int64)

    def fast_mx(self, kernel: str, x_scales: np.ndarray, Q: int, F: int) -> np.ndarray:
        """`input_multipliers` on the fast kernels' padded rows."""
        return self.input_multipliers(x_scales, Q, F, self.fast_constants(kernel, Q, F)[1])

    def multipliers(self, Q: int, F: int) -> tuple[np.ndarray, np.ndarray]:
        """The fixed-point multiplier M_h and the bias B (2H,) int64 on the gate grid 1 / (Q 2^F)."""
        QF = float(Q * 2 ** F)
        mh = np.rint(self.su / Q * QF * 2 ** SHIFT).astype(np.int64)
        bias = np.rint(self.b * QF * 2 ** SHIFT).astype(np.int64)
        return mh, bias


class IntegerReluAdd(RecurrentLayer):
    """Integer-only inference copy of a ReluAddRecurrent (see the module docstring).

    kernel: "auto" (vnni where the CPU has it, else generic; reference for states wider than 8 bits),
    "vnni", "generic" or "reference"; every kernel gives the same integers.
    """

    def __init__(self, recurrent: ReluAddRecurrent, state_bits: int = 8, weight_bits: int = 8,
                 input_bits: int = 8, frac_bits: int = 8, kernel: str = "auto") -> None:
        super().__init__(recurrent.input_size, recurrent.hidden_size, recurrent.num_layers,
                         recurrent.bidirectional, 0.0, recurrent.batch_first)
        if not 2 <= weight_bits <= 8 or not 2 <= input_bits <= 8:
            raise ValueError(f"weight_bits and input_bits must lie in [2, 8] (int8), got {weight_bits}, {input_bits}")
        if not 2 <= state_bits <= 16 or not 0 <= frac_bits <= 12:
            raise ValueError(f"state_bits must lie in [2, 16] and frac_bits in [0, 12], got {state_bits}, {frac_bits}")
        self.Q = 2 ** (state_bits - 1) - 1
        self.F = frac_bits
        self.input_bits = input_bits
        self.state_bits = state_bits
        self.cells_int = [_IntCell(c, weight_bits) for c in recurrent.cells]
        self.kernel = self._pick_kernel(kernel, state_bits)

    @staticmethod
    def _pick_kernel(kernel: str, state_bits: int) -> str:
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
        if kernel == "auto":
            return "reference" if state_bits > 8 else ("vnni" if kernels_int.HAS_VNNI else "generic")
        if kernel != "reference" and state_bits > 8:
            raise ValueError(f"kernel {kernel!r} holds states in int8: state_bits must be <= 8, got {state_bits} "
                             f"(kernel='reference' takes up to 16)")
        if kernel == "vnni" and not kernels_int.HAS_VNNI:
            raise ValueError("kernel 'vnni' needs a CPU with AVX-512 VNNI (and numba compiling for it); "
                             "this one has none: use kernel='generic'")
        return kernel

    @classmethod
    def from_float(cls, recurrent: ReluAddRecurrent, **kwargs) -> "IntegerReluAdd":
        if not isinstance(recurrent, ReluAddRecurrent):
            raise TypeError(f"expected a ReluAddRecurrent, got {type(recurrent).__name__}")
        return cls(recurrent, **kwargs)

    def _cell(self, layer: int, reverse: bool) -> _IntCell:
        return self.cells_int[layer * self.num_directions + int(reverse)]

    def _run_cell(self, c: _IntCell, x_int: np.ndarray, x_scales: np.ndarray, lengths: np.ndarray, reverse: bool):
        """The reference kernel: one direction of one layer."""
        T, N, I = x_int.shape
        xmax = int(np.abs(x_int).max()) if x_int.size else 0
        if c.hidden_size * 127 * self.Q >= 2 ** 31:
            raise ValueError(f"U h would overflow int32 at hidden size {c.hidden_size}; lower state_bits")
        if I * xmax * 127 < 2 ** 24:  # exact in float32: use BLAS
            accx = (x_int.reshape(T * N, I).astype(np.float32) @ c.w_f32).reshape(T, N, -1).astype(np.int32)
        else:  # wide states (state_bits > 8) fed to the next layer: plain integer product
            accx = (x_int.reshape(T * N, I).astype(np.int64) @ c.w_int.T.astype(np.int64)).reshape(T, N, -1)
            if np.abs(accx).max() >= 2 ** 31:
                raise ValueError("input projection overflows int32; lower state_bits")
            accx = accx.astype(np.int32)
        mx = c.input_multipliers(x_scales, self.Q, self.F)
        mh, bias = c.multipliers(self.Q, self.F)
        out = np.zeros((T, N, c.hidden_size), dtype=np.int32)
        last = np.zeros((N, c.hidden_size), dtype=np.int32)
        _recurrence(accx, c.u_int16, mx, mh, bias, lengths, reverse, self.Q, self.F, out, last)
        return out, last

    def _run_layer_fast(self, k: int, x_int: np.ndarray, x_scales: np.ndarray, lengths: np.ndarray,
                        order: np.ndarray, finals: list) -> np.ndarray:
        """Layer k, both directions, with the vnni or generic kernel: int8 (T, N, C) -> int8 (T, N, D*H)."""
        T, N, C = x_int.shape
        H = self.hidden_size
        out = np.zeros((T, N, H * self.num_directions), dtype=np.int8)
        for d, rev in enumerate([False, True] if self.bidirectional else [False]):
            c = self._cell(k, rev)
            accx = kernels_int.int8_matmul(x_int.reshape(T * N, C), c.w_t).reshape(T, N, 2 * H)
            packed, _, mh, c0 = c.fast_constants(self.kernel, self.Q, self.F)
            mx = c.fast_mx(self.kernel, x_scales, self.Q, self.F)
            last = np.empty((N, H), dtype=np.int32)
            kernels_int.recurrence(self.kernel, accx, packed, mx, mh, c0, lengths, order, rev, self.Q, self.F,
                                   out, d * H, last)
            finals.append(last)
        return out

    def forward_int(self, x: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x (T, N, C) float32 -> integer outputs (T, N, D*H) and final states (L*D, N, H) (scale 1/Q);
        int8 outputs from the vnni and generic kernels, int32 from the reference (the same values). The
        fast kernels quantise x in float32 (as the layer passes it); the reference in x's own dtype."""
        if self.kernel != "reference":
            return self._forward_int_fast(x, lengths)
        qmax = 2 ** (self.input_bits - 1) - 1
        lengths = np.ascontiguousarray(lengths, dtype=np.int64)
        x_scales = np.array([max(float(np.abs(x[:L, n]).max(initial=0.0)), 1e-12) / qmax
                             for n, L in enumerate(lengths)])  # (N,): each line's own valid steps
        x_int = np.clip(np.rint(x / x_scales.astype(x.dtype)[None, :, None]), -qmax, qmax).astype(np.int32)
        finals = []
        for k in range(self.num_layers):
            outs = []
            for rev in ([False, True] if self.bidirectional else [False]):
                o, last = self._run_cell(self._cell(k, rev), x_int, x_scales, lengths, rev)
                outs.append(o)
                finals.append(last)
            x_int = np.concatenate(outs, axis=-1) if len(outs) > 1 else outs[0]
            x_scales = np.full(len(lengths), 1.0 / self.Q)
        return x_int, np.stack(finals)

    def _forward_int_fast(self, x: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lengths = np.ascontiguousarray(lengths, dtype=np.int64)
        x_int, x_scales = kernels_int.quantize_input(np.ascontiguousarray(x, dtype=np.float32),
                                                     float(2 ** (self.input_bits - 1) - 1), lengths)
        order = np.argsort(-lengths, kind="stable").astype(np.int64)  # running sequences: a prefix
        finals: list[np.ndarray] = []
        for k in range(self.num_layers):
            x_int = self._run_layer_fast(k, x_int, x_scales, lengths, order, finals)
            x_scales = np.full(len(lengths), 1.0 / self.Q)
        return x_int, np.stack(finals)

    def _run(self, x: Tensor, lengths: Tensor, final_state: bool = True) -> tuple[Tensor, Tensor | None]:
        out, finals = self.forward_int(x.detach().float().cpu().contiguous().numpy(), lengths.numpy())
        scale = 1.0 / self.Q
        if self.kernel == "reference":
            out = out.astype(np.float32) * scale
        else:
            out_int, out = out, np.empty(out.shape, dtype=np.float32)
            kernels_int.dequantize(out_int, scale, out)
        state = torch.from_numpy(finals.astype(np.float32) * scale).to(x.device) if final_state else None
        return torch.from_numpy(out).to(x.device), state


def swap_decoders(model: nn.Module, **kwargs) -> nn.Module:
    """A deep copy of `model` with every ReluAddRecurrent replaced by its IntegerReluAdd."""
    model = copy.deepcopy(model)
    swapped = 0
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, ReluAddRecurrent):
                setattr(module, child_name, IntegerReluAdd.from_float(child, **kwargs))
                swapped += 1
    if isinstance(model, ReluAddRecurrent):
        return IntegerReluAdd.from_float(model, **kwargs)
    if swapped == 0:
        raise TypeError(f"{type(model).__name__} holds no ReluAddRecurrent to replace")
    return model


def compare_cer(model: nn.Module, evaluate: Callable[[nn.Module], float], **kwargs) -> dict[str, float]:
    """CER of the float model and of its integer-decoder copy, with the same `evaluate(model) -> CER`.

    For the shipped model on the poilus val split, pass an `evaluate` that runs the project's
    validation on that split and returns its CER (in percent or as a fraction, consistently).
    """
    model.eval()
    float_cer = float(evaluate(model))
    int_model = swap_decoders(model, **kwargs).eval()
    int_cer = float(evaluate(int_model))
    return {"float_cer": float_cer, "integer_cer": int_cer, "difference": int_cer - float_cer}


def compare_on_folder(model: str, data: str, split: str = "val", batch_size: int = 16, decoder: str = "greedy",
                      **kwargs) -> dict:
    """CER of a trained relu_add model (shipped name or checkpoint path) with its float decoder and
    with the integer decoder (kwargs: IntegerReluAdd options), on one split of a TSV folder (or a YAML
    config with a data section), through the same `htr.evaluate.evaluate_model`.

        python -c "from htr.fhe.integer import compare_on_folder as c; print(c('relu_add', 'my_lines/', 'val'))"
    """
    from htr.evaluate import build_datamodule, evaluate_model
    from htr.inference import load_model

    float_model = load_model(model)
    if float_model.cell != "relu_add":
        raise TypeError(f"{model}: the integer path replaces relu_add decoders; this model's is {float_model.cell}")
    dm = build_datamodule(data, float_model.net.config.height, batch_size)
    ref = evaluate_model(float_model, dm, split, decoder)
    int_model = copy.copy(float_model)
    int_model.net = swap_decoders(float_model.net, **kwargs).eval()
    int_model.name = f"{float_model.name} (integer decoder)"
    got = evaluate_model(int_model, dm, split, decoder)
    return {"float": ref, "integer": got, "cer_points_difference": 100 * (got["cer"] - ref["cer"])}


# ---------------------------------------------------------------------------------------- speed
def speed(input_size: int = 256, hidden_size: int = 256, steps: int = 128, batch: int = 1,
          num_layers: int = 2, bidirectional: bool = True, repeats: int = 10, threads: int = 1) -> dict:
    """Median inference seconds per call: float relu_add, integer relu_add, dynamic-int8 nn.GRU/nn.LSTM."""
    from htr.bench.integer import dynamic_int8
    from htr.nn import build_recurrent
    from htr.timing import fix_threads, interleaved_medians

    fix_threads(threads)
    torch.manual_seed(0)
    kw = dict(num_layers=num_layers, bidirectional=bidirectional)
    ra = build_recurrent("relu_add", input_size, hidden_size, **kw).eval()
    iq = IntegerReluAdd.from_float(ra)
    gru = nn.GRU(input_size, hidden_size, **kw).eval()
    lstm = nn.LSTM(input_size, hidden_size, **kw).eval()
    qgru, qlstm = dynamic_int8(gru), dynamic_int8(lstm)  # (quantize_dynamic on a bare nn.GRU returns it float)
    x = torch.randn(steps, batch, input_size)
    lengths = torch.full((batch,), steps, dtype=torch.int64)

    def call(fn):
        def run():
            with torch.inference_mode():
                fn()
        return run

    fns = {"relu_add float": call(lambda: ra(x, lengths)),
           "relu_add integer": call(lambda: iq(x, lengths)),
           "gru float": call(lambda: gru(x)), "gru dynamic int8": call(lambda: qgru(x)),
           "lstm float": call(lambda: lstm(x)), "lstm dynamic int8": call(lambda: qlstm(x))}
    med = interleaved_medians(fns, repeats=repeats, warmup=2)
    return {"config": dict(input_size=input_size, hidden_size=hidden_size, steps=steps, batch=batch,
                           num_layers=num_layers, bidirectional=bidirectional, threads=threads),
            "seconds": med}


def agreement(recurrent: ReluAddRecurrent, x: Tensor, lengths: Tensor | None = None, **kwargs) -> dict[str, float]:
    """Max and mean |integer - float| over the outputs of `recurrent` on x."""
    with torch.inference_mode():
        ref, _ = recurrent(x, lengths)
        out, _ = IntegerReluAdd.from_float(recurrent, **kwargs)(x, lengths)
    err = (out - ref).abs()
    return {"max_abs_err": float(err.max()), "mean_abs_err": float(err.mean()),
            "state_step": 1.0 / (2 ** (kwargs.get("state_bits", 8) - 1) - 1)}


__all__ = ["IntegerReluAdd", "swap_decoders", "compare_cer", "compare_on_folder", "speed", "agreement"]
