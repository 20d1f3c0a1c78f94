"""The Gradio app: drop in a handwritten line (or a short paragraph), see what each recurrent decoder reads
and what it costs.

    htr app [--model relu_add --model gru ...] [--ckpt X.ckpt ...] [--host 127.0.0.1] [--port 7860] [--share]

UI only: models come from htr's public API (htr.inference), images are read and paragraphs split into
lines by htr.segment.find_lines (clear ImageError messages for bad files; the same code as
``htr transcribe --segment``).

Latency, per request and on the machine the app runs on: image reading + line segmentation + resizing
("preprocess") is timed once per preprocessing setting (shared by models with the same input height);
the model part (encoder, recurrent decoder + classifier, CTC decoding) of every selected model runs
``repeats`` times on this request's lines, the models interleaved, and each stage reports its median.
Requests are served one at a time (``concurrency_limit=1``), so a request's timings are not disturbed by
another request's computation on the same cores; each request is stopped with a message once it has run
for TIME_LIMIT_S seconds, so that no request holds the ones queued behind it for longer than that.

Every API parameter is checked against the page's own limits (``check_request``): decoder one of
DECODERS, models a list of loaded model names, layout one of htr.segment.LAYOUTS, beam width an integer
from MIN_BEAM to MAX_BEAM (the slider's range); anything else is refused with a sentence naming the
parameter, its value and what is expected. Internal errors reach web clients as their exception type
only (the details go to the server's log).

API (gradio_client), one endpoint:

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    result = client.predict(handle_file("line.png"), "greedy", ["relu_add", "gru", "lstm"], "auto", 10,
                            api_name="/transcribe")
    # result["results"]: [{"model", "cell", "text", "confidence", "ms": {"preprocess", "encoder", "decoder",
    #                      "ctc", "total"}, "lines": [...]}, ...]; bad input raises gradio_client's AppError
"""
from __future__ import annotations

import base64
import html
import logging
import math
import numbers
import os
import re
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from htr.errors import HTRError, ImageError, TimeLimitError  # noqa: E402
from htr.inference import Transcriber  # noqa: E402
from htr.segment import LAYOUTS, LineBox, crop_lines, find_lines  # noqa: E402

EXAMPLES_DIR = Path(__file__).parent / "examples"
DECODERS = ("greedy", "beam", "beam+lm")
STAGES = ("preprocess", "encoder", "decoder", "ctc")
MAX_UPLOAD = "10mb"  # per uploaded file (gradio rejects bigger uploads before they reach the app)
REPEATS = 3
MAX_LINES = 40  # a paragraph with more lines than this is a page: refused with a message
MIN_BEAM, MAX_BEAM = 2, 32  # the beam width slider's range, also enforced on API calls
TIME_LIMIT_S = 20.0  # a request still running after this long is stopped (normal ones take well under 1 s)
log = logging.getLogger("htr.app")


class RequestError(HTRError, ValueError):
    """An API or page request with a parameter outside the page's limits."""


# ---- the work behind both endpoints (no gradio here) ----------------------------------------------
def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1e3


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name)


def read_lines(source: Any, layout: str = "auto", tight: bool = False
               ) -> tuple[Image.Image, list[LineBox], list[Image.Image]]:
    """Image file / bytes / PIL image -> (grayscale image, line boxes, line crops). Raises ImageError.

    The segmentation is the library's (htr.segment.find_lines, as for ``htr transcribe --segment``);
    the app refuses pages of more than MAX_LINES lines.
    """
    gray, boxes = find_lines(source, layout, tight, max_lines=MAX_LINES)
    return gray, boxes, crop_lines(gray, boxes)


def transcribe(models: dict[str, Transcriber], source: Any, decoder: str = "greedy",
               names: list[str] | None = None, layout: str = "auto", beam_width: int = 10,
               repeats: int = REPEATS, tight: bool = False, time_limit_s: float | None = None) -> dict[str, Any]:
    """Transcribe one image with each selected model; per-stage latency of this request (ms).

    Raises ImageError (bad image), RequestError (a parameter outside the page's limits) or, when it runs
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
    """The page's limits, for API calls too: -> (model names in the app's order, beam width as an int).
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


def _times(x: float) -> str:
    if 0.98 <= x <= 1.02:
        return f"as fast ({x:.2f}×)"
    return f"{x:.2f}× faster" if x >= 1 else f"{1 / x:.2f}× slower"


