"""Loading line images safely, turning them into network input, and batching.

The path of a line image: ``load_image`` (any file -> 8-bit grayscale PIL image, or ImageError) ->
optional training augmentation on the uint8 array (htr.data.augment) -> ``preprocess`` (fixed height,
inverted, float tensor) -> ``collate`` (zero-padded batch dict).

Default height 64: a CNN+RNN at 64 px costs about a quarter of the compute of 128 px (the literature's
norm for IAM) and still resolves cursive strokes; it keeps CPU training and inference practical. 128 is
one config value away (``height: 128``) for GPU runs.
"""
from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union

import numpy as np
import torch
from PIL import Image, ImageFile, JpegImagePlugin, UnidentifiedImageError
from torch import Tensor

from htr.errors import ImageError

log = logging.getLogger(__name__)

ImageSource = Union[str, "os.PathLike[str]", bytes, Image.Image]

MAX_PIXELS = 60_000_000  # a RIMES page scan is ~9 Mpx; far above that is a decompression bomb or a mistake
# Decode budget: the bytes one image may take while it is read and turned into grayscale (decode_bytes).
# 300 MB admits every mode up to MAX_PIXELS (a 60 Mpx RGB(A) image: 4 + 1 bytes per pixel) and keeps one
# file's cost bounded when max_pixels is raised; big colour JPEGs are then decoded as grayscale (draft).
MAX_DECODE_BYTES = 300_000_000
MIN_SIDE = 4  # narrower/shorter than this cannot hold a written character
BAND_PIXELS = 1 << 19  # big images are converted to grayscale in bands of about this many pixels
# Bytes Pillow stores per pixel of a decoded mode; every mode not listed takes 4 (RGB is stored as RGBX,
# LA as LXXA, I and F are 32-bit).
_STORAGE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}


def _name(source: Any) -> str:
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    if isinstance(source, Image.Image):
        return getattr(source, "filename", "") or "<PIL image>"
    return os.fspath(source)


def decode_bytes(size: tuple[int, int], mode: str) -> int:
    """Bytes ``load_image`` needs for a (w, h) image of PIL ``mode``: the decoded pixels as Pillow stores them
    (1 byte per pixel for 1/L/P, 2 for 16-bit, 4 for the rest, RGB included) plus the 1-byte grayscale result
    (or its EXIF-turned copy). The conversion runs in bands of about BAND_PIXELS pixels, whose working
    copies add at most about 15 MB."""
    w, h = size
    return w * h * (_STORAGE_BYTES.get(mode, 4) + 1)


def load_image(source: ImageSource, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE,
               max_bytes: int = MAX_DECODE_BYTES, reduce: bool = False) -> Image.Image:
    """Read any image file (path, bytes or PIL image) as an 8-bit grayscale ("L") PIL image.

    Palette, 1-bit, 16/32-bit integer, float, RGB(A), LA and CMYK inputs are converted; transparent pixels
    are composited on white paper; an EXIF orientation tag (phone photos) is applied, so the line is read
    as it is displayed. Raises ImageError naming the file for: missing, empty, corrupt or
    truncated files, sizes above ``max_pixels`` (decompression bombs) and sides below ``min_side`` px.

    Memory: the header's size and mode are checked against ``max_bytes`` (``decode_bytes``) before any
    pixel is decoded. A JPEG over the budget is decoded directly as grayscale (``Image.draft``); with
    ``reduce`` (callers that use no pixel coordinates of the file, e.g. transcribing an upload) a JPEG over
    ``max_pixels`` or ``max_bytes`` is decoded at 1/2, 1/4 or 1/8 of its size, with a logged warning and
    ``info["reduced_from"]`` = the file's (w, h). Any other image over the budget is an ImageError.
    """
    name = _name(source)
    im: Image.Image | None = None
    try:
        if isinstance(source, Image.Image):
            im = source
        else:
            if not isinstance(source, (bytes, bytearray)):
                if not os.path.isfile(source):
                    raise ImageError(f"{name}: no such image file")
                if os.path.getsize(source) == 0:
                    raise ImageError(f"{name}: empty file (0 bytes); expected an image")
            elif not source:
                raise ImageError("empty image bytes; expected an image")
            with warnings.catch_warnings():
                # Pillow's warning threshold (~89 Mpx) is left to max_pixels below; its hard limit (twice
                # that) still raises DecompressionBombError here
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
        reduced_from = _check_size(im, name, max_pixels, max_bytes, may_draft=im is not source, reduce=reduce)
        w, h = im.size
        if min(w, h) < min_side:
            raise ImageError(f"{name}: {w}x{h} pixels; expected both sides >= {min_side} for a text line")
        prev = ImageFile.LOAD_TRUNCATED_IMAGES
        if prev:  # another library turned it on globally: a truncated line must still be an error here
            ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            im.load()
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = prev
        orientation = exif_orientation(im)  # after load: a PNG's EXIF may follow its pixels
        gray = to_grayscale(im, name)
        if gray is not im and im is not source:
            im.close()  # the decoded pixels go before the grayscale copy is turned
        gray = _turn(gray, orientation)
        if reduced_from is not None:
            gray.info["reduced_from"] = reduced_from
        return gray
    except ImageError:
        _close(im, source)
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{name}: too many pixels ({e}); expected at most {max_pixels}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, MemoryError) as e:
        _close(im, source)
        raise ImageError(f"{name}: unreadable or corrupt image ({type(e).__name__}: {e}); "
                         f"expected a complete PNG/JPEG/TIFF/... file") from None


