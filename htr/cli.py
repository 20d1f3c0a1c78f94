"""The `htr` command: Lightning's fit/validate/test/predict plus evaluate, transcribe, bench and app."""
from __future__ import annotations

import argparse
import sys


def _bench_parser(sub: argparse._SubParsersAction) -> None:
    from htr.bench import adding, cells

    bench = sub.add_parser("bench", help="benchmarks that print a table (or JSON with --json)")
    which = bench.add_subparsers(dest="bench", required=True)
    p = which.add_parser("cells", help="relu_add vs nn.GRU vs nn.LSTM speed, inference and training step")
    cells.add_arguments(p)
    p.set_defaults(func=cells.main)
    p = which.add_parser("adding", help="long-term memory: the adding problem for each cell, table and plot")
    adding.add_arguments(p)
    p.set_defaults(func=adding.main)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="htr", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _bench_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
