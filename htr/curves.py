"""Training curves from the CSV logs that every `htr fit` run writes (`<run>/metrics.csv`).

    htr curves runs/synthetic/relu_add/version_0 runs/synthetic/gru/version_0 --out curves.png

One line per run: a validation metric (default val/cer, in %) against the optimiser step, labelled
with the run's recurrent cell (from its `hparams.yaml`) and the last step it reached, so that runs
with an equal time budget show both how fast each learns and how many steps each fitted in.
"""
from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path

import yaml

from htr.errors import RunLogError


@dataclass
class Curve:
    label: str
    steps: list[int]
    values: list[float]
    last_step: int  # the last optimiser step logged, validated or not


def _metrics_file(run: Path) -> Path:
    if run.is_file():
        return run
    found = sorted(run.rglob("metrics.csv"))
    if len(found) != 1:
        raise RunLogError(f"{run}: expected one metrics.csv under it (a Lightning CSV log), found {len(found)}")
    return found[0]


def read_curve(run: Path, metric: str = "val/cer") -> Curve:
    """The rows of `metric` in a run's metrics.csv (run: the file or a directory holding one)."""
    path = _metrics_file(Path(run))
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or metric not in rows[0]:
        raise RunLogError(f"{path}: no column {metric!r}; columns are {', '.join(rows[0]) if rows else 'none'}")
    points = [(int(r["step"]), float(r[metric])) for r in rows if r.get(metric)]
    hparams = path.parent / "hparams.yaml"
    cell = yaml.safe_load(hparams.read_text())["recognizer"]["cell"] if hparams.exists() else path.parent.name
    last = max((int(r["step"]) for r in rows if r.get("step")), default=0)
    return Curve(label=cell, steps=[s for s, _ in points], values=[v for _, v in points], last_step=last)


def plot(curves: list[Curve], out: Path, metric: str = "val/cer", title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = 100.0 if metric.split("/")[-1].startswith(("cer", "wer")) else 1.0
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for c in curves:
        ax.plot(c.steps, [v * scale for v in c.values], marker="o", ms=3,
                label=f"{c.label} (best {min(c.values) * scale:.1f}, {c.last_step} steps)")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(f"{metric}{' %' if scale == 100.0 else ''}")
    ax.set_title(title or f"{metric} during training")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (or metrics.csv files)")
    parser.add_argument("--out", type=Path, default=Path("curves.png"))
    parser.add_argument("--metric", default="val/cer")
    parser.add_argument("--title", default="")
    parser.add_argument("--labels", nargs="+", help="one legend label per run (default: each run's cell)")


def main(args: argparse.Namespace) -> None:
    curves = [read_curve(r, args.metric) for r in args.runs]
    if args.labels:
        if len(args.labels) != len(curves):
            raise SystemExit(f"--labels: {len(args.labels)} labels for {len(curves)} runs; expected one per run")
        for curve, label in zip(curves, args.labels):
            curve.label = label
    plot(curves, args.out, args.metric, args.title)
    for c in curves:
        print(f"{c.label}\tbest {args.metric} {min(c.values):.4f}\tlast step {c.last_step}")
    print(f"wrote {args.out}")
