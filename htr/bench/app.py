"""`htr bench app`: the Gradio app under concurrent gradio_client requests; p50/p95 latency.

The app is started once, as a subprocess (`python -m htr.cli app`) on a free localhost port (or in this
process with --in-process), with the same models as this process. After one warm-up request (not
counted), each ``--concurrency`` level (default 20 and 50) sends ``--requests`` requests (default: as
many as that level), cycling over the bundled single-line examples, through one gradio_client Client
with that many in flight at once. Every answer must equal the direct ``Transcriber.transcribe`` result of
the same model on the same image (same text, confidence within 1e-5); a wrong or failed answer makes the
command exit with status 1.

Latency is end to end as a client sees it (submit -> result), so it includes the upload and the wait in
the app's queue: the app recognises requests that arrive together in one batch (htr.compare.Batcher;
API requests: one run of every model each). p50/p95 are the nearest-rank percentiles of one level's
latencies; ``batch`` is how many requests the answers say were recognised together. Results:
docs/results/serving.md.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", action="append", help="shipped model name; repeatable (default: all shipped)")
    p.add_argument("--ckpt", action="append", help="checkpoint (.ckpt or .safetensors); repeatable")
    p.add_argument("--concurrency", type=int, nargs="+", default=[20, 50],
                   help="requests in flight at once; one measurement per value (default: 20 50)")
    p.add_argument("--requests", type=int, help="requests per concurrency level (default: the level)")
    p.add_argument("--in-process", action="store_true", help="serve from this process instead of a subprocess")
    p.add_argument("--json", action="store_true")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _wait_ready(url: str, proc: subprocess.Popen | None, timeout: float = 180.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the app exited with status {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(url + "config", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the app did not answer at {url} within {timeout:.0f} s")


def run(model_names: list[str] | None = None, ckpts: list[str] | None = None, requests: int | None = None,
        concurrency: int | Sequence[int] = (20, 50), in_process: bool = False, url: str | None = None,
        models: dict | None = None) -> dict[str, Any]:
    """Start the app (unless ``url`` points at a running one serving ``models``), then for each concurrency
    level send ``requests`` requests (default: as many as the level) and check every answer."""
    from gradio_client import Client, handle_file

    import app.ui as ui
    from htr.inference import load_models

    levels = [concurrency] if isinstance(concurrency, int) else list(concurrency)
    models = models if models is not None else load_models([*(model_names or []), *(ckpts or [])])
    names = list(models)
    images = sorted(p for p in ui.EXAMPLES_DIR.glob("*.png") if "paragraph" not in p.name)
    expected = {(n, str(p)): models[n].transcribe([p])[0] for n in names for p in images}

    proc = demo = None
    t0 = time.perf_counter()
    mode = "subprocess"
    if url is not None:
        mode = "given"
    elif in_process:
        mode = "in-process"
        demo = ui.build_app(models)
        url = ui.serve(demo, "127.0.0.1", free_port(), block=False, quiet=True)
    else:
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        cmd = [sys.executable, "-m", "htr.cli", "app", "--host", "127.0.0.1", "--port", str(port)]
        for m in model_names or []:
            cmd += ["--model", m]
        for c in ckpts or []:
            cmd += ["--ckpt", c]
        log = tempfile.TemporaryFile("w+")  # the app's output, shown if it fails to start
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        try:
            _wait_ready(url, proc)
        except (RuntimeError, TimeoutError) as e:
            if proc is not None:
                log.seek(0)
                raise RuntimeError(f"{e}; its output:\n{log.read()[-3000:]}") from None
            raise
        startup_s = time.perf_counter() - t0
        client = Client(url, verbose=False, max_workers=max(levels))  # its default (40) would cap the clients

        def one(i: int) -> dict[str, Any]:
            image = images[i % len(images)]
            start = time.perf_counter()
            try:
                report = client.predict(handle_file(str(image)), "greedy", names, "line", 10,
                                        api_name="/transcribe")
            except Exception as e:  # noqa: BLE001 - a failed request is a result, reported below
                return {"i": i, "image": image.name, "ms": (time.perf_counter() - start) * 1e3,
                        "ok": False, "error": f"{type(e).__name__}: {e}"}
            ms = (time.perf_counter() - start) * 1e3
            wrong = []
            got = {r["model"]: r for r in report["results"]}
            for n in names:
                want = expected[(n, str(image))]
                r = got.get(n)
                if r is None or r["text"] != want.text or abs(r["confidence"] - want.confidence) > 1e-5:
                    wrong.append({"model": n, "want": want.text, "got": None if r is None else r["text"],
                                  "confidence": None if r is None else r["confidence"] - want.confidence})
            return {"i": i, "image": image.name, "ms": ms, "ok": not wrong, "wrong": wrong,
                    "batch": report.get("batch", {}).get("requests", 1),
                    "server_ms": {r["model"]: r["ms"]["total"] for r in report["results"]}}

        warm_up = one(-1)
        results = []
        for level in levels:
            n = requests or level
            wall = time.perf_counter()
            with ThreadPoolExecutor(max_workers=level) as pool:
                answers = list(pool.map(one, range(n)))
            results.append(_level(answers, level, time.perf_counter() - wall, names))
    finally:
        if demo is not None:
            demo.close()
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    return {"url": url, "mode": mode, "models": names, "images": [p.name for p in images],
            "startup_s": startup_s, "cpus": os.cpu_count(), "warm_up": warm_up, "levels": results,
            "correct": sum(r["correct"] for r in results) + warm_up["ok"],
            "requests": sum(r["requests"] for r in results) + 1}


def _level(answers: list[dict[str, Any]], concurrency: int, wall_s: float, names: list[str]) -> dict[str, Any]:
    """One concurrency level's answers -> correctness, nearest-rank p50/p95, batch sizes, app-measured ms."""
    latencies = [a["ms"] for a in answers]
    ok = [a for a in answers if a["ok"]]
    server = {n: statistics.median(a["server_ms"][n] for a in ok) if ok else None for n in names}
    batches = [a["batch"] for a in ok]
    return {"concurrency": concurrency, "requests": len(answers), "correct": len(ok),
            "failed": [a for a in answers if not a["ok"]],
            "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95), "max_ms": max(latencies),
            "wall_s": wall_s, "throughput_rps": len(answers) / wall_s,
            "batch_median": statistics.median(batches) if batches else None, "batch_max": max(batches, default=None),
            "server_total_ms_median": server}


