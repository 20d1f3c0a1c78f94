"""`htr bench malloc`: the training step under the C library's allocator and under a preloaded one.

Why it matters: a CPU training step allocates and frees the same large activations every step (block
1 of the encoder alone: 16 x 16 x 48 x 800 floats, 39 MB). glibc returns blocks above its mmap
threshold (at most 32 MB) to the kernel on free, so the next step page-faults them back in, zeroed;
tcmalloc (Debian: libtcmalloc-minimal4) keeps freed memory for reuse. The profile and the timings:
docs/results/malloc.md.

An allocator cannot be swapped inside a running process, so this benchmark runs child processes that
time `htr bench step`'s training step (pool first) for every cell, interleaved, and alternates the
allocators child by child, round by round, so load drifts hit both. Reported: the median over rounds
of each child's median, and preloaded/system. Each child also says whether the library was mapped.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys

from htr.nn import CELLS
from htr.tables import format_table
from htr.timing import fix_threads, interleaved_medians

DEFAULT_PRELOAD = "libtcmalloc_minimal.so.4"
SYSTEM = "system"


def _check_loadable(library: str) -> None:
    try:
        ctypes.CDLL(library)
    except OSError as e:
        raise SystemExit(f"htr bench malloc: cannot load {library!r} ({e}); install it "
                         f"(Debian: apt-get install libtcmalloc-minimal4) or pass --preload PATH") from None


def time_steps(batch: int, height: int, width: int, chars: int, hidden_size: int, repeats: int) -> dict:
    """In this process: median ms of one training step per cell, and the allocator libraries mapped."""
    from htr.bench.step import fake_batch, training_step
    from htr.nn.recognizer import RecognizerConfig
    from htr.train import HTRModule

    fix_threads(1)
    modules = {cell: HTRModule(RecognizerConfig(cell=cell, height=height, hidden_size=hidden_size, dropout=0.1))
               for cell in CELLS}
    data = fake_batch(batch, height, width, chars, modules["relu_add"].net.num_classes, seed=0)
    ms = interleaved_medians({cell: training_step(m, data) for cell, m in modules.items()}, repeats=repeats)
    with open("/proc/self/maps") as maps:
        mapped = sorted({line.split()[-1].rsplit("/", 1)[-1] for line in maps if "malloc" in line})
    return {"ms": {cell: v * 1e3 for cell, v in ms.items()}, "mapped": mapped}


def _child(preload: str | None, args: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    if preload:
        env["LD_PRELOAD"] = preload
    env["OMP_NUM_THREADS"] = "1"
    out = subprocess.run([sys.executable, "-m", "htr.bench.malloc", "--child", *args], env=env,
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"benchmark child (LD_PRELOAD={preload}) failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.splitlines()[-1])


def run(preload: str = DEFAULT_PRELOAD, rounds: int = 3, batch: int = 16, height: int = 48, width: int = 800,
        chars: int = 60, hidden_size: int = 128, repeats: int = 5) -> dict:
    _check_loadable(preload)
    args = [f"--{k}={v}" for k, v in (("batch", batch), ("height", height), ("width", width), ("chars", chars),
                                      ("hidden-size", hidden_size), ("repeats", repeats))]
    children: dict[str, list[dict]] = {SYSTEM: [], preload: []}
    for r in range(rounds):
        order = (SYSTEM, preload) if r % 2 == 0 else (preload, SYSTEM)
        for name in order:
            children[name].append(_child(None if name == SYSTEM else preload, args))
    ms = {name: {cell: statistics.median(c["ms"][cell] for c in runs) for cell in CELLS}
          for name, runs in children.items()}
    return {"preload": preload, "rounds": rounds, "repeats": repeats, "batch": batch, "height": height,
            "width": width, "chars": chars, "hidden_size": hidden_size, "ms": ms,
            "mapped": {name: runs[0]["mapped"] for name, runs in children.items()}}


def to_table(report: dict) -> str:
    system, preloaded = report["ms"][SYSTEM], report["ms"][report["preload"]]
    rows = [[cell, system[cell], preloaded[cell], preloaded[cell] / system[cell]] for cell in CELLS]
    header = ["cell", "system malloc ms", f"{report['preload']} ms", "preloaded/system"]
    return (f"training step, batch {report['batch']} x {report['height']} x {report['width']} px, hidden "
            f"{report['hidden_size']}, 1 thread; median over {report['rounds']} alternating rounds of each "
            f"child's median of {report['repeats']}; mapped: {report['mapped']}\n" + format_table(header, rows))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preload", default=DEFAULT_PRELOAD, help="allocator library for LD_PRELOAD (name or path)")
    parser.add_argument("--rounds", type=int, default=3, help="child processes per allocator, alternating")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--height", type=int, default=48)
    parser.add_argument("--width", type=int, default=800)
    parser.add_argument("--chars", type=int, default=60, help="label length per line")
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per cell in each child")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def main(args: argparse.Namespace) -> None:
    report = run(args.preload, args.rounds, args.batch, args.height, args.width, args.chars, args.hidden_size,
                 args.repeats)
    print(json.dumps(report, indent=2) if args.json else to_table(report))


if __name__ == "__main__":  # a child process: time the steps under whatever allocator it was started with
    child = argparse.ArgumentParser()
    child.add_argument("--child", action="store_true", required=True)
    for name in ("batch", "height", "width", "chars", "hidden-size", "repeats"):
        child.add_argument(f"--{name}", type=int, required=True)
    a = child.parse_args()
    print(json.dumps(time_steps(a.batch, a.height, a.width, a.chars, a.hidden_size, a.repeats)))
