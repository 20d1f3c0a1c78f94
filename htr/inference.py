"""The public inference API shared by the CLI and the app: load a model, transcribe line images.

    from htr import load_model
    model = load_model("relu_add")                 # a shipped model by name, or a .ckpt / .safetensors path
    model = load_model("relu_add", integer=True)   # its relu_add decoder run in integers (htr.fhe.integer)
    [line] = model.transcribe(["line.png"])        # text, confidence and per-stage latency (ms)
    page = model.transcribe_page("page.jpg")       # segmented into lines: htr.layout.PageLayout

Shipped models are safetensors files: tensors plus JSON metadata (codec, network configuration,
optional character LM); loading them executes no code.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Sequence

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from htr.data.images import PreprocessConfig, collate, image_extensions, load_image, preprocess, resize_note
from htr.errors import CheckpointError, HTRError, TimeLimitError
from htr.nn.recognizer import Recognizer, RecognizerConfig
from htr.text import BEAM_WIDTH
from htr.text.codec import Codec
from htr.text.decoding import decode_batch
from htr.text.lm import CharNgramLM

if TYPE_CHECKING:
    from htr.layout import PageLayout

MODELS_DIR = Path(__file__).parent / "models"
DEFAULT_DECODING = {"lm_weight": 0.5, "insertion_bonus": 0.0}
ImageInput = str | Path | bytes | Image.Image | np.ndarray
PAD_TO_MULTIPLE = 8  # batch widths are rounded up to this (run_batch, forward_lines)


@dataclass
class Transcription:
    text: str
    confidence: float
    # milliseconds per line: preprocess (load + resize + normalise), encoder (CNN), decoder (recurrent
    # + classifier), ctc (greedy or beam decoding); a batch's times are divided by its size
    timings: dict[str, float] = field(default_factory=dict)
    id: str = ""
    # what the reader should know about this line: e.g. a line wider than max_width squeezed to fit it
    warnings: list[str] = field(default_factory=list)
    # transcribe(..., on_error="skip"): why this image was not read (then text is "" and confidence nan)
    error: str = ""

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
        """Weights + metadata -> a Transcriber. CheckpointError (naming the model, the tensor, what was found
        and what was expected) for metadata without a usable network config or codec, missing, unexpected
        or wrongly shaped tensors, and weights that are NaN or infinite."""
        try:
            config = RecognizerConfig.from_dict(meta["recognizer"])
            codec = Codec.from_dict(meta["codec"])
            net = Recognizer(config, len(codec))
        except HTRError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(f"{name}: metadata without a usable network config and codec "
                                  f"({type(e).__name__}: {e}); expected a model written by htr") from None
        expected = net.state_dict()
        wrong = [f"{k} {tuple(v.shape)} (expected {tuple(expected[k].shape)})" for k, v in state_dict.items()
                 if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
        if wrong:
            raise CheckpointError(f"{name}: {len(wrong)} tensor(s) of the wrong shape for a {config.cell} network "
                                  f"with {len(codec)} classes: {', '.join(wrong[:3])}"
                                  f"{' ...' if len(wrong) > 3 else ''}")
        bad = [k for k, v in state_dict.items()
               if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            raise CheckpointError(f"{name}: {len(bad)} tensor(s) hold NaN or infinite weights: "
                                  f"{', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}; expected finite "
                                  f"weights (a diverged training run?)")
        missing, unexpected = net.load_state_dict(state_dict, strict=False)
        if missing or unexpected:
            raise CheckpointError(f"{name}: weights do not match the network: missing {missing[:5]}, "
                                  f"unexpected {unexpected[:5]}")
        try:
            lm = CharNgramLM.from_dict(meta["lm"]) if meta.get("lm") else None
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(f"{name}: unreadable character LM in the metadata "
                                  f"({type(e).__name__}: {e})") from None
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

    def with_integer_decoder(self, **options: Any) -> "Transcriber":
        """A copy whose relu_add decoder runs in integers (htr.fhe.integer.IntegerReluAdd: int8 weights and
        states, int32 sums, the gate in integer additions and ReLUs; ``options`` are its own), named
        ``<name>-integer``; the encoder and classifier stay float. CheckpointError for a gru or lstm model,
        whose decoder has no integer path."""
        from htr.fhe.integer import swap_decoders

        if self.cell != "relu_add":
            raise CheckpointError(f"{self.name}: the integer decoder replaces a relu_add decoder; this model's "
                                  f"decoder is {self.cell} (expected a relu_add model)")
        net = swap_decoders(self.net, **options)
        return Transcriber(net, self.codec, self.lm, name=f"{self.name}-integer", decoding=dict(self.decoding))

    # ---- inference ----------------------------------------------------------------------------
    def preprocess(self, image: ImageInput, name: str = "<image>", notes: list[str] | None = None) -> torch.Tensor:
        """One line image -> its (1, H, W) input tensor; a line squeezed to max_width adds a sentence to
        ``notes`` (when given)."""
        if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 2:
            pil = Image.fromarray(image, "L")
        else:
            pil = image if isinstance(image, Image.Image) else load_image(image)
        c = self.preprocess_config
        if notes is not None and c.too_wide == "downscale":
            note = resize_note(pil.size, c.height, c.max_width, name)
            if note:
                notes.append(note)
        return preprocess(pil, c.height, c.min_width, c.max_width, c.too_wide, c.normalize_contrast, name=name)

    @torch.no_grad()
    def run_batch(self, images: list[torch.Tensor], decoder: str = "greedy", beam_width: int = BEAM_WIDTH,
                  deadline: float | None = None) -> list[Transcription]:
        """Preprocessed (1, H, W) tensors -> transcriptions with encoder/decoder/ctc timings.

        ``deadline`` (a ``time.perf_counter()`` value): TimeLimitError once it has passed (checked before
        decoding and at every frame of a beam search)."""
        batch = collate([{"image": im} for im in images], pad_to_multiple=PAD_TO_MULTIPLE)
        n = len(images)
        t = time.perf_counter()
        features, frames = self.net.encode(batch["images"], batch["widths"])
        encoder_ms = _ms_since(t)
        t = time.perf_counter()
        log_probs = self.net.decode(features, frames)
        decoder_ms = _ms_since(t)
        if deadline is not None and time.perf_counter() > deadline:
            raise TimeLimitError(f"stopped after the recurrent decoder of {n} line(s): past the time limit")
        t = time.perf_counter()
        width = 1 if decoder == "greedy" else beam_width
        lm = self.lm if decoder == "beam+lm" else None
        kwargs: dict[str, Any] = {"lm": lm, "codec": self.codec, **self.decoding} if lm else {}
        if deadline is not None and width > 1:
            kwargs["deadline"] = deadline
        decoded = decode_batch(log_probs, frames, beam_width=width, **kwargs)
        ctc_ms = _ms_since(t)
        timing = {"encoder": encoder_ms / n, "decoder": decoder_ms / n, "ctc": ctc_ms / n}
        return [Transcription(self.codec.decode(idx), conf, dict(timing)) for idx, conf in decoded]

    @torch.no_grad()
    def forward_lines(self, images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, list[float], list[float]]:
        """Preprocessed (1, H, W) lines of any widths -> (log-probs (T, N, C), frames (N,), encoder ms and
        decoder ms per line), each line's log-probs those of the line run alone (``run_batch([line])``).

        The CNN does not mask padding, so lines are encoded in groups of one padded width (the padding of a
        line run alone); each group's encoder time is shared equally by its lines. The recurrent decoder
        masks by lengths, so all lines go through it in one batch; its time is shared in proportion to each
        line's frames. Used by the app to recognise concurrent requests together (htr.compare)."""
        groups: dict[int, list[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault(-(-im.shape[-1] // PAD_TO_MULTIPLE) * PAD_TO_MULTIPLE, []).append(i)
        n = len(images)
        feats: list[torch.Tensor | None] = [None] * n
        frames = torch.zeros(n, dtype=torch.long)
        encoder_ms = [0.0] * n
        for idx in groups.values():
            t = time.perf_counter()
            batch = collate([{"image": images[i]} for i in idx], pad_to_multiple=PAD_TO_MULTIPLE)
            features, lengths = self.net.encode(batch["images"], batch["widths"])
            ms = _ms_since(t) / len(idx)
            for k, i in enumerate(idx):
                feats[i], frames[i], encoder_ms[i] = features[:, k], lengths[k], ms
        t = time.perf_counter()
        steps = int(frames.max())
        features = torch.zeros(steps, n, feats[0].shape[-1], dtype=feats[0].dtype)
        for i, f in enumerate(feats):
            features[: int(frames[i]), i] = f[: int(frames[i])]
        log_probs = self.net.decode(features, frames)
        decoder_ms = _ms_since(t)
        total = float(frames.sum())
        return log_probs, frames, encoder_ms, [decoder_ms * float(f) / total for f in frames]

    def decode_lines(self, log_probs: torch.Tensor, frames: torch.Tensor, decoder: str = "greedy",
                     beam_width: int = BEAM_WIDTH, deadline: float | None = None) -> list[tuple[str, float]]:
        """CTC decoding of (T, N, C) log-probs (as run_batch decodes them) -> (text, confidence) per line;
        ``deadline``: TimeLimitError once it has passed, checked at every frame of a beam search."""
        width = 1 if decoder == "greedy" else beam_width
        lm = self.lm if decoder == "beam+lm" else None
        kwargs: dict[str, Any] = {"lm": lm, "codec": self.codec, **self.decoding} if lm else {}
        if deadline is not None and width > 1:
            kwargs["deadline"] = deadline
        return [(self.codec.decode(idx), conf) for idx, conf in decode_batch(log_probs, frames, beam_width=width,
                                                                            **kwargs)]

    def transcribe(self, images: Sequence[ImageInput], decoder: str = "greedy", beam_width: int = BEAM_WIDTH,
                   batch_size: int = 16, on_error: Literal["raise", "skip"] = "raise") -> list[Transcription]:
        """Transcribe line images (paths, bytes, PIL images or uint8 arrays), in batches of similar width.

        decoder: "greedy", "beam" (CTC prefix beam search) or "beam+lm" (with the model's character LM).
        on_error: "raise" (the first unreadable image raises its ImageError) or "skip" (its Transcription
        has the message in ``error``, text "" and confidence nan; the other images are read as usual).
        Lines squeezed to the width limit say so in their ``warnings``.
        """
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error={on_error!r}; expected 'raise' or 'skip'")
        names = [str(im) if isinstance(im, (str, Path)) else f"<image {i}>" for i, im in enumerate(images)]
        results: list[Transcription | None] = [None] * len(names)
        tensors: dict[int, torch.Tensor] = {}
        prep_ms, notes = {}, {}
        for i, (image, name) in enumerate(zip(images, names)):
            t = time.perf_counter()
            notes[i] = []
            try:
                tensors[i] = self.preprocess(image, name, notes[i])
            except HTRError as e:
                if on_error == "raise":
                    raise
                results[i] = Transcription("", math.nan, {}, name, error=str(e))
                continue
            prep_ms[i] = _ms_since(t)
        order = sorted(tensors, key=lambda i: tensors[i].shape[-1])  # similar widths together
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            for i, tr in zip(idx, self.run_batch([tensors[i] for i in idx], decoder, beam_width)):
                tr.timings = {"preprocess": prep_ms[i], **tr.timings}
                tr.id = names[i]
                tr.warnings = notes[i]
                results[i] = tr
        return results  # type: ignore[return-value]

    def transcribe_page(self, image: ImageInput, segment: bool = True, decoder: str = "greedy",
                        beam_width: int = BEAM_WIDTH, batch_size: int = 16, name: str | None = None) -> "PageLayout":
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


def load_model(name_or_path: str | Path, integer: bool = False) -> Transcriber:
    """A shipped model by name (relu_add, gru, lstm, or a base model: base-relu_add, ...), or a path to
    a .ckpt or .safetensors file. ``integer``: with its relu_add decoder in integers
    (`Transcriber.with_integer_decoder`; CheckpointError for gru and lstm models)."""
    shipped = shipped_models(base=True)
    if str(name_or_path) in shipped:
        model = Transcriber.from_safetensors(shipped[str(name_or_path)])
    else:
        path = Path(name_or_path)
        if not path.exists():
            raise CheckpointError(f"{name_or_path}: no such file, and not a shipped model name "
                                  f"(shipped: {', '.join(shipped) or 'none'})")
        model = (Transcriber.from_safetensors(path) if path.suffix == ".safetensors"
                 else Transcriber.from_checkpoint(path))
    return model.with_integer_decoder() if integer else model


def load_models(sources: Sequence[str | Path] | None = None) -> dict[str, Transcriber]:
    """Shipped model names or model files -> {unique name: Transcriber}, in the order given; with no
    sources, every shipped recogniser (relu_add first, then the baselines). A second model of the same
    name is called ``<name>-2``, ``<name>-3``... Raises CheckpointError when there is nothing to load."""
    sources = list(sources or [])
    if not sources:
        sources = sorted(shipped_models(), key=lambda n: (n != "relu_add", n))
        if not sources:
            raise CheckpointError(f"no model given and no shipped models in {MODELS_DIR}")
    models: dict[str, Transcriber] = {}
    for source in sources:
        model = load_model(source)
        base = model.name or model.cell
        name, k = base, 2
        while name in models:
            name, k = f"{base}-{k}", k + 1
        models[name] = model
    return models


def iter_images(patterns: Iterable[str], missing: list[str] | None = None) -> list[Path]:
    """Expand files, folders (their image files: every format Pillow reads, as the app does, see
    htr.data.images.image_extensions) and globs into image paths.

    A pattern that matches nothing raises FileNotFoundError, or is appended to ``missing`` when given."""
    import glob

    exts = image_extensions()
    out: list[Path] = []
    for pattern in patterns:
        p = Path(pattern)
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.suffix.lower() in exts and q.is_file())
        elif p.exists():
            out.append(p)
        else:
            matches = sorted(Path(m) for m in glob.glob(pattern))
            if not matches:
                if missing is not None:
                    missing.append(pattern)
                    continue
                raise FileNotFoundError(f"{pattern}: no such file, folder or glob match")
            out += matches
    return out
