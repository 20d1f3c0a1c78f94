"""Corpus-level evaluation of one or more models on one split: the table behind `htr evaluate`."""
from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from torch.utils.data import Dataset
from tqdm import tqdm

from htr.data.datamodule import FolderDataModule, LineDataModule
from htr.data.dataset import LineDataset
from htr.errors import DatasetError, ImageError
from htr.inference import Transcriber
from htr.tables import format_table
from htr.text import BEAM_WIDTH
from htr.text.metrics import cer, wer

log = logging.getLogger(__name__)


def build_datamodule(data: str | Path, height: int, batch_size: int = 16) -> LineDataModule:
    """A TSV folder (images + <split>.tsv) or a YAML config with a `data:` section (as for `htr fit`).

    Labels with characters outside the charset are always scored (``unknown="drop"``: they stay in the
    reference and count as errors), whatever rule the config trains with: a score never leaves them out."""
    path = Path(data)
    overrides = {"height": height, "batch_size": batch_size, "augment": False, "num_workers": 0, "unknown": "drop"}
    if path.is_dir():  # every split whose TSV is there: train, val and test
        return FolderDataModule(root=str(path), test_split="test" if (path / "test.tsv").is_file() else None,
                                **overrides)
    if path.suffix in (".yaml", ".yml") and path.exists():
        section = (yaml.safe_load(path.read_text()) or {}).get("data")
        if not isinstance(section, dict) or "class_path" not in section:
            raise DatasetError(f"{path}: expected a `data:` section with `class_path` and `init_args`")
        module, _, cls = section["class_path"].rpartition(".")
        kwargs = {**section.get("init_args", {}), **overrides}
        kwargs.pop("synthetic_ratio", None)  # evaluation never mixes in synthetic lines
        return getattr(importlib.import_module(module), cls)(**kwargs)
    raise DatasetError(f"{data}: expected a folder with <split>.tsv files or a YAML config with a data section")


@dataclass
class SplitTranscription:
    """What a model read on one split: line ids, references, hypotheses, and the model's seconds.

    ``skipped``: lines of the split that are not scored, by reason (bad_images, empty_text, ...; see
    ``skip_counts``); ``unknown_only``: scored lines whose label holds only characters outside the charset
    (every one of their characters is an error)."""

    ids: list[str]
    refs: list[str]
    hyps: list[str]
    model_seconds: float
    skipped: dict[str, int] = field(default_factory=dict)
    unknown_only: int = 0


def skip_counts(stats: dict[str, Any]) -> dict[str, int]:
    """The lines a data module's split ``stats`` (htr.data.dataset.prepare_samples, summed over sources)
    left out, by reason, non-zero reasons only: ``bad_images`` (missing, corrupt, too big, ...),
    ``empty_text`` (empty labels), ``skipped_unknown`` (unknown="skip_line"), and for XML ground truth
    ``xml_no_text``, ``xml_no_geometry``, ``xml_off_page``, ``xml_page_image`` (lines of pages whose image
    is missing or bad)."""
    out = {"bad_images": len(stats.get("bad_images") or {}),
           "empty_text": stats.get("empty_text", 0), "skipped_unknown": stats.get("skipped_unknown", 0)}
    xml = stats.get("xml") or {}
    if xml:
        lost = {k: xml.get(k, 0) for k in ("no_text", "no_geometry", "off_page")}
        out.update({f"xml_{k}": v for k, v in lost.items()})
        out["xml_page_image"] = xml.get("lines", 0) - xml.get("kept", 0) - sum(lost.values())
    return {k: int(v) for k, v in out.items() if v}


def _lines(dataset: Dataset, skipped: dict[str, int]) -> Iterator[dict[str, Any]]:
    """The dataset's items in order. A LineDataset image that fails now (changed since the split was
    checked) is counted in ``skipped["bad_images"]`` and left out, not replaced by the next line as in
    training; with bad_images="error" it raises."""
    for i in range(len(dataset)):
        if not isinstance(dataset, LineDataset):
            yield dataset[i]
            continue
        try:
            yield dataset.to_item(*dataset.load(i))
        except ImageError as e:
            if dataset.bad_images == "error":
                raise
            skipped["bad_images"] = skipped.get("bad_images", 0) + 1
            log.warning("line left out of the score, its image failed: %s", e)


