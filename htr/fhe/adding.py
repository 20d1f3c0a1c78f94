"""End to end: a small relu_add trained on the adding problem, quantised, and run under encryption.

    report = end_to_end(hidden=4, steps=6, train_steps=400, encrypted=3)

1. Train build_recurrent("relu_add", 2, H) + a linear head on the adding problem (T steps; channel 0
   a value in [0, 1], channel 1 a marker set at one step of each half; target: the sum of the two
   marked values), Adam, a few hundred steps.
2. Quantise the cell with `spec` (inputs x_scale = 1 / Qx, so values land on Qx levels of [0, 1])
   and the head to an integer dot product: y_int = w_int . h_int + b_int, y = y_int * head_scale.
3. Compare on a fixed test set: float model, clear integer model (MSE, max |int - float|).
4. Compile the T-step circuit (cell + head; the head is clear-weight additions only), keygen, run a
   few test inputs encrypted; decrypted predictions must equal the clear integer model's exactly.

Also relu_add01, the TFHE-lean variant of the cell (ReluAdd01Cell, Adding01Model), and `long_memory`:
the adding problem at T = 200 in float for relu_add and relu_add01 (`htr bench fhe --memory`).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from htr.fhe.quantize import ClearOps, QuantSpec, calibrate, quantize_inputs, quantize_relu_add
from htr.nn.relu_add import ReluAddCell
from htr.tasks.adding import BASELINE_MSE, AddingModel, adding_batch

E2E_SPEC = QuantSpec(input_bits=4, state_bits=4, weight_bits=4, acc_bits=5)


class ReluAdd01Cell(ReluAddCell):
    """relu_add01, the TFHE-lean variant of relu_add: state and candidate in [0, 1].

        n_t = min(ReLU(W_n x_t + U_n h_{t-1} + b_n), 1)
        h_t = min(ReLU(h_{t-1} - ReLU(s_t)) + ReLU(n_t - ReLU(-s_t)), 1)

    With both operands of inh >= 0, inh(v, g) = ReLU(v - g): one ReLU per term (relu_add: two). Same
    parameters and initialisation as ReluAddCell; a plain torch loop (for the adding problem only).
    """

    def step(self, x_t: Tensor, h_prev: Tensor) -> Tensor:
        return self.update(h_prev, F.linear(x_t, self.weight_ih, self.bias) + h_prev @ self.weight_hh.t())

    @staticmethod
    def update(h_prev: Tensor, gates: Tensor) -> Tensor:
        s, a = gates.chunk(2, dim=-1)
        n = a.clamp(0.0, 1.0)
        return (F.relu(h_prev - F.relu(s)) + F.relu(n - F.relu(-s))).clamp(max=1.0)


class Adding01Model(nn.Module):
    """AddingModel with a relu_add01 layer: (T, N, 2) -> (N,)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.cell = ReluAdd01Cell(2, hidden_size)
        self.readout = nn.Linear(hidden_size, 1)

    def forward(self, x: Tensor) -> Tensor:
        c = self.cell
        xp = F.linear(x, c.weight_ih, c.bias)  # (T, N, 2H), all input products at once
        h = x.new_zeros(x.shape[1], c.hidden_size)
        u_t = c.weight_hh.t()
        for t in range(x.shape[0]):
            h = c.update(h, xp[t] + h @ u_t)
        return self.readout(h).squeeze(-1)


def make_model(cell: str, hidden: int) -> nn.Module:
    """relu_add01 -> Adding01Model; any cell of htr.nn -> AddingModel."""
    return Adding01Model(hidden) if cell == "relu_add01" else AddingModel(cell, hidden)


