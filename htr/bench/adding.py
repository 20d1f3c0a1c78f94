"""`htr bench adding`: the adding problem (htr.tasks.adding) for each cell, with a table and a plot.

Every cell gets the same hidden size, batch size, optimiser, learning rate, gradient clipping and
number of steps; the test set is fixed by the seed. Results: docs/results/adding.md.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from htr.nn import CELLS
from htr.tables import format_table
from htr.tasks.adding import BASELINE_MSE, AddingModel, adding_batch
from htr.timing import fix_threads


@dataclass
class AddingConfig:
    steps: int = 200            # sequence length T
    hidden_size: int = 64
    batch_size: int = 64
    train_steps: int = 2000     # optimiser steps (the training budget, equal for every cell)
    lr: float = 1e-3            # Adam
    clip_norm: float = 1.0      # gradient-norm clipping
    eval_every: int = 50        # optimiser steps between test evaluations
    test_size: int = 1000       # fixed test sequences
    seed: int = 0
    device: str = "cpu"         # "cuda" runs every cell on the GPU (relu_add through its Triton kernels)


def train_cell(cell: str, cfg: AddingConfig, log=print) -> dict:
    """Train one cell on the adding problem; returns its test-MSE curve, final MSE and wall time."""
    torch.manual_seed(cfg.seed)
    model = AddingModel(cell, cfg.hidden_size).to(cfg.device)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    train_gen = torch.Generator().manual_seed(cfg.seed + 1)
    test_x, test_y = (t.to(cfg.device) for t in adding_batch(cfg.test_size, cfg.steps,
                                                             torch.Generator().manual_seed(cfg.seed + 2)))

    def test_mse() -> float:
        with torch.no_grad():
            return float(nn.functional.mse_loss(model(test_x), test_y))

    curve = [(0, test_mse())]
    start = time.perf_counter()
    for step in range(1, cfg.train_steps + 1):
        x, y = (t.to(cfg.device) for t in adding_batch(cfg.batch_size, cfg.steps, train_gen))
        loss = nn.functional.mse_loss(model(x), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
        optimiser.step()
        if step % cfg.eval_every == 0 or step == cfg.train_steps:
            curve.append((step, test_mse()))
            log(f"  {cell:8s} step {step:5d}/{cfg.train_steps}  test MSE {curve[-1][1]:.2e}")
    return {"cell": cell, "test_mse": curve[-1][1], "best_test_mse": min(m for _, m in curve),
            "wall_s": time.perf_counter() - start, "curve": curve}


def plot(results: list[dict], cfg: AddingConfig, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in results:
        steps, mse = zip(*r["curve"])
        ax.plot(steps, mse, label=r["cell"])
    ax.axhline(BASELINE_MSE, color="gray", ls="--", lw=1, label="always 1.0")
    ax.set(yscale="log", xlabel="training step", ylabel="test MSE",
           title=f"Adding problem, T = {cfg.steps}, hidden {cfg.hidden_size}, batch {cfg.batch_size}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(cfg: AddingConfig, cells: tuple[str, ...] = CELLS, out_dir: Path | None = None, threads: int = 2,
        log=print) -> dict:
    fix_threads(threads)
    results = [train_cell(cell, cfg, log) for cell in cells]
    report = {"config": asdict(cfg), "threads": threads, "torch": torch.__version__, "results": results,
              "hardware": torch.cuda.get_device_name() if cfg.device.startswith("cuda") else "cpu"}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = f"adding_T{cfg.steps}"
        plot(results, cfg, out_dir / f"{stem}.png")
        (out_dir / f"{stem}.json").write_text(json.dumps(report, indent=1))
        report["plot"] = str(out_dir / f"{stem}.png")
    return report


def to_table(report: dict) -> str:
    cfg = report["config"]
    rows = [[r["cell"], f"{r['test_mse']:.2e}", f"{r['best_test_mse']:.2e}", f"{r['wall_s']:.0f}"]
            for r in report["results"]]
    return (f"Adding problem, T = {cfg['steps']}, hidden {cfg['hidden_size']}, {cfg['train_steps']} steps of batch "
            f"{cfg['batch_size']}, {report['threads']} thread(s); always answering 1.0 scores {BASELINE_MSE:.3f}\n"
            + format_table(["cell", "final test MSE", "best test MSE", "wall s"], rows))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = AddingConfig()
    parser.add_argument("--T", dest="steps", type=int, default=d.steps, help="sequence length")
    parser.add_argument("--hidden-size", type=int, default=d.hidden_size)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--train-steps", type=int, default=d.train_steps)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--eval-every", type=int, default=d.eval_every)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--cells", nargs="+", choices=CELLS, default=list(CELLS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default=d.device, help="cpu (default) or cuda")
    parser.add_argument("--quick", action="store_true", help="short version: T = 50, 300 steps")
    parser.add_argument("--out", type=Path, default=Path("artifacts/adding"), help="folder for the PNG and JSON")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def config_from_args(args: argparse.Namespace) -> AddingConfig:
    cfg = AddingConfig(steps=args.steps, hidden_size=args.hidden_size, batch_size=args.batch_size,
                       train_steps=args.train_steps, lr=args.lr, eval_every=args.eval_every, seed=args.seed,
                       device=args.device)
    if args.quick:
        cfg.steps, cfg.train_steps, cfg.eval_every, cfg.test_size = 50, 300, 50, 500
    return cfg


def main(args: argparse.Namespace) -> None:
    import sys

    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    report = run(config_from_args(args), tuple(args.cells), args.out, args.threads, log=log)
    if args.json:
        print(json.dumps({k: v for k, v in report.items()}, indent=1))
    else:
        print(to_table(report))
        print(f"plot: {report['plot']}")
