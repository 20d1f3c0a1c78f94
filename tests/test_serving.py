"""Serving under abuse (issue 19): `htr transcribe` batches survive bad files, HTRErrors are one clean
line, bad checkpoints and TSVs are named, the app's API refuses parameters outside the page's limits and
stops a request at its time limit. Every probe input is built here: a zero-byte file, a junk .gif, an
over-wide line, a NaN checkpoint, a checkpoint of the wrong shapes, a non-UTF-8 TSV, an over-limit beam."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from PIL import Image

from htr.cli import main
from htr.errors import CheckpointError, DatasetError, HTRError, TimeLimitError
from htr.inference import Transcriber, load_model, shipped_models

ROOT = Path(__file__).resolve().parents[1]
LINE = ROOT / "app" / "examples" / "poilus_1.png"
MODEL = "relu_add"


@pytest.fixture(scope="module")
def model(one_thread):
    if MODEL not in shipped_models():
        pytest.skip(f"no shipped {MODEL} model")
    return load_model(MODEL)


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("htr: error:")]


def write_line(path: Path, width: int = 160, height: int = 40) -> Path:
    a = np.full((height, width), 235, np.uint8)
    a[height // 3: 2 * height // 3, width // 8: 7 * width // 8: 3] = 30  # strokes
    Image.fromarray(a, "L").save(path)
    return path


# ---- item 4: batches survive bad files -------------------------------------------------------------
def test_two_good_files_and_a_zero_byte_one(tmp_path, capsys, model):
    """`htr transcribe good.png good.png zero_bytes.png`: two transcriptions, one error line, status 1."""
    good = tmp_path / "good.png"
    good.write_bytes(LINE.read_bytes())
    zero = tmp_path / "zero_bytes.png"
    zero.write_bytes(b"")
    code, out, err = run_cli(capsys, "transcribe", str(good), str(good), str(zero), "--model", MODEL)
    assert code == 1
    rows = [line.split("\t") for line in out.splitlines()]
    [want] = model.transcribe([good])
    assert [r[1] for r in rows] == [str(good), str(good)] and all(r[2] == want.text for r in rows)
    [line] = error_lines(err)
    assert line.startswith(f"htr: error: {zero}: empty file (0 bytes)")
    assert "Traceback" not in err and "1 of 3 images failed" in err


def test_on_error_stop_ends_at_the_first_bad_file(tmp_path, capsys, model):
    good = write_line(tmp_path / "a.png")
    bad = tmp_path / "b.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    later = write_line(tmp_path / "c.png")
    code, out, err = run_cli(capsys, "transcribe", str(good), str(bad), str(later), "--model", MODEL,
                             "--on-error", "stop")
    assert code == 1
    assert [line.split("\t")[1] for line in out.splitlines()] == [str(good)]  # c.png not printed
    [line] = error_lines(err)
    assert str(bad) in line and "unreadable or corrupt" in line and "Traceback" not in err
    # --json: the rows read before the bad file, then its error
    code, out, _ = run_cli(capsys, "transcribe", str(good), str(bad), str(later), "--model", MODEL,
                           "--on-error", "stop", "--json")
    assert code == 1 and [("error" in r, Path(r["image"]).name) for r in json.loads(out)] == [
        (False, "a.png"), (True, "b.png")]


def test_folder_mode_reads_gif_and_reports_bad_and_missing_files(tmp_path, capsys, model):
    folder = tmp_path / "lines"
    folder.mkdir()
    write_line(folder / "line.gif")
    write_line(folder / "line.webp")
    (folder / "junk.gif").write_bytes(b"GIF89a but nothing else")
    (folder / "notes.txt").write_text("not an image")  # not an image suffix: not read
    code, out, err = run_cli(capsys, "transcribe", str(folder), str(tmp_path / "missing.png"), "--model", MODEL,
                             "--json")
    assert code == 1
    rows = {Path(r["image"]).name: r for r in json.loads(out)}
    assert sorted(rows) == ["junk.gif", "line.gif", "line.webp"]
    [want] = model.transcribe([folder / "line.gif"])
    assert rows["line.gif"]["text"] == want.text and rows["line.gif"]["warnings"] == []
    assert "junk.gif" in rows["junk.gif"]["error"]
    assert len(error_lines(err)) == 2 and "missing.png: no such file" in err and "2 of 4 images failed" in err


def test_pages_mode_survives_bad_files(tmp_path, capsys, model):
    zero = tmp_path / "zero.png"
    zero.write_bytes(b"")
    code, out, err = run_cli(capsys, "transcribe", str(LINE), str(zero), "--model", MODEL, "--format", "json")
    assert code == 1
    [page] = json.loads(out)
    assert page["image"] == str(LINE) and len(page["lines"]) == 1
    [line] = error_lines(err)
    assert str(zero) in line and "empty file" in line


# ---- item 5: a line wider than the width limit is reported ----------------------------------------
def test_a_squeezed_line_is_reported_in_the_output(tmp_path, capsys, model):
    wide = write_line(tmp_path / "wide.png", width=2400, height=20)  # 7680 px at height 64
    [tr] = model.transcribe([wide])
    assert len(tr.warnings) == 1 and "squeezed" in tr.warnings[0] and str(wide) in tr.warnings[0]
    code, out, err = run_cli(capsys, "transcribe", str(wide), "--model", MODEL, "--json")
    [row] = json.loads(out)
    assert code == 0 and row["warnings"] == tr.warnings and f"htr: warning: {wide}: 2400x20 px" in err
    [fits] = model.transcribe([LINE])
    assert fits.warnings == []


# ---- item 6: clean errors, checkpoints, TSV ---------------------------------------------------------
def test_htr_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    code, out, err = run_cli(capsys, "transcribe", str(LINE), "--ckpt", str(tmp_path / "nope.ckpt"))
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"htr: error: {tmp_path / 'nope.ckpt'}: no such file")
    with pytest.raises(CheckpointError, match="no such file"):  # --debug: the exception and its traceback
        main(["transcribe", str(LINE), "--ckpt", str(tmp_path / "nope.ckpt"), "--debug"], clean_errors=True)
    with pytest.raises(CheckpointError):  # called from Python with an argument list: the exception, as before
        main(["transcribe", str(LINE), "--ckpt", str(tmp_path / "nope.ckpt")])


def test_the_htr_command_itself(tmp_path, model):
    """The real command in a fresh process (`python -m htr.cli`, as the `htr` script): two good files and a
    zero-byte one give two result lines on stdout, one error line on stderr, exit status 1."""
    import subprocess
    import sys

    zero = tmp_path / "zero_bytes.png"
    zero.write_bytes(b"")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    env.pop("HTR_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "htr.cli", "transcribe", str(LINE), str(LINE), str(zero),
                           "--model", MODEL], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert (len(proc.stdout.splitlines()) == 2
            and all(line.startswith(f"{MODEL}\t") for line in proc.stdout.splitlines()))
    assert error_lines(proc.stderr) == [f"htr: error: {zero}: empty file (0 bytes); expected an image"]
    assert "Traceback" not in proc.stderr


def _shipped_parts() -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = shipped_models()[MODEL]
    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["htr"])
    return load_file(str(path)), meta


def test_nan_and_misshapen_checkpoints_raise_checkpoint_error(tmp_path, capsys, model):
    from safetensors.torch import save_file

    state, meta = _shipped_parts()
    name = next(k for k, v in state.items() if v.is_floating_point() and v.dim() == 2)
    nan = dict(state)
    nan[name] = state[name].clone()
    nan[name][0, 0] = math.nan
    nan_file = tmp_path / "nan.safetensors"
    save_file(nan, str(nan_file), metadata={"htr": json.dumps(meta)})
    with pytest.raises(CheckpointError, match=f"NaN or infinite weights: {name}"):
        load_model(nan_file)

    # a Lightning-style .ckpt whose tensor has the wrong shape: CheckpointError, not torch's RuntimeError
    wrong = {f"net.{k}": v for k, v in state.items()}
    wrong[f"net.{name}"] = state[name][:-1].clone()
    ckpt = tmp_path / "wrong.ckpt"
    torch.save({"state_dict": wrong, "htr": meta}, ckpt)
    with pytest.raises(CheckpointError, match=rf"wrong shape.*{name} \({state[name].shape[0] - 1},"):
        Transcriber.from_checkpoint(ckpt)
    broken = tmp_path / "nometa.ckpt"
    torch.save({"state_dict": wrong, "htr": {"codec": meta["codec"]}}, broken)  # no network config
    with pytest.raises(CheckpointError, match="metadata without a usable network config"):
        Transcriber.from_checkpoint(broken)

    code, _, err = run_cli(capsys, "transcribe", str(LINE), "--ckpt", str(nan_file))
    assert code == 1 and len(err.splitlines()) == 1 and "NaN" in err and "Traceback" not in err


def test_non_utf8_tsv_names_file_and_line(tmp_path, capsys):
    from htr.data.folder import read_folder
    from htr.report import read_groups

    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "val.tsv").write_bytes("a.png\tune ligne\nb.png\tDécembre\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"val\.tsv:2:8: byte\(s\) e9 are not valid UTF-8"):
        read_folder(folder, "val")
    (folder / "writers.tsv").write_bytes(b"a\tw1\n\n\xff\xfe\tw2\n")
    with pytest.raises(DatasetError, match=r"writers\.tsv:3:1: "):
        read_groups(folder / "writers.tsv")
    code, _, err = run_cli(capsys, "evaluate", "--model", MODEL, "--data", str(folder))
    if MODEL in shipped_models():
        assert code == 1 and "val.tsv:2:8:" in err and len(err.splitlines()) == 1, err


# ---- item 1: the app's API within the page's limits, time limit -------------------------------------
FAKE_MODELS = {"relu_add": None, "gru": None, "lstm": None}


@pytest.mark.parametrize("kwargs, words", [
    ({"beam_width": 100}, "beam width 100; expected an integer from 2 to 32"),
    ({"beam_width": 0}, "beam width 0"),
    ({"beam_width": 10.5}, "beam width 10.5"),
    ({"beam_width": "10"}, "beam width '10'"),
    ({"beam_width": True}, "beam width True"),
    ({"beam_width": math.nan}, "beam width nan"),
    ({"names": "gru,lstm"}, "models 'gru,lstm': a string that is not a model name"),
    ({"names": ["gru", 3]}, "models ['gru', 3]; expected a list of model names"),
    ({"names": {"gru": 1}}, "expected a list of model names"),
    ({"names": []}, "no model selected"),
    ({"names": ["gru", "nope"]}, "unknown model(s) 'nope'"),
    ({"decoder": None}, "decoder None; expected one of greedy, beam, beam+lm"),
    ({"decoder": "magic"}, "decoder 'magic'"),
    ({"layout": "page"}, "layout 'page'; expected one of auto, line, paragraph"),
    ({"layout": ["auto"]}, "layout ['auto']"),
])
def test_api_parameters_outside_the_page_limits_are_refused(kwargs, words):
    from app import ui
    from htr import compare

    request = {"decoder": "beam", "names": ["gru"], "layout": "auto", "beam_width": 10, **kwargs}
    with pytest.raises(compare.RequestError) as info:
        compare.check_request(FAKE_MODELS, **request)
    assert words in str(info.value) and isinstance(info.value, HTRError)
    assert ui.user_message(info.value) == str(info.value)


def test_api_parameters_within_the_limits():
    from htr import compare

    assert compare.check_request(FAKE_MODELS, "greedy", None, "auto", 10) == (list(FAKE_MODELS), 10)
    assert compare.check_request(FAKE_MODELS, "beam", "gru", "line", 32.0) == (["gru"], 32)  # one name as a string
    assert compare.check_request(FAKE_MODELS, "beam+lm", ["lstm", "relu_add"], "paragraph", np.int64(2)) == (
        ["relu_add", "lstm"], 2)  # the app's order
    assert compare.MIN_BEAM == 2 and compare.MAX_BEAM == 32


def test_internal_errors_reach_clients_without_details():
    from app import ui

    msg = ui.user_message(RuntimeError("boom in /srv/htr/secret/module.py"))
    assert msg.startswith("internal error (RuntimeError)") and "/srv" not in msg and "boom" not in msg


@pytest.mark.timeout(60)  # without the limit this request runs for minutes
def test_a_heavy_request_stops_at_the_time_limit(tmp_path, model):
    """The probe's 12000 x 100 line at the widest beam: stopped soon after its time limit with a message
    (so a request queued behind it waits at most about one time limit); a normal request then works."""
    from app import ui
    from htr import compare

    models = {MODEL: model}
    wide = write_line(tmp_path / "wide.png", width=12000, height=100)
    limit = 0.2
    with pytest.raises(TimeLimitError) as info:
        compare.transcribe(models, str(wide), "beam+lm", [MODEL], "line", compare.MAX_BEAM, repeats=3,
                           time_limit_s=limit)
    assert f"time limit of {limit:g} s" in str(info.value) and "beam width 32" in str(info.value)
    assert "time limit" in ui.user_message(info.value, str(wide), "wide.png")
    report = compare.transcribe(models, str(LINE), "greedy", MODEL, "auto", 10, repeats=1,
                                time_limit_s=compare.TIME_LIMIT_S)
    [want] = model.transcribe([LINE])
    assert report["results"][0]["text"] == want.text and report["warnings"] == []
    squeezed = compare.transcribe(models, str(wide), "greedy", [MODEL], "line", 10, repeats=1, time_limit_s=30)
    assert len(squeezed["warnings"]) == 1 and "squeezed" in squeezed["warnings"][0]


def test_served_api_refuses_an_over_limit_beam_and_a_string_model_list(app_url, tmp_path):
    """Through gradio_client, as the probe sent them: beam width 100 and models "gru" as a string."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(app_url, verbose=False)
    with pytest.raises(AppError, match="beam width 100; expected an integer from 2 to 32"):
        client.predict(handle_file(str(LINE)), "beam", list(shipped_models()), "auto", 100, api_name="/transcribe")
    # one model name sent as a string: that model (it used to be split into "unknown model(s) g, r, u")
    report = client.predict(handle_file(str(LINE)), "greedy", "gru", "auto", 10, api_name="/transcribe")
    assert [r["model"] for r in report["results"]] == ["gru"]
    with pytest.raises(AppError) as info:  # gradio's dropdown check or ours: the value named, whole
        client.predict(handle_file(str(LINE)), "greedy", "gru,lstm", "auto", 10, api_name="/transcribe")
    assert "gru,lstm" in str(info.value) and "g, r, u" not in str(info.value)


