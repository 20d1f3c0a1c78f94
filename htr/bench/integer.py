"""`htr bench integer`: the integer relu_add layer against float relu_add and torch's float and int8 GRU/LSTM.

Inference only (eval, no gradient) of one recurrent layer, every variant of a configuration timed
interleaved in one process (median of --repeats runs after warm-up), torch's and BLAS's thread counts
fixed and printed; the integer kernel is single-threaded numba code. Peers, at the same sizes:
- relu_add float: htr's ReluAddRecurrent as shipped (numba recurrence, BLAS products);
- relu_add integer: htr.fhe.integer.IntegerReluAdd of that layer (int8 weights and states, int32 sums,
  the gate in integer additions and ReLUs; VPDPBUSD where the CPU has AVX-512 VNNI: htr.nn.kernels_int);
- gru / lstm float: torch's nn.GRU / nn.LSTM;
- gru / lstm int8: the same modules dynamically quantised by torch (torch.ao.nn.quantized.dynamic: int8
  weights, activations quantised per call, fbgemm / oneDNN GEMMs).
Ratios below 1 mean the integer layer is faster. Targets (issue 17): integer / float relu_add <= 0.5 at
batch 1 and <= 0.7 at batch 16, and below both int8 peers everywhere. Results: docs/results/integer.md.
"""
from __future__ import annotations

import argparse
import json
import warnings
from itertools import product

import torch
from torch import nn

from htr.nn import build_recurrent
from htr.tables import format_table
from htr.timing import cpu_name, fix_threads, interleaved_medians

TARGETS = {1: 0.5, 16: 0.7}  # batch -> the largest integer / float relu_add time ratio the issue asks for
LAYERS = ("relu_add float", "relu_add integer", "gru float", "gru int8", "lstm float", "lstm int8")


def dynamic_int8(module: nn.Module) -> nn.Module:
    """torch's dynamically quantised copy of an nn.GRU / nn.LSTM (int8 weights, activations per call).

    quantize_dynamic swaps children only, so the module goes in wrapped (on its own it comes back float)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao.quantization moves to torchao
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor", category=UserWarning)
        quantised = torch.ao.quantization.quantize_dynamic(nn.Sequential(module), {type(module)}, dtype=torch.qint8)
    layer = quantised[0]
    if type(layer) is type(module):
        raise RuntimeError(f"torch did not quantise {type(module).__name__}")
    return layer


def make_layers(input_size: int, hidden_size: int, bidirectional: bool, num_layers: int = 1,
                kernel: str = "auto") -> dict[str, nn.Module]:
    """The six layers of one configuration, random weights, eval mode."""
    from htr.fhe.integer import IntegerReluAdd

    kw = dict(num_layers=num_layers, bidirectional=bidirectional)
    relu_add = build_recurrent("relu_add", input_size, hidden_size, **kw).eval()
    with torch.no_grad():
        for cell in relu_add.cells:  # the -1 gate-bias init keeps h = 0 on random weights; move it (trained regime)
            nn.init.uniform_(cell.bias, -0.5, 0.5)
    gru = nn.GRU(input_size, hidden_size, **kw).eval()
    lstm = nn.LSTM(input_size, hidden_size, **kw).eval()
    return {"relu_add float": relu_add, "relu_add integer": IntegerReluAdd.from_float(relu_add, kernel=kernel),
            "gru float": gru, "gru int8": dynamic_int8(gru), "lstm float": lstm, "lstm int8": dynamic_int8(lstm)}


def _infer(layer: nn.Module, x: torch.Tensor):
    def run() -> None:
        with torch.inference_mode():
            layer(x)
    return run


def run(input_size: int = 256, hidden_size: int = 256, steps: int = 128, batches: tuple[int, ...] = (1, 16),
        num_layers: int = 1, threads: int = 1, repeats: int = 20, seed: int = 0, kernel: str = "auto") -> dict:
    import numba

    from htr.nn import kernels_int

    fix_threads(threads)
    torch.manual_seed(seed)
    results = []
    used = None
    for batch, bidirectional in product(batches, (False, True)):
        layers = make_layers(input_size, hidden_size, bidirectional, num_layers, kernel)
        used = layers["relu_add integer"].kernel
        x = torch.randn(steps, batch, input_size)
        with torch.inference_mode():
            ref, _ = layers["relu_add float"](x)
            got, _ = layers["relu_add integer"](x)
        ms = {k: v * 1e3 for k, v in interleaved_medians({k: _infer(m, x) for k, m in layers.items()},
                                                         repeats=repeats).items()}
        ratio = ms["relu_add integer"] / ms["relu_add float"]
        target = TARGETS.get(batch)
        results.append({"batch": batch, "bidirectional": bidirectional, "ms": ms, "integer/relu_add float": ratio,
                        "integer/gru int8": ms["relu_add integer"] / ms["gru int8"],
                        "integer/lstm int8": ms["relu_add integer"] / ms["lstm int8"],
                        "target": target,
                        "meets": (target is None or ratio <= target)
                        and ms["relu_add integer"] < min(ms["gru int8"], ms["lstm int8"]),
                        "max_abs_err": float((got - ref).abs().max()), "mean_abs_err": float((got - ref).abs().mean())})
    return {"torch": torch.__version__, "numba": numba.__version__, "threads": threads,
            "cpu": cpu_name(), "vnni": kernels_int.HAS_VNNI, "kernel": used,
            "input_size": input_size, "hidden_size": hidden_size, "steps": steps, "num_layers": num_layers,
            "repeats": repeats, "results": results}


def to_table(report: dict) -> str:
    rows = [[r["batch"], "bi" if r["bidirectional"] else "uni", *(r["ms"][k] for k in LAYERS),
             r["integer/relu_add float"], r["integer/gru int8"], r["integer/lstm int8"],
             "-" if r["target"] is None else f"<= {r['target']}", "yes" if r["meets"] else "no"]
            for r in report["results"]]
    header = ["batch", "dir", *(f"{k} ms" for k in LAYERS), "int/relu_add", "int/gru int8", "int/lstm int8",
              "target", "met"]
    errs = ", ".join(f"{e['max_abs_err']:.3f}" for e in report["results"])
    vnni = "yes" if report["vnni"] else "no"
    return (f"{report['cpu']}; torch {report['torch']}, numba {report['numba']}, {report['threads']} thread(s), "
            f"integer kernel {report['kernel']} (AVX-512 VNNI: {vnni}); input {report['input_size']}, "
            f"hidden {report['hidden_size']}, {report['num_layers']} layer(s), T = {report['steps']}; median of "
            f"{report['repeats']} interleaved runs; 'met': the time ratio target and faster than both int8 peers\n"
            + format_table(header, rows)
            + f"\nmax |integer - float relu_add| per row (state step 1/127): {errs}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=128, help="sequence length T")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--num-layers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (fixed for all layers)")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per layer (median reported)")
    parser.add_argument("--kernel", choices=("auto", "vnni", "generic", "reference"), default="auto",
                        help="the integer layer's kernel (htr.fhe.integer.IntegerReluAdd)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def main(args: argparse.Namespace) -> None:
    report = run(args.input_size, args.hidden_size, args.steps, tuple(args.batches), args.num_layers, args.threads,
                 args.repeats, kernel=args.kernel)
    print(json.dumps(report, indent=2) if args.json else to_table(report))