def transcribe_split(model: Transcriber, datamodule: LineDataModule, split: str = "val", decoder: str = "greedy",
                     beam_width: int = BEAM_WIDTH) -> SplitTranscription:
    """Every line of a split through ``model`` in batches of the data module's batch size, the lines whose
    label holds only unknown characters included (their reference keeps them); what cannot be scored is
    counted in ``skipped``."""
    if split not in datamodule.datasets:  # only this split: a folder need not have the others
        made = datamodule.make_dataset(split)  # type: ignore[arg-type]
        if made is not None:
            datamodule.datasets[split] = made
    dataset = datamodule.datasets.get(split)
    if dataset is None or len(dataset) == 0:
        raise DatasetError(f"{datamodule.describe(split)}: split {split!r} is empty or missing")
    stats = datamodule.stats.get(split) or getattr(dataset, "stats", None) or {}
    out = SplitTranscription([], [], [], 0.0, skipped=skip_counts(stats))
    unknown_only = list((stats.get("unknown_only") or {}).values())
    parts = [dataset]
    if unknown_only:
        parts.append(LineDataset(unknown_only, datamodule.codec, datamodule.preprocess_config, None,
                                 getattr(dataset, "bad_images", "skip")))
    bs = datamodule.batch_size
    total = len(dataset) + len(unknown_only)
    with tqdm(total=total, desc=f"{model.name} on {split}", unit="line", leave=False) as bar:
        for part in parts:
            lines = _lines(part, out.skipped)
            while True:
                items = [it for _, it in zip(range(bs), lines)]
                if not items:
                    break
                t = time.perf_counter()
                read = model.run_batch([it["image"] for it in items], decoder, beam_width)
                out.model_seconds += time.perf_counter() - t
                out.ids += [it["id"] for it in items]
                out.refs += [it["text"] for it in items]
                out.hyps += [tr.text for tr in read]
                if part is not dataset:
                    out.unknown_only += len(items)
                bar.update(len(items))
    if not out.refs:
        raise DatasetError(f"{datamodule.describe(split)}: no line of split {split!r} could be read "
                           f"(skipped: {format_skips(out.skipped)})")
    return out


def format_skips(skipped: dict[str, int]) -> str:
    """``1 bad image, 2 empty labels`` (or ``none``): the reasons of ``skip_counts`` in words."""
    words = {"bad_images": ("bad image", "bad images"), "empty_text": ("empty label", "empty labels"),
             "skipped_unknown": ("line with unknown characters (unknown='skip_line')",
                                 "lines with unknown characters (unknown='skip_line')"),
             "xml_no_text": ("XML line without text", "XML lines without text"),
             "xml_no_geometry": ("XML line without geometry", "XML lines without geometry"),
             "xml_off_page": ("XML line off its page", "XML lines off their page"),
             "xml_page_image": ("XML line of a missing or bad page image", "XML lines of missing or bad page images")}
    parts = [f"{n} {words.get(key, (key, key))[n != 1]}" for key, n in skipped.items()]
    return ", ".join(parts) or "none"


def evaluate_model(model: Transcriber, datamodule: LineDataModule, split: str = "val", decoder: str = "greedy",
                   beam_width: int = BEAM_WIDTH, lines: SplitTranscription | None = None) -> dict[str, Any]:
    """One row of the table: corpus CER, WER, case-insensitive CER and model time per line; ``lines``
    scored (``unknown_only`` of them with labels of unknown characters only), ``skipped`` not scored (with
    ``skipped_by`` reason, see skip_counts)."""
    t = lines or transcribe_split(model, datamodule, split, decoder, beam_width)
    return {"model": model.name, "cell": model.cell, "parameters": model.num_parameters,
            "cer": cer(t.refs, t.hyps), "wer": wer(t.refs, t.hyps), "cer_nocase": cer(t.refs, t.hyps, ignore_case=True),
            "lines": len(t.refs), "unknown_only": t.unknown_only, "skipped": sum(t.skipped.values()),
            "skipped_by": dict(t.skipped), "ms_per_line": t.model_seconds * 1e3 / len(t.refs), "split": split,
            "data": datamodule.describe(split), "decoder": decoder}


def to_table(rows: list[dict[str, Any]]) -> str:
    """The rows of evaluate_model as a table; below it, the reasons of skipped lines when there are any."""
    header = ["model", "cell", "params", "decoder", "CER %", "WER %", "CER nocase %", "lines", "unknown-only",
              "skipped", "ms/line"]
    body = [[r["model"], r["cell"], f"{r['parameters']:,}", r["decoder"], f"{100 * r['cer']:.2f}",
             f"{100 * r['wer']:.2f}", f"{100 * r['cer_nocase']:.2f}", r["lines"], r.get("unknown_only", 0),
             r.get("skipped", 0), f"{r['ms_per_line']:.1f}"] for r in rows]
    notes = []
    for r in rows:
        note = f"{r['data']}: {r.get('skipped', 0)} lines not scored: {format_skips(r.get('skipped_by') or {})}"
        if r.get("skipped") and note not in notes:
            notes.append(note)
    if any(r.get("unknown_only") for r in rows):
        notes.append("unknown-only: scored lines whose label holds only characters outside the charset "
                     "(every character an error)")
    return "\n".join([format_table(header, body), *notes])
