"""The one line dataset every reader feeds: ``LineSample`` records -> checked -> tensors.

Readers (iam, rimes, folder) only parse their annotation format into a list of ``LineSample``.
``prepare_samples`` then applies, once per split and with counts: label normalisation and the
unknown-character rule (htr.text.codec.clean_labels), empty labels, and an image check (missing,
corrupt, truncated, too big or too small -> ``bad_images="skip"`` counts and warns, ``"error"`` raises
ImageError). ``LineDataset`` turns the kept samples into items for ``collate``. Nothing is lost
silently: every dataset carries a ``stats`` dict with the counts, and they are logged.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from htr.data.augment import Augmenter
from htr.data.images import MAX_PIXELS, PreprocessConfig, load_image, preprocess
from htr.errors import ImageError
from htr.text.codec import Codec, UnknownRule, clean_labels, format_counts, normalize_text

log = logging.getLogger(__name__)

BadImageRule = Literal["skip", "error"]


@dataclass(frozen=True)
class LineSample:
    """One text line: where its pixels are, its transcription and a stable id.

    ``image_path`` is a line image, or a page image when ``box`` (left, top, right, bottom; right and
    bottom exclusive, page pixels, may lie outside the page: clamped when cropping) cuts the line out.
    ``image_bytes`` holds encoded bytes instead (parquet copies, uploads).
    """

    id: str
    text: str
    image_path: Path | None = None
    box: tuple[int, int, int, int] | None = None
    image_bytes: bytes | None = field(default=None, repr=False)

    @property
    def source_name(self) -> str:
        return str(self.image_path) if self.image_path is not None else f"<bytes of {self.id}>"


def load_sample_image(sample: LineSample, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The sample's grayscale line image (cropped from its page when it has a box)."""
    if sample.image_bytes is not None:
        return load_image(sample.image_bytes, max_pixels=max_pixels)
    if sample.image_path is None:
        raise ImageError(f"sample {sample.id!r} has neither an image path nor image bytes")
    im = load_image(sample.image_path, max_pixels=max_pixels)
    if sample.box is None:
        return im
    return im.crop(clamp_box(sample, im.size))


