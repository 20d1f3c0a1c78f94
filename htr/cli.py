"""The `htr` command.

    htr fit|validate|test|predict --config configs/<dataset>.yaml [--model.recognizer.cell gru|lstm]
                                  (LightningCLI; any option can be overridden)
    htr evaluate --ckpt A.ckpt [--ckpt B.ckpt ...] --data <config.yaml | TSV folder> [--integer] [--json]
    htr transcribe IMAGE... (--model relu_add | --ckpt X) [--integer] [--segment] [--format text|json|alto|page]
                   [--out DIR] [--on-error skip|stop]         (a bad file: one error line, exit status 1)
    htr export CKPT|MODEL OUT.safetensors [--lm-text train.tsv] [--lm-data config.yaml]  (MODEL: file or shipped name)
    htr bench cells|step|malloc|adding|fhe|integer|load|app|decode ...
    htr app [--model NAME ...] [--ckpt PATH ...] [--integer] [--host 127.0.0.1] [--port 7860] [--share]

Errors (a bad file, option, model or dataset) print one line, `htr: error: ...`, and exit with status 1;
add --debug (or set HTR_DEBUG=1) for the traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from htr.text import BEAM_WIDTH, INSERTION_BONUS, LM_WEIGHT

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


# ---- Lightning ----------------------------------------------------------------------------------
def run_lightning(argv: list[str]) -> None:
    # pytorch-lightning's own pytree helper builds torch's deprecated LeafSpec on every step's outputs:
    # a FutureWarning about Lightning's code that a user of htr can do nothing about.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning)
    import logging

    # htr's own messages (lines kept, sets and characters of a training mix, initialisation) on stderr.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger("htr").addHandler(handler)
    logging.getLogger("htr").setLevel(logging.INFO)
    from jsonargparse import Namespace
    from pytorch_lightning.callbacks import BasePredictionWriter, LearningRateMonitor, ModelCheckpoint
    from pytorch_lightning.cli import LightningCLI
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from htr.checkpointing import (
        InterruptCheckpoint,
        install_handlers,
        read_checkpoint,
        restore_handlers,
        stop_before_training,
        use_atomic_checkpoints,
    )
    from htr.data.datamodule import LineDataModule
    from htr.train import HTRModule, ValidateAtLastStep

    class TSVPredictionWriter(BasePredictionWriter):
        """Writes `<id>\\t<text>\\t<confidence>` for every predicted line."""

        def __init__(self, path: str) -> None:
            super().__init__(write_interval="epoch")
            self.path = Path(path)

        def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("w", encoding="utf-8") as f:
                for batch in predictions:
                    for row in batch:
                        f.write(f"{row['id']}\t{row['text']}\t{row['confidence']:.4f}\n")
            print(f"wrote {sum(len(b) for b in predictions)} transcriptions to {self.path}")

    class HTRCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            # The network's output classes follow the data's character set.
            parser.link_arguments("data", "model.charset", compute_fn=lambda dm: dm.charset, apply_on="instantiate")
            parser.add_argument("--predictions", default="predictions.tsv", help="TSV written by `htr predict`")

        def _parse_ckpt_path(self) -> None:
            # LightningCLI reads --ckpt_path's hyperparameters first: an empty or truncated file is a
            # CheckpointError naming it, not torch's EOFError.
            subcommand = self.config.get("subcommand")
            ckpt = self.config[subcommand].get("ckpt_path") if subcommand else None
            if ckpt and (Path(ckpt).is_file() or Path(ckpt).suffix == ".ckpt"):
                read_checkpoint(ckpt, mmap=True)
            super()._parse_ckpt_path()

        def before_instantiate_classes(self) -> None:
            # CSV + TensorBoard logs, checkpoints and config.yaml under one <default_root_dir or
            # runs>/<cell>/version_N (the same N for all), unless other loggers are configured; `fit
            # --ckpt_path` on a checkpoint of that layout appends to its folder (htr.checkpointing).
            config = self.config[self.subcommand]
            _plan_loggers(config, self.subcommand, Namespace)

        def instantiate_trainer(self, **kwargs):
            trainer = super().instantiate_trainer(**kwargs)
            use_atomic_checkpoints(trainer)  # temporary file + fsync + rename
            return trainer

        def before_fit(self) -> None:
            self.trainer.callbacks.append(interrupt)  # a Checkpoint: Lightning runs it after the others

        def before_predict(self) -> None:
            self.trainer.callbacks.append(TSVPredictionWriter(self.config["predict"]["predictions"]))

    # From the shell the arguments are sys.argv's: let LightningCLI read them itself (passing both
    # makes it warn that they may differ).
    args = None if argv == sys.argv[1:] else argv
    # SIGTERM / SIGINT: before training, stop at once (nothing to save); once it runs, InterruptCheckpoint
    # finishes the step, writes last.ckpt and ends the run, and htr fit exits 143 / 130.
    interrupt = InterruptCheckpoint(command=["htr", *argv])
    fitting = bool(argv) and argv[0] == "fit"
    previous = install_handlers(stop_before_training) if fitting else {}
    try:
        HTRCLI(HTRModule, LineDataModule, subclass_mode_data=True, args=args, seed_everything_default=0,
               save_config_kwargs={"overwrite": True},
               trainer_defaults={
                   # best-*.ckpt: the lowest validation CER; last.ckpt: the state at the latest validation
                   # or interrupt (ModelCheckpoint's own save_last writes only when the best improves).
                   "callbacks": [ModelCheckpoint(monitor="val/cer", mode="min", save_top_k=1,
                                                 filename="best-{epoch:02d}-{step}"),
                                 ModelCheckpoint(filename="last", enable_version_counter=False),
                                 LearningRateMonitor(logging_interval="step"), ValidateAtLastStep()]})
    except SIGTERMException:  # Lightning's deferred stop, after InterruptCheckpoint's checkpoint
        raise interrupt.exit_error() from None
    finally:
        restore_handlers(previous)
    if interrupt.signum is not None:  # the signal came during the run's last step: it is complete
        raise interrupt.exit_error()


def _run_name(model_config) -> str:
    """A run's folder name: its cell, also when the network comes from ``init_from``."""
    if model_config.get("recognizer"):
        return model_config["recognizer"]["cell"]
    if model_config.get("init_from"):
        from htr.inference import load_model

        return load_model(model_config["init_from"]).cell
    return "htr"


