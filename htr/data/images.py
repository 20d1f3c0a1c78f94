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
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError
from torch import Tensor

from htr.errors import ImageError

ImageSource = Union[str, "os.PathLike[str]", bytes, Image.Image]

MAX_PIXELS = 60_000_000  # a RIMES page scan is ~9 Mpx; far above that is a decompression bomb or a mistake
MIN_SIDE = 4  # narrower/shorter than this cannot hold a written character


def _name(source: Any) -> str:
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    if isinstance(source, Image.Image):
        return getattr(source, "filename", "") or "<PIL image>"
    return os.fspath(source)


def load_image(source: ImageSource, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE) -> Image.Image:
    """Read any image file (path, bytes or PIL image) as an 8-bit grayscale ("L") PIL image.

    Palette, 1-bit, 16/32-bit integer, float, RGB(A), LA and CMYK inputs are converted; transparent pixels
    are composited on white paper; an EXIF orientation tag (phone photos) is applied, so the line is read
    as it is displayed. Raises ImageError naming the file for: missing, empty, corrupt or
    truncated files, sizes above ``max_pixels`` (decompression bombs) and sides below ``min_side`` px.
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
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                im = Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
        w, h = im.size  # from the header: checked before anything is decoded
        if w * h > max_pixels:
            raise ImageError(f"{name}: {w}x{h} = {w * h} pixels; expected at most {max_pixels} "
                             f"(decompression bomb guard, raise max_pixels for bigger scans)")
        if min(w, h) < min_side:
            raise ImageError(f"{name}: {w}x{h} pixels; expected both sides >= {min_side} for a text line")
        prev = ImageFile.LOAD_TRUNCATED_IMAGES
        if prev:  # another library turned it on globally: a truncated line must still be an error here
            ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            im.load()
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = prev
        return to_grayscale(_upright(im, copy=im is source), name)
    except ImageError:
        _close(im, source)
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{name}: too many pixels ({e}); expected at most {max_pixels}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, MemoryError) as e:
        _close(im, source)
        raise ImageError(f"{name}: unreadable or corrupt image ({type(e).__name__}: {e}); "
                         f"expected a complete PNG/JPEG/TIFF/... file") from None


def exif_orientation(im: Image.Image) -> int:
    """The EXIF orientation tag (1..8; 1 = upright, also when there is no tag or the EXIF block is unreadable)."""
    try:
        value = im.getexif().get(0x0112, 1)  # ExifTags.Base.Orientation
    except Exception:  # noqa: BLE001 - a damaged EXIF block must not make the pixels unreadable
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _upright(im: Image.Image, copy: bool) -> Image.Image:
    """``im`` turned as its EXIF orientation says (PIL.ImageOps.exif_transpose); the caller's own image
    (``copy``) is never changed in place."""
    if exif_orientation(im) == 1:
        return im
    if copy:
        return ImageOps.exif_transpose(im)
    ImageOps.exif_transpose(im, in_place=True)
    return im


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
    """Any PIL mode -> "L"; alpha composited on white; high bit depths scaled to 0..255."""
    mode = im.mode
    if mode == "L" and "transparency" not in im.info:
        return im
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    elif mode in ("L", "RGB") and "transparency" in im.info:  # tRNS chunk: one colour is transparent
        im = im.convert("RGBA" if mode == "RGB" else "LA")
        mode = im.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        base = im.convert("RGBA")
        paper = Image.new("RGBA", base.size, (255, 255, 255, 255))
        return Image.alpha_composite(paper, base).convert("L")
    if mode.startswith("I") or mode == "F":
        a = np.asarray(im).astype(np.float64)
        # I;16* images use 0..65535; 32-bit ones are scaled by their own range if above 16 bits.
        top = 1.0 if mode == "F" and a.max(initial=0) <= 1.0 else 255.0 if a.max(initial=0) <= 255 else 65535.0
        if a.max(initial=0) > 65535:
            top = float(a.max())
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
