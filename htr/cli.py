"""The `htr` command.

    htr fit|validate|test|predict --config configs/<dataset>/<cell>.yaml   (LightningCLI; any option
                                                                          can be overridden)
    htr evaluate --ckpt A.ckpt [--ckpt B.ckpt ...] --data <config.yaml | TSV folder> [--json]
    htr transcribe IMAGE... (--model relu_add | --ckpt X)
    htr export CKPT OUT.safetensors [--lm-text train.tsv]
    htr bench cells|step|malloc|adding|fhe|load|app ...
    htr app [--model NAME ...] [--ckpt PATH ...] [--host 127.0.0.1] [--port 7860] [--share]
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

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
    from pytorch_lightning.callbacks import BasePredictionWriter, LearningRateMonitor, ModelCheckpoint
    from jsonargparse import Namespace
    from pytorch_lightning.cli import LightningCLI

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

        def before_instantiate_classes(self) -> None:
            # CSV + TensorBoard logs under <default_root_dir or runs>/<cell>/version_N, unless configured.
            config = self.config[self.subcommand]
            if config["trainer"].get("logger") in (None, True):
                save_dir = config["trainer"].get("default_root_dir") or "runs"
                name = config["model"]["recognizer"]["cell"] if config["model"].get("recognizer") else "htr"
                config["trainer"]["logger"] = [
                    Namespace(class_path=f"pytorch_lightning.loggers.{cls}",
                              init_args=Namespace(save_dir=save_dir, name=name))
                    for cls in ("CSVLogger", "TensorBoardLogger")]

        def before_predict(self) -> None:
            self.trainer.callbacks.append(TSVPredictionWriter(self.config["predict"]["predictions"]))

    # From the shell the arguments are sys.argv's: let LightningCLI read them itself (passing both
    # makes it warn that they may differ).
    args = None if argv == sys.argv[1:] else argv
    HTRCLI(HTRModule, LineDataModule, subclass_mode_data=True, args=args, seed_everything_default=0,
           save_config_kwargs={"overwrite": True},
           trainer_defaults={
               # best-*.ckpt: the lowest validation CER; last.ckpt: the state at the latest validation
               # (ModelCheckpoint's own save_last writes only when the best improves).
               "callbacks": [ModelCheckpoint(monitor="val/cer", mode="min", save_top_k=1,
                                             filename="best-{epoch:02d}-{step}"),
                             ModelCheckpoint(filename="last", enable_version_counter=False),
                             LearningRateMonitor(logging_interval="step"), ValidateAtLastStep()]})


# ---- evaluate / transcribe / export ---------------------------------------------------------------
def _models(args: argparse.Namespace) -> list:
    from htr.inference import load_model, shipped_models

    names = list(args.model or []) + list(args.ckpt or [])
    if not names:
        names = list(shipped_models())
        if not names:
            raise SystemExit("no --model/--ckpt given and no shipped models found")
    return [load_model(n) for n in names]


def cmd_evaluate(args: argparse.Namespace) -> None:
    from htr.evaluate import build_datamodule, evaluate_model, to_table

    rows = []
    for model in _models(args):
        dm = build_datamodule(args.data, model.net.config.height, args.batch_size)
        rows.append(evaluate_model(model, dm, args.split, args.decoder, args.beam_width))
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(f"{rows[0]['data']}, split {args.split}, {args.decoder} decoding, batch {args.batch_size}, "
              f"CPU ms per line (model + decoding)")
        print(to_table(rows))


def cmd_transcribe(args: argparse.Namespace) -> None:
    from htr.inference import iter_images

    paths = iter_images(args.images)
    for model in _models(args):
        results = model.transcribe(paths, decoder=args.decoder, beam_width=args.beam_width,
                                   batch_size=args.batch_size)
        if args.json:
            print(json.dumps([{"model": model.name, "image": r.id, "text": r.text, "confidence": r.confidence,
                               "ms": r.timings} for r in results], ensure_ascii=False, indent=1))
            continue
        for r in results:
            print(f"{model.name}\t{r.id}\t{r.text}\t{r.confidence:.3f}\t{r.total_ms:.1f} ms")


def cmd_export(args: argparse.Namespace) -> None:
    from htr.inference import Transcriber
    from htr.text.lm import CharNgramLM

    model = Transcriber.from_checkpoint(args.ckpt)
    if args.lm_text:
        texts = [line.split("\t", 1)[-1] for f in args.lm_text for line in Path(f).read_text("utf-8").splitlines()]
        model.lm = CharNgramLM.train(texts, order=args.lm_order)
    model.name = args.name or model.cell
    model.save(args.out)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e6:.1f} MB)")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", action="append", help="shipped model name (relu_add, gru, lstm); repeatable")
    p.add_argument("--ckpt", action="append", help="checkpoint (.ckpt or .safetensors); repeatable")
    p.add_argument("--decoder", choices=("greedy", "beam", "beam+lm"), default="greedy")
    p.add_argument("--beam-width", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--json", action="store_true")


# ---- bench / app --------------------------------------------------------------------------------
def _bench_parser(sub: argparse._SubParsersAction) -> None:
    from htr.bench import adding, cells, fhe, load, malloc, step
    from htr.bench import app as bench_app  # light: gradio and the app are imported when the command runs

    bench = sub.add_parser("bench", help="benchmarks that print a table (or JSON with --json)")
    which = bench.add_subparsers(dest="bench", required=True)
    for name, module, help_text in (
        ("cells", cells, "relu_add vs nn.GRU vs nn.LSTM speed, inference and training step"),
        ("step", step, "the whole recogniser's training step and one line's inference, per cell"),
        ("malloc", malloc, "the training step under glibc's malloc vs a preloaded allocator (tcmalloc)"),
        ("adding", adding, "long-term memory: the adding problem for each cell, table and plot"),
        ("fhe", fhe, "encrypted (TFHE) relu_add vs GRU steps; --integer, --adding (needs the fhe extra)"),
        ("load", load, "cold start: fresh process, load a shipped model, transcribe a line, exit"),
        ("app", bench_app, "the Gradio app under 20 concurrent gradio_client requests: p50/p95 latency"),
    ):
        p = which.add_parser(name, help=help_text)
        module.add_arguments(p)
        p.set_defaults(func=module.main)


def _import_app(module: str):
    """Import the app (app/ lives next to htr/ in the repository, outside the installed package)."""
    import importlib

    root = str(Path(__file__).resolve().parent.parent)
    if (Path(root) / "app" / "ui.py").exists() and root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module(module)


def _app_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("app", help="the Gradio app: transcription and per-cell latency (localhost by default)")
    p.add_argument("--model", action="append", help="shipped model name; repeatable (default: all shipped)")
    p.add_argument("--ckpt", action="append", help="checkpoint (.ckpt or .safetensors); repeatable")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 exposes it on the network)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    p.add_argument("--repeats", type=int, default=3, help="runs of the model part per request (median reported)")
    p.set_defaults(func=lambda a: _import_app("app.ui").main(a))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="htr", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in LIGHTNING_COMMANDS:
        sub.add_parser(name, help=f"Lightning {name} (see `htr {name} --help`)", add_help=False)

    p = sub.add_parser("evaluate", help="CER/WER table of checkpoints on a dataset split")
    _add_model_args(p)
    p.add_argument("--data", required=True, help="YAML config with a data section, or a folder with <split>.tsv")
    p.add_argument("--split", default="val", choices=("train", "val", "test"))
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("transcribe", help="transcribe line images (files, folders or globs)")
    p.add_argument("images", nargs="+")
    _add_model_args(p)
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("export", help="checkpoint -> shipped safetensors model (optionally with a char LM)")
    p.add_argument("ckpt")
    p.add_argument("out")
    p.add_argument("--name")
    p.add_argument("--lm-text", nargs="*", help="TSV/text files whose (last column) text trains the char LM")
    p.add_argument("--lm-order", type=int, default=6)
    p.set_defaults(func=cmd_export)

    from htr import curves

    p = sub.add_parser("curves", help="plot a validation metric against steps from runs' CSV logs (PNG)")
    curves.add_arguments(p)
    p.set_defaults(func=curves.main)

    _bench_parser(sub)
    _app_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in LIGHTNING_COMMANDS:
        run_lightning(argv)
        return
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
