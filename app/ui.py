"""The Gradio app: drop in a handwritten line (or a short paragraph), see what each recurrent decoder reads
and what it costs.

    htr app [--model relu_add --model gru ...] [--ckpt X.ckpt ...] [--integer] [--host 127.0.0.1] [--port 7860]

UI only: the models come from htr.inference.load_models, each request goes to htr.compare.Batcher (image
reading, line segmentation, per-stage latency, the request's limits); this module lays out the page,
turns reports into its outputs and exceptions into sentences. Requests that arrive together are
recognised together by the batcher's one worker thread (the computation stays on one thread however many
clients wait; each report gives its own share of the batch's time and says how it was shared), each is
stopped after ``time_limit_s`` so that none holds the others for longer, and a request whose client has
disconnected is dropped between stages. Page requests report the median of ``repeats`` runs (a latency
comparison), API requests one run (``api_repeats``).
Internal errors reach web clients as their exception type only (the details go to the server's log).

API (gradio_client), one endpoint:

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    result = client.predict(handle_file("line.png"), "greedy", ["relu_add", "gru", "lstm"], "auto", 10,
                            api_name="/transcribe")
    # result["results"]: [{"model", "cell", "text", "confidence", "ms": {"preprocess", "encoder", "decoder",
    #                      "ctc", "total"}, "lines": [...]}, ...]; bad input raises gradio_client's AppError
    # result["batch"]: {"requests", "lines", "queue_ms", "wall_ms"}: the batch it was recognised in;
    # result["timing"]: how its ms were measured
"""
from __future__ import annotations

import base64
import html
import logging
import re
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import pandas as pd
from PIL import Image

from htr.compare import BATCH_REQUESTS, DECODERS, MAX_BEAM, MIN_BEAM, REPEATS, STAGES, TIME_LIMIT_S, Batcher
from htr.errors import HTRError, ImageError
from htr.inference import Transcriber, load_models
from htr.segment import LAYOUTS
from htr.text import BEAM_WIDTH

EXAMPLES_DIR = Path(__file__).parent / "examples"
MAX_UPLOAD = "10mb"  # per uploaded file (gradio rejects bigger uploads before they reach the app)
WAITING = 2 * BATCH_REQUESTS  # requests handed to the batcher at once (gradio's queue holds the others)
MAX_THREADS = WAITING + 16  # gradio's worker threads: every waiting request holds one
log = logging.getLogger("htr.app")


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name)


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
BAR_COLUMNS = ["model", "stage", "ms"]


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


def status_text(report: dict[str, Any], label: str) -> str:
    img = report["image"]
    text = (f"Transcribed **{html.escape(label)}** ({img['width']}×{img['height']} px, "
            f"{img['lines']} line{'s' if img['lines'] > 1 else ''}) with {len(report['results'])} "
            f"model(s), {report['decoder']} decoding.")
    others = report.get("batch", {}).get("requests", 1) - 1
    if others > 0:
        text += f" Recognised together with {others} other request{'s' if others > 1 else ''}."
    for note in report["warnings"]:  # lines squeezed to the width limit
        text += f"\n\n**Note:** {html.escape(note)}"
    return text


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


def _warm_up(models: dict[str, Transcriber]) -> None:
    """First-call costs (numba compilation, allocator) out of the first request."""
    for m in models.values():
        lines = [m.preprocess(Image.new("L", (w, 32), 255)) for w in (64, 96)]
        m.run_batch(lines[:1])
        m.forward_lines(lines)  # the batched path: lines of two widths


def _disconnected() -> Callable[[], bool] | None:
    """For the gradio event being served (called in its handler): a check whether its client has gone.

    Gradio marks the running events of a closed session not alive (and drops its queued ones itself);
    this reads that mark (gradio internals: LocalContext, Queue.event_ids_to_events, Event.alive; None
    when they are missing, then a running request is not cancelled)."""
    from gradio.context import LocalContext

    blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
    events = getattr(getattr(blocks, "_queue", None), "event_ids_to_events", None)
    if event_id is None or not isinstance(events, dict):
        return None

    def gone() -> bool:
        event = events.get(event_id)
        return event is not None and getattr(event, "alive", True) is False
    return gone


