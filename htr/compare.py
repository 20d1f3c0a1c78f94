"""Transcribe images with several recognisers and time each stage: what the app serves.

A request reads the image and splits it into lines (htr.segment.find_lines, as ``htr transcribe
--segment`` does), preprocesses the lines once per preprocessing setting (models of one input height
share it), then runs the model part (encoder, recurrent decoder + classifier, CTC decoding) of every
selected model ``repeats`` times, the models interleaved, and reports each stage's median in ms.
A request that has run for more than ``time_limit_s`` seconds of its own processing (waiting for other
requests does not count) is stopped with TimeLimitError, at the next model pass or frame of a beam search.

Requests that arrive together are recognised together (Batcher, the app's one worker thread): the
lines of all of them go through each model in one batch (Transcriber.forward_lines, which gives each
line the result it has alone), and each request reports its own share of the batch's time (the
report's ``batch`` and ``timing``). Small requests go first, so a heavy one holds the others for about
one time limit at most. ``transcribe`` runs one request as a batch of one. A request whose client has
gone (``cancelled``) is dropped between stages (model passes, lines of a beam search).

Every parameter is checked against the app's limits (``check_request``): decoder one of DECODERS,
models a list of loaded model names, layout one of htr.segment.LAYOUTS, beam width an integer from
MIN_BEAM to MAX_BEAM; anything else raises RequestError naming the parameter, its value and what is
expected.
"""
from __future__ import annotations

import logging
import math
import numbers
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from PIL import Image

from htr.errors import HTRError, TimeLimitError
from htr.inference import Transcriber
from htr.segment import LAYOUTS, LineBox, crop_lines, find_lines
from htr.text import BEAM_WIDTH

DECODERS = ("greedy", "beam", "beam+lm")
STAGES = ("preprocess", "encoder", "decoder", "ctc")
REPEATS = 3
MAX_LINES = 40  # a paragraph with more lines than this is a page: refused with a message
MIN_BEAM, MAX_BEAM = 2, 32  # beam widths a request may ask for (the app's slider)
TIME_LIMIT_S = 20.0  # a request still running after this long is stopped
BATCH_REQUESTS = 32  # requests recognised together at most (their beam searches keep log-probs meanwhile)
BATCH_LINES = 64  # lines per forward pass at most (a batch with more runs in several passes)
BATCH_WINDOW_S = 0.005  # an idle worker waits this long for more requests before it starts a batch
log = logging.getLogger("htr.compare")


class RequestError(HTRError, ValueError):
    """A request with a parameter outside the app's limits (see check_request)."""


class RequestCancelled(HTRError):
    """A request whose client went away before it was answered: dropped, not computed further."""


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
               names: list[str] | None = None, layout: str = "auto", beam_width: int = BEAM_WIDTH,
               repeats: int = REPEATS, tight: bool = False, time_limit_s: float | None = None) -> dict[str, Any]:
    """Transcribe one image with each selected model; per-stage latency of this request (ms).

    Raises ImageError (bad image), RequestError (a parameter outside the app's limits) or, when it runs
    longer than ``time_limit_s`` seconds, TimeLimitError, each with a message for the user. Lines squeezed
    to the models' width limit are listed in the report's ``warnings``. Runs in the caller's thread, as a
    batch of one (the app batches concurrent requests with Batcher).
    """
    request = _request(models, source, decoder, names, layout, beam_width, repeats, tight, time_limit_s)
    run_requests(models, [request])
    return request.result()


def _request(models: dict[str, Transcriber], source: Any, decoder: Any, names: Any, layout: Any, beam_width: Any,
             repeats: int, tight: bool, time_limit_s: float | None,
             cancelled: Callable[[], bool] | None = None) -> "Request":
    names, beam_width = check_request(models, decoder, names, layout, beam_width)
    return Request(source, decoder, names, layout, beam_width, max(1, int(repeats)), bool(tight),
                   None if time_limit_s is None else float(time_limit_s), cancelled)


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


