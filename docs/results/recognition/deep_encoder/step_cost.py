"""Training-step cost of the shipped encoder against deeper ones, per cell (recognition.md, "A deeper encoder").

One AdamW step of the whole recogniser as `htr bench step` times it (htr.bench.step), every variant
interleaved in one process, median of --repeats runs. Run it on an idle machine:

    OMP_NUM_THREADS=1 LD_PRELOAD=libtcmalloc_minimal.so.4 python docs/results/recognition/deep_encoder/step_cost.py
"""
from __future__ import annotations

import argparse

import torch

from htr.bench.step import fake_batch, training_step
from htr.nn.recognizer import RecognizerConfig
from htr.tables import format_table
from htr.timing import fix_threads, interleaved_medians
from htr.train import HTRModule

ENCODERS = {"shipped": (16, 32, 64, 96), "+1 block": (16, 32, 64, 96, 128), "+2 blocks": (16, 32, 64, 96, 128, 128)}
CELLS = {"relu_add": 160, "gru": 128, "lstm": 128}  # hidden size per direction, as shipped


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--width", type=int, default=480, help="px at height 48 (poilus train: median 464)")
    p.add_argument("--chars", type=int, default=28, help="poilus train: 0.35 line heights of width per character")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    fix_threads(1)
    torch.manual_seed(0)
    modules = {f"{cell}|{enc}": HTRModule(RecognizerConfig(cell=cell, height=48, hidden_size=hidden, channels=channels,
                                                       dropout=0.1))
               for cell, hidden in CELLS.items() for enc, channels in ENCODERS.items()}
    batch = fake_batch(args.batch, 48, args.width, args.chars, next(iter(modules.values())).net.num_classes, 0)
    ms = {k: v * 1e3 for k, v in interleaved_medians({k: training_step(m, batch) for k, m in modules.items()},
                                                     repeats=args.repeats).items()}
    rows = [[cell, enc, sum(p.numel() for p in modules[f"{cell}|{enc}"].parameters()), ms[f"{cell}|{enc}"],
             ms[f"{cell}|{enc}"] / ms[f"{cell}|shipped"]] for cell in CELLS for enc in ENCODERS]
    print(f"training step, batch {args.batch} x 48 x {args.width} px, {args.chars} characters, one thread, "
          f"median of {args.repeats} interleaved runs")
    print(format_table(["cell", "encoder", "params", "ms", "vs shipped"], rows))


if __name__ == "__main__":
    main()