def _plan_loggers(config, subcommand: str, Namespace) -> None:
    """Point the default CSV + TensorBoard loggers (or a saved config.yaml's) at the run's folder."""
    import logging
    import re

    from htr.checkpointing import plan_run

    logger = config["trainer"].get("logger")
    ours = ("htr.checkpointing.RunCSVLogger", "htr.checkpointing.RunTensorBoardLogger")
    before = ["pytorch_lightning.loggers.CSVLogger", "pytorch_lightning.loggers.TensorBoardLogger"]  # older htr
    saved = isinstance(logger, list) and [getattr(lg, "class_path", None) for lg in logger] in (list(ours), before)
    if logger not in (None, True) and not saved:
        return
    save_dir = config["trainer"].get("default_root_dir") or "runs"
    name = _run_name(config["model"])
    ckpt = config.get("ckpt_path")
    resume = ckpt if subcommand == "fit" and ckpt and Path(str(ckpt)).suffix == ".ckpt" else None
    plan = plan_run(save_dir, name, resume)
    if plan.resume_step is not None:  # the checkpoint folder holds the run's checkpoints: as expected
        warnings.filterwarnings("ignore", message=rf"Checkpoint directory {re.escape(str(plan.folder))}.* exists")
        logging.getLogger("htr").info("resuming %s at step %d: logs and checkpoints go on in %s", ckpt,
                                      plan.resume_step, plan.folder)
    config["trainer"]["logger"] = [
        Namespace(class_path=cls, init_args=Namespace(save_dir=plan.save_dir, name=plan.name, version=plan.version,
                                                      purge_step=plan.resume_step))
        for cls in ours]