# ---- items 1 and 3: concurrent requests recognised together, cancelled when their client goes ------
EXAMPLES = ROOT / "app" / "examples"


def write_paragraph(path: Path, lines: int = 12, width: int = 6000, seed: int = 0) -> Path:
    """Rows of random strokes, each squeezed to the width limit: a slow beam+lm search per line."""
    rng = np.random.default_rng(seed)
    row, gap = 60, 40
    a = np.full((lines * (row + gap) + gap, width), 235, np.uint8)
    for k in range(lines):
        y = gap + k * (row + gap)
        a[y:y + row][rng.random((row, width)) < 0.25] = 30
    Image.fromarray(a, "L").save(path)
    return path


def test_lines_of_different_widths_read_in_one_batch_as_alone(model):
    """Transcriber.forward_lines: every line's text and confidence equal run_batch of that line alone, for
    widths that pad differently, a line narrower than min_width and two lines of one width."""
    from htr.compare import read_lines

    lines = [model.preprocess(p) for p in sorted(EXAMPLES.glob("*_[0-9].png"))]
    lines += [model.preprocess(Image.new("L", (12, 40), 235)), lines[0]]
    lines += [model.preprocess(c) for c in read_lines(EXAMPLES / "poilus_paragraph.png")[2]]
    assert len({t.shape[-1] for t in lines}) >= 6
    log_probs, frames, encoder_ms, decoder_ms = model.forward_lines(lines)
    assert log_probs.shape[1] == len(frames) == len(encoder_ms) == len(decoder_ms) == len(lines)
    assert all(ms > 0 for ms in encoder_ms + decoder_ms)
    for decoder in ("greedy", "beam"):
        for i, line in enumerate(lines):
            [alone] = model.run_batch([line], decoder, beam_width=5)
            [(text, confidence)] = model.decode_lines(log_probs[:, i:i + 1], frames[i:i + 1], decoder, beam_width=5)
            assert text == alone.text and confidence == pytest.approx(alone.confidence, abs=1e-5), (decoder, i)