def _page_handler(batcher: Batcher, repeats: int, time_limit_s: float | None) -> Callable:
    """The Transcribe button: raw payloads in, the page's outputs out; every failure becomes a message."""
    names = list(batcher.models)

    def run(tab, image, sketch, file, decoder, chosen, layout, beam_width):
        # Called with raw payloads (preprocess=False): gradio's Image preprocessing would open bad files
        # with PIL itself and fail with a generic error.
        source, label = None, ""
        try:
            source, label = _source_of(tab, image, sketch, file)
            chosen = [n for n in names if n in (chosen or [])]
            report = batcher.submit(source, decoder, chosen, layout, beam_width, repeats, tight=label == "drawing",
                                    time_limit_s=time_limit_s, cancelled=_disconnected())
        except Exception as e:  # noqa: BLE001 - never let a request kill the page
            blank_cells = []
            for n in names:
                blank_cells += ["", "*not run*" if n in (chosen or []) else "*not selected*"]
            return [f"**Error:** {html.escape(user_message(e, source, label))}", *blank_cells,
                    pd.DataFrame(columns=TABLE_COLUMNS), pd.DataFrame(columns=BAR_COLUMNS), "", {}]
        by_name = {r["model"]: r for r in report["results"]}
        cells = []
        for n in names:
            r = by_name.get(n)
            cells += [r["text"], stats_text(r)] if r else ["", "*not selected*"]
        return [status_text(report, label), *cells, table(report), bars(report), speedup_text(report), report]
    return run


def _api_handler(batcher: Batcher, repeats: int, time_limit_s: float | None) -> Callable:
    """The /transcribe endpoint: a file path and options in, the JSON report out (gr.Error on failure)."""
    def run(file, decoder, chosen, layout, beam_width):
        if not file:
            raise gr.Error("no image given: pass an image file, e.g. gradio_client.handle_file('line.png')",
                           print_exception=False)
        try:
            return batcher.submit(file, decoder, chosen, layout, beam_width, repeats, time_limit_s=time_limit_s,
                                  cancelled=_disconnected())
        except Exception as e:  # noqa: BLE001
            raise gr.Error(user_message(e, file), print_exception=False) from None
    return run


def _constant(value: str) -> Callable[[], str]:
    return lambda: value


def _input_column() -> tuple[gr.State, gr.Image, gr.Sketchpad, gr.File]:
    """Upload / draw / any-file tabs; the State holds which tab is open."""
    tab = gr.State("upload")
    with gr.Column(scale=3), gr.Tabs():
        with gr.Tab("Upload or paste", id="upload") as t_upload:
            image = gr.Image(sources=["upload", "clipboard"], type="filepath", image_mode=None,
                             label="Handwritten line or paragraph", elem_id="input-image", height=220)
            gr.Examples([[str(p)] for p in sorted(EXAMPLES_DIR.glob("*.png"))], inputs=[image],
                        label="Examples (synthetic lines; real lines: CREMMA-AN Testaments de Poilus, "
                              "CC-BY 4.0, see app/examples/ATTRIBUTION.md)")
        with gr.Tab("Draw", id="draw") as t_draw:
            sketch = gr.Sketchpad(label="Write a line", type="filepath", canvas_size=(1000, 250),
                                  brush=gr.Brush(colors=["#000000", "#1f3a93"], default_size=4, color_mode="fixed"),
                                  elem_id="input-sketch")
        with gr.Tab("Any file", id="file") as t_file:
            gr.Markdown("Any image file (TIFF, 16-bit, CMYK...), read by the app rather than the browser.")
            file = gr.File(label="Image file", type="filepath", elem_id="input-file")
    for t, name in ((t_upload, "upload"), (t_draw, "draw"), (t_file, "file")):
        t.select(_constant(name), None, tab, api_visibility="private", queue=False)
    return tab, image, sketch, file


