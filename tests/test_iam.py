from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from htr.data.dataset import prepare_samples
from htr.data.iam import read_iam, read_split_ids, rejoin_tokens
from htr.errors import DatasetError
from htr.text.codec import DEFAULT_CHARSET, Codec

LINES_TXT = """\
#--- lines.txt ---------------------------------------------------------------#
#
# iam database line information
#
# format: a01-000u-00 ok 154 19 408 746 1663 91 A|MOVE|to|stop|Mr.|Gaitskell|from
#
a01-000u-00 ok 154 19 408 746 1661 89 A|MOVE|to|stop|Mr.|Gaitskell|from
a01-000u-01 err 156 19 395 932 1850 105 nominating|any|more|Labour|life|Peers|is|to|be|made|at|a
a01-000x-00 ok 182 10 375 809 1802 90 He|said|:|"|I|'ll|do|n't|go|,|sir|"|(|maybe|)|.
b02-010-03 ok 180 3 300 700 900 80 It|'s|over|.
"""


def make_iam(root: Path) -> Path:
    (root / "ascii").mkdir(parents=True)
    (root / "ascii" / "lines.txt").write_text(LINES_TXT, encoding="utf-8")
    for line in LINES_TXT.splitlines():
        if line.startswith("#"):
            continue
        lid = line.split()[0]
        p1, p2 = lid.split("-")[:2]
        d = root / "lines" / p1 / f"{p1}-{p2}"
        d.mkdir(parents=True, exist_ok=True)
        a = np.full((40, 160), 240, np.uint8)
        a[15:25, 10:150] = 30
        Image.fromarray(a).save(d / f"{lid}.png")
    return root


@pytest.fixture
def iam(tmp_path):
    return make_iam(tmp_path / "iam")


def test_reads_ok_and_err_lines_with_pipes_as_spaces(iam):
    samples = read_iam(iam, rejoin=False)
    assert [s.id for s in samples] == ["a01-000u-00", "a01-000u-01", "a01-000x-00", "b02-010-03"]
    assert samples[0].text == "A MOVE to stop Mr. Gaitskell from"
    assert samples[0].image_path == iam / "lines" / "a01" / "a01-000u" / "a01-000u-00.png"
    assert [s.id for s in read_iam(iam, drop_err=True)] == ["a01-000u-00", "a01-000x-00", "b02-010-03"]


def test_rejoin_tokens():
    assert rejoin_tokens('He said : " I \'ll do n\'t go , sir " ( maybe ) .') == \
        'He said: "I\'ll don\'t go, sir" (maybe).'
    assert rejoin_tokens("It 's over .") == "It's over."
    assert rejoin_tokens('an odd " quote') == 'an odd " quote'  # unpaired quotes are left alone


def test_split_files_of_line_ids_and_form_ids(iam, tmp_path):
    forms = tmp_path / "forms.txt"
    forms.write_text("# RWTH-style form list\na01-000u\n\nb02-010\n", encoding="utf-8")
    lines = tmp_path / "lines.txt"
    lines.write_text("a01-000x-00\na01-000u-01.png\n", encoding="utf-8")
    assert read_split_ids(forms) == {"a01-000u", "b02-010"}
    assert [s.id for s in read_iam(iam, forms)] == ["a01-000u-00", "a01-000u-01", "b02-010-03"]
    assert [s.id for s in read_iam(iam, lines)] == ["a01-000u-01", "a01-000x-00"]
    assert [s.text for s in read_iam(iam, ["a01-000x-00"])] == ['He said: "I\'ll don\'t go, sir" (maybe).']


def test_missing_images_are_counted(iam):
    (iam / "lines" / "b02" / "b02-010" / "b02-010-03.png").unlink()
    kept, stats = prepare_samples(read_iam(iam), Codec(DEFAULT_CHARSET), source="iam")
    assert len(kept) == 3 and list(stats["bad_images"]) == ["b02-010-03"]


def test_format_errors_name_the_file(tmp_path):
    with pytest.raises(DatasetError, match="lines.txt"):
        read_iam(tmp_path)
    make_iam(tmp_path / "x")
    with open(tmp_path / "x" / "ascii" / "lines.txt", "a") as f:
        f.write("a01-000u-02 maybe 1 2\n")
    with pytest.raises(DatasetError, match=r"lines.txt:\d+"):
        read_iam(tmp_path / "x")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(DatasetError, match="no ids"):
        read_split_ids(empty)
