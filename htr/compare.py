"""Transcribe one image with several recognisers and time each stage: what the app serves.

A request reads the image and splits it into lines (htr.segment.find_lines, as ``htr transcribe
--segment`` does), preprocesses the lines once per preprocessing setting (models of one input height
share it), then runs the model part (encoder, recurrent decoder + classifier, CTC decoding) of every
selected model ``repeats`` times, the models interleaved, and reports each stage's median in ms.
A request still running after ``time_limit_s`` seconds is stopped with TimeLimitError.

Every parameter is checked against the app's limits (``check_request``): decoder one of DECODERS,
models a list of loaded model names, layout one of htr.segment.LAYOUTS, beam width an integer from
MIN_BEAM to MAX_BEAM; anything else raises RequestError naming the parameter, its value and what is
expected.
"""
from __future__ import annotations

import math
import numbers
import statistics
import time
from typing import Any

from PIL import Image

from htr.errors import HTRError, TimeLimitError
from htr.inference import Transcriber
from htr.segment import LAYOUTS, LineBox, crop_lines, find_lines

DECODERS = ("greedy", "beam", "beam+lm")
STAGES = ("preprocess", "encoder", "decoder", "ctc")
REPEATS = 3
MAX_LINES = 40  # a paragraph with more lines than this is a page: refused with a message
MIN_BEAM, MAX_BEAM = 2, 32  # beam widths a request may ask for (the app's slider)
TIME_LIMIT_S = 20.0  # a request still running after this long is stopped


class RequestError(HTRError, ValueError):
    """A request with a parameter outside the app's limits (see check_request)."""


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1e3


def read_lines(source: Any, layout: str = "auto", tight: bool = False
               ) -> tuple[Image.Image, list[LineBox], list[Image.Image]]:
    """Image file / bytes / PIL image -> (grayscale image, line boxes, line crops). Raises ImageError.

    The segmentation of ``htr transcribe --segment`` (htr.segment.find_lines); an image of more than
    MAX_LINES lines is a page, refused.
    """
    gray, boxes = find_lines(source, layout, tight, max_lines=MAX_LINES)
    return gray, boxes, crop_lines(gray, boxes)


def transcribe(models: dict[str, Transcriber], source: Any, decoder: str = "greedy",
               names: list[str] | None = None, layout: str = "auto", beam_width: int = 10,
               repeats: int = REPEATS, tight: bool = False, time_limit_s: float | None = None) -> dict[str, Any]:
    """Transcribe one image with each selected model; per-stage latency of this request (ms).

    Raises ImageError (bad image), RequestError (a parameter outside the app's limits) or, when it runs
    longer than ``time_limit_s`` seconds, TimeLimitError, each with a message for the user. Lines squeezed
    to the models' width limit are listed in the report's ``warnings``.
    """
    names, beam_width = check_request(models, decoder, names, layout, beam_width)
    repeats = max(1, int(repeats))

    start = time.perf_counter()
    deadline = None if time_limit_s is None else start + float(time_limit_s)
    try:
        return _transcribe(models, source, decoder, names, layout, beam_width, repeats, tight, start, deadline)
    except TimeLimitError:
        raise TimeLimitError(
            f"the request ran past the app's time limit of {time_limit_s:g} s and was stopped ({decoder} decoding"
            f"{f', beam width {beam_width}' if decoder != 'greedy' else ''}, {len(names)} model(s)); try greedy "
            f"decoding, a smaller beam width, fewer models or a smaller image") from None


def check_request(models: dict[str, Transcriber], decoder: Any, names: Any, layout: Any, beam_width: Any
                  ) -> tuple[list[str], int]:
    """The app's limits, for page and API requests alike: -> (model names in the app's order, beam width as an int).
    RequestError naming the parameter, the value received and what is expected otherwise."""
    loaded = ", ".join(models)
    if names is None:
        names = list(models)
    elif isinstance(names, str):  # one name sent as a string rather than a list of one
        if names not in models:
            raise RequestError(f"models {names!r}: a string that is not a model name; expected a list of names "
                               f"from {loaded}")
        names = [names]
    elif not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise RequestError(f"models {names!r}; expected a list of model names from {loaded}")
    if not names:
        raise RequestError(f"no model selected; choose at least one of {loaded}")
    unknown = [n for n in names if n not in models]
    if unknown:
        raise RequestError(f"unknown model(s) {', '.join(map(repr, unknown))}; loaded: {loaded}")
    if not isinstance(decoder, str) or decoder not in DECODERS:
        raise RequestError(f"decoder {decoder!r}; expected one of {', '.join(DECODERS)}")
    if not isinstance(layout, str) or layout not in LAYOUTS:
        raise RequestError(f"layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if (isinstance(beam_width, bool) or not isinstance(beam_width, numbers.Real) or not math.isfinite(beam_width)
            or beam_width != int(beam_width) or not MIN_BEAM <= beam_width <= MAX_BEAM):
        raise RequestError(f"beam width {beam_width!r}; expected an integer from {MIN_BEAM} to {MAX_BEAM} "
                           f"(the page's slider)")
    return [n for n in models if n in names], int(beam_width)  # the app's order