def _check_size(im: Image.Image, name: str, max_pixels: int, max_bytes: int, may_draft: bool,
                reduce: bool) -> tuple[int, int] | None:
    """ImageError unless ``im`` (not decoded yet: its header) fits ``max_pixels`` and ``max_bytes``, after a
    JPEG draft where that helps (grayscale decoding; with ``reduce`` also 1/2, 1/4, 1/8 of the size), if
    ``may_draft`` (never on the caller's own image). Returns the file's size when the draft reduced it."""
    w, h = size = im.size
    mode = im.mode
    if w * h <= max_pixels and decode_bytes(size, mode) <= max_bytes:
        return None
    if (may_draft and isinstance(im, JpegImagePlugin.JpegImageFile) and not im.decoderconfig
            and (w * h <= max_pixels or reduce)):
        drafted = "L" if mode in ("L", "RGB") else mode  # libjpeg decodes colour as gray, not CMYK
        for scale in (1, 2, 4, 8) if reduce else (1,):
            out = (-(-w // scale), -(-h // scale))  # libjpeg rounds up
            if out[0] * out[1] <= max_pixels and decode_bytes(out, drafted) <= max_bytes:
                im.draft("L", (w // scale, h // scale))
                if im.size[0] * im.size[1] <= max_pixels and decode_bytes(im.size, im.mode) <= max_bytes:
                    if im.size == size:
                        return None
                    log.warning("%s: %dx%d px JPEG decoded at %dx%d (1/%d) to stay within max_pixels=%d and "
                                "max_bytes=%d", name, w, h, *im.size, scale, max_pixels, max_bytes)
                    return size
                break
    if w * h > max_pixels:
        raise ImageError(f"{name}: {w}x{h} = {w * h} pixels; expected at most {max_pixels} "
                         f"(decompression bomb guard, raise max_pixels for bigger scans)")
    need = decode_bytes(im.size, im.mode)
    raise ImageError(f"{name}: {im.size[0]}x{im.size[1]} pixels of mode {im.mode} need {need:,} bytes to decode "
                     f"({_STORAGE_BYTES.get(im.mode, 4)} + 1 per pixel); expected at most max_bytes={max_bytes:,} "
                     f"(decode budget, raise max_bytes for bigger scans)")


def exif_orientation(im: Image.Image) -> int:
    """The EXIF orientation tag (1..8; 1 = upright, also when there is no tag or the EXIF block is unreadable)."""
    try:
        value = im.getexif().get(0x0112, 1)  # ExifTags.Base.Orientation
    except Exception:  # noqa: BLE001 - a damaged EXIF block must not make the pixels unreadable
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}  # as PIL.ImageOps.exif_transpose


def _turn(im: Image.Image, orientation: int) -> Image.Image:
    """``im`` turned as an EXIF ``orientation`` says (a new image; the caller's is never changed), without
    the orientation tags, so that reading the result again does not turn it twice."""
    if orientation not in _TRANSPOSE:
        return im
    out = im.transpose(_TRANSPOSE[orientation])
    for key in ("exif", "Raw profile type exif", "XML:com.adobe.xmp", "xmp"):
        out.info.pop(key, None)
    return out


def image_extensions() -> frozenset[str]:
    """File suffixes (lower case, with the dot) of every format Pillow can read here, as the app does:
    .png, .jpg, .gif, .tif, .webp, .bmp, .pgm, .jp2, ... (not the stub formats that Pillow only identifies)."""
    Image.init()
    out = set()
    for ext, fmt in Image.registered_extensions().items():
        factory = Image.OPEN.get(fmt, (None,))[0]
        if factory is None or fmt == "MPEG":  # MPEG: a header is identified, no frame is decoded
            continue
        if isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile):
            continue
        out.add(ext.lower())
    return frozenset(out)


def _close(im: Image.Image | None, source: Any) -> None:
    """Release the file handle of an image we opened and reject (never the caller's own image)."""
    if im is not None and im is not source:
        im.close()


def to_grayscale(im: Image.Image, name: str = "<image>") -> Image.Image:
    """Any PIL mode -> "L"; alpha composited on white; high bit depths scaled to 0..255.

    Images above BAND_PIXELS are converted in bands of rows (the same per-pixel operations), so the
    conversion's working copies stay a few MB whatever the image's size and mode."""
    mode = im.mode
    if mode == "L" and "transparency" not in im.info:
        return im
    top = _int_top(im) if mode.startswith("I") or mode == "F" else 255.0
    w, h = im.size
    rows = max(1, BAND_PIXELS // max(w, 1))
    if rows >= h:
        return _gray_band(im, top, name)
    out = Image.new("L", im.size)
    for y in range(0, h, rows):
        out.paste(_gray_band(im.crop((0, y, w, min(h, y + rows))), top, name), (0, y))
    return out


def _int_top(im: Image.Image) -> float:
    """The value that 16/32-bit integer and float images map to 255: 1.0 (float images within 0..1), 255,
    65535 (I;16* use 0..65535), or the image's own maximum above 16 bits; from the whole image."""
    hi = max(im.getextrema()[1], 0)  # type: ignore[type-var]
    top = 1.0 if im.mode == "F" and hi <= 1.0 else 255.0 if hi <= 255 else 65535.0
    return float(hi) if hi > 65535 else top


def _gray_band(im: Image.Image, top: float, name: str) -> Image.Image:
    """One image (or band of rows) of any mode -> "L"; ``top``: see _int_top."""
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    elif mode in ("L", "RGB") and "transparency" in im.info:  # tRNS chunk: one colour is transparent
        im = im.convert("RGBA" if mode == "RGB" else "LA")
        mode = im.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        base = im if mode == "RGBA" else im.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", base.size, (255, 255, 255, 255)), base).convert("L")
    if mode.startswith("I") or mode == "F":
        a = np.asarray(im).astype(np.float64)
        return Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    try:
        return im.convert("RGB").convert("L") if mode not in ("1", "RGB") else im.convert("L")
    except (ValueError, OSError) as e:
        raise ImageError(f"{name}: cannot convert image mode {mode!r} to grayscale ({e})") from None


@dataclass
class PreprocessConfig:
    """How a grayscale line becomes a tensor."""

    height: int = 64  # see the module docstring for why 64 and not 128
    min_width: int = 32  # narrower lines are padded with background (the CNN needs a few frames)
    max_width: int = 2048  # longer lines (after height scaling) are squeezed or rejected, see too_wide
    too_wide: Literal["downscale", "error"] = "downscale"
    normalize_contrast: bool = True  # map the paper level to 0 and the ink level to 1


def preprocess(image: Image.Image | np.ndarray, height: int = 64, min_width: int = 32, max_width: int = 2048,
               too_wide: Literal["downscale", "error"] = "downscale", normalize_contrast: bool = True,
               name: str = "<image>") -> Tensor:
    """Grayscale line (PIL "L" or uint8 HxW array, dark ink on light paper) -> float32 (1, height, W).

    Scaled to ``height`` with the aspect ratio kept, inverted so that ink ~ 1 and paper ~ 0 (zero padding
    is then background). With ``normalize_contrast`` the paper level (median gray, lines are mostly
    paper) is subtracted and the ink level (99th percentile of darkness) scaled to 1, clipped to [0, 1]:
    grey paper of old documents and white synthetic paper look the same to the network. Widths below
    ``min_width`` are right-padded with background; above ``max_width`` the line is squeezed
    horizontally (``too_wide="downscale"``) or rejected with ImageError (``"error"``).
    """
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 2:
            raise ImageError(f"{name}: array of dtype {image.dtype} and shape {image.shape}; "
                             f"expected uint8 (H, W) grayscale")
        image = Image.fromarray(image, "L")
    elif image.mode != "L":
        image = to_grayscale(image, name)
    w, h = image.size
    if w < 1 or h < 1:
        raise ImageError(f"{name}: empty image {w}x{h}")
    new_w = scaled_width(image.size, height)
    if new_w > max_width:
        if too_wide == "error":
            raise ImageError(f"{name}: {new_w} px wide at height {height}; expected at most max_width={max_width}")
        new_w = max_width
    image = image.resize((new_w, height), Image.Resampling.BILINEAR)
    x = 1.0 - np.asarray(image, dtype=np.float32) / 255.0  # (H, W), ink ~ 1
    if normalize_contrast:
        paper, ink = np.percentile(x, (50, 99))
        x = x - paper
        span = ink - paper
        if span > 0.05:  # below that there is no ink to stretch (blank line): only remove the paper level
            x = x / span
        x = np.clip(x, 0.0, 1.0)
    if new_w < min_width:
        x = np.pad(x, ((0, 0), (0, min_width - new_w)))
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).unsqueeze(0)  # (H, W) -> (1, H, W)


def scaled_width(size: tuple[int, int], height: int) -> int:
    """The width of a ``size`` (w, h) line scaled to ``height`` with its aspect ratio kept."""
    w, h = size
    return max(1, round(w * height / max(h, 1)))


def resize_note(size: tuple[int, int], height: int = 64, max_width: int = 2048, name: str = "<image>") -> str | None:
    """The sentence that reports a line squeezed by ``preprocess`` (wider than ``max_width`` at ``height``),
    or None when it fits."""
    new_w = scaled_width(size, height)
    if new_w <= max_width:
        return None
    return (f"{name}: {size[0]}x{size[1]} px is {new_w} px wide at height {height}, above max_width={max_width}: "
            f"squeezed horizontally to {max_width} px ({max_width / new_w:.2f}x), recognition may suffer; "
            f"cut the line into shorter pieces for a better reading")


def collate(samples: Sequence[dict[str, Any]], pad_to_multiple: int = 1) -> dict[str, Any]:
    """List of dataset items -> batch dict.

    Items: ``image`` float32 (1, H, W), ``target`` int64 (L,), ``text`` str, ``id`` str.
    Batch: ``images`` float32 (N, 1, H, W_max) zero-padded on the right (W_max rounded up to
    ``pad_to_multiple``), ``widths`` int64 (N,) true widths, ``targets`` int64 (sum L,) concatenated labels,
    ``target_lengths`` int64 (N,), ``texts`` list[str], ``ids`` list[str].
    """
    if not samples:
        raise ValueError("collate got an empty list of samples")
    heights = {s["image"].shape[1] for s in samples}
    if len(heights) != 1:
        raise ImageError(f"batch mixes image heights {sorted(heights)}; expected one height (preprocess first)")
    widths = [s["image"].shape[2] for s in samples]
    w_max = -(-max(widths) // pad_to_multiple) * pad_to_multiple
    images = torch.zeros(len(samples), 1, heights.pop(), w_max, dtype=torch.float32)
    for i, s in enumerate(samples):
        images[i, :, :, : widths[i]] = s["image"]
    targets = [torch.as_tensor(s.get("target", []), dtype=torch.long) for s in samples]
    return {
        "images": images,
        "widths": torch.tensor(widths, dtype=torch.long),
        "targets": torch.cat(targets) if targets else torch.zeros(0, dtype=torch.long),
        "target_lengths": torch.tensor([len(t) for t in targets], dtype=torch.long),
        "texts": [s.get("text", "") for s in samples],
        "ids": [s.get("id", str(i)) for i, s in enumerate(samples)],
    }