def _options_column(names: list[str]) -> tuple[gr.Radio, gr.Slider, gr.CheckboxGroup, gr.Radio, gr.Button]:
    with gr.Column(scale=1):
        decoder = gr.Radio(list(DECODERS), value="greedy", label="Decoding",
                           info="greedy, or CTC beam search (beam+lm adds the model's character LM)")
        beam = gr.Slider(MIN_BEAM, MAX_BEAM, value=BEAM_WIDTH, step=1, label="Beam width")
        chosen = gr.CheckboxGroup(names, value=names, label="Models")
        layout = gr.Radio(list(LAYOUTS), value="auto", label="Layout", info="auto: paragraphs are split into lines")
        run = gr.Button("Transcribe", variant="primary", elem_id="run")
    return decoder, beam, chosen, layout, run


def _model_outputs(models: dict[str, Transcriber]) -> list[gr.components.Component]:
    """One column per model: its text and its stats line."""
    outputs: list[gr.components.Component] = []
    with gr.Row(equal_height=True):
        for n, m in models.items():
            with gr.Column(min_width=220):
                outputs.append(gr.Textbox(label=f"{n} ({m.cell})", lines=2, interactive=False, placeholder="(no text)",
                                          elem_id=f"text-{slug(n)}", buttons=["copy"]))
                outputs.append(gr.Markdown(elem_id=f"stats-{slug(n)}"))
    return outputs


def _latency_outputs(names: list[str]) -> tuple[gr.Dataframe, gr.BarPlot]:
    with gr.Row():
        with gr.Column(scale=3):
            table_out = gr.Dataframe(pd.DataFrame(columns=TABLE_COLUMNS), interactive=False,
                                     label="Latency per stage (ms) for this request", elem_id="latency-table")
        with gr.Column(scale=2):
            plot_out = gr.BarPlot(pd.DataFrame(columns=BAR_COLUMNS), x="model", y="ms", color="stage",
                                  label="Latency per stage (ms)", elem_id="latency-plot", y_title="ms", sort=names)
    return table_out, plot_out


def _api_endpoint(batcher: Batcher, repeats: int, time_limit_s: float | None, **queue: Any) -> None:
    """The API's one endpoint (gradio_client: api_name="/transcribe"), on hidden components."""
    names = list(batcher.models)
    with gr.Row(visible=False):
        inputs = [gr.File(type="filepath", label="image"), gr.Textbox(value="greedy", label="decoder"),
                  gr.Dropdown(names, value=names, multiselect=True, label="models"),
                  gr.Textbox(value="auto", label="layout"),
                  gr.Number(value=BEAM_WIDTH, precision=0, label="beam_width")]
        output = gr.JSON(label="report")
        button = gr.Button()
    button.click(_api_handler(batcher, repeats, time_limit_s), inputs, output, api_name="transcribe",
                 api_description="Transcribe one image (line or paragraph) with the selected models; "
                                 "returns texts, confidences and per-stage latency (ms).", **queue)


INTRO = ("# htr — handwritten text-line recognition\n"
         "Drop in a handwritten line (or a short paragraph: it is split into lines) and compare what each "
         "recurrent decoder reads and what it costs. The three recognisers share the CNN encoder design and "
         "CTC; only the recurrent cell differs: **relu_add** (gates from additions and ReLUs), **gru**, **lstm**.")


def _footer(repeats: int, api_repeats: int, time_limit_s: float | None) -> str:
    def runs(n: int) -> str:
        return f"the median of {n} interleaved runs" if n > 1 else "one run"

    return (f"Latency: measured for each request on the machine the app runs on. Requests that arrive "
            f"together are recognised together, in one batch (each line still gets the result it has alone): "
            f"preprocessing (read, segment, resize) is timed for each request; its encoder time is that of its "
            f"own lines; the recurrent decoder (+ classifier) runs once for the whole batch and its time is "
            f"shared in proportion to each request's frames; CTC decoding is timed for each request. A request "
            f"alone has all of its times to itself. Model times are {runs(repeats)} of each model (API "
            f"requests: {runs(api_repeats)}); the raw result's batch field gives how many requests were "
            f"recognised together and how long this one waited"
            f"{f'; each request is stopped after {time_limit_s:g} s' if time_limit_s else ''}. "
            f"Uploads are limited to {MAX_UPLOAD}.")