def to_text(r: dict[str, Any]) -> str:
    lines = [f"app as {r['mode']} at {r['url']} (models {', '.join(r['models'])}; {r['cpus']} CPUs; started in "
             f"{r['startup_s']:.1f} s); correct answers (== Transcriber.transcribe): {r['correct']}/{r['requests']} "
             f"(with the warm-up request)"]
    if not r["warm_up"]["ok"]:
        lines.append(f"  warm-up request: {r['warm_up'].get('error') or r['warm_up'].get('wrong')}")
    for v in r["levels"]:
        lines += [f"{v['concurrency']} in flight, {v['requests']} requests: {v['correct']}/{v['requests']} correct; "
                  f"p50 {v['p50_ms']:.0f} ms, p95 {v['p95_ms']:.0f} ms, max {v['max_ms']:.0f} ms end to end; "
                  f"{v['throughput_rps']:.2f} requests/s over {v['wall_s']:.1f} s",
                  f"  recognised together: median {v['batch_median']}, at most {v['batch_max']} requests; "
                  "app-measured ms per request and model (median): " + ", ".join(
                      f"{n} {ms:.1f}" for n, ms in v["server_total_ms_median"].items() if ms is not None)]
        for f in v["failed"]:
            lines.append(f"  request {f['i']} ({f['image']}): {f.get('error') or f.get('wrong')}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> None:
    report = run(args.model, args.ckpt, args.requests, args.concurrency, args.in_process)
    print(json.dumps(report, indent=1, ensure_ascii=False) if args.json else to_text(report))
    if report["correct"] != report["requests"]:
        raise SystemExit(1)