def speedup_text(report: dict[str, Any]) -> str:
    rows = report["speedups"]
    if not rows:
        return ("*Speed-up: select a relu_add model and a gru or lstm model to compare.*")
    parts = [f"**{r['relu_add']} vs {r['other']}**: recurrent decoder {_times(r['decoder'])}, "
             f"whole model {_times(r['model'])}, whole request {_times(r['total'])}" for r in rows]
    return ("Speed-up of relu_add (" + report["timing"] + "):\n\n" + "\n\n".join(f"- {p}" for p in parts))


TABLE_COLUMNS = ["model", "cell", "transcription", "confidence", *(f"{s} ms" for s in STAGES), "total ms"]


def table(report: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for r in report["results"]:
        rows.append({"model": r["model"], "cell": r["cell"], "transcription": r["text"].replace("\n", " / "),
                     "confidence": round(r["confidence"], 3),
                     **{f"{s} ms": round(r["ms"][s], 2) for s in STAGES}, "total ms": round(r["ms"]["total"], 2)})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def bars(report: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame([{"model": r["model"], "stage": s, "ms": round(r["ms"][s], 3)}
                         for r in report["results"] for s in STAGES])


def stats_text(r: dict[str, Any]) -> str:
    ms = r["ms"]
    return (f"confidence **{r['confidence']:.3f}** · total **{ms['total']:.1f} ms** "
            f"(preprocess {ms['preprocess']:.1f}, encoder {ms['encoder']:.1f}, "
            f"decoder {ms['decoder']:.1f}, ctc {ms['ctc']:.1f})")


def user_message(e: BaseException, source: Any = None, label: str = "") -> str:
    """An exception -> the sentence shown to the user (a bad input is not a crash); the server-side temporary
    path of an upload is replaced by the file's own name."""
    if isinstance(e, (HTRError, ValueError)):
        msg = str(e)
    elif isinstance(e, MemoryError):
        msg = "the image is too large to process on this machine"
    else:  # the details (paths, internals) stay in the server's log
        log.error("internal error while serving a request", exc_info=e)
        msg = f"internal error ({type(e).__name__}); the app keeps running, try another image"
    if isinstance(source, (str, Path)) and str(source):
        msg = msg.replace(str(source), label or Path(source).name)
    return msg


# ---- gradio -------------------------------------------------------------------------------------
def _file_source(payload: Any) -> Any:
    """A raw (unpreprocessed) gradio FileData dict -> a path or bytes for load_image; None if empty."""
    if payload is None:
        return None
    if isinstance(payload, str):
        return payload
    if isinstance(payload, dict):
        if payload.get("path"):
            return payload["path"]
        url = payload.get("url") or ""
        if url.startswith("data:") and "," in url:
            return base64.b64decode(url.split(",", 1)[1])
    return None


def _source_of(tab: str, image: Any, sketch: Any, file: Any) -> tuple[Any, str]:
    if tab == "draw":
        composite = sketch.get("composite") if isinstance(sketch, dict) else None
        source = _file_source(composite)
        if source is None:
            raise ImageError("nothing drawn yet: write a line on the sketch pad first")
        return source, "drawing"
    if tab == "file":
        source = _file_source(file)
        if source is None:
            raise ImageError("no file uploaded yet: choose a file first")
        return source, (file.get("orig_name") if isinstance(file, dict) else None) or "file"
    source = _file_source(image)
    if source is None:
        raise ImageError("no image yet: upload or paste an image, or pick an example")
    return source, (image.get("orig_name") if isinstance(image, dict) else None) or "image"


def build_app(models: dict[str, Transcriber], repeats: int = REPEATS, concurrency_limit: int = 1,
              time_limit_s: float | None = TIME_LIMIT_S) -> gr.Blocks:
    """The Blocks app for these models (name -> Transcriber). Launch it with `serve` (or demo.launch).
    Each request is stopped with a message after ``time_limit_s`` seconds (None: no limit)."""
    if not models:
        raise ValueError("build_app needs at least one model")
    names = list(models)
    for m in models.values():  # first-call costs (numba compilation, allocator) out of the first request
        m.run_batch([m.preprocess(Image.new("L", (64, 32), 255))])

    def ui_run(tab, image, sketch, file, decoder, chosen, layout, beam_width):
        # Called with raw payloads (preprocess=False): gradio's Image preprocessing would open bad files
        # with PIL itself and fail with a generic error; here every failure becomes a message.
        blank_cells = []
        for n in names:
            blank_cells += ["", "*not run*" if n in (chosen or []) else "*not selected*"]
        source, label = None, ""
        try:
            source, label = _source_of(tab, image, sketch, file)
            chosen = [n for n in names if n in (chosen or [])]
            report = transcribe(models, source, decoder, chosen, layout, beam_width, repeats,
                                tight=label == "drawing", time_limit_s=time_limit_s)
        except Exception as e:  # noqa: BLE001 - never let a request kill the page
            return [f"**Error:** {html.escape(user_message(e, source, label))}", *blank_cells,
                    pd.DataFrame(columns=TABLE_COLUMNS), pd.DataFrame(columns=["model", "stage", "ms"]), "", {}]
        by_name = {r["model"]: r for r in report["results"]}
        cells = []
        for n in names:
            r = by_name.get(n)
            cells += [r["text"], stats_text(r)] if r else ["", "*not selected*"]
        img = report["image"]
        status = (f"Transcribed **{html.escape(label)}** ({img['width']}×{img['height']} px, "
                  f"{img['lines']} line{'s' if img['lines'] > 1 else ''}) with {len(report['results'])} "
                  f"model(s), {report['decoder']} decoding.")
        for note in report["warnings"]:  # lines squeezed to the width limit
            status += f"\n\n**Note:** {html.escape(note)}"
        return [status, *cells, table(report), bars(report), speedup_text(report), report]

    def api_run(file, decoder, chosen, layout, beam_width):
        if not file:
            raise gr.Error("no image given: pass an image file, e.g. gradio_client.handle_file('line.png')",
                           print_exception=False)
        try:
            return transcribe(models, file, decoder, chosen, layout, beam_width, repeats, time_limit_s=time_limit_s)
        except Exception as e:  # noqa: BLE001
            raise gr.Error(user_message(e, file), print_exception=False) from None

    with gr.Blocks(title="htr: handwritten line recognition") as demo:
        gr.Markdown(
            "# htr — handwritten text-line recognition\n"
            "Drop in a handwritten line (or a short paragraph: it is split into lines) and compare what each "
            "recurrent decoder reads and what it costs. The three recognisers share the CNN encoder design and "
            "CTC; only the recurrent cell differs: **relu_add** (gates from additions and ReLUs), **gru**, "
            "**lstm**.")
        tab = gr.State("upload")
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Tabs():
                    with gr.Tab("Upload or paste", id="upload") as t_upload:
                        image = gr.Image(sources=["upload", "clipboard"], type="filepath", image_mode=None,
                                         label="Handwritten line or paragraph", elem_id="input-image", height=220)
                        gr.Examples([[str(p)] for p in sorted(EXAMPLES_DIR.glob("*.png"))], inputs=[image],
                                    label="Examples (synthetic lines; real lines: CREMMA-AN Testaments de Poilus, "
                                          "CC-BY 4.0, see app/examples/ATTRIBUTION.md)")
                    with gr.Tab("Draw", id="draw") as t_draw:
                        sketch = gr.Sketchpad(label="Write a line", type="filepath", canvas_size=(1000, 250),
                                              brush=gr.Brush(colors=["#000000", "#1f3a93"], default_size=4,
                                                             color_mode="fixed"),
                                              elem_id="input-sketch")
                    with gr.Tab("Any file", id="file") as t_file:
                        gr.Markdown("Any image file (TIFF, 16-bit, CMYK...), read by the app rather than the browser.")
                        file = gr.File(label="Image file", type="filepath", elem_id="input-file")
            with gr.Column(scale=1):
                decoder = gr.Radio(list(DECODERS), value="greedy", label="Decoding",
                                   info="greedy, or CTC beam search (beam+lm adds the model's character LM)")
                beam = gr.Slider(MIN_BEAM, MAX_BEAM, value=10, step=1, label="Beam width")
                chosen = gr.CheckboxGroup(names, value=names, label="Models")
                layout = gr.Radio(list(LAYOUTS), value="auto", label="Layout",
                                  info="auto: paragraphs are split into lines")
                run = gr.Button("Transcribe", variant="primary", elem_id="run")
        status = gr.Markdown("Upload, paste or draw an image, or pick an example, then press **Transcribe**.",
                             elem_id="status")
        cell_outputs = []
        with gr.Row(equal_height=True):
            for n in names:
                with gr.Column(min_width=220):
                    cell_outputs.append(gr.Textbox(label=f"{n} ({models[n].cell})", lines=2, interactive=False,
                                                   placeholder="(no text)",
                                                   elem_id=f"text-{slug(n)}", buttons=["copy"]))
                    cell_outputs.append(gr.Markdown(elem_id=f"stats-{slug(n)}"))
        speed = gr.Markdown(elem_id="speedup")
        with gr.Row():
            with gr.Column(scale=3):
                table_out = gr.Dataframe(pd.DataFrame(columns=TABLE_COLUMNS), interactive=False,
                                         label="Latency per stage (ms) for this request",
                                         elem_id="latency-table")
            with gr.Column(scale=2):
                plot_out = gr.BarPlot(pd.DataFrame(columns=["model", "stage", "ms"]), x="model", y="ms",
                                      color="stage", label="Latency per stage (ms)", elem_id="latency-plot",
                                      y_title="ms", sort=names)
        with gr.Accordion("Raw result (JSON, as the API returns it)", open=False):
            raw = gr.JSON()
        gr.Markdown(
            f"Latency: measured for each request on the machine the app runs on. Preprocessing (read, segment, "
            f"resize) is timed once; encoder, recurrent decoder (+ classifier) and CTC decoding are the median "
            f"of {repeats} interleaved runs of each model on this request's image. Requests run one at a time"
            f"{f', each stopped after {time_limit_s:g} s' if time_limit_s else ''}. "
            f"Uploads are limited to {MAX_UPLOAD}.")

        t_upload.select(lambda: "upload", None, tab, api_visibility="private", queue=False)
        t_draw.select(lambda: "draw", None, tab, api_visibility="private", queue=False)
        t_file.select(lambda: "file", None, tab, api_visibility="private", queue=False)
        run.click(ui_run, [tab, image, sketch, file, decoder, chosen, layout, beam],
                  [status, *cell_outputs, table_out, plot_out, speed, raw], preprocess=False,
                  api_visibility="private", concurrency_limit=concurrency_limit, concurrency_id="models")

        # The API endpoint: a file, options in, the JSON report out (gradio_client: api_name="/transcribe").
        with gr.Row(visible=False):
            api_file = gr.File(type="filepath", label="image")
            api_decoder = gr.Textbox(value="greedy", label="decoder")
            api_models = gr.Dropdown(names, value=names, multiselect=True, label="models")
            api_layout = gr.Textbox(value="auto", label="layout")
            api_beam = gr.Number(value=10, precision=0, label="beam_width")
            api_out = gr.JSON(label="report")
            api_button = gr.Button()
        api_button.click(api_run, [api_file, api_decoder, api_models, api_layout, api_beam], api_out,
                         api_name="transcribe", concurrency_limit=concurrency_limit, concurrency_id="models",
                         api_description="Transcribe one image (line or paragraph) with the selected models; "
                                         "returns texts, confidences and per-stage latency (ms).")
    return demo


def serve(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = 7860, share: bool = False,
          block: bool = True, quiet: bool = False) -> str:
    """Launch on host:port (localhost by default; share=True asks gradio for a public link). Returns the URL."""
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(server_name=host, server_port=port, share=share, max_file_size=MAX_UPLOAD,
                            prevent_thread_lock=not block, quiet=quiet, show_error=True,
                            footer_links=["api", "gradio"])
    return url


def load_models(model_names: list[str] | None = None, ckpts: list[str] | None = None) -> dict[str, Transcriber]:
    """--model/--ckpt -> {unique name: Transcriber}; the shipped models when neither is given."""
    from htr.inference import load_model, shipped_models

    sources = list(model_names or []) + list(ckpts or [])
    if not sources:  # relu_add first, then the baselines
        sources = sorted(shipped_models(), key=lambda n: (n != "relu_add", n))
        if not sources:
            raise SystemExit("no --model/--ckpt given and no shipped models found")
    models: dict[str, Transcriber] = {}
    for s in sources:
        m = load_model(s)
        name = m.name or m.cell
        k = 2
        while name in models:
            name = f"{m.name}-{k}"
            k += 1
        models[name] = m
    return models


def main(args: Any) -> None:
    """`htr app`: load the models, build the UI and serve it until interrupted."""
    models = load_models(args.model, args.ckpt)
    print(f"models: {', '.join(f'{n} ({m.cell})' for n, m in models.items())}", flush=True)
    demo = build_app(models, repeats=args.repeats)
    serve(demo, args.host, args.port, share=args.share)
