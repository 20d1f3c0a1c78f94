"""`htr bench load`: cold start of a shipped model, as a user meets it.

Each run is a fresh Python process that imports htr, loads the model, transcribes one line and exits;
the wall time covers all of it (interpreter start, imports, numba's cached kernels, teardown). Models
are interleaved and the median of --repeats runs is reported per model.
Results: docs/results/cells.md.
"""
from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from htr.tables import format_table

DEFAULT_IMAGE = Path(str(importlib.resources.files("app") / "examples" / "poilus_1.png"))
SCRIPT = "import sys; from htr import load_model; print(load_model(sys.argv[1]).transcribe([sys.argv[2]])[0].text)"


def cold_run(model: str, image: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", SCRIPT, model, str(image)], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{model}: cold run failed:\n{done.stderr[-2000:]}")
    return elapsed, done.stdout.strip()


def run(models: list[str], image: Path, repeats: int = 5) -> dict:
    cold_run(models[0], image)  # first run may compile numba's cache; not counted
    samples: dict[str, list[float]] = {m: [] for m in models}
    texts: dict[str, str] = {}
    for _ in range(repeats):
        for m in models:
            seconds, texts[m] = cold_run(m, image)
            samples[m].append(seconds)
    return {"image": str(image), "repeats": repeats, "cpus": os.cpu_count(),
            "results": [{"model": m, "median_s": statistics.median(v), "max_s": max(v), "text": texts[m]}
                        for m, v in samples.items()]}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", default=["relu_add", "gru", "lstm"])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")


def main(args: argparse.Namespace) -> None:
    report = run(args.models, args.image, args.repeats)
    if args.json:
        print(json.dumps(report, indent=1, ensure_ascii=False))
        return
    print(f"fresh process: import, load, transcribe {Path(report['image']).name}, exit; "
          f"median of {report['repeats']} runs, {report['cpus']} CPUs")
    print(format_table(["model", "median s", "max s"],
                       [[r["model"], f"{r['median_s']:.2f}", f"{r['max_s']:.2f}"] for r in report["results"]]))
