"""The app's API through gradio_client: a served app (in-process, free localhost port), normal requests
equal to the direct Transcriber.transcribe result, and every bad input answered with a clear message while
the app keeps serving."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app import ui
from htr.compare import STAGES
from htr.inference import load_models, shipped_models

EXAMPLE = ui.EXAMPLES_DIR / "poilus_1.png"
PARAGRAPH = ui.EXAMPLES_DIR / "poilus_paragraph.png"


@pytest.fixture(scope="module")
def models(app_models):
    return app_models


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


def call(client, path, decoder="greedy", names=None, layout="auto", beam_width=10):
    from gradio_client import handle_file

    names = names if names is not None else list(shipped_models())
    return client.predict(handle_file(str(path)), decoder, names, layout, beam_width, api_name="/transcribe")


def check_equals_direct(report, models, path):
    assert [r["model"] for r in report["results"]] == list(models)
    for r in report["results"]:  # the direct transcription with the report's decoder and beam width
        [want] = models[r["model"]].transcribe([path], decoder=report["decoder"], beam_width=report["beam_width"])
        assert r["text"] == want.text, (report["decoder"], r["model"])
        assert r["confidence"] == pytest.approx(want.confidence, abs=1e-5)
        assert set(r["ms"]) == {"preprocess", "encoder", "decoder", "ctc", "total"}
        assert all(v > 0 for v in r["ms"].values())
        assert r["ms"]["total"] == pytest.approx(sum(r["ms"][s] for s in STAGES))


# ---- normal requests ------------------------------------------------------------------------------
def test_api_lists_one_transcribe_endpoint(client):
    api = client.view_api(return_format="dict", print_info=False)
    assert list(api["named_endpoints"]) == ["/transcribe"]


def test_line_matches_direct_transcription(client, models):
    report = call(client, EXAMPLE)
    assert report["image"] == {"width": 672, "height": 80, "lines": 1, "layout": "line"}
    check_equals_direct(report, models, EXAMPLE)
    if {"relu_add", "gru", "lstm"} <= {m.cell for m in models.values()}:
        assert {s["other_cell"] for s in report["speedups"]} == {"gru", "lstm"}
        by_name = {r["model"]: r["ms"] for r in report["results"]}
        for s in report["speedups"]:  # other / relu_add, from the very timings the report shows
            a, b = by_name[s["relu_add"]], by_name[s["other"]]
            assert s["decoder"] == pytest.approx(b["decoder"] / a["decoder"])
            assert s["total"] == pytest.approx(b["total"] / a["total"])
            assert s["model"] == pytest.approx(sum(b[k] for k in STAGES[1:]) / sum(a[k] for k in STAGES[1:]))


def test_paragraph_is_split_into_lines(client, models):
    report = call(client, PARAGRAPH, names=["gru"])
    assert report["image"]["lines"] == 3 and report["image"]["layout"] == "paragraph"
    [r] = report["results"]
    assert len(r["lines"]) == 3 and r["text"].count("\n") == 2
    assert [ln["box"][1] for ln in r["lines"]] == sorted(ln["box"][1] for ln in r["lines"])
    # layout "line" keeps the whole image as one line
    assert call(client, PARAGRAPH, names=["gru"], layout="line")["image"]["lines"] == 1


def test_beam_decoding_and_model_choice(client, models):
    name = next(iter(models))
    report = call(client, EXAMPLE, decoder="beam", names=[name], beam_width=5)
    assert report["decoder"] == "beam" and report["beam_width"] == 5
    check_equals_direct(report, {name: models[name]}, EXAMPLE)  # the text of a direct beam search, width 5
    assert report["results"][0]["lm"] is False
    report = call(client, EXAMPLE, decoder="beam+lm", names=[name], beam_width=5)
    check_equals_direct(report, {name: models[name]}, EXAMPLE)  # with the model's LM and scoring options
    assert report["results"][0]["lm"] is (models[name].lm is not None)


# ---- odd but valid images: converted, then transcribed like their grayscale version -------------
def _line_rgba(path: Path) -> None:
    gray = np.asarray(Image.open(EXAMPLE).convert("L"))
    alpha = (255 - gray).astype(np.uint8)  # ink opaque, paper transparent
    rgba = np.dstack([np.zeros_like(gray)] * 3 + [alpha])
    Image.fromarray(rgba, "RGBA").save(path)


def _line_16bit(path: Path) -> None:
    gray = np.asarray(Image.open(EXAMPLE).convert("L")).astype(np.uint16) * 257
    Image.fromarray(gray, "I;16").save(path)


def _line_cmyk(path: Path) -> None:
    Image.open(EXAMPLE).convert("RGB").convert("CMYK").save(path, "JPEG", quality=95)


@pytest.mark.parametrize("make, suffix", [(_line_rgba, ".png"), (_line_16bit, ".png"), (_line_cmyk, ".jpg")],
                         ids=["transparent-png", "16-bit-png", "cmyk-jpeg"])
def test_converted_images_are_transcribed(client, models, tmp_path, make, suffix):
    path = tmp_path / f"line{suffix}"
    make(path)
    report = call(client, path)
    assert report["image"]["width"] == 672
    check_equals_direct(report, models, path)
    # the conversion gives the example's grayscale pixels (JPEG: within its rounding), so a lossless file
    # reads exactly like the grayscale original
    from htr.data.images import load_image

    converted = np.asarray(load_image(path)).astype(int)
    gray = np.asarray(Image.open(EXAMPLE).convert("L")).astype(int)
    assert converted.shape == gray.shape
    if suffix == ".png":
        assert np.array_equal(converted, gray)
        check_equals_direct(report, models, EXAMPLE)
    else:
        assert np.abs(converted - gray).max() <= 16 and np.abs(converted - gray).mean() < 2


# ---- bad inputs: a clear message each, and the app keeps serving ----------------------------------
def _png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height (a decompression bomb, cheaply)."""
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = data[12:29]
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def _real_bomb(side: int = 10_000) -> bytes:
    """A genuine PNG of side x side white pixels (100 Mpx), zlib-compressed to ~100 KB."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    row = b"\x00" + b"\xff" * side
    z = zlib.compressobj(9)
    body = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def _truncated() -> bytes:
    data = EXAMPLE.read_bytes()
    return data[: len(data) // 2]


def _one_pixel() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (1, 1), 0).save(buf, "PNG")
    return buf.getvalue()


def _blank() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (400, 60), 255).save(buf, "PNG")
    return buf.getvalue()


BAD = {  # name -> (file name, bytes, words the message must contain)
    "not-an-image": ("notes.png", b"this is a text file, not a picture\n" * 20, "unreadable or corrupt image"),
    "truncated-png": ("cut.png", _truncated(), "corrupt"),
    "empty-file": ("empty.png", b"", "empty file"),
    "one-pixel": ("dot.png", _one_pixel(), "1x1 pixels"),
    "20000x20000-header": ("huge.png", _png_claiming(20_000, 20_000), "decompression bomb"),
    "bomb-10000x10000": ("bomb.png", None, "pixels"),
    "blank": ("blank.png", _blank(), "blank"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_gives_a_message_and_the_app_keeps_serving(client, models, tmp_path, case):
    from gradio_client.exceptions import AppError

    name, data, words = BAD[case]
    path = tmp_path / name
    path.write_bytes(_real_bomb() if data is None else data)
    with pytest.raises(AppError) as info:
        call(client, path)
    message = str(info.value)
    assert words in message, message
    assert name in message or case == "blank", message  # names the user's file, not a server temp path
    assert "/tmp/gradio" not in message
    check_equals_direct(call(client, EXAMPLE), models, EXAMPLE)  # the next request works


@pytest.mark.parametrize("kwargs, words", [({"decoder": "magic"}, "decoder 'magic'"),
                                           ({"names": []}, "no model selected"),
                                           ({"names": ["nope"]}, "nope"),
                                           ({"layout": "page"}, "layout 'page'")])
def test_bad_options_give_a_message(client, kwargs, words):
    from gradio_client.exceptions import AppError

    with pytest.raises((AppError, ValueError)) as info:
        call(client, EXAMPLE, **kwargs)
    assert words in str(info.value)


def test_upload_size_is_limited(client, models, tmp_path):
    import httpx

    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * (11 * 1024 * 1024))  # above the app's 10 MB upload limit
    with pytest.raises(ValueError, match="exceeds the maximum file size"):  # gradio_client checks first
        call(client, big)
    # and the server refuses it from any other client
    r = httpx.post(client.src.rstrip("/") + "/gradio_api/upload", files={"files": ("big.png", big.read_bytes())})
    assert r.status_code == 413 and "maximum allowed size" in r.text
    check_equals_direct(call(client, EXAMPLE), models, EXAMPLE)


def test_messages_for_ui_sources():
    with pytest.raises(Exception, match="nothing drawn yet"):
        ui._source_of("draw", None, {"background": None, "layers": [], "composite": None}, None)
    with pytest.raises(Exception, match="no image yet"):
        ui._source_of("upload", None, None, None)
    assert ui._source_of("upload", {"path": "/x/a.png", "orig_name": "a.png"}, None, None) == ("/x/a.png", "a.png")


def test_models_from_the_command_line_get_unique_names():
    if "gru" not in shipped_models():
        pytest.skip("no shipped gru model")
    path = str(shipped_models()["gru"])
    models = load_models(["gru", path, path])
    assert list(models) == ["gru", "gru-2", "gru-3"] and all(m.cell == "gru" for m in models.values())


def test_twenty_concurrent_requests_are_all_answered_correctly(client, models):
    from htr.bench.app import run, to_text

    report = run(url=client.src, models=models, concurrency=[20])
    [level] = report["levels"]
    assert level["correct"] == level["requests"] == 20 and report["correct"] == report["requests"] == 21, \
        to_text(report)
    assert level["p95_ms"] >= level["p50_ms"] > 0 and level["batch_max"] >= 1
    assert "p50" in to_text(report)


def test_bench_reports_levels_and_fails_on_a_wrong_answer(client, models, monkeypatch, capsys):
    """`htr bench app`: one result per concurrency level; answers checked against other models' direct
    transcriptions are wrong, and the command exits with status 1 (its --json output still printed)."""
    import argparse
    import json

    from htr.bench import app as bench

    if len(models) < 2:
        pytest.skip("needs two shipped models")
    swapped = dict(zip(models, reversed(list(models.values()))))  # each name checked against another model
    report = bench.run(url=client.src, models=swapped, concurrency=[2, 3])
    assert [(v["concurrency"], v["requests"]) for v in report["levels"]] == [(2, 2), (3, 3)]
    assert report["correct"] < report["requests"] == 6 and "request 0" in bench.to_text(report)
    monkeypatch.setattr(bench, "run", lambda *args, **kwargs: report)
    args = argparse.Namespace(model=None, ckpt=None, requests=None, concurrency=[2, 3], in_process=False, json=True)
    with pytest.raises(SystemExit) as info:
        bench.main(args)
    assert info.value.code == 1
    assert json.loads(capsys.readouterr().out)["levels"][0]["failed"]


def test_integer_columns_follow_their_relu_add_model(models):
    """`htr app --integer`: each relu_add model is followed by its integer-decoder copy, which the app's
    requests run like any model and which reads the example lines as the float model does, or nearly."""
    import editdistance

    from htr.compare import transcribe

    relu_add = [n for n, m in models.items() if m.cell == "relu_add"]
    if not relu_add:
        pytest.skip("no shipped relu_add model")
    with_integer = ui.with_integer_columns(models)
    names = list(with_integer)
    for n in relu_add:
        assert names[names.index(n) + 1] == f"{n}-integer"
    assert len(names) == len(models) + len(relu_add)
    from conftest import POILUS_EXAMPLE_LINES

    pairs = []
    for line in POILUS_EXAMPLE_LINES:
        report = transcribe(with_integer, str(line), names=[relu_add[0], f"{relu_add[0]}-integer"], repeats=1)
        pairs.append(tuple(r["text"] for r in report["results"]))
    distance = sum(editdistance.eval(f, i) for f, i in pairs)
    assert len(pairs) == 3 and distance <= sum(len(f) for f, _ in pairs) // 10, pairs