def clamp_box(sample: LineSample, page_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The sample's box clamped to the page; ImageError if nothing of it is left."""
    left, top, right, bottom = sample.box  # type: ignore[misc]
    w, h = page_size
    box = (min(max(left, 0), w), min(max(top, 0), h), min(max(right, 0), w), min(max(bottom, 0), h))
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        raise ImageError(f"{sample.image_path}: line {sample.id!r} box {sample.box} is empty inside the "
                         f"{w}x{h} page after clamping; expected left < right and top < bottom")
    return box


def check_image(sample: LineSample, max_pixels: int = MAX_PIXELS) -> None:
    """Cheap validity check at setup: header, size and full decode. Raises ImageError."""
    load_sample_image(sample, max_pixels)


def prepare_samples(samples: Sequence[LineSample], codec: Codec, unknown: UnknownRule = "drop",
                    bad_images: BadImageRule = "skip", source: str = "<dataset>", check_images: bool = True,
                    max_pixels: int = MAX_PIXELS) -> tuple[list[LineSample], dict[str, Any]]:
    """Clean labels and drop unusable samples, with counts. Returns (kept samples, stats).

    Kept samples carry the normalised reference text, unknown characters included (``"drop"`` removes
    them from the training target only, so metrics still count them as errors); a line whose label holds
    only unknown characters has no target left: it is left out and kept aside in ``unknown_only``, so
    that evaluation can still score it (htr.evaluate), never silently.
    stats: ``read`` (samples in), ``kept``, ``unknown_chars`` (char -> count), ``skipped_unknown`` (lines
    left out by unknown="skip_line"), ``empty_text`` (empty labels), ``unknown_only`` (id -> the sample,
    with its normalised reference text; its image is not checked here), ``bad_images`` (id -> reason).
    """
    if bad_images not in ("skip", "error"):
        raise ValueError(f"bad_images={bad_images!r}; expected 'skip' or 'error'")
    texts, unknown_counts = clean_labels([s.text for s in samples], codec, unknown, source)
    stats: dict[str, Any] = {"source": source, "read": len(samples), "unknown_chars": dict(unknown_counts),
                             "skipped_unknown": 0, "empty_text": 0, "unknown_only": {}, "bad_images": {}}
    kept: list[LineSample] = []
    pages: dict[Path, tuple[int, int] | ImageError] = {}  # RIMES: many lines share a page, decode it once
    for s, text in zip(samples, texts):
        if text is None:
            stats["skipped_unknown"] += 1
            continue
        if not text:
            reference = normalize_text(s.text)
            if reference:  # only unknown characters: no training target, but a line to score
                stats["unknown_only"][s.id] = LineSample(s.id, reference, s.image_path, s.box, s.image_bytes)
            else:
                stats["empty_text"] += 1
            continue
        if check_images:
            try:
                if s.box is not None and s.image_path is not None:
                    if s.image_path not in pages:
                        try:
                            pages[s.image_path] = load_image(s.image_path, max_pixels=max_pixels).size
                        except ImageError as e:
                            pages[s.image_path] = e
                    page = pages[s.image_path]
                    if isinstance(page, ImageError):
                        raise page
                    clamp_box(s, page)
                else:
                    check_image(s, max_pixels)
            except ImageError as e:
                if bad_images == "error":
                    raise
                stats["bad_images"][s.id] = str(e)
                continue
        # Keep the normalised text with its unknown characters as the reference: the target drops them
        # (LineDataset.to_item) but CER/WER still count them as errors, so "drop" cannot flatter a score.
        reference = normalize_text(s.text)
        kept.append(s if reference == s.text else LineSample(s.id, reference, s.image_path, s.box, s.image_bytes))
    stats["kept"] = len(kept)
    report(stats)
    return kept, stats


def report(stats: dict[str, Any]) -> None:
    """Log the counts of one split once: info when clean, a warning naming what was lost otherwise."""
    src = stats["source"]
    if stats["unknown_chars"]:
        log.warning("%s: characters not in the charset: %s", src, format_counts(Counter(stats["unknown_chars"])))
    if stats["skipped_unknown"]:
        log.warning("%s: %d lines left out for unknown characters (unknown='skip_line')", src, stats["skipped_unknown"])
    if stats["empty_text"]:
        log.warning("%s: %d lines left out with an empty transcription", src, stats["empty_text"])
    if stats.get("unknown_only"):
        log.warning("%s: %d lines left out of the dataset: their labels hold only characters outside the charset "
                    "(htr evaluate still scores them): %s", src, len(stats["unknown_only"]),
                    ", ".join(list(stats["unknown_only"])[:5]) + (" ..." if len(stats["unknown_only"]) > 5 else ""))
    bad = stats["bad_images"]
    if bad:
        shown = "; ".join(list(bad.values())[:5]) + (f"; ... {len(bad) - 5} more" if len(bad) > 5 else "")
        log.warning("%s: %d bad images skipped: %s", src, len(bad), shown)
    log.info("%s: %d of %d lines kept", src, stats.get("kept", 0), stats["read"])


class LineDataset(Dataset):
    """Items ``{"image": (1, H, W) float32, "target": (L,) int64, "text": str, "id": str}``.

    ``text`` is the reference for metrics; ``target`` encodes its characters that the codec knows.

    The samples should come from ``prepare_samples``. An image that still fails at load time (changed
    on disk since setup) is replaced by the next sample and recorded in ``stats["runtime_bad"]`` with a
    warning, so one file cannot stop a long run; with ``bad_images="error"`` it raises.
    """

    def __init__(self, samples: Sequence[LineSample], codec: Codec, preprocess_config: PreprocessConfig | None = None,
                 augmenter: Augmenter | None = None, bad_images: BadImageRule = "skip",
                 stats: dict[str, Any] | None = None, max_pixels: int = MAX_PIXELS) -> None:
        self.samples = list(samples)
        self.codec = codec
        self.pre = preprocess_config or PreprocessConfig()
        self.augmenter = augmenter
        self.bad_images = bad_images
        self.max_pixels = max_pixels
        self.stats: dict[str, Any] = dict(stats or {})
        self.stats.setdefault("runtime_bad", {})

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[Image.Image, str, str]:
        """(grayscale image, text, id) of one sample; subclasses may render instead of reading."""
        s = self.samples[index]
        return load_sample_image(s, self.max_pixels), s.text, s.id

    def sample_id(self, index: int) -> str:
        return self.samples[index].id

    def __getitem__(self, index: int) -> dict[str, Any]:
        for attempt in range(min(len(self), 10)):
            i = (index + attempt) % len(self)
            try:
                image, text, sid = self.load(i)
                return self.to_item(image, text, sid)
            except ImageError as e:
                if self.bad_images == "error":
                    raise
                key = self.sample_id(i)
                if key not in self.stats["runtime_bad"]:
                    self.stats["runtime_bad"][key] = str(e)
                    log.warning("skipping a line image that failed at load time: %s", e)
        raise ImageError(f"10 consecutive samples from index {index} failed to load; see the warnings above")

    def to_item(self, image: Image.Image, text: str, sid: str) -> dict[str, Any]:
        """Augment (if set), preprocess and encode one line."""
        pre = self.pre
        if self.augmenter is not None and self.augmenter.config.enabled:
            image = self.augmenter(np.asarray(image, dtype=np.uint8))
        tensor = preprocess(image, pre.height, pre.min_width, pre.max_width, pre.too_wide,
                            pre.normalize_contrast, name=sid)
        known = "".join(ch for ch in text if ch in self.codec)  # unknown chars were counted at setup
        return {"image": tensor, "target": torch.tensor(self.codec.encode(known), dtype=torch.long),
                "text": text, "id": sid}


def worker_init_fn(worker_id: int) -> None:
    """Give each data-loader worker its own augmentation stream (albumentations has a private RNG that
    forked workers would otherwise share, repeating the same augmentations in every worker)."""
    info = torch.utils.data.get_worker_info()
    if info is None:
        return
    seed = info.seed % 2**32  # differs per worker and per epoch (drawn from the main process's torch RNG)
    np.random.seed(seed)
    for ds in _datasets(info.dataset):
        if getattr(ds, "augmenter", None) is not None:
            ds.augmenter.reseed(seed)


def _datasets(ds: Any) -> list[Any]:
    """A dataset and the members of a ConcatDataset."""
    return [d for sub in ds.datasets for d in _datasets(sub)] if hasattr(ds, "datasets") else [ds]
