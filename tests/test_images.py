import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from htr.data.augment import AugmentConfig, Augmenter
from htr.data.dataset import LineSample, prepare_samples
from htr.data.images import collate, load_image, preprocess
from htr.errors import ImageError
from htr.text.codec import Codec


def line_image(w=120, h=40, paper=230, ink=20):
    a = np.full((h, w), paper, np.uint8)
    a[h // 3: 2 * h // 3, w // 6: 5 * w // 6] = ink
    return a


def png_with_header_size(width, height):
    """A tiny valid-looking PNG whose IHDR claims width x height (a decompression bomb's header)."""
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = data[12:29]  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


@pytest.fixture
def bad_files(tmp_path):
    files = {}
    files["corrupt"] = tmp_path / "corrupt.png"
    files["corrupt"].write_bytes(b"\x89PNG but not really an image" * 10)
    good = tmp_path / "good.png"
    Image.fromarray(line_image(400, 80)).save(good)
    files["truncated"] = tmp_path / "truncated.png"
    files["truncated"].write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    files["empty"] = tmp_path / "empty.png"
    files["empty"].write_bytes(b"")
    files["tiny"] = tmp_path / "tiny.png"
    Image.new("L", (1, 1), 0).save(files["tiny"])
    files["bomb"] = tmp_path / "bomb.png"
    files["bomb"].write_bytes(png_with_header_size(100_000, 100_000))
    files["missing"] = tmp_path / "missing.png"
    return good, files


REASONS = {  # kind -> the reason the message must give, after the file's name
    "corrupt": r"unreadable or corrupt image \(UnidentifiedImageError",
    "truncated": r"unreadable or corrupt image \(OSError: .*truncated",
    "empty": r"empty file \(0 bytes\); expected an image",
    "tiny": r"1x1 pixels; expected both sides >= \d+ for a text line",
    "bomb": r"too many pixels \(.*10000000000 pixels.*\); expected at most \d+",  # Pillow refuses it at open
    "missing": r"no such image file",
}


def test_bad_images_raise_naming_the_file(bad_files):
    import re

    good, files = bad_files
    assert load_image(good).mode == "L"
    assert set(REASONS) == set(files)
    for kind, path in files.items():
        with pytest.raises(ImageError, match=re.escape(str(path)) + ": " + REASONS[kind]):
            load_image(path)


def test_pixel_limit_is_configurable(tmp_path):
    p = tmp_path / "big.png"
    Image.new("L", (200, 100), 255).save(p)
    with pytest.raises(ImageError, match="at most 5000"):
        load_image(p, max_pixels=5000)


def test_bad_images_skip_or_error(bad_files):
    good, files = bad_files
    samples = [LineSample("good", "ab", good)] + [LineSample(k, "ab", p) for k, p in files.items()]
    kept, stats = prepare_samples(samples, Codec("ab"), bad_images="skip", source="fixture")
    assert [s.id for s in kept] == ["good"]
    assert set(stats["bad_images"]) == set(files)
    assert stats["read"] == 1 + len(files) and stats["kept"] == 1
    with pytest.raises(ImageError, match="corrupt.png"):
        prepare_samples(samples, Codec("ab"), bad_images="error")


def test_modes_are_converted(tmp_path):
    # 16-bit grayscale
    a16 = np.zeros((20, 30), np.uint16)
    a16[:, 15:] = 65535
    Image.fromarray(a16).save(tmp_path / "g16.png")
    g = np.asarray(load_image(tmp_path / "g16.png"))
    assert g.dtype == np.uint8 and g[0, 0] == 0 and g[0, 29] == 255
    # CMYK (TIFF keeps it)
    Image.new("CMYK", (30, 20), (0, 0, 0, 255)).save(tmp_path / "cmyk.tif")
    assert np.asarray(load_image(tmp_path / "cmyk.tif")).max() < 30  # full black ink
    # RGBA: transparent -> white paper, opaque black stays ink
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[:, :15, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    g = np.asarray(load_image(tmp_path / "rgba.png"))
    assert g[0, 0] == 0 and g[0, 29] == 255
    # palette with a transparent index
    p = Image.new("P", (30, 20), 0)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.info["transparency"] = 0
    p.save(tmp_path / "pal.png", transparency=0)
    assert np.asarray(load_image(tmp_path / "pal.png")).min() == 255
    # bytes and PIL inputs
    buf = io.BytesIO()
    Image.fromarray(line_image()).save(buf, "PNG")
    assert load_image(buf.getvalue()).size == (120, 40)
    assert load_image(Image.fromarray(line_image()).convert("RGB")).mode == "L"


def test_preprocess_shape_inversion_and_widths():
    img = Image.fromarray(line_image(w=200, h=100))
    x = preprocess(img, height=64)
    assert x.shape == (1, 64, 128) and x.dtype == torch.float32  # aspect kept: 200 * 64 / 100
    assert x[0, 0, 0] == 0.0  # paper -> 0
    assert x[0, 32, 64] == pytest.approx(1.0)  # ink -> 1
    assert preprocess(Image.fromarray(line_image(w=20, h=100)), min_width=32).shape == (1, 64, 32)
    wide = Image.fromarray(line_image(w=4000, h=50))
    assert preprocess(wide, height=64, max_width=1000).shape == (1, 64, 1000)
    with pytest.raises(ImageError, match="max_width"):
        preprocess(wide, height=64, max_width=1000, too_wide="error")
    assert preprocess(line_image(), height=32).shape == (1, 32, 96)  # uint8 array input


def test_collate_pads_right_with_zeros():
    items = [{"image": torch.ones(1, 8, w), "target": torch.tensor(t), "text": s, "id": s}
             for w, t, s in [(5, [1, 2], "ab"), (11, [3], "c")]]
    b = collate(items, pad_to_multiple=4)
    assert b["images"].shape == (2, 1, 8, 12)
    assert b["images"][0, 0, :, 5:].abs().sum() == 0 and b["images"][0, 0, :, :5].min() == 1
    assert b["widths"].tolist() == [5, 11] and b["widths"].dtype == torch.int64
    assert b["targets"].tolist() == [1, 2, 3] and b["targets"].dtype == torch.int64
    assert b["target_lengths"].tolist() == [2, 1]
    assert b["texts"] == ["ab", "c"] and b["ids"] == ["ab", "c"]
    with pytest.raises(ImageError):
        collate([{"image": torch.ones(1, 8, 3)}, {"image": torch.ones(1, 9, 3)}])


def test_augment_never_crops_ink_and_can_be_off():
    img = np.full((40, 200), 255, np.uint8)
    img[:, :3] = 0  # ink touching the left, top and bottom borders
    img[:, -3:] = 0
    geo_only = AugmentConfig(p_affine=1.0, p_distort=1.0, p_morph=0, p_blur=0, p_noise=0, p_contrast=0)
    aug = Augmenter(geo_only, seed=0)
    for _ in range(10):
        out = aug(img)
        assert out.dtype == np.uint8 and out.ndim == 2
        border = np.concatenate([out[0], out[-1], out[:, 0], out[:, -1]])
        assert border.min() > 200, "ink reached the border: it may have been cropped"
        assert (out < 128).sum() > 0.6 * (img < 128).sum()
    off = Augmenter(AugmentConfig(enabled=False))
    assert off(img) is img


# ---- EXIF orientation, readable formats, squeezed lines (issue 19) --------------------------------
def _exif_rotated_png(upright: Image.Image, orientation: int = 6) -> bytes:
    """``upright`` stored as a phone does: pixels turned 90 degrees, EXIF orientation 6 to turn them back."""
    from PIL import ImageOps

    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    stored.save(buf, "PNG", exif=exif.tobytes())
    check = Image.open(io.BytesIO(buf.getvalue()))
    assert check.size == stored.size and ImageOps.exif_transpose(check).size == upright.size
    return buf.getvalue()


def test_exif_orientation_is_applied():
    upright = Image.fromarray(line_image(200, 40), "L")
    data = _exif_rotated_png(upright)
    im = load_image(data)
    assert im.size == (200, 40) and im.mode == "L"  # read as displayed, not sideways
    assert np.array_equal(np.asarray(im), np.asarray(upright))
    # a PIL image of the caller's with the tag: read upright, the caller's image left as it was
    theirs = Image.open(io.BytesIO(data))
    assert load_image(theirs).size == (200, 40) and theirs.size == (40, 200)
    # without a tag nothing turns
    plain = io.BytesIO()
    upright.save(plain, "PNG")
    assert load_image(plain.getvalue()).size == (200, 40)


def test_folder_formats_include_everything_pillow_reads():
    from htr.data.images import image_extensions

    exts = image_extensions()
    assert {".png", ".jpg", ".jpeg", ".gif", ".tif", ".tiff", ".webp", ".bmp", ".pgm"} <= exts
    assert not exts & {".h5", ".grib", ".bufr", ".mpg", ".tsv", ".txt", ".xml"}  # stubs and non-images


def test_a_squeezed_line_is_reported():
    from htr.data.images import resize_note

    note = resize_note((4000, 40), height=64, max_width=2048, name="wide.png")
    assert note.startswith("wide.png: 4000x40 px is 6400 px wide") and "squeezed" in note and "2048" in note
    assert resize_note((1000, 40), height=64, max_width=2048) is None
    assert resize_note((1280, 40), height=64, max_width=2048) is None  # exactly 2048: fits
    assert preprocess(Image.new("L", (4000, 40), 255)).shape == (1, 64, 2048)
