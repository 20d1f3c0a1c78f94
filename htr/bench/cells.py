"""`htr bench cells`: relu_add against nn.GRU and nn.LSTM at equal sizes, inference and training step.

Every configuration times the three cells interleaved in one process (median of --repeats runs after
warm-up), with torch's and BLAS's thread counts fixed and printed. Ratios below 1 mean relu_add is faster.
Results: docs/results/cells.md.
"""
from __future__ import annotations

import argparse
import json
from itertools import product

import torch

from htr.nn import CELLS, build_recurrent
from htr.tables import format_table
from htr.timing import cpu_name, fix_threads, interleaved_medians


def _step_fns(layers: dict, x: torch.Tensor) -> tuple[dict, dict]:
    def infer(layer):
        def run():
            with torch.no_grad():
                layer(x)
        return run

    def train(layer):
        def run():
            layer.zero_grad(set_to_none=True)
            out, _ = layer(x)
            out.square().mean().backward()
        return run

    return ({name: infer(m) for name, m in layers.items()}, {name: train(m) for name, m in layers.items()})


def run(input_size: int = 256, hidden_size: int = 256, steps: int = 128, batches: tuple[int, ...] = (1, 16),
        threads: int = 1, repeats: int = 20, seed: int = 0) -> dict:
    fix_threads(threads)
    torch.manual_seed(seed)
    results = []
    for batch, bidirectional in product(batches, (False, True)):
        layers = {name: build_recurrent(name, input_size, hidden_size, bidirectional=bidirectional) for name in CELLS}
        x = torch.randn(steps, batch, input_size)
        infer, train = _step_fns(layers, x)
        for mode, fns in (("inference", infer), ("training", train)):
            ms = {k: v * 1e3 for k, v in interleaved_medians(fns, repeats=repeats).items()}
            results.append({"mode": mode, "batch": batch, "bidirectional": bidirectional,
                            "ms": ms, "relu_add/gru": ms["relu_add"] / ms["gru"],
                            "relu_add/lstm": ms["relu_add"] / ms["lstm"]})
    return {"torch": torch.__version__, "threads": threads, "cpu": cpu_name(),
            "input_size": input_size, "hidden_size": hidden_size, "steps": steps, "repeats": repeats,
            "results": results}


def to_table(report: dict) -> str:
    rows = [[r["mode"], r["batch"], "bi" if r["bidirectional"] else "uni", r["ms"]["relu_add"], r["ms"]["gru"],
             r["ms"]["lstm"], r["relu_add/gru"], r["relu_add/lstm"]] for r in report["results"]]
    header = ["mode", "batch", "dir", "relu_add ms", "gru ms", "lstm ms", "relu_add/gru", "relu_add/lstm"]
    return (f"torch {report['torch']}, {report['threads']} thread(s); input {report['input_size']}, "
            f"hidden {report['hidden_size']}, T = {report['steps']}; median of {report['repeats']} interleaved runs\n"
            + format_table(header, rows))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=128, help="sequence length T")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (fixed for all cells)")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per cell (median reported)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def main(args: argparse.Namespace) -> None:
    report = run(args.input_size, args.hidden_size, args.steps, tuple(args.batches), args.threads, args.repeats)
    print(json.dumps(report, indent=2) if args.json else to_table(report))
