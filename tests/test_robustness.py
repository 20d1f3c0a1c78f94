"""Robustness of reading and scoring (issue 19): a non-UTF-8 `--lm-text` file is one clean error line,
`htr evaluate` scores labels of unknown characters only and counts what it skips (table and JSON), images
are refused by a decode budget in bytes before any pixel is decoded (a small file with a huge header),
converted in bands (bounded memory), big JPEGs drafted, EXIF-rotated JPEGs read upright, an over-wide line
reported. Every input is built here, and a tiny random model stands in for a trained one."""
from __future__ import annotations

import io
import json
import logging
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from PIL import Image

from htr.data import images
from htr.data.images import MAX_DECODE_BYTES, MAX_PIXELS, decode_bytes, load_image, to_grayscale
from htr.errors import ImageError
from htr.nn.recognizer import Recognizer, RecognizerConfig
from htr.text.codec import Codec

ROOT = Path(__file__).resolve().parents[1]
SNOWMAN = "\u2603"  # outside every charset of the project
TINY = dict(height=32, channels=(8, 16, 16), feature_size=32, hidden_size=16, num_layers=1, dropout=0.0)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory, one_thread) -> Path:
    """A Lightning-style checkpoint of a tiny random relu_add network (what `htr fit` writes)."""
    torch.manual_seed(0)
    codec = Codec("abcdehilmnrstu ")
    net = Recognizer(RecognizerConfig(cell="relu_add", **TINY), len(codec))
    path = tmp_path_factory.mktemp("tiny") / "tiny.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                "htr": {"recognizer": net.config.to_dict(), "codec": codec.to_dict()}}, path)
    return path