# ---- evaluate / transcribe / export ---------------------------------------------------------------
def _models(args: argparse.Namespace) -> list:
    from htr.inference import load_models

    models = list(load_models([*(args.model or []), *(args.ckpt or [])]).values())
    if getattr(args, "integer", False):  # relu_add decoders in integers; CheckpointError for gru / lstm
        models = [model.with_integer_decoder() for model in models]
    for model in models:  # beam+lm scoring overrides for this command; the model file keeps its own
        for key in ("lm_weight", "insertion_bonus"):
            if getattr(args, key, None) is not None:
                model.decoding[key] = getattr(args, key)
    return models


def cmd_evaluate(args: argparse.Namespace) -> None:
    from htr.evaluate import build_datamodule, evaluate_model, to_table, transcribe_split
    from htr.report import error_report, format_report, read_groups, save_report

    rows, reports = [], []
    decoders = args.decoders or [args.decoder]
    groups = None  # CER per writer or document when the data folder says who wrote each line
    if args.report or args.report_out:
        groups_file = next((Path(args.data) / f for f in ("writers.tsv", "documents.tsv")
                            if (Path(args.data) / f).is_file()), None)
        groups = read_groups(groups_file) if groups_file else None
    data: dict[int, object] = {}  # one data module per line height: models of one height share its lines
    for model in _models(args):
        height = model.net.config.height
        if height not in data:
            data[height] = build_datamodule(args.data, height, args.batch_size)
        dm = data[height]
        for decoder in decoders:
            lines = transcribe_split(model, dm, args.split, decoder, args.beam_width)
            rows.append(evaluate_model(model, dm, args.split, decoder, args.beam_width, lines))
            if args.report or args.report_out:
                reports.append({"model": model.name, "decoder": decoder,
                                **error_report(lines.refs, lines.hyps, lines.ids, groups)})
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(f"{rows[0]['data']}, split {args.split}, beam width {args.beam_width}, batch {args.batch_size}, "
              f"CPU ms per line (model + decoding)")
        print(to_table(rows))
    if args.report:
        for report in reports:
            print(f"\n## {report['model']}, {report['decoder']} decoding\n{format_report(report)}", file=sys.stderr
                  if args.json else sys.stdout)
    for report in reports if args.report_out else []:
        out = Path(args.report_out)
        if len(reports) > 1:  # one file per model and decoder
            out = out.with_name(f"{out.stem}.{report['model']}.{report['decoder']}{out.suffix}")
        save_report(report, out)
        print(f"wrote the error report to {out}", file=sys.stderr)


class _Failures:
    """The bad files of one `htr transcribe`: each reported once on stderr (``htr: error: <file>: <reason>``,
    one line, no traceback), counted for the exit status; ``--on-error stop`` ends the command at the first."""

    def __init__(self, stop: bool) -> None:
        self.stop = stop
        self.files: dict[str, str] = {}

    def add(self, name: str, message: str) -> None:
        if name not in self.files:
            self.files[name] = message
            line = " ".join(message.split())  # one line, whatever the message holds
            from tqdm import tqdm  # its write keeps the line apart from a progress bar (pages mode)

            tqdm.write(f"htr: error: {line if line.startswith(name) else f'{name}: {line}'}", file=sys.stderr)
        if self.stop:
            raise SystemExit(1)

    def exit_status(self, total: int) -> None:
        if self.files:
            print(f"htr: {len(self.files)} of {total} image{'s' if total > 1 else ''} failed "
                  f"(one error line each above); the others were transcribed", file=sys.stderr)
            raise SystemExit(1)


