"""`htr bench step`: the whole recogniser, per cell and encoder pool order, as training runs it.

A training step here is what `htr fit` repeats: encoder, recurrent decoder, classifier, CTC loss,
backward and an AdamW update, on a batch of the synthetic recipe's shape (configs/synthetic.yaml: 16 lines
at 48 px, hidden 128, two bidirectional layers); inference is one line with no gradient. The step
time, not the recurrent layer alone (`htr bench cells`), decides how many steps a fixed time budget
buys. Every variant runs interleaved in one process (median of --repeats runs after warm-up).
Results: docs/results/cells.md.
"""
from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Callable

import torch

from htr.nn import CELLS
from htr.nn.recognizer import RecognizerConfig
from htr.tables import format_table
from htr.timing import cpu_name, fix_threads, interleaved_medians

if TYPE_CHECKING:
    from htr.train import HTRModule

ORDERS = {"pool first": True, "pool last": False}


def fake_batch(batch: int, height: int, width: int, chars: int, num_classes: int, seed: int) -> dict:
    """What HTRModule.ctc_loss reads of a batch: random pixels and labels, every line full width."""
    g = torch.Generator().manual_seed(seed)
    return {"images": torch.rand(batch, 1, height, width, generator=g),
            "widths": torch.full((batch,), width),
            "targets": torch.randint(1, num_classes, (batch * chars,), generator=g),
            "target_lengths": torch.full((batch,), chars)}


def training_step(module: "HTRModule", batch: dict) -> Callable[[], None]:
    """One AdamW step of `module` on `batch`, as `htr fit` runs it (module left in train mode)."""
    optimiser = torch.optim.AdamW(module.parameters(), lr=1e-4)
    module.train()

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        loss, *_ = module.ctc_loss(batch)
        loss.backward()
        optimiser.step()
    return step


def run(batch: int = 16, height: int = 48, width: int = 800, chars: int = 60, hidden_size: int = 128,
        threads: int = 1, repeats: int = 10, seed: int = 0) -> dict:
    from htr.train import HTRModule  # Lightning: imported when the benchmark runs, not when `htr` parses

    fix_threads(threads)
    torch.manual_seed(seed)
    modules = {(cell, order): HTRModule(RecognizerConfig(cell=cell, height=height, hidden_size=hidden_size,
                                                         pool_before_norm=first, dropout=0.1))
               for cell in CELLS for order, first in ORDERS.items()}
    num_classes = next(iter(modules.values())).net.num_classes
    train_batch = fake_batch(batch, height, width, chars, num_classes, seed)
    line = torch.rand(1, 1, height, width, generator=torch.Generator().manual_seed(seed + 1))

    def infer(module: "HTRModule"):
        def forward():
            module.eval()
            with torch.inference_mode():
                module.net(line, torch.tensor([width]))
        return forward

    results = {}
    for mode, make in (("training", lambda m: training_step(m, train_batch)), ("inference", infer)):
        fns = {f"{cell}|{order}": make(m) for (cell, order), m in modules.items()}
        results[mode] = {k: v * 1e3 for k, v in interleaved_medians(fns, repeats=repeats).items()}
    return {"torch": torch.__version__, "threads": threads, "cpu": cpu_name(),
            "batch": batch, "height": height, "width": width, "chars": chars, "hidden_size": hidden_size,
            "repeats": repeats, "ms": results}


def to_table(report: dict) -> str:
    ms = report["ms"]
    rows = []
    for cell in CELLS:
        t_first, t_last = ms["training"][f"{cell}|pool first"], ms["training"][f"{cell}|pool last"]
        i_first, i_last = ms["inference"][f"{cell}|pool first"], ms["inference"][f"{cell}|pool last"]
        rows.append([cell, t_first, t_last, t_first / t_last, t_first / ms["training"]["relu_add|pool first"],
                     i_first, i_last, i_first / i_last])
    header = ["cell", "train ms", "train ms (pool last)", "first/last", "vs relu_add",
              "infer ms", "infer ms (pool last)", "first/last"]
    return (f"torch {report['torch']}, {report['threads']} thread(s); training step: batch {report['batch']} x "
            f"{report['height']} x {report['width']} px, {report['chars']} characters per line, AdamW; "
            f"inference: one line; hidden {report['hidden_size']} x 2 bidirectional layers; "
            f"median of {report['repeats']} interleaved runs\n" + format_table(header, rows))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--height", type=int, default=48)
    parser.add_argument("--width", type=int, default=800, help="line width in px (4 px per CTC frame)")
    parser.add_argument("--chars", type=int, default=60, help="label length per line")
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (fixed for all)")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per variant (median reported)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def main(args: argparse.Namespace) -> None:
    report = run(args.batch, args.height, args.width, args.chars, args.hidden_size, args.threads, args.repeats)
    print(json.dumps(report, indent=2) if args.json else to_table(report))