def _check_time(deadline: float | None) -> None:
    if deadline is not None and time.perf_counter() > deadline:
        raise TimeLimitError("past the request's time limit")


def _transcribe(models: dict[str, Transcriber], source: Any, decoder: str, names: list[str], layout: str,
                beam_width: int, repeats: int, tight: bool, start: float, deadline: float | None
                ) -> dict[str, Any]:
    gray, boxes, crops = read_lines(source, layout, tight)
    read_ms = _ms(start)
    notes: list[str] = []

    # preprocessing, once per distinct preprocessing setting
    tensors: dict[Any, list] = {}
    prep_ms: dict[Any, float] = {}
    for name in names:
        key = repr(models[name].preprocess_config)
        if key not in tensors:
            t = time.perf_counter()
            line_notes: list[str] = []
            tensors[key] = [models[name].preprocess(c, name=f"line {i + 1}", notes=line_notes)
                            for i, c in enumerate(crops)]
            prep_ms[key] = read_ms + _ms(t)
            notes += [n for n in line_notes if n not in notes]
    _check_time(deadline)

    # the model part: `repeats` interleaved runs, median per stage
    runs: dict[str, list] = {n: [] for n in names}
    for _ in range(repeats):
        for name in names:
            model = models[name]
            _check_time(deadline)
            runs[name].append(model.run_batch(tensors[repr(model.preprocess_config)], decoder, beam_width,
                                              deadline=deadline))

    n_lines = len(crops)
    results = []
    for name in names:
        model = models[name]
        first = runs[name][0]
        ms = {"preprocess": prep_ms[repr(model.preprocess_config)]}
        for stage in STAGES[1:]:  # run_batch reports per line (batch time / n): back to the whole image
            ms[stage] = statistics.median(r[0].timings[stage] * n_lines for r in runs[name])
        ms["total"] = sum(ms[s] for s in STAGES)
        lines = [{"text": tr.text, "confidence": tr.confidence, "box": list(b.as_tuple())}
                 for tr, b in zip(first, boxes)]
        results.append({"model": name, "cell": model.cell, "text": "\n".join(tr.text for tr in first),
                         "confidence": statistics.fmean(tr.confidence for tr in first), "ms": ms,
                         "lines": lines, "lm": decoder == "beam+lm" and model.lm is not None})
    return {"image": {"width": gray.width, "height": gray.height, "lines": n_lines,
                      "layout": "paragraph" if n_lines > 1 else "line"},
            "decoder": decoder, "beam_width": beam_width if decoder != "greedy" else 1, "repeats": repeats,
            "results": results, "speedups": speedups(results), "warnings": notes,
            "timing": (f"ms for this image on this machine: preprocess (read + segment + resize) timed once; "
                       f"encoder, decoder (recurrent + classifier) and ctc: median of {repeats} interleaved runs")}


def speedups(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """relu_add models against gru/lstm ones: time ratios (other / relu_add; > 1 means relu_add is faster)."""
    out = []
    for a in results:
        if a["cell"] != "relu_add":
            continue
        for b in results:
            if b["cell"] in ("gru", "lstm"):
                model_a = sum(a["ms"][s] for s in STAGES[1:])
                model_b = sum(b["ms"][s] for s in STAGES[1:])
                out.append({"relu_add": a["model"], "other": b["model"], "other_cell": b["cell"],
                            "decoder": b["ms"]["decoder"] / max(a["ms"]["decoder"], 1e-9),
                            "model": model_b / max(model_a, 1e-9),
                            "total": b["ms"]["total"] / max(a["ms"]["total"], 1e-9)})
    return out