def cmd_transcribe(args: argparse.Namespace) -> None:
    """Every readable image is transcribed; each bad one (missing, empty, corrupt, not an image, ...) gets
    one error line on stderr and a non-zero exit status at the end (``--on-error stop``: at once)."""
    from htr.inference import iter_images

    failures = _Failures(stop=args.on_error == "stop")
    missing: list[str] = []
    paths = iter_images(args.images, missing=missing)
    for pattern in missing:
        failures.add(pattern, f"{pattern}: no such file, folder or glob match")
    total = len(paths) + len(missing)
    if args.segment or args.format:
        _transcribe_pages(args, paths, failures)
        failures.exit_status(total)
        return
    chunk = max(1, args.batch_size) * 8  # read and recognised a chunk at a time: bounded memory for big folders
    for model in _models(args):
        rows = []
        try:
            for start in range(0, len(paths), chunk):
                results = model.transcribe(paths[start:start + chunk], decoder=args.decoder,
                                           beam_width=args.beam_width, batch_size=args.batch_size, on_error="skip")
                for r in results:
                    if r.error:
                        if args.json:
                            rows.append({"model": model.name, "image": r.id, "error": r.error})
                        failures.add(r.id, r.error)
                        continue
                    for note in r.warnings:
                        print(f"htr: warning: {note}", file=sys.stderr)
                    if args.json:
                        rows.append({"model": model.name, "image": r.id, "text": r.text, "confidence": r.confidence,
                                     "ms": r.timings, "warnings": r.warnings})
                    else:
                        print(f"{model.name}\t{r.id}\t{r.text}\t{r.confidence:.3f}\t{r.total_ms:.1f} ms", flush=True)
        finally:  # with --on-error stop, the lines read before the bad file are still printed
            if args.json:
                print(json.dumps(rows, ensure_ascii=False, indent=1))
    failures.exit_status(total)


def _transcribe_pages(args: argparse.Namespace, paths: list[Path], failures: "_Failures | None" = None) -> None:
    """Whole pages (--segment) or images as one line each, written as text, JSON, ALTO or PAGE XML."""
    import os

    from tqdm import tqdm

    from htr.errors import HTRError
    from htr.writers import SUFFIXES, render

    failures = failures or _Failures(stop=True)
    fmt = args.format or ("json" if args.json else "text")
    models = _models(args)
    several = len(paths) > 1 or len(models) > 1
    out = Path(args.out) if args.out else None
    if out is None and several and fmt in ("alto", "page"):
        raise SystemExit(f"--format {fmt} of {len(paths)} images and {len(models)} models: one XML file per "
                         f"page and model needs --out FOLDER")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    pages: list[dict] = []
    written = []
    for model in models:
        for path in tqdm(paths, desc=model.name, unit="page", disable=len(paths) < 2, file=sys.stderr):
            target = None
            if out is not None:
                target = out / f"{path.stem}{'.' + model.name if len(models) > 1 else ''}{SUFFIXES[fmt]}"
            # the XML names its image relative to where it is written, so that it can be read back
            name = os.path.relpath(path, target.parent) if target is not None else str(path)
            if str(path) in failures.files:  # already reported for the first model
                continue
            try:
                layout = model.transcribe_page(path, segment=args.segment, decoder=args.decoder,
                                               beam_width=args.beam_width, batch_size=args.batch_size, name=name)
            except HTRError as e:
                try:
                    failures.add(str(path), str(e))
                except SystemExit:  # --on-error stop: what was read so far is still printed
                    if pages:
                        print(json.dumps(pages if several else pages[0], ensure_ascii=False, indent=1))
                    raise
                continue
            if fmt == "json" and target is None:
                pages.append(json.loads(render(layout, "json", model=model.name)))
                continue
            text = render(layout, fmt, model=model.name)
            if target is not None:
                target.write_text(text, encoding="utf-8")
                written.append(target)
            else:
                if several:
                    print(f"# {model.name} {path}")
                print(text, end="")
    if pages:
        print(json.dumps(pages if several else pages[0], ensure_ascii=False, indent=1))
    if written:
        print(f"wrote {len(written)} {fmt} file{'s' if len(written) > 1 else ''} to {out}", file=sys.stderr)


