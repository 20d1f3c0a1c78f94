"""`htr bench decode`: CTC decoding per line, the Python reference against the compiled (numba) search.

The decoders run on the log-probabilities of real lines: a shipped model (relu_add by default) reads
the app's example lines (app/examples/poilus_*.png), or ``--limit`` lines of ``--data <folder>
--split val``; the network runs once, before any timing. Then greedy, beam and beam+lm (the model's
character LM, lm_weight and insertion bonus) decode every line, each beam decoder in both
implementations (``beam_search(impl="python" | "compiled")``), interleaved in one process (median of
--repeats runs after a warm-up). The warm-up also compiles numba's kernels (or reads its cache), builds
the LM's tables and fills the Python LM's score cache, as in a long-running process. Greedy has one
implementation (vectorised numpy), the baseline. The report also counts the lines where the two
implementations disagree (there should be none) and, with --data, the CER of beam+lm with each (it
exits with an error if they differ by more than 0.1 point).
Results: docs/results/decode.md.
"""
from __future__ import annotations

import argparse
import importlib.resources
import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from htr.errors import HTRError
from htr.tables import format_table
from htr.text import BEAM_WIDTH
from htr.text.decoding import beam_search, greedy_decode
from htr.timing import cpu_name, fix_threads, interleaved_medians

if TYPE_CHECKING:
    from htr.inference import Transcriber

EXAMPLES = Path(str(importlib.resources.files("app") / "examples"))
DECODERS = ("greedy", "beam", "beam+lm")
IMPLS = ("python", "compiled")  # beam_search(impl=...): the reference first
CER_TOLERANCE = 0.1  # points: the most the two implementations' CER of beam+lm may differ by


def line_log_probs(model: "Transcriber", images: list) -> list[torch.Tensor]:
    """Each line image through the network alone: its (T, C) log-probabilities, padding frames cut off."""
    from htr.data.images import collate

    out = []
    with torch.inference_mode():
        for image in images:
            batch = collate([{"image": model.preprocess(image)}], pad_to_multiple=8)  # as Transcriber.run_batch
            features, frames = model.net.encode(batch["images"], batch["widths"])
            out.append(model.net.decode(features, frames)[: int(frames[0]), 0].float().clone())
    return out


def load_lines(data: str | None, split: str, limit: int) -> tuple[list, list[str] | None, str]:
    """(images, references or None, a description): the app's poilus examples, or a TSV folder's split."""
    if data is None:
        paths = sorted(EXAMPLES.glob("poilus_[0-9]*.png"))  # the example lines, not the paragraph
        if not paths:
            raise HTRError(f"{EXAMPLES}: no poilus_<n>.png example lines; expected the app's examples or --data")
        return paths, None, f"{len(paths)} example lines of the app ({EXAMPLES})"
    from htr.data.folder import read_folder
    from htr.text.codec import normalize_text

    samples = read_folder(data, split)[:limit]
    return ([s.image_path for s in samples], [normalize_text(s.text) for s in samples],
            f"{len(samples)} lines of {data} [{split}]")


def decoders(model: "Transcriber", beam_width: int) -> dict[str, dict[str, Callable[[torch.Tensor], tuple]]]:
    """decoder -> implementation -> a function of one line's (T, C) log-probabilities."""
    lm_kwargs = {"lm": model.lm, "codec": model.codec, **model.decoding}
    out: dict[str, dict[str, Callable[[torch.Tensor], tuple]]] = {"greedy": {"python": lambda lp: greedy_decode(lp)[0]}}
    out["beam"] = {impl: (lambda lp, impl=impl: beam_search(lp, beam_width, impl=impl)) for impl in IMPLS}
    if model.lm is not None:
        out["beam+lm"] = {impl: (lambda lp, impl=impl: beam_search(lp, beam_width, impl=impl, **lm_kwargs))
                          for impl in IMPLS}
    return out


