"""The error report (htr.report) on constructed pairs whose confusions were counted by hand."""
from __future__ import annotations

import json

import editdistance
import pytest

from htr.errors import DatasetError
from htr.report import align, error_report, format_report, read_groups, save_report
from htr.text.metrics import cer

# reference, hypothesis, and what a person counts:
PAIRS = [
    ("docA/1", "chat noir", "chot noir"),  # a -> o
    ("docA/2", "maison", "mason"),  # i deleted
    ("docB/1", "le", "lle"),  # l inserted
    ("docB/2", "abc", ""),  # a, b, c deleted
    ("docC/1", "été", "ete"),  # é -> e twice
]
IDS, REFS, HYPS = (list(x) for x in zip(*PAIRS))


def test_alignment_adds_up_to_the_edit_distance():
    assert align("chat", "chot") == [("c", "c"), ("h", "h"), ("a", "o"), ("t", "t")]
    assert align("maison", "mason") == [("m", "m"), ("a", "a"), ("i", ""), ("s", "s"), ("o", "o"), ("n", "n")]
    assert align("", "ab") == [("", "a"), ("", "b")] and align("ab", "") == [("a", ""), ("b", "")]
    for ref, hyp in [("Je lègue tous", "Je legue tout"), ("1916", "191b6"), ("xyz", "zyx"), ("", "")]:
        pairs = align(ref, hyp)
        assert "".join(r for r, _ in pairs) == ref and "".join(h for _, h in pairs) == hyp
        assert sum(r != h for r, h in pairs) == editdistance.eval(ref, hyp)


def test_hand_counted_confusions_insertions_deletions_groups_and_worst_lines():
    report = error_report(REFS, HYPS, IDS)
    assert report["confusions"] == [{"ref": "é", "hyp": "e", "count": 2}, {"ref": "a", "hyp": "o", "count": 1}]
    assert report["inserted"] == [{"char": "l", "count": 1}]
    assert report["deleted"] == [{"char": c, "count": 1} for c in "abci"]
    assert (report["substitutions"], report["insertions"], report["deletions"]) == (3, 1, 4)
    assert (report["errors"], report["chars"]) == (8, 23)
    assert report["cer"] == pytest.approx(8 / 23) == pytest.approx(cer(REFS, HYPS))
    # documents from the <document>/<line> ids: docB 4 errors / 5 chars, docC 2 / 3, docA 2 / 15
    assert [(g["group"], g["errors"], g["chars"]) for g in report["groups"]] == [("docB", 4, 5), ("docC", 2, 3),
                                                                               ("docA", 2, 15)]
    assert [w["id"] for w in report["worst"]] == ["docB/2", "docC/1", "docB/1", "docA/2", "docA/1"]
    text = format_report(report)
    assert "8 errors (CER 34.78 %): 3 substitutions, 1 insertions, 4 deletions" in text
    assert "|         é |          e |     2 |" in text


def test_writers_file_and_saved_reports(tmp_path):
    writers = tmp_path / "writers.tsv"
    writers.write_text("# line\twriter\ndocA/1\tw1\ndocA/2\tw2\ndocB/1\tw1\n\ndocB/2\tw2\n", encoding="utf-8")
    report = error_report(REFS, HYPS, IDS, groups=read_groups(writers), top=1, worst=2)
    assert {g["group"]: (g["lines"], g["errors"]) for g in report["groups"]} == {"w1": (2, 2), "w2": (2, 4),
                                                                              "(none)": (1, 2)}
    assert len(report["confusions"]) == 1 and len(report["worst"]) == 2
    save_report(report, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["errors"] == 8
    save_report(report, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<td>é</td><td>e</td><td>2</td>" in page
    with pytest.raises(ValueError, match="expected .json or .html"):
        save_report(report, tmp_path / "r.txt")
    (tmp_path / "bad.tsv").write_text("no tab here\n")
    with pytest.raises(DatasetError, match="bad.tsv:1"):
        read_groups(tmp_path / "bad.tsv")
    assert error_report(["a"], ["b"], ["plain"])["groups"] is None  # ids without a document: no groups
    with pytest.raises(ValueError, match="one per line"):
        error_report(["a"], [])


def test_report_of_the_lines_evaluate_scores(tmp_path):
    """The lines `htr evaluate` scores, through a shipped model: the report's totals are their edit distances."""
    import shutil
    from pathlib import Path

    from htr.data.datamodule import FolderDataModule
    from htr.evaluate import transcribe_split
    from htr.inference import load_model, shipped_models

    if "gru" not in shipped_models():
        pytest.skip("no shipped gru model")
    examples = Path(__file__).resolve().parents[1] / "app" / "examples"
    lines = {"poilus_1.png": "Versailles le 10 Décembre 1916.", "poilus_2.png": "le 11 Novembre 1915",
             "poilus_3.png": "Ma Femme devra aider ma Mère,"}
    for name in lines:
        shutil.copy(examples / name, tmp_path / name)
    (tmp_path / "val.tsv").write_text("".join(f"{k}\t{v}\n" for k, v in lines.items()), encoding="utf-8")
    model = load_model("gru")
    dm = FolderDataModule(root=str(tmp_path), height=model.net.config.height, augment=False, batch_size=2)
    t = transcribe_split(model, dm, "val")
    ids, refs, hyps = t.ids, t.refs, t.hyps
    assert ids == ["poilus_1", "poilus_2", "poilus_3"] and refs == list(lines.values())
    report = error_report(refs, hyps, ids)
    assert report["errors"] == sum(editdistance.eval(r, h) for r, h in zip(refs, hyps))
    assert report["substitutions"] + report["insertions"] + report["deletions"] == report["errors"]


def test_image_names_in_a_writers_file_stand_for_line_ids(tmp_path):
    writers = tmp_path / "writers.tsv"
    writers.write_text("will_0001-0_l000.png\twill_0001\n")
    assert read_groups(writers) == {"will_0001-0_l000.png": "will_0001", "will_0001-0_l000": "will_0001"}
