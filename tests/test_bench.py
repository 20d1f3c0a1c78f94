"""`htr bench cells`, `step` and `malloc` at tiny sizes: structure of the reports, tables and JSON (no
timing assertions)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from htr.bench import cells, malloc, step
from htr.tables import format_table

CELL_NAMES = {"relu_add", "gru", "lstm"}


@pytest.fixture(autouse=True)
def restore_threads():
    """The benchmark pins torch's and BLAS's thread pools; give the rest of the session its own back."""
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


def _check_report(report: dict, batches: tuple[int, ...]) -> None:
    assert report["threads"] == 1 and report["torch"] == torch.__version__
    assert (report["input_size"], report["hidden_size"], report["steps"], report["repeats"]) == (8, 8, 5, 2)
    results = report["results"]
    configs = [(r["mode"], r["batch"], r["bidirectional"]) for r in results]
    expected = {(m, b, bi) for m in ("inference", "training") for b in batches for bi in (False, True)}
    assert len(configs) == len(expected) and set(configs) == expected
    for r in results:
        assert set(r["ms"]) == CELL_NAMES
        assert all(math.isfinite(v) and v > 0 for v in r["ms"].values())
        assert r["relu_add/gru"] == pytest.approx(r["ms"]["relu_add"] / r["ms"]["gru"])
        assert r["relu_add/lstm"] == pytest.approx(r["ms"]["relu_add"] / r["ms"]["lstm"])


def test_run_tiny_and_table():
    report = cells.run(input_size=8, hidden_size=8, steps=5, batches=(1, 2), repeats=2)
    _check_report(report, (1, 2))
    table = cells.to_table(report)
    lines = table.splitlines()
    assert "hidden 8" in lines[0] and "T = 5" in lines[0] and "median of 2" in lines[0]
    header = [c.strip() for c in lines[1].strip("|").split("|")]
    assert header == ["mode", "batch", "dir", "relu_add ms", "gru ms", "lstm ms", "relu_add/gru", "relu_add/lstm"]
    assert set(lines[2]) <= {"|", "-"}
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[3:]]
    assert len(rows) == len(report["results"]) == 8
    for row, r in zip(rows, report["results"]):
        assert row[:3] == [r["mode"], str(r["batch"]), "bi" if r["bidirectional"] else "uni"]
        assert float(row[6]) == pytest.approx(r["relu_add/gru"], rel=5e-3)  # printed with 3 significant digits


def test_cli_json(capsys):
    from htr import cli

    cli.main(["bench", "cells", "--input-size", "8", "--hidden-size", "8", "--steps", "5", "--batches", "1", "2",
              "--repeats", "2", "--threads", "1", "--json"])
    report = json.loads(capsys.readouterr().out)
    _check_report(report, (1, 2))


def test_cli_table(capsys):
    from htr import cli

    cli.main(["bench", "cells", "--input-size", "8", "--hidden-size", "8", "--steps", "5", "--batches", "3",
              "--repeats", "2"])
    lines = capsys.readouterr().out.splitlines()
    first = [line.strip("|").split("|")[0].strip() for line in lines[1:]]
    assert first[0] == "mode"
    assert sorted(first[2:]) == ["inference", "inference", "training", "training"]  # batch 3, uni and bi


def test_step_report_and_table(capsys):
    """Every cell in both encoder pool orders, training and inference; ratios computed from the medians."""
    from htr import cli

    cli.main(["bench", "step", "--batch", "2", "--height", "16", "--width", "40", "--chars", "4",
              "--hidden-size", "8", "--repeats", "2", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert (report["batch"], report["height"], report["width"], report["repeats"]) == (2, 16, 40, 2)
    variants = {f"{cell}|{order}" for cell in CELL_NAMES for order in step.ORDERS}
    for mode in ("training", "inference"):
        assert set(report["ms"][mode]) == variants
        assert all(math.isfinite(v) and v > 0 for v in report["ms"][mode].values())
    lines = step.to_table(report).splitlines()
    rows = {r[0]: r for r in ([c.strip() for c in line.strip("|").split("|")] for line in lines[3:])}
    assert set(rows) == CELL_NAMES
    train = report["ms"]["training"]
    assert float(rows["gru"][3]) == pytest.approx(train["gru|pool first"] / train["gru|pool last"], rel=5e-3)
    assert float(rows["gru"][4]) == pytest.approx(train["gru|pool first"] / train["relu_add|pool first"], rel=5e-3)
    assert float(rows["relu_add"][4]) == 1.0


def test_table_prints_large_figures_whole():
    lines = format_table(["a", "b"], [[1102.4, 0.81345]]).splitlines()
    assert lines[2] == "| 1102 | 0.813 |"


def test_the_command_line_parser_does_not_import_lightning():
    """`htr transcribe` and the app start from this parser: Lightning (seconds to import) waits for
    the commands that train."""
    import subprocess
    import sys

    code = "import sys, htr.cli; htr.cli.build_parser(); print('pytorch_lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def _tcmalloc_missing() -> bool:
    import ctypes

    try:
        ctypes.CDLL(malloc.DEFAULT_PRELOAD)
    except OSError:
        return True
    return False


@pytest.mark.skipif(_tcmalloc_missing(), reason="tcmalloc not installed (apt-get install libtcmalloc-minimal4; "
                                                 ".ci/run installs it)")
def test_malloc_children_run_under_each_allocator(capsys):
    """Each allocator's child process times every cell, and only the preloaded child maps tcmalloc."""
    from htr import cli

    cli.main(["bench", "malloc", "--rounds", "1", "--batch", "2", "--height", "16", "--width", "40", "--chars", "4",
              "--hidden-size", "8", "--repeats", "1", "--json"])
    report = json.loads(capsys.readouterr().out)
    preload = report["preload"]
    assert set(report["ms"]) == {malloc.SYSTEM, preload}
    for ms in report["ms"].values():
        assert set(ms) == CELL_NAMES and all(math.isfinite(v) and v > 0 for v in ms.values())
    assert any("tcmalloc" in lib for lib in report["mapped"][preload])
    assert not any("tcmalloc" in lib for lib in report["mapped"][malloc.SYSTEM])
    rows = {r[0]: r for r in ([c.strip() for c in line.strip("|").split("|")] for line in
                              malloc.to_table(report).splitlines()[3:])}
    assert float(rows["lstm"][3]) == pytest.approx(report["ms"][preload]["lstm"] / report["ms"][malloc.SYSTEM]["lstm"],
                                                   rel=5e-3)


def test_malloc_names_a_missing_library():
    with pytest.raises(SystemExit, match="libno-such-alloc.so.*libtcmalloc-minimal4"):
        malloc.run(preload="libno-such-alloc.so", rounds=1)