def cmd_export(args: argparse.Namespace) -> None:
    from htr.inference import load_model
    from htr.text.lm import CharNgramLM
    from htr.textfile import read_text

    model = load_model(args.ckpt)  # a checkpoint, or a model file or shipped name: its LM is kept unless retrained
    # read_text: a file that is not UTF-8 is a DatasetError naming it, its line and byte (one clean error line)
    texts = [line.split("\t", 1)[-1] for f in args.lm_text or []
             for line in read_text(f, what="a UTF-8 TSV or text file for --lm-text").splitlines()]
    if args.lm_data:
        from htr.evaluate import build_datamodule
        from htr.text.codec import normalize_text

        data = build_datamodule(args.lm_data, model.net.config.height)
        texts += [normalize_text(s.text) for s in data.read_split("train") or []]
    if texts:
        model.lm = CharNgramLM.train(texts, order=args.lm_order)
        print(f"character LM of order {args.lm_order} trained on {len(texts)} lines")
    if model.lm is not None:  # scoring weights: those given, else the model's own, else the defaults
        own = model.decoding or {}
        model.decoding = {key: value if value is not None else own.get(key, default)
                          for key, value, default in (("lm_weight", args.lm_weight, LM_WEIGHT),
                                                      ("insertion_bonus", args.insertion_bonus, INSERTION_BONUS))}
    model.name = args.name or model.cell
    model.save(args.out)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e6:.1f} MB)")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", action="append", help="shipped model name (relu_add, gru, lstm); repeatable")
    p.add_argument("--ckpt", action="append", help="checkpoint (.ckpt or .safetensors); repeatable")
    p.add_argument("--decoder", choices=("greedy", "beam", "beam+lm"), default="greedy")
    p.add_argument("--beam-width", type=int, default=BEAM_WIDTH)
    p.add_argument("--lm-weight", type=float, help="beam+lm: the LM's weight (default: the model's own)")
    p.add_argument("--insertion-bonus", type=float, help="beam+lm: score per character (default: the model's own)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--integer", action="store_true",
                   help="run the relu_add decoder in integers (int8 weights and states, int32 sums: htr.fhe.integer); "
                        "relu_add models only")
    p.add_argument("--json", action="store_true")


# ---- bench / app --------------------------------------------------------------------------------
def _bench_parser(sub: argparse._SubParsersAction) -> None:
    from htr.bench import adding, cells, decode, fhe, integer, load, malloc, step
    from htr.bench import app as bench_app  # light: gradio and the app are imported when the command runs

    bench = sub.add_parser("bench", help="benchmarks that print a table (or JSON with --json)")
    which = bench.add_subparsers(dest="bench", required=True)
    for name, module, help_text in (
        ("cells", cells, "relu_add vs nn.GRU vs nn.LSTM speed, inference and training step"),
        ("step", step, "the whole recogniser's training step and one line's inference, per cell"),
        ("malloc", malloc, "the training step under glibc's malloc vs a preloaded allocator (tcmalloc)"),
        ("adding", adding, "long-term memory: the adding problem for each cell, table and plot"),
        ("fhe", fhe, "encrypted (TFHE) relu_add vs GRU steps; --integer, --adding (needs the fhe extra)"),
        ("integer", integer, "integer relu_add decoder vs float relu_add vs float and int8 GRU/LSTM, inference"),
        ("load", load, "cold start: fresh process, load a shipped model, transcribe a line, exit"),
        ("app", bench_app, "the Gradio app under 20 concurrent gradio_client requests: p50/p95 latency"),
        ("decode", decode, "greedy, beam and beam+lm per line: the Python reference vs the compiled search"),
    ):
        p = which.add_parser(name, help=help_text)
        module.add_arguments(p)
        p.set_defaults(func=module.main)


def _serve_app(args: argparse.Namespace) -> None:
    from app.ui import main  # gradio: imported when the command runs

    main(args)