@dataclass(eq=False)
class Request:
    """One checked request (see check_request) and what its batch has computed for it so far."""

    source: Any
    decoder: str
    names: list[str]
    layout: str
    beam_width: int
    repeats: int
    tight: bool
    time_limit_s: float | None
    cancelled: Callable[[], bool] | None = None  # True once the client has gone
    submitted: float = field(default_factory=time.perf_counter)
    done: threading.Event = field(default_factory=threading.Event)
    report: dict[str, Any] | None = None
    error: BaseException | None = None
    # filled while its batch runs
    start: float = 0.0  # its batch's start
    deadline: float | None = None
    used_s: float = 0.0  # its own time so far: preprocessing, the model passes of its chunk
    size: tuple[int, int] = (0, 0)
    boxes: list[LineBox] = field(default_factory=list)
    lines: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # preprocessing setting -> line tensors
    prep_ms: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    runs: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # model -> stage -> ms per run
    texts: dict[str, list[tuple[str, float]]] = field(default_factory=dict)  # model -> (text, confidence)
    kept: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # beam: log-probs, frames
    batch: dict[str, int] = field(default_factory=dict)

    def finish(self, report: dict[str, Any] | None = None, error: BaseException | None = None) -> None:
        self.report, self.error = report, error
        self.kept.clear()
        self.lines.clear()
        self.done.set()

    def result(self) -> dict[str, Any]:
        """The report, or the request's error raised."""
        self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.report is not None
        return self.report

    def alive(self) -> bool:
        """Not finished, its client still there and its time limit not passed (else finished with why)."""
        if self.done.is_set():
            return False
        if self.cancelled is not None and self.cancelled():
            self.finish(error=RequestCancelled("the client went away; the request was dropped"))
        elif self.deadline is not None and time.perf_counter() > self.deadline:
            self.finish(error=self.time_limit_error())
        return not self.done.is_set()

    def start_clock(self) -> None:
        """The deadline for what comes next: the time limit less the request's own time so far (waiting for
        other requests of the batch does not count, as waiting in the queue does not)."""
        if self.time_limit_s is not None:
            self.deadline = time.perf_counter() + self.time_limit_s - self.used_s

    def time_limit_error(self) -> TimeLimitError:
        return TimeLimitError(
            f"the request ran past the app's time limit of {self.time_limit_s:g} s and was stopped ({self.decoder} "
            f"decoding{f', beam width {self.beam_width}' if self.decoder != 'greedy' else ''}, {len(self.names)} "
            f"model(s)); try greedy decoding, a smaller beam width, fewer models or a smaller image")


def run_requests(models: dict[str, Transcriber], requests: list[Request]) -> None:
    """Recognise these requests together; on return each is finished (its report or its error).

    Each request is read and preprocessed alone. Then, smallest requests first, in chunks (_chunks):
    ``repeats`` times, each model runs once over the lines of the chunk's requests that
    selected it (Transcriber.forward_lines), greedy decoding following at once; the chunk's greedy
    requests are answered, then its beam searches run, cheapest first. A request's time limit counts its
    own time (its preprocessing, its chunk's model passes, its beam search), not the wait for the others,
    so a heavy request holds the rest of its batch for at most about one time limit."""
    try:
        _run_requests(models, requests)
    except BaseException as e:
        for r in requests:  # a failure of the batch itself must not leave a client waiting
            if not r.done.is_set():
                r.finish(error=e)
        if not isinstance(e, Exception):
            raise
        log.error("a batch of %d request(s) failed", len(requests), exc_info=e)


def _run_requests(models: dict[str, Transcriber], requests: list[Request]) -> None:
    start = time.perf_counter()
    for r in requests:
        r.start = start
    for r in requests:
        if r.alive():
            r.start_clock()
            t = time.perf_counter()
            try:
                _prepare(models, r)
            except Exception as e:  # noqa: BLE001 - a bad image fails its own request only
                r.finish(error=e)
            r.used_s += time.perf_counter() - t
            r.deadline = None  # the clock stops while it waits for its chunk
    live = [r for r in requests if r.alive()]
    batch = {"requests": len(live), "lines": sum(len(r.boxes) for r in live)}
    for r in live:
        r.batch = batch
    for chunk in _chunks(sorted(live, key=_size)):
        _run_chunk(models, chunk)


def _size(r: Request) -> int:
    """Pixels of width over the request's lines (of one preprocessing setting): about its model cost."""
    return sum(t.shape[-1] for t in next(iter(r.lines.values()), []))