def test_concurrent_requests_are_recognised_together_as_if_alone(app_models):
    """Six requests (five line widths and a paragraph, greedy, beam and beam+lm) in one batch: every line of
    every answer is the direct transcription of that line alone; each report says it was batched."""
    from concurrent.futures import ThreadPoolExecutor

    from htr import compare

    images = sorted(EXAMPLES.glob("*_[0-9].png")) + [EXAMPLES / "poilus_paragraph.png"]
    requests = [(p, compare.DECODERS[i % 3]) for i, p in enumerate(images)]
    batcher = compare.Batcher(app_models, window_s=1.0)  # the idle worker waits for all of them
    try:
        with ThreadPoolExecutor(len(requests)) as pool:
            reports = list(pool.map(lambda r: batcher.submit(str(r[0]), r[1], None, "auto", 5), requests))
    finally:
        batcher.close()
    assert batcher.stats["batches"] == 1 and batcher.stats["largest"] == len(requests)
    lines = sum(len(compare.read_lines(p)[1]) for p in images)
    for (path, decoder), report in zip(requests, reports):
        assert report["batch"]["requests"] == len(requests) and report["batch"]["lines"] == lines
        assert "batch with 5 other requests" in report["timing"] and report["repeats"] == 1
        crops = compare.read_lines(path)[2]
        assert [r["model"] for r in report["results"]] == list(app_models)
        for r in report["results"]:
            assert len(r["lines"]) == len(crops)
            for line, crop in zip(r["lines"], crops):
                [want] = app_models[r["model"]].transcribe([crop], decoder=decoder, beam_width=5)
                assert line["text"] == want.text, (path.name, decoder, r["model"])
                assert line["confidence"] == pytest.approx(want.confidence, abs=1e-5)
            assert all(r["ms"][s] > 0 for s in compare.STAGES)
            assert r["ms"]["total"] == pytest.approx(sum(r["ms"][s] for s in compare.STAGES))


