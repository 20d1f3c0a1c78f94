"""LightningDataModules, one per source, all sharing ``LineDataModule`` (select in YAML with
``class_path: htr.data.FolderDataModule`` etc.; every argument is a plain typed default).

``self.charset`` is set in ``__init__`` so that the model can be linked to it before ``setup``.
Real-data modules can mix synthetic lines into their training set with ``synthetic_ratio`` (synthetic
lines per real line; e.g. 1.0 doubles an epoch with as many synthetic lines, rendered with the
training fonts only). Validation and test sets are never augmented nor mixed.
"""
from __future__ import annotations

import logging
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from htr.data.augment import AugmentConfig, Augmenter
from htr.data.bucketing import WidthBucketedBatches
from htr.data.dataset import BadImageRule, LineDataset, LineSample, prepare_samples
from htr.data.folder import FolderSource, read_folder
from htr.data.iam import read_iam
from htr.data.images import PreprocessConfig, collate
from htr.data.mixing import MixSampler, WeightedMix
from htr.data.resumable import ResumableLoader, SeededItems, SeededSampler, train_worker_init_fn
from htr.data.rimes import read_rimes_xml, split_pages
from htr.data.synthetic import SyntheticConfig, SyntheticLineDataset
from htr.errors import DatasetError
from htr.tables import format_table
from htr.text.codec import DEFAULT_CHARSET, Codec, UnknownRule, format_counts, normalize_text

log = logging.getLogger(__name__)

Split = Literal["train", "val", "test"]
SYNTHETIC_POOL = 100_000  # rendered indices the synthetic share of a training mix draws from