def _chunks(requests: list[Request]) -> list[list[Request]]:
    """Requests sorted by size -> consecutive groups of at most BATCH_LINES lines, where a request joins a
    group only if it is no bigger than the group so far (so a big request does not slow small ones)."""
    chunks: list[list[Request]] = []
    lines = size = 0
    for r in requests:
        n, s = len(r.boxes), _size(r)
        if chunks and lines + n <= BATCH_LINES and s <= size:
            chunks[-1].append(r)
            lines, size = lines + n, size + s
        else:
            chunks.append([r])
            lines, size = n, s
    return chunks


def _run_chunk(models: dict[str, Transcriber], chunk: list[Request]) -> None:
    for r in chunk:
        r.start_clock()
    t = time.perf_counter()
    for run in range(max(r.repeats for r in chunk)):
        for name, model in models.items():  # the models interleaved, in the app's order
            part = [r for r in chunk if name in r.names and run < r.repeats and r.alive()]
            if part:
                _forward(name, model, part, run)
    for r in chunk:
        r.used_s += time.perf_counter() - t
        if r.decoder == "greedy" and r.alive():
            r.finish(_report(models, r))
    for r in sorted((r for r in chunk if not r.done.is_set()), key=_beam_cost):
        r.start_clock()
        _beam_search(models, r)


def _beam_cost(r: Request) -> float:
    """About how long the request's beam searches take: beam width x frames (x 2 with the LM)."""
    return r.beam_width * _size(r) * (2 if r.decoder == "beam+lm" else 1) * len(r.names)


def _prepare(models: dict[str, Transcriber], r: Request) -> None:
    """Read and segment the image, preprocess its lines once per preprocessing setting (timed)."""
    t = time.perf_counter()
    gray, r.boxes, crops = read_lines(r.source, r.layout, r.tight)
    r.size = (gray.width, gray.height)
    read_ms = _ms(t)
    for name in r.names:
        key = repr(models[name].preprocess_config)
        if key not in r.lines:
            t = time.perf_counter()
            line_notes: list[str] = []
            r.lines[key] = [models[name].preprocess(c, name=f"line {i + 1}", notes=line_notes)
                            for i, c in enumerate(crops)]
            r.prep_ms[key] = read_ms + _ms(t)
            r.notes += [n for n in line_notes if n not in r.notes]


def _forward(name: str, model: Transcriber, chunk: list[Request], run: int) -> None:
    """One model over the lines of these requests; each request's share of the times, greedy decoding."""
    key = repr(model.preprocess_config)
    log_probs, frames, encoder_ms, decoder_ms = model.forward_lines([t for r in chunk for t in r.lines[key]])
    a = 0
    for r in chunk:
        b = a + len(r.lines[key])
        ms = r.runs.setdefault(name, {s: [] for s in STAGES[1:]})
        ms["encoder"].append(sum(encoder_ms[a:b]))
        ms["decoder"].append(sum(decoder_ms[a:b]))
        own, own_frames = log_probs[: int(frames[a:b].max()), a:b], frames[a:b]
        if r.decoder == "greedy":
            t = time.perf_counter()
            texts = model.decode_lines(own, own_frames)
            ms["ctc"].append(_ms(t))
            r.texts.setdefault(name, texts)
        elif run == 0:  # decoded after the batch's greedy requests are answered (_beam_search)
            r.kept[name] = (own.contiguous(), own_frames.clone())
        a = b


def _beam_search(models: dict[str, Transcriber], r: Request) -> None:
    try:
        for _ in range(r.repeats):
            for name in r.names:
                if not r.alive():
                    return
                log_probs, frames = r.kept[name]
                texts, ms = [], 0.0
                for i in range(len(frames)):  # line by line: the client is checked between lines
                    if i and not r.alive():
                        return
                    t = time.perf_counter()
                    texts += models[name].decode_lines(log_probs[:, i:i + 1], frames[i:i + 1], r.decoder,
                                                       r.beam_width, deadline=r.deadline)
                    ms += _ms(t)
                r.runs[name]["ctc"].append(ms)
                r.texts.setdefault(name, texts)
    except TimeLimitError:
        r.finish(error=r.time_limit_error())
        return
    if r.alive():
        r.finish(_report(models, r))