def _timed(batcher, *args, **kwargs) -> tuple[object, float]:
    import time

    start = time.perf_counter()
    try:
        result = batcher.submit(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the test looks at it
        result = e
    return result, time.perf_counter() - start


@pytest.mark.timeout(120)
def test_a_heavy_request_holds_a_concurrent_one_for_at_most_one_time_limit(tmp_path, app_models):
    """A heavy request (40 wide lines of random strokes, beam+lm at the widest beam, three models, three
    runs) stops at its time limit; a normal request sent while it runs is answered within about one time
    limit, and one in the same batch without waiting for it (smaller requests are recognised first)."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from htr import compare

    heavy = str(write_paragraph(tmp_path / "heavy.png", lines=compare.MAX_LINES, width=3000))
    limit, repeats = 3.0, 3
    for window_s, together in ((compare.BATCH_WINDOW_S, False), (0.3, True)):
        batcher = compare.Batcher(app_models, window_s=window_s)
        try:
            with ThreadPoolExecutor(2) as pool:
                slow = pool.submit(_timed, batcher, heavy, "beam+lm", None, "auto", compare.MAX_BEAM, repeats,
                                   time_limit_s=limit)
                time.sleep(0.05 if together else 0.5)  # together: within the window; else: the heavy batch runs
                normal = pool.submit(_timed, batcher, str(LINE), "greedy", None, "auto", 10, repeats,
                                     time_limit_s=limit)
                (error, slow_s), (report, normal_s) = slow.result(), normal.result()
        finally:
            batcher.close()
        assert isinstance(error, TimeLimitError) and f"time limit of {limit:g} s" in str(error), error
        assert slow_s < 2 * limit + 1, slow_s  # soon after its limit (a model pass is not cut); unlimited: far more
        assert isinstance(report, dict), report
        for r in report["results"]:
            assert r["text"] == app_models[r["model"]].transcribe([LINE])[0].text
        assert report["batch"]["requests"] == (2 if together else 1)
        assert normal_s < (limit if together else 2 * limit + 1), (together, normal_s)


def test_a_cancelled_request_is_dropped(tmp_path, model):
    """Cancelled while waiting: not computed; cancelled while running (after its first stages): dropped at
    the next stage or line instead of running to its time limit."""
    from htr import compare

    batcher = compare.Batcher({MODEL: model})
    try:
        with pytest.raises(compare.RequestCancelled, match="client went away"):
            batcher.submit(str(LINE), cancelled=lambda: True)
        checks: list[int] = []

        def gone_after_three_checks() -> bool:
            checks.append(1)
            return len(checks) > 3

        heavy = str(write_paragraph(tmp_path / "heavy.png"))
        result, seconds = _timed(batcher, heavy, "beam+lm", [MODEL], "auto", compare.MAX_BEAM, 3,
                                 time_limit_s=60, cancelled=gone_after_three_checks)
        assert isinstance(result, compare.RequestCancelled) and seconds < 30, (result, seconds)
        report = batcher.submit(str(LINE))  # the worker goes on
        assert report["results"][0]["text"] == model.transcribe([LINE])[0].text
    finally:
        batcher.close()
    assert batcher.stats["cancelled"] == 2 and batcher.stats["batches"] == 3


def _join_and_disconnect(url: str, path: Path, data: list, session: str = "goes-away") -> None:
    """A raw gradio client: upload, join the /transcribe queue, read its stream until the request runs, close."""
    import httpx

    config = httpx.get(url + "config").json()
    fn = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "transcribe")
    base = url.rstrip("/") + config.get("api_prefix", "/gradio_api")
    [uploaded] = httpx.post(base + "/upload", files={"files": (path.name, path.read_bytes())}).json()
    file = {"path": uploaded, "meta": {"_type": "gradio.FileData"}}
    httpx.post(base + "/queue/join", json={"data": [file, *data], "fn_index": fn, "session_hash": session}
               ).raise_for_status()
    with httpx.stream("GET", base + "/queue/data", params={"session_hash": session}, timeout=60) as stream:
        for line in stream.iter_lines():
            if "process_starts" in line:
                return  # closing the stream is the client going away


@pytest.mark.timeout(120)
def test_a_disconnected_clients_request_is_cancelled_in_the_app(tmp_path, model):
    """Served: a client sends a heavy request (its time limit far off) and disconnects while it runs; the app
    drops it, and the next client's request is answered soon instead of after the heavy one's time limit."""
    import time

    from gradio_client import Client, handle_file

    from app import ui
    from htr.bench.app import free_port
    from htr.compare import MAX_BEAM, TIME_LIMIT_S

    demo = ui.build_app({MODEL: model}, repeats=1)
    url = ui.serve(demo, "127.0.0.1", free_port(), block=False, quiet=True)
    try:
        heavy = write_paragraph(tmp_path / "heavy.png", lines=20)
        _join_and_disconnect(url, heavy, ["beam+lm", [MODEL], "auto", MAX_BEAM])
        time.sleep(0.3)
        start = time.perf_counter()
        report = Client(url, verbose=False).predict(handle_file(str(LINE)), "greedy", [MODEL], "auto", 10,
                                                    api_name="/transcribe")
        seconds = time.perf_counter() - start
        assert report["results"][0]["text"] == model.transcribe([LINE])[0].text
        assert seconds < TIME_LIMIT_S / 2, seconds
        assert demo.batcher.stats["cancelled"] == 1
    finally:
        demo.close()
