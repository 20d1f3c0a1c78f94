"""The public inference API shared by the CLI and the app: load a model, transcribe line images.

    from htr import load_model
    model = load_model("relu_add")                 # a shipped model by name, or a .ckpt / .safetensors path
    [line] = model.transcribe(["line.png"])        # text, confidence and per-stage latency (ms)
    page = model.transcribe_page("page.jpg")       # segmented into lines: htr.layout.PageLayout

Shipped models are safetensors files: tensors plus JSON metadata (codec, network configuration,
optional character LM); loading them executes no code.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from htr.data.images import PreprocessConfig, collate, load_image, preprocess
from htr.errors import CheckpointError
from htr.nn.recognizer import Recognizer, RecognizerConfig
from htr.text.codec import Codec
from htr.text.decoding import decode_batch
from htr.text.lm import CharNgramLM

if TYPE_CHECKING:
    from htr.layout import PageLayout

MODELS_DIR = Path(__file__).parent / "models"
DEFAULT_DECODING = {"lm_weight": 0.5, "insertion_bonus": 0.0}
ImageInput = str | Path | bytes | Image.Image | np.ndarray


@dataclass
class Transcription:
    text: str
    confidence: float
    # milliseconds per line: preprocess (load + resize + normalise), encoder (CNN), decoder (recurrent
    # + classifier), ctc (greedy or beam decoding); a batch's times are divided by its size
    timings: dict[str, float] = field(default_factory=dict)
    id: str = ""

    @property
    def total_ms(self) -> float:
        return sum(self.timings.values())


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1e3


class Transcriber:
    """A trained recogniser with its codec, preprocessing and decoding options, ready for inference."""

    def __init__(self, net: Recognizer, codec: Codec, lm: CharNgramLM | None = None, name: str = "",
                 decoding: dict[str, float] | None = None) -> None:
        if net.num_classes != len(codec):
            raise CheckpointError(f"network has {net.num_classes} classes but the codec {len(codec)}")
        self.net = net.eval()
        self.codec = codec
        self.lm = lm
        # beam+lm scoring (htr.text.decoding.beam_search), saved with the model
        self.decoding = {**DEFAULT_DECODING, **(decoding or {})}
        self.name = name or net.config.cell
        self.preprocess_config = PreprocessConfig(height=net.config.height)

    @property
    def cell(self) -> str:
        return self.net.config.cell

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    # ---- loading ------------------------------------------------------------------------------
    @classmethod
    def from_parts(cls, state_dict: dict[str, torch.Tensor], meta: dict[str, Any], name: str = "") -> "Transcriber":
        config = RecognizerConfig.from_dict(meta["recognizer"])
        codec = Codec.from_dict(meta["codec"])
        net = Recognizer(config, len(codec))
        missing, unexpected = net.load_state_dict(state_dict, strict=False)
        if missing or unexpected:
            raise CheckpointError(f"{name}: weights do not match the network: missing {missing[:5]}, "
                                  f"unexpected {unexpected[:5]}")
        lm = CharNgramLM.from_dict(meta["lm"]) if meta.get("lm") else None
        return cls(net, codec, lm, name=name, decoding=meta.get("decoding"))

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> "Transcriber":
        """A Lightning checkpoint written by `htr fit` (weights_only: no code runs while loading)."""
        from htr.ckptfile import read_checkpoint

        # CheckpointError naming the file and what it holds (empty, truncated, unreadable)
        ckpt = read_checkpoint(path, map_location="cpu", weights_only=True)
        if "htr" not in ckpt:
            raise CheckpointError(f"{path}: not an htr checkpoint (no 'htr' entry with codec and network config)")
        state = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
        return cls.from_parts(state, ckpt["htr"], name=Path(path).stem)

    @classmethod
    def from_safetensors(cls, path: str | Path) -> "Transcriber":
        from safetensors import safe_open

        try:
            with safe_open(str(path), "pt") as f:
                meta = json.loads(f.metadata()["htr"])
            state = load_file(str(path))
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{path}: cannot read safetensors model ({e})") from None
        return cls.from_parts(state, meta, name=meta.get("name", Path(path).stem))

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> None:
        """Write weights + metadata as safetensors (the shipped format)."""
        meta = {"name": self.name, "codec": self.codec.to_dict(), "recognizer": self.net.config.to_dict(),
                "lm": self.lm.to_dict() if self.lm else None, "decoding": self.decoding, **(extra or {})}
        state = {k: v.detach().contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(path), metadata={"htr": json.dumps(meta)})

    # ---- inference ----------------------------------------------------------------------------
    def preprocess(self, image: ImageInput, name: str = "<image>") -> torch.Tensor:
        if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 2:
            pil = Image.fromarray(image, "L")
        else:
            pil = image if isinstance(image, Image.Image) else load_image(image)
        c = self.preprocess_config
        return preprocess(pil, c.height, c.min_width, c.max_width, c.too_wide, c.normalize_contrast, name=name)

    @torch.no_grad()
    def run_batch(self, images: list[torch.Tensor], decoder: str = "greedy", beam_width: int = 10
                  ) -> list[Transcription]:
        """Preprocessed (1, H, W) tensors -> transcriptions with encoder/decoder/ctc timings."""
        batch = collate([{"image": im} for im in images], pad_to_multiple=8)
        n = len(images)
        t = time.perf_counter()
        features, frames = self.net.encode(batch["images"], batch["widths"])
        encoder_ms = _ms_since(t)
        t = time.perf_counter()
        log_probs = self.net.decode(features, frames)
        decoder_ms = _ms_since(t)
        t = time.perf_counter()
        width = 1 if decoder == "greedy" else beam_width
        lm = self.lm if decoder == "beam+lm" else None
        decoded = decode_batch(log_probs, frames, beam_width=width,
                               **({"lm": lm, "codec": self.codec, **self.decoding} if lm else {}))
        ctc_ms = _ms_since(t)
        timing = {"encoder": encoder_ms / n, "decoder": decoder_ms / n, "ctc": ctc_ms / n}
        return [Transcription(self.codec.decode(idx), conf, dict(timing)) for idx, conf in decoded]

    def transcribe(self, images: Sequence[ImageInput], decoder: str = "greedy", beam_width: int = 10,
                   batch_size: int = 16) -> list[Transcription]:
        """Transcribe line images (paths, bytes, PIL images or uint8 arrays), in batches of similar width.

        decoder: "greedy", "beam" (CTC prefix beam search) or "beam+lm" (with the model's character LM).
        """
        names = [str(im) if isinstance(im, (str, Path)) else f"<image {i}>" for i, im in enumerate(images)]
        tensors, prep_ms = [], []
        for image, name in zip(images, names):
            t = time.perf_counter()
            tensors.append(self.preprocess(image, name))
            prep_ms.append(_ms_since(t))
        order = sorted(range(len(tensors)), key=lambda i: tensors[i].shape[-1])  # similar widths together
        results: list[Transcription | None] = [None] * len(tensors)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            for i, tr in zip(idx, self.run_batch([tensors[i] for i in idx], decoder, beam_width)):
                tr.timings = {"preprocess": prep_ms[i], **tr.timings}
                tr.id = names[i]
                results[i] = tr
        return results  # type: ignore[return-value]

    def transcribe_page(self, image: ImageInput, segment: bool = True, decoder: str = "greedy",
                        beam_width: int = 10, batch_size: int = 16, name: str | None = None) -> "PageLayout":
        """A page or paragraph image -> htr.layout.PageLayout: split into lines by the app's segmentation
        (``segment=False``: one line), every line recognised in batches (htr.pages.transcribe_page).
        Write it with htr.writers (to_text, to_json, to_alto, to_page)."""
        from htr.pages import transcribe_page

        return transcribe_page(self, image, segment, decoder, beam_width, batch_size, name)


BASE_PREFIX = "base-"  # base models (synthetic pretraining only, for fine-tuning) are named base-<cell>


def shipped_models(base: bool = False) -> dict[str, Path]:
    """Names of the recognisers shipped inside the package -> their files; with ``base`` also the
    base models of ``models/base/`` as ``base-<cell>``."""
    models = {p.stem: p for p in sorted(MODELS_DIR.glob("*.safetensors"))}
    if base:
        models |= {BASE_PREFIX + p.stem: p for p in sorted((MODELS_DIR / "base").glob("*.safetensors"))}
    return models


def load_model(name_or_path: str | Path) -> Transcriber:
    """A shipped model by name (relu_add, gru, lstm, or a base model: base-relu_add, ...), or a path to
    a .ckpt or .safetensors file."""
    shipped = shipped_models(base=True)
    if str(name_or_path) in shipped:
        return Transcriber.from_safetensors(shipped[str(name_or_path)])
    path = Path(name_or_path)
    if not path.exists():
        raise CheckpointError(f"{name_or_path}: no such file, and not a shipped model name "
                              f"(shipped: {', '.join(shipped) or 'none'})")
    if path.suffix == ".safetensors":
        return Transcriber.from_safetensors(path)
    return Transcriber.from_checkpoint(path)


def iter_images(patterns: Iterable[str]) -> list[Path]:
    """Expand files, folders (their .png/.jpg/.jpeg/.tif/.bmp files) and globs into image paths."""
    import glob

    exts = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
    out: list[Path] = []
    for pattern in patterns:
        p = Path(pattern)
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.suffix.lower() in exts)
        elif p.exists():
            out.append(p)
        else:
            matches = sorted(Path(m) for m in glob.glob(pattern))
            if not matches:
                raise FileNotFoundError(f"{pattern}: no such file, folder or glob match")
            out += matches
    return out