def _timing(r: Request) -> str:
    runs = f"median of {r.repeats} interleaved run{'s' if r.repeats > 1 else ''}"
    if r.batch.get("requests", 1) <= 1:
        return (f"ms for this image on this machine: preprocess (read + segment + resize) timed once; "
                f"encoder, decoder (recurrent + classifier) and ctc: {runs}")
    others = r.batch["requests"] - 1
    return (f"ms for this image on this machine, recognised in one batch with {others} other "
            f"request{'s' if others > 1 else ''} ({r.batch['lines']} lines): preprocess (read + segment + "
            f"resize) timed once for this request; encoder: the time of this request's lines (lines of one "
            f"padded width are encoded together and share their time equally); decoder (recurrent + "
            f"classifier): the batch's time shared in proportion to this request's frames; ctc: this "
            f"request's own decoding; {runs}")


def _report(models: dict[str, Transcriber], r: Request) -> dict[str, Any]:
    n_lines = len(r.boxes)
    results = []
    for name in r.names:
        model = models[name]
        texts = r.texts[name]
        ms = {"preprocess": r.prep_ms[repr(model.preprocess_config)]}
        for stage in STAGES[1:]:
            ms[stage] = statistics.median(r.runs[name][stage])
        ms["total"] = sum(ms[s] for s in STAGES)
        lines = [{"text": text, "confidence": conf, "box": list(b.as_tuple())}
                 for (text, conf), b in zip(texts, r.boxes)]
        results.append({"model": name, "cell": model.cell, "text": "\n".join(text for text, _ in texts),
                        "confidence": statistics.fmean(conf for _, conf in texts), "ms": ms,
                        "lines": lines, "lm": r.decoder == "beam+lm" and model.lm is not None})
    return {"image": {"width": r.size[0], "height": r.size[1], "lines": n_lines,
                      "layout": "paragraph" if n_lines > 1 else "line"},
            "decoder": r.decoder, "beam_width": r.beam_width if r.decoder != "greedy" else 1, "repeats": r.repeats,
            "results": results, "speedups": speedups(results), "warnings": list(r.notes),
            "batch": {**r.batch, "queue_ms": (r.start - r.submitted) * 1e3, "wall_ms": _ms(r.start)},
            "timing": _timing(r)}


class Batcher:
    """The app's one worker thread: requests submitted while it is busy (or within BATCH_WINDOW_S of the
    first) are recognised together (run_requests), in arrival order, at most ``max_requests`` per batch and
    requests of one ``repeats`` setting per batch. ``submit`` blocks its caller until the answer."""

    def __init__(self, models: dict[str, Transcriber], max_requests: int = BATCH_REQUESTS,
                 window_s: float = BATCH_WINDOW_S) -> None:
        self.models = models
        self.max_requests = max(1, int(max_requests))
        self.window_s = window_s
        self.stats = {"batches": 0, "requests": 0, "largest": 0, "cancelled": 0}
        self._pending: deque[Request] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="htr-batcher", daemon=True)
        self._thread.start()

    def submit(self, source: Any, decoder: Any = "greedy", names: Any = None, layout: Any = "auto",
               beam_width: Any = BEAM_WIDTH, repeats: int = 1, tight: bool = False, time_limit_s: float | None = None,
               cancelled: Callable[[], bool] | None = None) -> dict[str, Any]:
        """``transcribe``'s parameters and errors (RequestError at once, before queueing), recognised with
        the requests that arrive with it; ``cancelled``: polled between stages, True drops the request
        (RequestCancelled)."""
        request = _request(self.models, source, decoder, names, layout, beam_width, repeats, tight, time_limit_s,
                           cancelled)
        with self._cond:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._pending.append(request)
            self._cond.notify()
        return request.result()

    def close(self) -> None:
        """Stop the worker after the batch it is running; requests still waiting get an error."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=TIME_LIMIT_S * 2)

    def _next_batch(self) -> list[Request]:
        with self._cond:
            repeats = self._pending[0].repeats
            batch = [r for r in self._pending if r.repeats == repeats][: self.max_requests]
            for r in batch:
                self._pending.remove(r)
            return batch

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    for r in self._pending:
                        r.finish(error=RuntimeError("the app is shutting down"))
                    self._pending.clear()
                    return
            if self.window_s > 0:
                time.sleep(self.window_s)  # requests that arrive together join this batch
            batch = self._next_batch()
            self.stats["batches"] += 1
            self.stats["requests"] += len(batch)
            self.stats["largest"] = max(self.stats["largest"], len(batch))
            run_requests(self.models, batch)
            self.stats["cancelled"] += sum(isinstance(r.error, RequestCancelled) for r in batch)


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