def long_memory(cells=("relu_add", "relu_add01"), steps: int = 200, hidden: int = 64, batch: int = 64,
                train_steps: int = 2000, lr: float = 1e-3, clip_norm: float = 1.0, eval_every: int = 100,
                test_size: int = 1000, seed: int = 0, log=None) -> dict[str, Any]:
    """The adding problem at T = steps for each cell, htr bench adding's budget and test set (float models)."""
    out: dict[str, Any] = {"steps": steps, "hidden": hidden, "batch": batch, "train_steps": train_steps, "lr": lr,
                           "baseline_mse": BASELINE_MSE, "cells": {}}
    for cell in cells:
        torch.manual_seed(seed)
        model = make_model(cell, hidden)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        train_gen = torch.Generator().manual_seed(seed + 1)
        test_x, test_y = adding_batch(test_size, steps, torch.Generator().manual_seed(seed + 2))

        def test_mse() -> float:
            with torch.no_grad():
                return float(nn.functional.mse_loss(model(test_x), test_y))

        curve = [(0, test_mse())]
        t0 = time.perf_counter()
        for step in range(1, train_steps + 1):
            x, y = adding_batch(batch, steps, train_gen)
            loss = nn.functional.mse_loss(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            opt.step()
            if step % eval_every == 0 or step == train_steps:
                curve.append((step, test_mse()))
                if log is not None:
                    print(f"  {cell:10s} step {step:5d}/{train_steps}  test MSE {curve[-1][1]:.2e}", file=log,
                          flush=True)
        out["cells"][cell] = {"test_mse": curve[-1][1], "best_test_mse": min(m for _, m in curve),
                              "wall_s": time.perf_counter() - t0, "curve": curve}
    return out


def train(hidden: int = 4, steps: int = 6, train_steps: int = 400, batch: int = 64, lr: float = 1e-2,
          seed: int = 0, quantized_inputs: QuantSpec | None = None) -> AddingModel:
    """Train on the adding problem. With quantized_inputs, values are rounded to that input grid."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = AddingModel("relu_add", hidden)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(train_steps):
        x, y = adding_batch(batch, steps, gen)
        if quantized_inputs is not None:
            x = torch.round(x * quantized_inputs.qx) / quantized_inputs.qx
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return model.eval()


def quantize_head(head: nn.Linear, q: int, bits: int = 8) -> tuple[np.ndarray, int, float]:
    """y = w . (h_int / q) + b ~= (w_int . h_int + b_int) * scale, rint to nearest, bits-bit w_int."""
    u = head.weight.detach().double().numpy()[0] / q
    scale = max(float(np.abs(u).max()), 1e-12) / (2 ** (bits - 1) - 1)
    return np.rint(u / scale).astype(np.int64), int(np.rint(float(head.bias.detach()) / scale)), scale


def end_to_end(hidden: int = 4, steps: int = 6, train_steps: int = 400, spec: QuantSpec = E2E_SPEC,
               encrypted: int = 3, test_size: int = 500, seed: int = 0, key_cache: str | None = None,
               model: AddingModel | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    model = model or train(hidden, steps, train_steps, seed=seed, quantized_inputs=spec)
    train_s = time.perf_counter() - t0
    cell_f = model.recurrent.cell(0)
    x_scale = 1.0 / spec.qx
    cell = quantize_relu_add(cell_f.weight_ih.detach(), cell_f.weight_hh.detach(), cell_f.bias.detach(),
                             spec, x_scale)
    w_int, b_int, head_scale = quantize_head(model.readout, spec.q)
    head = (w_int, b_int)

    gen = torch.Generator().manual_seed(seed + 1)
    x, y = adding_batch(test_size, steps, gen)
    x_int = quantize_inputs(x.numpy(), spec, x_scale).transpose(1, 0, 2)  # (n, T, 2)
    with torch.no_grad():
        pred_f = model(torch.as_tensor(x_int.transpose(1, 0, 2) * x_scale, dtype=torch.float32)).numpy()
    calib = [x_int[i] for i in range(min(test_size, 200))]
    calibrate(cell, calib)

    def clear_pred(xi):
        h = cell.run(ClearOps, xi)
        return int(np.sum(h * w_int) + b_int)

    pred_i_int = np.array([clear_pred(xi) for xi in x_int])
    pred_i = pred_i_int * head_scale
    yn = y.numpy()
    report: dict[str, Any] = {
        "hidden": hidden, "steps": steps, "train_steps": train_steps, "train_s": train_s,
        "spec": spec.describe(), "lsbs": dict(cell.lsbs),
        "mse_always_one": float(np.mean((yn - 1.0) ** 2)),
        "mse_float": float(np.mean((pred_f - yn) ** 2)),
        "mse_integer": float(np.mean((pred_i - yn) ** 2)),
        "max_abs_int_minus_float": float(np.abs(pred_i - pred_f).max()),
        "mean_abs_int_minus_float": float(np.abs(pred_i - pred_f).mean()),
    }
    if encrypted:
        from htr.fhe import circuits as C

        config = C.configuration(key_cache=key_cache)
        t0 = time.perf_counter()
        circuit = C.compile_cell(cell, steps, calib, config, head=head)
        report["compile_s"] = time.perf_counter() - t0
        report["params"] = C.parameters(circuit)
        t0 = time.perf_counter()
        circuit.keygen()
        report["keygen_s"] = time.perf_counter() - t0
        timing = C.Timing()
        picks = calib[:encrypted]  # inside the calibration set, whose bounds Concrete measured
        pairs = C.timed_encrypted_runs(circuit, picks, timing)
        dec = [int(d) for d, _ in pairs]
        report.update({
            "timing": timing.summary(),
            "encrypted_predictions_int": dec,
            "clear_predictions_int": [clear_pred(p) for p in picks],
            "encrypted_predictions": [d * head_scale for d in dec],
            "float_predictions": [float(v) for v in pred_f[:encrypted]],
            "targets": [float(v) for v in yn[:encrypted]],
            "encrypted_equals_clear": dec == [clear_pred(p) for p in picks],
            "encrypted_equals_simulate": all(int(d) == int(s) for d, s in pairs),
        })
    return report
