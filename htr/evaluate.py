"""Corpus-level evaluation of one or more models on one split: the table behind `htr evaluate`."""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from htr.data.datamodule import FolderDataModule, LineDataModule
from htr.errors import DatasetError
from htr.inference import Transcriber
from htr.tables import format_table
from htr.text.metrics import cer, wer


def build_datamodule(data: str | Path, height: int, batch_size: int = 16) -> LineDataModule:
    """A TSV folder (images + <split>.tsv) or a YAML config with a `data:` section (as for `htr fit`)."""
    path = Path(data)
    overrides = {"height": height, "batch_size": batch_size, "augment": False, "num_workers": 0}
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
    """What a model read on one split: line ids, references, hypotheses, and the model's seconds."""

    ids: list[str]
    refs: list[str]
    hyps: list[str]
    model_seconds: float


def transcribe_split(model: Transcriber, datamodule: LineDataModule, split: str = "val", decoder: str = "greedy",
                     beam_width: int = 10) -> SplitTranscription:
    """Every line of a split through ``model`` in batches of the data module's batch size."""
    if split not in datamodule.datasets:  # only this split: a folder need not have the others
        made = datamodule.make_dataset(split)  # type: ignore[arg-type]
        if made is not None:
            datamodule.datasets[split] = made
    dataset = datamodule.datasets.get(split)
    if dataset is None or len(dataset) == 0:
        raise DatasetError(f"{datamodule.describe(split)}: split {split!r} is empty or missing")
    out = SplitTranscription([], [], [], 0.0)
    bs = datamodule.batch_size
    for start in tqdm(range(0, len(dataset), bs), desc=f"{model.name} on {split}", unit="batch", leave=False):
        items = [dataset[i] for i in range(start, min(start + bs, len(dataset)))]
        t = time.perf_counter()
        lines = model.run_batch([it["image"] for it in items], decoder, beam_width)
        out.model_seconds += time.perf_counter() - t
        out.ids += [it["id"] for it in items]
        out.refs += [it["text"] for it in items]
        out.hyps += [tr.text for tr in lines]
    return out


def evaluate_model(model: Transcriber, datamodule: LineDataModule, split: str = "val", decoder: str = "greedy",
                   beam_width: int = 10, lines: SplitTranscription | None = None) -> dict[str, Any]:
    """One row of the table: corpus CER, WER, case-insensitive CER and model time per line."""
    t = lines or transcribe_split(model, datamodule, split, decoder, beam_width)
    return {"model": model.name, "cell": model.cell, "parameters": model.num_parameters,
            "cer": cer(t.refs, t.hyps), "wer": wer(t.refs, t.hyps), "cer_nocase": cer(t.refs, t.hyps, ignore_case=True),
            "lines": len(t.refs), "ms_per_line": t.model_seconds * 1e3 / len(t.refs), "split": split,
            "data": datamodule.describe(split), "decoder": decoder}


def to_table(rows: list[dict[str, Any]]) -> str:
    header = ["model", "cell", "params", "decoder", "CER %", "WER %", "CER nocase %", "lines", "ms/line"]
    body = [[r["model"], r["cell"], f"{r['parameters']:,}", r["decoder"], f"{100 * r['cer']:.2f}",
             f"{100 * r['wer']:.2f}", f"{100 * r['cer_nocase']:.2f}", r["lines"], f"{r['ms_per_line']:.1f}"]
            for r in rows]
    return format_table(header, body)