class LineDataModule(pl.LightningDataModule):
    """Common part of the data modules: codec, preprocessing, augmentation, checks with counts, loaders.

    Subclasses implement ``read_split(split) -> list[LineSample] | None`` (None: no such split).
    After ``setup``, ``self.stats[split]`` holds the counts of ``prepare_samples`` for each split.

    Args:
        height: line height in px that every image is scaled to; 64 for CPU speed, 128 is the
            literature's norm.
        batch_size: lines per batch, for training and for evaluation.
        num_workers: DataLoader worker processes; 0 loads in the main process.
        augment: training augmentation on/off (validation and test are never augmented).
        augment_config: the augmentations' probabilities and strengths; null = the ``AugmentConfig``
            defaults.
        charset: the characters targets are encoded with, in order (the model's charset is linked to it).
        unknown: characters outside the charset: "drop" removes them from the label, "skip_line" leaves
            the line out, "error" stops at setup (all counted and reported).
        bad_images: unreadable or missing images: "skip" (counted, warned) or "error".
        check_images: decode every image once at setup (finds bad files before training).
        min_width: px at ``height``; narrower lines are padded with background (the CNN needs a few frames).
        max_width: px at ``height``; wider lines are squeezed or rejected, see ``too_wide``.
        too_wide: lines wider than ``max_width``: "downscale" squeezes them horizontally (with a warning),
            "error" rejects them.
        pad_to_multiple: a batch's width is rounded up to a multiple of this, px (the CNN's pooling).
        bucket_batches: training batches per width-sorted pool (htr.data.bucketing), so that a batch
            holds lines of similar width (less padding); 0 = random batches.
        synthetic_ratio: synthetic training lines per real training line, rendered with the training
            fonts and drawn anew each epoch (0 = none; 1.0 doubles an epoch).
        synthetic_seed: seed of the synthetic lines mixed in by ``synthetic_ratio``.
        predict_split: the split ``predict_dataloader`` serves ("train", "val" or "test"); null = test
            when configured, else val.
        extend_charset: append the training split's characters that ``charset`` lacks, most frequent first
            (read before training, so the model's output layer includes them).
    """

    def __init__(
        self,
        height: int = 64,
        batch_size: int = 16,
        num_workers: int = 0,
        augment: bool = True,
        augment_config: AugmentConfig | None = None,
        charset: str = DEFAULT_CHARSET,
        unknown: UnknownRule = "drop",
        bad_images: BadImageRule = "skip",
        check_images: bool = True,
        min_width: int = 32,
        max_width: int = 2048,
        too_wide: Literal["downscale", "error"] = "downscale",
        pad_to_multiple: int = 8,
        bucket_batches: int = 0,
        synthetic_ratio: float = 0.0,
        synthetic_seed: int = 0,
        predict_split: Split | None = None,
        extend_charset: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["charset"])  # the model records the charset it encodes with
        self._charset: str | None = None if extend_charset else charset
        self.base_charset = charset
        self.height = height
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.augment = augment
        self.augment_config = augment_config or AugmentConfig()
        self.unknown: UnknownRule = unknown
        self.bad_images: BadImageRule = bad_images
        self.check_images = check_images
        self.preprocess_config = PreprocessConfig(height, min_width, max_width, too_wide)
        self.pad_to_multiple = pad_to_multiple
        self.bucket_batches = bucket_batches
        self.synthetic_ratio = synthetic_ratio
        self.synthetic_seed = synthetic_seed
        self.predict_split = predict_split
        self.datasets: dict[str, Dataset] = {}
        self.stats: dict[str, dict[str, Any]] = {}
        self._codec: Codec | None = None

    @property
    def charset(self) -> str:
        """The characters targets are encoded with; with ``extend_charset`` the training split's new
        characters follow ``charset``, most frequent first (read on first use, before ``setup``)."""
        if self._charset is None:
            samples = self.read_split("train") or []
            counts = Counter(ch for s in samples for ch in normalize_text(s.text) if ch not in self.base_charset)
            self._charset = self.base_charset + "".join(
                ch for ch, _ in sorted(counts.items(), key=lambda c: (-c[1], c[0])))
            if counts:
                log.info("%s: charset extended by %d characters: %s", self.describe("train"), len(counts),
                         format_counts(counts))
        return self._charset

    @charset.setter
    def charset(self, value: str) -> None:
        self._charset = value

    @property
    def codec(self) -> Codec:
        if self._codec is None or self._codec.charset != self.charset:
            self._codec = Codec(self.charset)
        return self._codec

    # -- what subclasses provide ------------------------------------------------------------------
    def read_split(self, split: Split) -> list[LineSample] | None:
        raise NotImplementedError

    def describe(self, split: Split) -> str:
        """Where a split comes from, for messages."""
        return f"{type(self).__name__}[{split}]"

    # -- building ---------------------------------------------------------------------------------
    def make_dataset(self, split: Split) -> Dataset | None:
        samples = self.read_split(split)
        if samples is None:
            return None
        ds = self.checked_dataset(samples, split, self.describe(split))
        return self.with_synthetic([ds], [1.0], [self.describe(split)]) if split == "train" else ds

    def checked_dataset(self, samples: list[LineSample], split: Split, source: str) -> LineDataset:
        """The usable samples of one source as a LineDataset (augmented for training). Its counts are
        ``self.stats[split]["sources"][source]``; ``self.stats[split]`` sums them over the split's sources."""
        kept, stats = prepare_samples(samples, self.codec, self.unknown, self.bad_images, source, self.check_images)
        totals = self.stats.setdefault(split, {"sources": {}})
        totals["sources"][source] = stats
        for key, value in stats.items():  # the split's counts: the sum over its sources
            if isinstance(value, int):
                totals[key] = totals.get(key, 0) + value
            elif isinstance(value, dict):  # unknown characters with their counts, bad images with reasons
                merged = totals.setdefault(key, {})
                for k, v in value.items():
                    merged[k] = merged.get(k, 0) + v if isinstance(v, int) else v
        if not kept:
            raise DatasetError(f"{source}: no usable lines out of {len(samples)} "
                               f"(see the warnings above: {stats['bad_images'] and 'bad images' or 'labels'})")
        augmenter = self._augmenter() if split == "train" else None
        return LineDataset(kept, self.codec, self.preprocess_config, augmenter, self.bad_images, stats)

    def with_synthetic(self, parts: list[Dataset], weights: list[float], names: list[str]) -> Dataset:
        """The training mix: ``parts`` with their weights, plus ``synthetic_ratio`` synthetic lines per
        real draw, a fresh selection each epoch from a large pool of rendered indices."""
        real = sum(round(w * len(p)) for p, w in zip(parts, weights))  # type: ignore[arg-type]
        if self.synthetic_ratio > 0:
            draws = max(1, round(self.synthetic_ratio * real))
            pool = max(draws, SYNTHETIC_POOL)
            synth = SyntheticLineDataset("train", self.codec,
                                         SyntheticConfig(seed=self.synthetic_seed, train_size=pool),
                                         self.preprocess_config, self._augmenter())
            parts, weights, names = [*parts, synth], [*weights, draws / pool], [*names, "synthetic"]
            log.info("training mix: %d real + %d synthetic lines per epoch", real, draws)
        if len(parts) == 1 and weights[0] == 1.0:
            return parts[0]
        return WeightedMix(parts, weights, names)

    def _augmenter(self) -> Augmenter | None:
        """Training augmentation seeded from torch's RNG, so ``seed_everything`` makes runs repeatable
        with ``num_workers=0`` (workers reseed their copy in ``worker_init_fn``)."""
        if not self.augment:
            return None
        return Augmenter(self.augment_config, seed=int(torch.initial_seed() % 2**32))

    def setup(self, stage: str | None = None) -> None:
        wanted: list[Split] = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"],
                               "predict": [self._predict_split()]}.get(stage or "", ["train", "val", "test"])
        for split in wanted:
            if split not in self.datasets:
                ds = self.make_dataset(split)
                if ds is not None:
                    self.datasets[split] = ds

    def _predict_split(self) -> Split:
        return self.predict_split or ("test" if self.read_split_available("test") else "val")

    def read_split_available(self, split: Split) -> bool:
        """Whether a split is configured (without reading it)."""
        return True

    # -- loaders ----------------------------------------------------------------------------------
    def _loader(self, split: Split, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            self.setup({"train": "fit", "val": "validate", "test": "test"}[split])
        if split not in self.datasets:
            raise DatasetError(f"{type(self).__name__} has no {split} split configured")
        batch = partial(collate, pad_to_multiple=self.pad_to_multiple)
        common = dict(num_workers=self.num_workers, worker_init_fn=train_worker_init_fn,
                      persistent_workers=self.num_workers > 0)
        dataset = self.datasets[split]
        if split == "train":
            return self._train_loader(dataset, batch, common)
        # its own generator: starting its workers does not move the global RNG (dropout), whose state a
        # resumed run takes up from the checkpoint
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, collate_fn=batch,
                          generator=torch.Generator(), **common)

    def _train_loader(self, dataset: Dataset, batch: Any, common: dict[str, Any]) -> ResumableLoader:
        """The training stream: seeded by (seed, epoch) and resumable from a checkpoint mid-epoch
        (htr.data.resumable); width-bucketed batches, a weighted mix's draw or a shuffled set."""
        seed = int(torch.initial_seed() % 2**31)
        trainer = self.trainer  # set when a Trainer runs this module: start at its epoch
        start = dict(start_epoch=trainer.current_epoch if trainer is not None else 0,
                     generator=torch.Generator().manual_seed(seed))
        if self.bucket_batches > 0:
            bucketed = WidthBucketedBatches(dataset, self.batch_size, batch, self.bucket_batches, seed=seed)
            # A worker fills a whole pool before its first batch: let it run a pool ahead.
            prefetch = {"prefetch_factor": 2 * self.bucket_batches} if self.num_workers > 0 else {}
            return ResumableLoader(bucketed, batch_size=None, **common, **prefetch, **start)
        sampler = (MixSampler(dataset, seed, with_seeds=True) if isinstance(dataset, WeightedMix)
                   else SeededSampler(dataset, seed, with_seeds=True))
        return ResumableLoader(SeededItems(dataset), batch_size=self.batch_size, sampler=sampler, collate_fn=batch,
                               **common, **start)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self._predict_split(), shuffle=False)