def run(model_name: str = "relu_add", data: str | None = None, split: str = "val", limit: int = 50,
        beam_width: int = BEAM_WIDTH, repeats: int = 5, threads: int = 1) -> dict:
    import numba

    from htr.inference import load_model

    fix_threads(threads)
    model = load_model(model_name)
    images, refs, described = load_lines(data, split, limit)
    lines = line_log_probs(model, images)
    fns = decoders(model, beam_width)
    # the first pass gives the texts compared below, and is the warm-up of the timed runs
    outputs = {f"{d}|{impl}": [fn(lp) for lp in lines] for d, impls in fns.items() for impl, fn in impls.items()}
    timed = {f"{d}|{impl}": (lambda fn=fn: [fn(lp) for lp in lines])
             for d, impls in fns.items() for impl, fn in impls.items()}
    seconds = interleaved_medians(timed, repeats=repeats, warmup=0)
    ms = {d: {impl: seconds[f"{d}|{impl}"] * 1e3 / len(lines) for impl in impls} for d, impls in fns.items()}
    report: dict = {"model": model.name, "lines": described, "n_lines": len(lines),
                    "mean_frames": sum(len(lp) for lp in lines) / len(lines), "beam_width": beam_width,
                    "repeats": repeats, "threads": threads, "cpu": cpu_name(),
                    "torch": torch.__version__, "numba": numba.__version__, "ms_per_line": ms,
                    "speedup": {d: v["python"] / v["compiled"] for d, v in ms.items() if "compiled" in v}}
    report["disagreements"] = {}
    for d, impls in fns.items():
        if "compiled" in impls:
            py, co = outputs[f"{d}|python"], outputs[f"{d}|compiled"]
            report["disagreements"][d] = {
                "text": sum(a[0] != b[0] for a, b in zip(py, co)),
                "max_confidence_diff": max(abs(a[1] - b[1]) for a, b in zip(py, co))}
    if refs is not None:
        from htr.text.metrics import cer

        best = "beam+lm" if "beam+lm" in fns else "beam"
        report["cer_decoder"] = best
        report["cer"] = {impl: 100 * cer(refs, [model.codec.decode(idx) for idx, _ in outputs[f"{best}|{impl}"]])
                         for impl in fns[best]}
    return report


def to_table(report: dict) -> str:
    ms, speedup, dis = report["ms_per_line"], report["speedup"], report["disagreements"]
    rows = []
    for d in DECODERS:
        if d not in ms:
            continue
        compiled = ms[d].get("compiled")
        rows.append([d, ms[d]["python"], "-" if compiled is None else compiled,
                     "-" if d not in speedup else speedup[d], "-" if d not in dis else dis[d]["text"],
                     "-" if d not in dis else f"{dis[d]['max_confidence_diff']:.1e}"])
    header = ["decoder", "python ms/line", "compiled ms/line", "python/compiled", "lines that differ",
              "max confidence diff"]
    text = (f"{report['model']} on {report['lines']}, {report['mean_frames']:.0f} frames per line on average; "
            f"beam width {report['beam_width']}; torch {report['torch']}, numba {report['numba']}, "
            f"{report['threads']} thread(s); median of {report['repeats']} interleaved runs "
            f"(greedy: numpy, one implementation)\n" + format_table(header, rows))
    if "cer" in report:
        text += "\n" + f"CER of {report['cer_decoder']}: " + ", ".join(
            f"{impl} {report['cer'][impl]:.2f} %" for impl in IMPLS)
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="relu_add", help="shipped model name or .ckpt / .safetensors path")
    parser.add_argument("--data", help="a TSV folder (<split>.tsv + images); default: the app's example lines")
    parser.add_argument("--split", default="val", help="with --data: the split to read")
    parser.add_argument("--limit", type=int, default=50, help="with --data: the first N lines of the split")
    parser.add_argument("--beam-width", type=int, default=BEAM_WIDTH)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per decoder (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (fixed for all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def main(args: argparse.Namespace) -> None:
    if args.limit < 1 or args.repeats < 1 or args.beam_width < 1:
        raise HTRError(f"--limit {args.limit}, --repeats {args.repeats}, --beam-width {args.beam_width}; "
                       f"expected each >= 1")
    report = run(args.model, args.data, args.split, args.limit, args.beam_width, args.repeats, args.threads)
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else to_table(report))
    if "cer" in report:
        py, co = report["cer"]["python"], report["cer"]["compiled"]
        if abs(py - co) > CER_TOLERANCE:
            raise HTRError(f"CER of {report['cer_decoder']}: python {py:.2f} % vs compiled {co:.2f} %; "
                           f"expected them within {CER_TOLERANCE} point")