def build_app(models: dict[str, Transcriber], repeats: int = REPEATS, concurrency_limit: int = WAITING,
              time_limit_s: float | None = TIME_LIMIT_S, api_repeats: int = 1) -> gr.Blocks:
    """The Blocks app for these models (name -> Transcriber). Launch it with `serve` (or demo.launch).

    Requests go to one htr.compare.Batcher (``demo.batcher``), at most ``concurrency_limit`` at once;
    page requests report the median of ``repeats`` runs, API requests of ``api_repeats``. Each request is
    stopped with a message after ``time_limit_s`` seconds (None: no limit)."""
    if not models:
        raise ValueError("build_app needs at least one model")
    _warm_up(models)
    batcher = Batcher(models)
    queue = {"concurrency_limit": concurrency_limit, "concurrency_id": "models"}  # one queue for both endpoints
    with gr.Blocks(title="htr: handwritten line recognition") as demo:
        gr.Markdown(INTRO)
        with gr.Row():
            tab, image, sketch, file = _input_column()
            decoder, beam, chosen, layout, run = _options_column(list(models))
        status = gr.Markdown("Upload, paste or draw an image, or pick an example, then press **Transcribe**.",
                             elem_id="status")
        cell_outputs = _model_outputs(models)
        speed = gr.Markdown(elem_id="speedup")
        table_out, plot_out = _latency_outputs(list(models))
        with gr.Accordion("Raw result (JSON, as the API returns it)", open=False):
            raw = gr.JSON()
        gr.Markdown(_footer(repeats, api_repeats, time_limit_s))
        page_inputs = [tab, image, sketch, file, decoder, chosen, layout, beam]
        run.click(_page_handler(batcher, repeats, time_limit_s), page_inputs,
                  [status, *cell_outputs, table_out, plot_out, speed, raw], preprocess=False,
                  api_visibility="private", **queue)
        _api_endpoint(batcher, api_repeats, time_limit_s, **queue)
    demo.batcher = batcher  # type: ignore[attr-defined]  # for tests and the bench: its stats
    return demo


def serve(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = 7860, share: bool = False,
          block: bool = True, quiet: bool = False) -> str:
    """Launch on host:port (localhost by default; share=True asks gradio for a public link). Returns the URL."""
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(server_name=host, server_port=port, share=share, max_file_size=MAX_UPLOAD,
                            max_threads=MAX_THREADS,
                            prevent_thread_lock=not block, quiet=quiet, show_error=True,
                            footer_links=["api", "gradio"])
    return url


def with_integer_columns(models: dict[str, Transcriber]) -> dict[str, Transcriber]:
    """The models, each relu_add one followed by its integer-decoder copy (``<name>-integer``). Each line
    is quantised on its own scale (htr.fhe.integer), so batching other requests' lines with it does not
    change how it reads."""
    out: dict[str, Transcriber] = {}
    for name, model in models.items():
        out[name] = model
        if model.cell == "relu_add":
            out[f"{name}-integer"] = model.with_integer_decoder()
    return out


def main(args: Any) -> None:
    """`htr app`: load the models, build the UI and serve it until interrupted."""
    models = load_models([*(args.model or []), *(args.ckpt or [])])
    if getattr(args, "integer", False):  # each relu_add model also as an integer-decoder column
        models = with_integer_columns(models)
    print(f"models: {', '.join(f'{n} ({m.cell})' for n, m in models.items())}", flush=True)
    demo = build_app(models, repeats=args.repeats)
    serve(demo, args.host, args.port, share=args.share)