class SyntheticDataModule(LineDataModule):
    """Rendered lines only (htr.data.synthetic): training fonts for train, held-out fonts for val/test.

    Args:
        train_size: lines per training epoch (the same rendered lines every epoch).
        val_size: validation lines, rendered with the ``val_fonts``.
        test_size: test lines, with the ``val_fonts`` and another seed than validation; 0 = no test split.
        seed: seed of the rendering (texts, fonts, ink, paper); the same seed gives the same lines.
        val_fonts: font families held out of training, for validation and test (htr.data.synthetic).
        system_fonts: add the installed handwriting fonts (``SYSTEM_HANDWRITING_FONTS``) to the training
            fonts; off by default, so that a run does not depend on the machine's fonts.
        **kwargs: the ``LineDataModule`` arguments (height, batch_size, augment, charset, ...) apply
            too.
    """

    def __init__(self, train_size: int = 20_000, val_size: int = 1_000, test_size: int = 0, seed: int = 0,
                 val_fonts: tuple[str, ...] = ("indie-flower", "satisfy"), system_fonts: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.synthetic_config = SyntheticConfig(seed=seed, train_size=train_size, val_size=val_size,
                                                val_fonts=tuple(val_fonts), system_fonts=system_fonts)
        self.test_size = test_size

    def read_split_available(self, split: Split) -> bool:
        return split != "test" or self.test_size > 0

    def make_dataset(self, split: Split) -> Dataset | None:
        cfg = self.synthetic_config
        if split == "test":
            if not self.test_size:
                return None
            # held-out fonts, another seed: lines the val set never showed
            cfg = SyntheticConfig(**{**cfg.__dict__, "seed": cfg.seed + 1, "val_size": self.test_size})
        augmenter = self._augmenter() if split == "train" else None
        ds = SyntheticLineDataset("train" if split == "train" else "val", self.codec, cfg, self.preprocess_config,
                                  augmenter)
        self.stats[split] = ds.stats
        log.info("synthetic %s: %d lines, fonts %s", split, len(ds), ", ".join(ds.families))
        return ds


class FolderDataModule(LineDataModule):
    """``<root>/<split>.tsv`` + images (htr.data.folder), e.g. the poilus set.

    Args:
        root: the folder holding ``<split>.tsv`` files (``<image file name>\\t<text>`` per line) and the
            images (next to them or in ``images/``).
        train_split: name of the training TSV, without ``.tsv``.
        val_split: name of the validation TSV, without ``.tsv``.
        test_split: name of the test TSV, without ``.tsv``; null = no test split.
        **kwargs: the ``LineDataModule`` arguments (height, batch_size, augment, charset, ...) apply
            too.
    """

    def __init__(self, root: str = "data/poilus", train_split: str = "train", val_split: str = "val",
                 test_split: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        self.split_names: dict[str, str | None] = {"train": train_split, "val": val_split, "test": test_split}

    def describe(self, split: Split) -> str:
        return str(self.root / f"{self.split_names[split]}.tsv")

    def read_split_available(self, split: Split) -> bool:
        return self.split_names[split] is not None

    def read_split(self, split: Split) -> list[LineSample] | None:
        name = self.split_names[split]
        return read_folder(self.root, name) if name else None


class FolderMixDataModule(LineDataModule):
    """Several TSV folders in one training run, each a ``FolderSource`` with its weight and text rules.

    See htr.data.folder and htr.data.mixing. Validation and test come from the sources that name a
    ``val_split`` / ``test_split``: the first one that does is the split used for model selection.
    At setup every source's lines, characters and draws per epoch are logged.

    Args:
        sources: the folders, each a ``FolderSource`` (root, weight, train_split, val_split, drop_lines,
            replace, name); at least one.
        test_split: name of the test TSV, without ``.tsv``, taken from the first source that has it;
            null = no test split.
        **kwargs: the ``LineDataModule`` arguments (height, batch_size, augment, charset, ...) apply
            too.
    """

    def __init__(self, sources: list[FolderSource], test_split: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sources = [s if isinstance(s, FolderSource) else FolderSource(**s) for s in sources]
        if not self.sources:
            raise DatasetError("FolderMixDataModule: no sources; expected a list of {root: <folder>, weight: ...}")
        self.test_split = test_split
        self.rule_dropped: dict[str, int] = {}
        self._read: dict[tuple[str, str], tuple[list[LineSample], int]] = {}

    def _read_source(self, source: FolderSource, split: str) -> tuple[list[LineSample], int]:
        """``source.read(split)``, once per module (the charset and the training mix both need it)."""
        key = (source.root, split)
        if key not in self._read:
            self._read[key] = source.read(split)
        return self._read[key]

    def _train_sources(self) -> list[FolderSource]:
        return [s for s in self.sources if s.train_split and s.weight > 0]

    def _source_for(self, split: Split) -> tuple[FolderSource, str] | None:
        for source in self.sources:
            name = {"train": None, "val": source.val_split, "test": self.test_split}[split]
            if name is not None and (split != "test" or (Path(source.root) / f"{name}.tsv").is_file()):
                return source, name
        return None

    def describe(self, split: Split) -> str:
        if split == "train":
            return "+".join(s.label for s in self.sources if s.train_split) + " train"
        found = self._source_for(split)
        return str(Path(found[0].root) / f"{found[1]}.tsv") if found else f"{type(self).__name__}[{split}]"

    def read_split_available(self, split: Split) -> bool:
        return split == "train" or self._source_for(split) is not None

    def read_split(self, split: Split) -> list[LineSample] | None:
        if split == "train":
            return [s for source in self._train_sources() for s in self._read_source(source, source.train_split)[0]]
        found = self._source_for(split)
        return self._read_source(*found)[0] if found else None

    def make_dataset(self, split: Split) -> Dataset | None:
        if split != "train":
            return super().make_dataset(split)
        sources = self._train_sources()
        parts, rows = [], []
        for source in sources:
            samples, dropped = self._read_source(source, source.train_split)  # type: ignore[arg-type]
            ds = self.checked_dataset(samples, "train", source.label)
            chars = Counter(ch for s in ds.samples for ch in s.text)
            parts.append(ds)
            rows.append((source.label, len(samples) + dropped, dropped, len(ds), sum(chars.values()), len(chars),
                         source.weight, round(source.weight * len(ds))))
            log.info("%s characters: %s", source.label, format_counts(chars))
        self.rule_dropped = {r[0]: r[2] for r in rows}
        log.info("training sets:\n%s", format_table(
            ["set", "lines", "dropped by rules", "kept", "characters", "distinct", "weight", "draws/epoch"], rows))
        return self.with_synthetic(parts, [s.weight for s in sources], [s.label for s in sources])


class IAMDataModule(LineDataModule):
    """IAM lines (htr.data.iam), the splits given by files of line or form ids.

    The RWTH split (6,482 / 976 / 2,915 lines) is the usual one: report which one you used.

    Args:
        root: the IAM folder (``ascii/lines.txt``, ``lines/``; see data/README.md).
        train_split: file of training line or form ids, relative to ``root`` unless absolute; null = none.
        val_split: file of validation ids, as ``train_split``; null = none.
        test_split: file of test ids, as ``train_split``; null = none.
        drop_err: leave out the lines whose word segmentation status is ``err`` (their transcriptions
            are valid, so they are kept by default).
        rejoin_tokens: undo the ASCII ground truth's tokenisation (``word ,`` -> ``word,``, ``do n't`` ->
            ``don't``; rules in htr.data.iam) so labels read like the handwriting; published numbers
            differ on this, report it.
        **kwargs: the ``LineDataModule`` arguments (height, batch_size, augment, charset, ...) apply
            too.
    """

    def __init__(self, root: str = "data/iam", train_split: str | None = "splits/train.txt",
                 val_split: str | None = "splits/val.txt", test_split: str | None = "splits/test.txt",
                 drop_err: bool = False, rejoin_tokens: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        self.split_files = {"train": train_split, "val": val_split, "test": test_split}
        self.drop_err = drop_err
        self.rejoin_tokens = rejoin_tokens

    def _split_path(self, split: Split) -> Path | None:
        f = self.split_files[split]
        return None if f is None else (Path(f) if Path(f).is_absolute() else self.root / f)

    def describe(self, split: Split) -> str:
        return f"IAM {split} ({self._split_path(split)})"

    def read_split_available(self, split: Split) -> bool:
        return self.split_files[split] is not None

    def read_split(self, split: Split) -> list[LineSample] | None:
        path = self._split_path(split)
        return None if path is None else read_iam(self.root, path, self.drop_err, self.rejoin_tokens)


class RIMESDataModule(LineDataModule):
    """RIMES 2011 lines (htr.data.rimes): train and val from ``train_xml``, test from ``test_xml`` (778 lines).

    Validation is ``val_fraction`` of the training pages, chosen by ``random.Random(split_seed)`` over the
    sorted page names.

    Args:
        root: the RIMES folder; the XML files and the image paths they hold are relative to it.
        train_xml: the training pages' XML, relative to ``root``; validation pages are carved out of it.
        test_xml: the test pages' XML, relative to ``root``; null = no test split.
        val_fraction: share of the training pages held out for validation, 0 <= fraction < 1 (whole pages,
            so lines of one page never straddle the split).
        split_seed: seed of the shuffle that picks the validation pages.
        **kwargs: the ``LineDataModule`` arguments (height, batch_size, augment, charset, ...) apply
            too.
    """

    def __init__(self, root: str = "data/rimes", train_xml: str = "training_2011.xml",
                 test_xml: str | None = "eval_2011_annotated.xml", val_fraction: float = 0.1, split_seed: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        self.train_xml = train_xml
        self.test_xml = test_xml
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self._train_pages: dict[str, list[LineSample]] | None = None

    def describe(self, split: Split) -> str:
        xml = self.test_xml if split == "test" else self.train_xml
        return f"RIMES {split} ({self.root / str(xml)})"

    def read_split_available(self, split: Split) -> bool:
        return split != "test" or self.test_xml is not None

    def read_split(self, split: Split) -> list[LineSample] | None:
        if split == "test":
            if self.test_xml is None:
                return None
            pages = read_rimes_xml(self.root / self.test_xml, self.root)
            return [s for lines in pages.values() for s in lines]
        if self._train_pages is None:
            self._train_pages = read_rimes_xml(self.root / self.train_xml, self.root)
        train, val = split_pages(list(self._train_pages), self.val_fraction, self.split_seed)
        return [s for p in (train if split == "train" else val) for s in self._train_pages[p]]


from htr.data import xml_lines  # noqa: E402 - appended with the class that uses it
from htr.errors import ImageError  # noqa: E402


class XMLDataModule(LineDataModule):
    """ALTO (v2 to v4) and PAGE XML (2013, 2019) ground truth with its page images (htr.data.xml_lines).

    Every line with text is cut out by its polygon (pixels outside it set to the paper level), or its
    box when it has none, and turned upright when its baseline is vertical. Each page image is decoded
    once, when its split is first read; the crops are kept as PNG bytes. Lines without text or geometry
    are left out and counted in ``self.stats[split]["xml"]`` (with the pages read and how lines were cut).

    Args:
        train: training pages: folders (their .xml files, recursively), XML files or globs, or a list
            of them; the image of each page is found from the XML (relative to it, or in ``image_dirs``).
        val: validation pages, as ``train``; null = ``val_fraction`` of the training documents.
        test: test pages, as ``train``; null = no test split.
        val_fraction: without ``val``, the share of training documents held out for validation
            (``xml_lines.split_documents``: the first ``max(1, round(val_fraction * n))`` of the shuffled
            sorted document keys; none with a single document).
        split_seed: seed of that shuffle (``random.Random(split_seed)``).
        split_by: what a document is for that split: "file" (one XML file) or "folder" (the folder
            holding it: all pages of a manuscript stay on the same side).
        padding: px added on each side of a line's polygon (or box) when it is cut out, paper-filled with
            a polygon.
        image_dirs: more folders to look for page images in, by base name.
        missing_images: a page image not found: "error" (names the XML and the image) or "skip" (left
            out, counted and warned).
        **kwargs: the ``LineDataModule`` arguments (height, batch_size, augment, charset, ...) apply
            too.
    """

    def __init__(self, train: str | list[str] = "data/xml", val: str | list[str] | None = None,
                 test: str | list[str] | None = None, val_fraction: float = 0.1, split_seed: int = 0,
                 split_by: Literal["file", "folder"] = "file", padding: int = 4,
                 image_dirs: list[str] | None = None, missing_images: BadImageRule = "error",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if split_by not in ("file", "folder"):
            raise ValueError(f"split_by={split_by!r}; expected 'file' or 'folder'")
        if missing_images not in ("error", "skip"):
            raise ValueError(f"missing_images={missing_images!r}; expected 'error' or 'skip'")
        self.sources: dict[str, str | list[str] | None] = {"train": train, "val": val, "test": test}
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.split_by = split_by
        self.padding = padding
        self.image_dirs = list(image_dirs or [])
        self.missing_images = missing_images
        self.xml_stats: dict[str, dict[str, int]] = {}
        self._pages: dict[Path, tuple[list[LineSample], Counter]] = {}

    def _group(self, xml: Path, base: Path) -> str:
        key = xml_lines.document_key(xml, base)
        if self.split_by == "file":
            return key
        parent = str(Path(key).parent)
        return base.name if parent == "." else parent

    def _files(self, split: Split) -> list[tuple[Path, Path]] | None:
        if split == "test" or (split == "val" and self.sources["val"] is not None):
            source = self.sources[split]
            return None if source is None else xml_lines.find_xml_files(source)
        files = xml_lines.find_xml_files(self.sources["train"])  # type: ignore[arg-type]
        if self.sources["val"] is not None:  # validation given: all of train is training
            return files
        train, val = xml_lines.split_documents([self._group(x, b) for x, b in files], self.val_fraction,
                                               self.split_seed)
        keep = set(train if split == "train" else val)
        chosen = [(x, b) for x, b in files if self._group(x, b) in keep]
        return chosen if chosen or split == "train" else None

    def describe(self, split: Split) -> str:
        source = self.sources[split]
        if source is None and split != "test":
            return f"ALTO/PAGE {split} ({self.sources['train']}, split by {self.split_by}, seed {self.split_seed})"
        return f"ALTO/PAGE {split} ({source})"

    def read_split_available(self, split: Split) -> bool:
        return self.sources[split] is not None or (split == "val" and self.val_fraction > 0) or split == "train"

    def _page_lines(self, xml: Path, base: Path) -> tuple[list[LineSample], Counter]:
        if xml not in self._pages:
            layout = xml_lines.parse_layout(xml)
            try:
                image = xml_lines.find_image(layout, xml, self.image_dirs)
            except DatasetError as e:
                if self.missing_images == "error":
                    raise
                log.warning("%s", e)
                self._pages[xml] = ([], Counter(pages=1, missing_image=1, lines=len(layout.lines)))
                return self._pages[xml]
            try:
                samples, counts = xml_lines.extract_lines(layout, image, xml_lines.document_key(xml, base),
                                                          self.padding)
            except ImageError as e:
                if self.bad_images == "error":
                    raise
                log.warning("%s: page image skipped: %s", xml, e)
                samples, counts = [], Counter(bad_page_image=1, lines=len(layout.lines))
            counts["pages"] = 1
            self._pages[xml] = (samples, counts)
        return self._pages[xml]

    def read_split(self, split: Split) -> list[LineSample] | None:
        files = self._files(split)
        if files is None:
            return None
        samples: list[LineSample] = []
        total: Counter = Counter()
        for xml, base in files:
            got, counts = self._page_lines(xml, base)
            samples += got
            total.update(counts)
        self.xml_stats[split] = dict(total)
        left = {k: total[k] for k in ("no_text", "no_geometry", "off_page", "missing_image", "bad_page_image")
                if total[k]}
        log.info("%s: %d pages, %d lines, %d kept%s", self.describe(split), total["pages"], total["lines"],
                 len(samples),
                 "; left out: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in left.items()) if left else "")
        return samples

    def make_dataset(self, split: Split) -> Dataset | None:
        ds = super().make_dataset(split)
        if ds is not None and split in self.xml_stats:
            self.stats.setdefault(split, {})["xml"] = self.xml_stats[split]
        return ds
