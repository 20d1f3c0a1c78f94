"""htr curves: validation curves read back from Lightning CSV logs, plotted to PNG."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from htr.cli import main
from htr.curves import read_curve
from htr.errors import RunLogError


def write_run(root: Path, cell: str, points: list[tuple[int, float]], last_step: int) -> Path:
    """A run directory as Lightning's CSVLogger writes it: train rows and sparse validation rows."""
    root.mkdir(parents=True)
    (root / "hparams.yaml").write_text(yaml.safe_dump({"recognizer": {"cell": cell}, "lr": 0.002}))
    header = ["epoch", "step", "train/loss", "val/cer"]
    rows = [{"epoch": 0, "step": s, "train/loss": 3.0, "val/cer": ""} for s in range(24, last_step + 1, 25)]
    rows += [{"epoch": 0, "step": s, "train/loss": "", "val/cer": v} for s, v in points]
    with (root / "metrics.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, header)
        w.writeheader()
        w.writerows(sorted(rows, key=lambda r: r["step"]))
    return root


def test_read_curve_keeps_only_validation_rows(tmp_path):
    run = write_run(tmp_path / "a" / "version_0", "gru", [(249, 0.9), (499, 0.5)], last_step=620)
    curve = read_curve(tmp_path / "a")  # the run's parent: metrics.csv is found below it
    assert (curve.label, curve.steps, curve.values, curve.last_step) == ("gru", [249, 499], [0.9, 0.5], 599)
    assert read_curve(run / "metrics.csv").values == [0.9, 0.5]


def test_curves_command_writes_a_png(tmp_path, capsys):
    a = write_run(tmp_path / "a", "relu_add", [(249, 0.8), (499, 0.3)], last_step=600)
    b = write_run(tmp_path / "b", "lstm", [(249, 1.0)], last_step=300)
    out = tmp_path / "plot" / "curves.png"
    main(["curves", str(a), str(b), "--out", str(out)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    printed = capsys.readouterr().out
    assert "relu_add\tbest val/cer 0.3000" in printed and "lstm\tbest val/cer 1.0000" in printed
    main(["curves", str(a), str(b), "--out", str(out), "--labels", "relu_add (b_s 1)", "LSTM"])
    assert "relu_add (b_s 1)\tbest" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="2 runs; expected one per run"):
        main(["curves", str(a), str(b), "--out", str(out), "--labels", "only-one"])


def test_missing_log_or_column_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunLogError, match="expected one metrics.csv"):
        read_curve(tmp_path / "empty")
    run = write_run(tmp_path / "r", "gru", [(249, 0.5)], last_step=300)
    with pytest.raises(RunLogError, match="no column 'val/wer'.*step"):
        read_curve(run, "val/wer")
