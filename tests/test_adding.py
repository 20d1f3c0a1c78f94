"""The adding problem (htr.tasks.adding) learns with relu_add, through its benchmark (htr.bench.adding)
and through ``htr bench adding``."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one torch and BLAS thread


def test_adding_problem_learns():
    """The --quick configuration learns far below the constant answer's MSE (docs/results/adding.md)."""
    from htr.bench.adding import AddingConfig, train_cell
    from htr.tasks.adding import BASELINE_MSE

    result = train_cell("relu_add", AddingConfig(steps=50, train_steps=300, eval_every=100, test_size=500),
                        log=lambda *a: None)
    steps, mse = zip(*result["curve"])
    assert steps == (0, 100, 200, 300)
    assert mse[0] > BASELINE_MSE  # untrained
    assert result["test_mse"] < 0.02 < BASELINE_MSE / 8
    assert result["best_test_mse"] == min(mse)


def test_adding_cli_quick_json_and_plot(tmp_path, capsys):
    from htr import cli

    cli.main(["bench", "adding", "--quick", "--cells", "relu_add", "--threads", "1", "--out", str(tmp_path), "--json"])
    captured = capsys.readouterr()
    report = json.loads(captured.out)  # stdout holds only the JSON; the log went to stderr
    assert "relu_add" in captured.err
    cfg = report["config"]
    assert (cfg["steps"], cfg["train_steps"], cfg["test_size"], cfg["hidden_size"]) == (50, 300, 500, 64)
    (result,) = report["results"]
    assert result["cell"] == "relu_add"
    assert [s for s, _ in result["curve"]] == list(range(0, 301, 50))
    assert result["test_mse"] < 0.02  # the same run as test_adding_problem_learns, evaluated more often
    png = Path(report["plot"])
    assert png == tmp_path / "adding_T50.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "adding_T50.json").read_text())["results"][0]["test_mse"] == result["test_mse"]