def _app_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("app", help="the Gradio app: transcription and per-cell latency (localhost by default)")
    p.add_argument("--model", action="append", help="shipped model name; repeatable (default: all shipped)")
    p.add_argument("--ckpt", action="append", help="checkpoint (.ckpt or .safetensors); repeatable")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 exposes it on the network)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    p.add_argument("--repeats", type=int, default=3, help="runs of the model part per request (median reported)")
    p.add_argument("--integer", action="store_true",
                   help="add a column per relu_add model with its decoder in integers (int8 weights and states)")
    p.set_defaults(func=_serve_app)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="htr", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in LIGHTNING_COMMANDS:
        sub.add_parser(name, help=f"Lightning {name} (see `htr {name} --help`)", add_help=False)

    p = sub.add_parser("evaluate", help="CER/WER table of checkpoints on a dataset split")
    _add_model_args(p)
    p.add_argument("--data", required=True, help="YAML config with a data section, or a folder with <split>.tsv")
    p.add_argument("--split", default="val", choices=("train", "val", "test"))
    p.add_argument("--decoders", nargs="+", choices=("greedy", "beam", "beam+lm"),
                   help="several decoders in one table (one row per model and decoder); overrides --decoder")
    p.add_argument("--report", action="store_true",
                   help="also print confusions, insertions, deletions, CER per writer/document and the worst lines")
    p.add_argument("--report-out", help="save the error report as .json or .html")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("transcribe",
                       help="transcribe line images, or whole pages with --segment (files, folders or globs)")
    p.add_argument("images", nargs="+")
    _add_model_args(p)
    p.add_argument("--segment", action="store_true",
                   help="split each image into text lines first (the app's segmentation) and recognise every line")
    p.add_argument("--format", choices=("text", "json", "alto", "page"),
                   help="write each image as a page: plain text, JSON, ALTO 4 or PAGE 2019 XML (default with "
                        "--segment: text, or json with --json)")
    p.add_argument("--out", help="folder for one <image stem>.txt/.json/.xml per image (per image and model with "
                                 "several models) instead of printing")
    p.add_argument("--on-error", choices=("skip", "stop"), default="skip",
                   help="a bad file (missing, empty, corrupt, not an image): report it on one stderr line and go on "
                        "with the others (skip, the default), or end at once (stop); either way the exit status is 1")
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("export", help="checkpoint -> shipped safetensors model (optionally with a char LM); "
                                      "a model file or shipped name -> a copy, e.g. with an LM of new text")
    p.add_argument("ckpt", help="a .ckpt of htr fit, a .safetensors model or a shipped model's name")
    p.add_argument("out")
    p.add_argument("--name")
    p.add_argument("--lm-text", nargs="*", help="TSV/text files whose (last column) text trains the char LM")
    p.add_argument("--lm-data", help="YAML config whose data section's training split (text rules applied) "
                                     "trains the char LM")
    p.add_argument("--lm-order", type=int, default=6)
    p.add_argument("--lm-weight", type=float, help="weight of the LM's log-probability in beam+lm "
                                                  f"(default: the model's own, else {LM_WEIGHT})")
    p.add_argument("--insertion-bonus", type=float, help="score added per character in beam+lm "
                                                       f"(default: the model's own, else {INSERTION_BONUS})")
    p.set_defaults(func=cmd_export)

    from htr import curves

    p = sub.add_parser("curves", help="plot a validation metric against steps from runs' CSV logs (PNG)")
    curves.add_arguments(p)
    p.set_defaults(func=curves.main)

    _bench_parser(sub)
    _app_parser(sub)
    return parser


def main(argv: list[str] | None = None, clean_errors: bool | None = None) -> None:
    """The `htr` command. An HTRError (a bad file, option or model: the message names it, its value and what
    was expected) or an OSError prints one line, ``htr: error: <message>``, and exits with status 1;
    ``--debug`` (anywhere on the command line) or HTR_DEBUG=1 shows the traceback instead.

    ``clean_errors``: None (default) cleans them when main runs as the command (no ``argv``: the `htr`
    script, ``python -m htr.cli``); called from Python with an argument list, the exception itself is
    raised, as before. True / False force either."""
    import os

    from htr.errors import HTRError

    if clean_errors is None:
        clean_errors = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = not clean_errors or "--debug" in argv or os.environ.get("HTR_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    try:
        if argv and argv[0] in LIGHTNING_COMMANDS:
            run_lightning(argv)
            return
        args = build_parser().parse_args(argv)
        args.func(args)
    except (HTRError, OSError) as e:
        if debug:
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"htr: error: {message} (--debug shows the traceback)", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