def write_line(path: Path, width: int = 160, height: int = 40) -> Path:
    a = np.full((height, width), 235, np.uint8)
    a[height // 3: 2 * height // 3, width // 8: 7 * width // 8: 3] = 30  # strokes
    Image.fromarray(a, "L").save(path)
    return path


def png_of_zeros(width: int, height: int, bit_depth: int = 8, color_type: int = 0) -> bytes:
    """A valid PNG of ``width`` x ``height`` black pixels, zlib-compressed row by row: a few KB that decode
    to a huge image. color_type 0 gray, 2 RGB, 4 gray + alpha, 6 RGBA."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    row = b"\0" * (1 + (width * channels * bit_depth + 7) // 8)  # filter byte + pixels
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# ---- `htr export --lm-text` with a file that is not UTF-8 ------------------------------------------
def test_export_lm_text_not_utf8_is_one_clean_error(tiny_ckpt, tmp_path, capsys):
    tsv = tmp_path / "train.tsv"
    tsv.write_bytes("a.png\tune ligne\nb.png\tDécembre\n".encode("latin-1"))
    out = tmp_path / "model.safetensors"
    code, stdout, err = run_cli(capsys, "export", str(tiny_ckpt), str(out), "--lm-text", str(tsv))
    assert code == 1 and stdout == "" and not out.exists()
    assert err.startswith(f"htr: error: {tsv}:2:8: byte(s) e9 are not valid UTF-8") and "--lm-text" in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "UnicodeDecodeError" not in err
    tsv.write_text("a.png\tune ligne\nb.png\tdécembre\n", encoding="utf-8")  # the same text in UTF-8 is read
    code, stdout, _ = run_cli(capsys, "export", str(tiny_ckpt), str(out), "--lm-text", str(tsv), "--lm-order", "2")
    assert code == 0 and "trained on 2 lines" in stdout and out.is_file()


# ---- `htr evaluate`: unknown-only labels are scored, skipped lines are counted ----------------------
@pytest.fixture
def eval_folder(tmp_path) -> Path:
    """val.tsv: two readable lines (one labelled with unknown characters only), a corrupt image, an empty
    label."""
    folder = tmp_path / "set"
    folder.mkdir()
    write_line(folder / "a.png")
    write_line(folder / "b.png", width=120)
    (folder / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n but no image follows" * 4)
    write_line(folder / "e.png")
    (folder / "val.tsv").write_text(f"a.png\tle chat\nb.png\t{SNOWMAN} {SNOWMAN}\nc.png\tnoir\ne.png\t\n",
                                    encoding="utf-8")
    return folder


def test_evaluate_scores_unknown_only_labels_and_counts_skips(tiny_ckpt, eval_folder, capsys, hand_rates):
    from htr.evaluate import build_datamodule, transcribe_split
    from htr.inference import Transcriber

    model = Transcriber.from_checkpoint(tiny_ckpt)
    dm = build_datamodule(eval_folder, model.net.config.height, batch_size=4)
    lines = transcribe_split(model, dm, "val")
    assert lines.ids == ["a", "b"] and lines.refs == ["le chat", f"{SNOWMAN} {SNOWMAN}"]
    assert lines.unknown_only == 1 and lines.skipped == {"bad_images": 1, "empty_text": 1}

    code, out, _ = run_cli(capsys, "evaluate", "--ckpt", str(tiny_ckpt), "--data", str(eval_folder), "--json")
    [row] = json.loads(out)
    assert code == 0
    assert row["lines"] == 2 and row["unknown_only"] == 1
    assert row["skipped"] == 2 and row["skipped_by"] == {"bad_images": 1, "empty_text": 1}
    # the unknown-only line is in the score: its 3 reference characters can only be errors
    want_cer, want_wer = hand_rates(lines.refs, lines.hyps)
    assert row["cer"] == pytest.approx(want_cer) and row["wer"] == pytest.approx(want_wer)
    assert row["cer"] >= 3 / len("le chat" + f"{SNOWMAN} {SNOWMAN}")

    code, out, _ = run_cli(capsys, "evaluate", "--ckpt", str(tiny_ckpt), "--data", str(eval_folder))
    header = next(line for line in out.splitlines() if line.startswith("| model"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    body = [c.strip() for c in out.splitlines()[out.splitlines().index(header) + 2].strip("|").split("|")]
    table = dict(zip(cells, body))
    assert code == 0 and (table["lines"], table["unknown-only"], table["skipped"]) == ("2", "1", "2")
    assert f"{eval_folder / 'val.tsv'}: 2 lines not scored: 1 bad image, 1 empty label" in out
    assert "unknown-only: scored lines whose label holds only characters outside the charset" in out


def test_evaluate_without_skips_shows_zeros(tiny_ckpt, tmp_path, capsys):
    folder = tmp_path / "clean"
    folder.mkdir()
    write_line(folder / "a.png")
    (folder / "val.tsv").write_text("a.png\tle chat\n", encoding="utf-8")
    code, out, _ = run_cli(capsys, "evaluate", "--ckpt", str(tiny_ckpt), "--data", str(folder), "--json")
    [row] = json.loads(out)
    assert code == 0 and (row["lines"], row["unknown_only"], row["skipped"], row["skipped_by"]) == (1, 0, 0, {})
    code, out, _ = run_cli(capsys, "evaluate", "--ckpt", str(tiny_ckpt), "--data", str(folder))
    assert code == 0 and "not scored" not in out and "unknown-only" in out.splitlines()[1]


def test_evaluate_scores_lines_a_config_leaves_out_for_unknown_characters(tmp_path, eval_folder):
    """A YAML config that trains with unknown="skip_line": evaluation still scores those lines."""
    import yaml

    from htr.evaluate import build_datamodule

    config = tmp_path / "data.yaml"
    config.write_text(yaml.safe_dump({"data": {"class_path": "htr.data.FolderDataModule", "init_args": {
        "root": str(eval_folder), "unknown": "skip_line"}}}))
    dm = build_datamodule(config, 32)
    assert dm.unknown == "drop"


def test_prepare_samples_keeps_unknown_only_lines_aside(caplog):
    from htr.data.dataset import LineSample, prepare_samples

    samples = [LineSample("a", "ab"), LineSample("u", f"{SNOWMAN}{SNOWMAN}"), LineSample("e", "  ")]
    with caplog.at_level(logging.WARNING, logger="htr"):
        kept, stats = prepare_samples(samples, Codec("ab"), check_images=False, source="fixture")
    assert [s.id for s in kept] == ["a"] and stats["empty_text"] == 1
    assert list(stats["unknown_only"]) == ["u"] and stats["unknown_only"]["u"].text == f"{SNOWMAN}{SNOWMAN}"
    assert any("1 lines left out" in r.getMessage() and "only characters outside" in r.getMessage()
               and ": u" in r.getMessage() for r in caplog.records)


# ---- memory: a decode budget in bytes, checked from the header -----------------------------------------
def test_decode_bytes_by_mode():
    assert decode_bytes((100, 10), "L") == 2_000 and decode_bytes((100, 10), "1") == 2_000
    assert decode_bytes((100, 10), "I;16") == 3_000
    assert decode_bytes((100, 10), "RGB") == 5_000 == decode_bytes((100, 10), "RGBA")  # RGB is stored in 4
    assert decode_bytes((100, 10), "LA") == 5_000
    # every mode up to MAX_PIXELS fits the default budget: the pixel limit still decides at the defaults
    assert decode_bytes((MAX_PIXELS, 1), "CMYK") <= MAX_DECODE_BYTES


@pytest.fixture
def no_decoding(monkeypatch):
    """Decoding any pixel fails the test: a refusal must come from the header alone."""
    from PIL import ImageFile

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"pixels decoded: {self}")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


def test_small_file_with_a_huge_16bit_image_is_refused_before_decoding(tmp_path, no_decoding):
    path = tmp_path / "big16.png"
    path.write_bytes(png_of_zeros(7000, 7000, bit_depth=16))  # 49 Mpx under max_pixels, 147 MB to decode
    assert path.stat().st_size < 200_000
    t = time.perf_counter()
    with pytest.raises(ImageError) as e:
        load_image(path, max_bytes=100_000_000)
    assert time.perf_counter() - t < 1.0
    assert str(e.value) == (f"{path}: 7000x7000 pixels of mode I;16 need 147,000,000 bytes to decode (2 + 1 per "
                            f"pixel); expected at most max_bytes=100,000,000 (decode budget, raise max_bytes for "
                            f"bigger scans)")


def test_raising_max_pixels_does_not_lift_the_byte_budget(no_decoding):
    data = png_of_zeros(9000, 9000, color_type=6)  # RGBA, 81 Mpx: 405 MB to decode
    assert len(data) < 400_000
    with pytest.raises(ImageError, match=r"<\d+ bytes>: 9000x9000 pixels of mode RGBA need 405,000,000 bytes"):
        load_image(data, max_pixels=100_000_000)
    with pytest.raises(ImageError, match=r"9000x9000 = 81000000 pixels; expected at most 60000000"):
        load_image(data)  # the pixel limit, as before


def test_big_16bit_png_stays_within_the_budget_when_read():
    """The probe's 16-bit PNG (49 Mpx): its conversion used to take 26 bytes per pixel (1.3 GB); now the
    process's peak memory (VmHWM, in a fresh process) grows by less than decode_bytes' 147 MB plus bands."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc (Linux) to read the resident memory")
    script = f"""
import sys
sys.path.insert(0, {str(ROOT / 'tests')!r})
from test_robustness import png_of_zeros
from htr.data.images import load_image

def kb(key):
    return int(next(line for line in open('/proc/self/status') if line.startswith(key)).split()[1])

data = png_of_zeros(7000, 7000, bit_depth=16)
before = kb('VmRSS:')
assert kb('VmHWM:') < before + 50_000  # the high-water mark of this process, not of its parent
im = load_image(data)
assert im.size == (7000, 7000) and im.mode == 'L', im
print((kb('VmHWM:') - before) * 1024)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={"OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    growth = int(proc.stdout.split()[-1])
    assert decode_bytes((7000, 7000), "I;16") == 147_000_000
    assert growth < 200_000_000, f"peak memory grew by {growth / 1e6:.0f} MB reading a 49 Mpx 16-bit PNG"


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "Ptrans", "I;16", "I", "F", "CMYK", "RGBtrans", "1", "RGB"])
def test_banded_conversion_equals_the_whole_image_conversion(monkeypatch, mode):
    rng = np.random.default_rng(0)
    h, w = 37, 53
    if mode in ("RGBA", "CMYK"):
        im = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), mode)
    elif mode == "LA":
        im = Image.fromarray(rng.integers(0, 256, (h, w, 2), dtype=np.uint8), "LA")
    elif mode in ("RGB", "RGBtrans"):
        im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
        if mode == "RGBtrans":
            im.info["transparency"] = tuple(int(v) for v in np.asarray(im)[0, 0])
    elif mode in ("P", "Ptrans"):
        im = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "P")
        im.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tolist())
        if mode == "Ptrans":
            im.info["transparency"] = 3
    elif mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
        assert im.mode == "I;16"
    elif mode == "I":
        im = Image.fromarray(rng.integers(0, 200_000, (h, w), dtype=np.int32))
    elif mode == "F":
        im = Image.fromarray(rng.random((h, w), dtype=np.float32))
    else:
        im = Image.fromarray(rng.integers(0, 2, (h, w), dtype=np.uint8) * 255).convert("1")
    whole = np.asarray(to_grayscale(im))
    monkeypatch.setattr(images, "BAND_PIXELS", 3 * w + 5)  # bands of 3 rows, the last one shorter
    banded = to_grayscale(im)
    assert banded.mode == "L" and banded.size == (w, h)
    assert np.array_equal(np.asarray(banded), whole)


def _jpeg(size: tuple[int, int], mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(1)
    bands = {"RGB": 3, "CMYK": 4}[mode]
    a = rng.integers(100, 256, (size[1] // 8, size[0] // 8, bands), dtype=np.uint8)
    im = Image.fromarray(np.kron(a, np.ones((8, 8, 1), np.uint8)), mode)  # 8x8 blocks: little JPEG noise
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def test_jpeg_over_the_budget_is_decoded_as_grayscale(caplog):
    data = _jpeg((800, 600))
    full = np.asarray(load_image(data)).astype(int)
    budget = 800 * 600 * 3  # RGB needs 5 bytes per pixel, grayscale 2
    drafted = load_image(data, max_bytes=budget)
    assert drafted.size == (800, 600) and drafted.mode == "L" and "reduced_from" not in drafted.info
    diff = np.abs(np.asarray(drafted).astype(int) - full)  # libjpeg's luma vs Pillow's RGB -> L
    assert diff.max() <= 16 and diff.mean() < 0.1
    with pytest.raises(ImageError, match="800x600 pixels of mode RGB need 2,400,000 bytes"):
        load_image(data, max_bytes=500_000)  # even grayscale does not fit, and reducing was not asked for
    with pytest.raises(ImageError, match="800x600 pixels of mode CMYK need 2,400,000 bytes"):
        load_image(_jpeg((800, 600), "CMYK"), max_bytes=budget)  # libjpeg cannot draft CMYK as gray


def test_reduce_decodes_a_big_jpeg_at_a_fraction_of_its_size(caplog):
    data = _jpeg((800, 600))
    with pytest.raises(ImageError, match="800x600 = 480000 pixels; expected at most 150000"):
        load_image(data, max_pixels=150_000)
    with caplog.at_level(logging.WARNING, logger="htr"):
        small = load_image(data, max_pixels=150_000, reduce=True)
    assert small.size == (400, 300) and small.info["reduced_from"] == (800, 600)
    assert any("800x600 px JPEG decoded at 400x300 (1/2)" in r.getMessage() for r in caplog.records)
    assert load_image(data, max_pixels=10_000, reduce=True).size == (100, 75)  # 1/8
    with pytest.raises(ImageError, match="expected at most 5000"):
        load_image(data, max_pixels=5_000, reduce=True)  # 1/8 is the smallest libjpeg offers
    png = io.BytesIO()
    Image.new("L", (800, 600), 255).save(png, "PNG")
    with pytest.raises(ImageError, match="expected at most 150000"):
        load_image(png.getvalue(), max_pixels=150_000, reduce=True)  # not a JPEG: nothing to draft


def test_pillow_bomb_limit_still_refuses_at_open(no_decoding):
    data = png_of_zeros(20000, 20000, bit_depth=1)  # 400 Mpx in 49 KB
    assert len(data) < 100_000
    with pytest.raises(ImageError, match=r"too many pixels \(.*400000000 pixels"):
        load_image(data)


# ---- EXIF orientation of a phone photo (JPEG) --------------------------------------------------------
def test_exif_rotated_jpeg_is_read_upright():
    upright = np.full((48, 240), 235, np.uint8)
    upright[16:32, 8:120] = 20  # ink on the left half only: a wrong turn shows
    stored = Image.fromarray(upright, "L").transpose(Image.Transpose.ROTATE_90)  # what the sensor wrote
    exif = Image.Exif()
    exif[0x0112] = 6  # "turn 90 degrees clockwise to display"
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    assert Image.open(io.BytesIO(buf.getvalue())).size == (48, 240)
    im = load_image(buf.getvalue())
    assert im.size == (240, 48)
    assert np.abs(np.asarray(im).astype(int) - upright).mean() < 3
    again = load_image(im)  # the result carries no orientation tag: reading it again does not turn it twice
    assert again.size == (240, 48)
    colour = io.BytesIO()
    stored.convert("RGB").save(colour, "JPEG", quality=95, exif=exif.tobytes())
    assert load_image(colour.getvalue()).size == (240, 48)


# ---- an over-wide line is reported in `htr transcribe --json` --------------------------------------
def test_over_wide_line_is_reported_by_transcribe_json(tiny_ckpt, tmp_path, capsys):
    wide = write_line(tmp_path / "wide.png", width=2400, height=20)  # 3840 px at height 32 > 2048
    code, out, err = run_cli(capsys, "transcribe", str(wide), "--ckpt", str(tiny_ckpt), "--json")
    [row] = json.loads(out)
    assert code == 0 and len(row["warnings"]) == 1
    assert row["warnings"][0].startswith(f"{wide}: 2400x20 px is 3840 px wide at height 32, above max_width=2048")
    assert f"htr: warning: {wide}: 2400x20 px" in err
    fits = write_line(tmp_path / "fits.png")
    code, out, _ = run_cli(capsys, "transcribe", str(fits), "--ckpt", str(tiny_ckpt), "--json")
    assert code == 0 and json.loads(out)[0]["warnings"] == []
