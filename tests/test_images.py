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


def test_bad_images_raise_naming_the_file(bad_files):
    good, files = bad_files
    assert load_image(good).mode == "L"
    for kind, path in files.items():
        with pytest.raises(ImageError, match=path.name):
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
