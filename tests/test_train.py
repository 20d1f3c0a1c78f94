"""Training through the real `htr` CLI (LightningCLI) and the loss, checkpoints, resume and the
commands that read checkpoints (evaluate, transcribe, predict, export).

Everything runs on tiny synthetic data and a tiny network so the file stays fast on 2 shared cores.
"""
import csv
import json
import math
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from pytorch_lightning.callbacks import Timer

from htr.cli import main
from htr.data.images import PreprocessConfig, collate
from htr.data.synthetic import SyntheticConfig, SyntheticLineDataset
from htr.inference import load_model
from htr.nn.recognizer import RecognizerConfig
from htr.text.codec import Codec
from htr.text.metrics import cer
from htr.train import HTRModule, ctc_feasible

CONFIG = "configs/synthetic.yaml"
SMALL_DATA = ["--data.init_args.train_size", "8", "--data.init_args.val_size", "4", "--data.init_args.batch_size", "4",
              "--data.init_args.num_workers", "0"]
SMALL_MODEL = ["--model.recognizer.hidden_size", "16", "--model.recognizer.feature_size", "32",
               "--model.recognizer.channels", "[8, 16, 16, 16]"]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the configs' relative paths
    monkeypatch.setattr(sys, "argv", ["htr"])  # LightningCLI warns when it sees pytest's own arguments


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread is faster


def fit(root: Path, cell: str = "relu_add", *extra: str) -> None:
    main(["fit", "--config", CONFIG, "--model.recognizer.cell", cell, *SMALL_DATA, *SMALL_MODEL, *QUIET,
          "--trainer.default_root_dir", str(root), *extra])


def only(paths) -> Path:
    paths = sorted(paths)
    assert len(paths) == 1, paths
    return paths[0]


@pytest.mark.parametrize("cell", ["relu_add", "gru", "lstm"])
def test_fast_dev_run(tmp_path, cell, monkeypatch):
    steps = []
    train_step, val_step = HTRModule.training_step, HTRModule.validation_step

    def training_step(self, batch, i):
        loss = train_step(self, batch, i)
        steps.append(("train", self.net.config.cell, len(batch["texts"]), bool(torch.isfinite(loss))))
        return loss

    def validation_step(self, batch, i):
        steps.append(("val", self.net.config.cell, len(batch["texts"]), True))
        return val_step(self, batch, i)

    monkeypatch.setattr(HTRModule, "training_step", training_step)
    monkeypatch.setattr(HTRModule, "validation_step", validation_step)
    fit(tmp_path, cell, "--trainer.fast_dev_run", "true")
    # one training batch (a finite loss) and one validation batch of 4 lines, with the config's cell;
    # fast_dev_run writes no checkpoint
    assert steps == [("train", cell, 4, True), ("val", cell, 4, True)]
    assert not list(tmp_path.rglob("*.ckpt"))


# ---- a short real run, shared by the checkpoint / resume / evaluate / predict tests ---------------
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """relu_add, 2 steps (one epoch of 8 lines), validation at step 2: best and last checkpoints."""
    root = tmp_path_factory.mktemp("fit")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ROOT)
        mp.setattr(sys, "argv", ["htr"])
        fit(root, "relu_add", "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
            "--trainer.log_every_n_steps", "1")
    return root


def test_checkpoints(run, tmp_path):
    last = only(run.rglob("last.ckpt"))
    best = only(run.rglob("best-*.ckpt"))
    assert "step=2" in best.name
    ckpt = torch.load(last, map_location="cpu", weights_only=True)  # plain types only: no pickled code
    assert ckpt["global_step"] == 2
    assert ckpt["htr"]["recognizer"]["cell"] == "relu_add" and ckpt["htr"]["recognizer"]["hidden_size"] == 16
    assert ckpt["htr"]["recognizer"]["channels"] == [8, 16, 16, 16]
    assert Codec.from_dict(ckpt["htr"]["codec"]).charset == HTRModule().codec.charset

    model = load_model(last)
    assert model.cell == "relu_add" and model.net.num_classes == len(model.codec)
    main(["export", str(last), str(tmp_path / "m.safetensors")])
    shipped = load_model(tmp_path / "m.safetensors")
    assert shipped.name == "relu_add" and shipped.net.config == model.net.config

    module = HTRModule.load_from_checkpoint(last, map_location="cpu").eval()  # Lightning's own loading
    torch.manual_seed(0)
    images, widths = torch.rand(2, 1, model.net.config.height, 96), torch.tensor([96, 60])
    with torch.no_grad():
        a, frames = model.net(images, widths)
        b, _ = shipped.net(images, widths)
        c, _ = module.net(images, widths)
    assert frames.tolist() == [24, 15]
    assert torch.equal(a, b) and torch.equal(a, c)


def test_export_with_lm_text(run, tmp_path, capsys):
    """`htr export --lm-text`: the model file carries the character LM trained on that text (the TSV's
    last column) and the scoring options, and beam+lm decoding with it is the beam search with that LM."""
    from htr.text.decoding import decode_batch
    from htr.text.lm import CharNgramLM

    texts = ["le 3 mars 1916", "à ma femme", "mes biens à ma femme"]
    tsv = tmp_path / "train.tsv"
    tsv.write_text("".join(f"l{i}.png\t{t}\n" for i, t in enumerate(texts)), encoding="utf-8")
    out = tmp_path / "lm.safetensors"
    main(["export", str(only(run.rglob("last.ckpt"))), str(out), "--lm-text", str(tsv), "--lm-order", "4",
          "--lm-weight", "0.7", "--insertion-bonus", "1.5"])
    assert "character LM of order 4 trained on 3 lines" in capsys.readouterr().out
    model = load_model(out)
    assert model.lm.to_dict() == CharNgramLM.train(texts, order=4).to_dict()
    assert model.decoding == {"lm_weight": 0.7, "insertion_bonus": 1.5}
    # run_batch's LM branch: the same result as the beam search given the LM and options directly
    torch.manual_seed(1)
    images = [torch.rand(1, model.net.config.height, w) for w in (96, 160)]
    got = model.run_batch(images, "beam+lm", beam_width=4)
    batch = collate([{"image": im} for im in images], pad_to_multiple=8)
    with torch.no_grad():
        log_probs, frames = model.net(batch["images"], batch["widths"])
    want = decode_batch(log_probs, frames, beam_width=4, lm=CharNgramLM.train(texts, order=4), codec=model.codec,
                        lm_weight=0.7, insertion_bonus=1.5)
    assert [(t.text, t.confidence) for t in got] == [(model.codec.decode(i), pytest.approx(c)) for i, c in want]
    assert load_model(only(run.rglob("last.ckpt"))).lm is None  # a plain export (no --lm-text) has none


def test_export_from_a_model_file_or_a_shipped_name(run, tmp_path):
    """`htr export` of an exported model or a shipped name: a copy with the same weights, LM and scoring
    weights; --lm-text retrains only the LM, and the model's own scoring weights stay unless given."""
    from htr.text.lm import CharNgramLM

    def tsv(name: str, texts: list[str]) -> str:
        path = tmp_path / name
        path.write_text("".join(f"l{i}.png\t{t}\n" for i, t in enumerate(texts)), encoding="utf-8")
        return str(path)

    first, copy, relm = (str(tmp_path / f"{n}.safetensors") for n in ("first", "copy", "relm"))
    main(["export", str(only(run.rglob("last.ckpt"))), first, "--lm-text", tsv("a.tsv", ["à ma femme"]),
          "--lm-order", "3", "--lm-weight", "0.7", "--insertion-bonus", "1.5"])
    main(["export", first, copy, "--name", "mine"])
    main(["export", copy, relm, "--lm-text", tsv("b.tsv", ["le 3 mars", "mes biens"]), "--lm-order", "2"])
    a, b, c = load_model(first), load_model(copy), load_model(relm)
    assert b.name == "mine" and b.lm.to_dict() == a.lm.to_dict() and b.decoding == a.decoding
    assert c.lm.to_dict() == CharNgramLM.train(["le 3 mars", "mes biens"], order=2).to_dict()
    assert c.decoding == {"lm_weight": 0.7, "insertion_bonus": 1.5}
    assert all(torch.equal(v, c.net.state_dict()[k]) for k, v in a.net.state_dict().items())

    shipped = tmp_path / "gru.safetensors"
    main(["export", "gru", str(shipped), "--insertion-bonus", "1"])
    gru, original = load_model(shipped), load_model("gru")
    assert gru.lm.to_dict() == original.lm.to_dict()
    assert gru.decoding == {**original.decoding, "insertion_bonus": 1.0}


def read_metrics(root: Path) -> list[dict]:
    with only(root.rglob("metrics.csv")).open() as f:
        return list(csv.DictReader(f))


def synthetic_val(lines: int = 4):
    """The validation lines of CONFIG with SMALL_DATA (rendered again: the same seed, the same lines)."""
    from htr.data import SyntheticDataModule

    return SyntheticDataModule(train_size=8, val_size=lines, batch_size=4, num_workers=0, height=48,
                               system_fonts=True, augment=False)


def test_logged_metrics(run, hand_rates):
    rows = read_metrics(run)
    assert [int(r["step"]) for r in rows if r.get("train/loss")] == [0, 1]
    val = [r for r in rows if r.get("val/cer")]
    assert len(val) == 1
    # the logged rates are those of the step-2 model (validated, then saved as last.ckpt) on the 4 val lines
    from htr.evaluate import transcribe_split

    lines = transcribe_split(load_model(only(run.rglob("last.ckpt"))), synthetic_val(), "val", "greedy")
    assert len(lines.refs) == 4
    assert [float(val[0]["val/cer"]), float(val[0]["val/wer"])] == pytest.approx(hand_rates(lines.refs, lines.hyps),
                                                                                  abs=1e-6)
    assert float(val[0]["val/cer_nocase"]) <= float(val[0]["val/cer"]) + 1e-6
    assert all(r.get("train/skipped_lines") in ("", None) or float(r["train/skipped_lines"]) >= 0 for r in rows)


def test_best_checkpoint_is_the_lowest_validation_cer(tmp_path, monkeypatch):
    """Three validations (steps 2, 4, 6); the one at step 4 is made perfect (its hypotheses are the
    references), so best-*.ckpt must be step 4's: neither the first nor the last."""
    eval_step, transcribe = HTRModule._eval_step, HTRModule.transcribe_batch

    def _eval_step(self, stage, batch):
        self._texts = batch["texts"]
        return eval_step(self, stage, batch)

    def transcribe_batch(self, log_probs, frames):
        real = transcribe(self, log_probs, frames)
        if not self.training and self.global_step == 4 and not self.trainer.sanity_checking:
            return [(text, 1.0) for text in self._texts]
        return real

    monkeypatch.setattr(HTRModule, "_eval_step", _eval_step)
    monkeypatch.setattr(HTRModule, "transcribe_batch", transcribe_batch)
    fit(tmp_path, "relu_add", "--trainer.max_steps", "6", "--trainer.val_check_interval", "2",
        "--trainer.log_every_n_steps", "1")
    val = {int(r["step"]): float(r["val/cer"]) for r in read_metrics(tmp_path) if r.get("val/cer")}
    assert sorted(val) == [1, 3, 5] and val[3] == 0.0 and val[1] > 0 and val[5] > 0  # logged at step - 1
    best = only(tmp_path.rglob("best-*.ckpt"))
    assert best.name.endswith("-step=4.ckpt"), best.name
    assert torch.load(best, map_location="cpu", weights_only=True)["global_step"] == 4
    assert torch.load(only(tmp_path.rglob("last.ckpt")), map_location="cpu", weights_only=True)["global_step"] == 6


def test_the_last_step_is_validated_and_checkpointed(tmp_path):
    """max_steps 3 with validation every 2 steps: Lightning alone would stop without validating step 3."""
    fit(tmp_path, "relu_add", "--trainer.max_steps", "3", "--trainer.val_check_interval", "2",
        "--trainer.log_every_n_steps", "1")
    assert [int(r["step"]) for r in read_metrics(tmp_path) if r.get("val/cer")] == [1, 2]  # after steps 2 and 3
    last = torch.load(only(tmp_path.rglob("last.ckpt")), map_location="cpu", weights_only=True)
    assert last["global_step"] == 3


def test_resume_continues_from_saved_step(run, tmp_path):
    # A resumed run appends to its checkpoint's run folder: resume a copy, the shared run stays as it is.
    shutil.copytree(run, tmp_path / "run")
    last = only((tmp_path / "run").rglob("last.ckpt"))
    fit(tmp_path / "elsewhere", "relu_add", "--trainer.max_steps", "4", "--trainer.val_check_interval", "2",
        "--trainer.log_every_n_steps", "1", "--ckpt_path", str(last))
    assert not (tmp_path / "elsewhere").exists()
    resumed = torch.load(last, map_location="cpu", weights_only=True)
    assert resumed["global_step"] == 4
    # Steps 0 and 1 from the first run, then 2 and 3 from this one (a restart from scratch would have
    # logged 0..3 again), in the same metrics.csv.
    assert [int(r["step"]) for r in read_metrics(tmp_path / "run") if r.get("train/loss")] == [0, 1, 2, 3]


# ---- evaluate / transcribe / predict ------------------------------------------------------------
@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A TSV folder (val.tsv + PNGs) of 3 rendered lines."""
    root = tmp_path_factory.mktemp("lines")
    ds = SyntheticLineDataset("val", Codec(HTRModule().codec.charset),
                              SyntheticConfig(seed=5, val_size=3, max_chars=20))
    rows = []
    for i in range(3):
        image, text, _ = ds.load(i)
        image.save(root / f"line{i}.png")
        rows.append(f"line{i}.png\t{text}\n")
    (root / "val.tsv").write_text("".join(rows), encoding="utf-8")
    return root


def folder_lines(folder: Path) -> tuple[list[Path], list[str]]:
    rows = [line.split("\t") for line in (folder / "val.tsv").read_text(encoding="utf-8").splitlines()]
    return [folder / name for name, _ in rows], [text for _, text in rows]


def test_evaluate_reads_every_split_of_a_folder(run, folder, tmp_path, capsys):
    """A folder's train and test TSVs are read too, also without a val.tsv beside them."""
    last = str(only(run.rglob("last.ckpt")))
    for split, rows in (("test", 2), ("train", 1)):
        lines = (folder / "val.tsv").read_text(encoding="utf-8").splitlines()[:rows]
        (tmp_path / f"{split}.tsv").write_text("".join(f"{folder / line}\n" for line in lines), encoding="utf-8")
    for split, rows in (("test", 2), ("train", 1)):
        main(["evaluate", "--ckpt", last, "--data", str(tmp_path), "--split", split, "--json"])
        [row] = json.loads(capsys.readouterr().out)
        assert row["split"] == split and row["lines"] == rows and row["data"].endswith(f"{split}.tsv")


def test_evaluate(run, folder, capsys, hand_rates):
    last, best = only(run.rglob("last.ckpt")), only(run.rglob("best-*.ckpt"))
    main(["evaluate", "--ckpt", str(last), "--ckpt", str(best), "--data", str(folder), "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == ["last", best.stem]
    n_params = load_model(last).num_parameters
    paths, refs = folder_lines(folder)
    for r, ckpt in zip(rows, (last, best)):
        assert r["cell"] == "relu_add" and r["parameters"] == n_params and r["lines"] == 3 and r["split"] == "val"
        # the CLI's rates are those of the checkpoint's own transcription of the same lines, counted by hand
        hyps = [t.text for t in load_model(ckpt).transcribe(paths)]
        assert [r["cer"], r["wer"]] == pytest.approx(hand_rates(refs, hyps))
        assert r["cer_nocase"] == pytest.approx(hand_rates([x.casefold() for x in refs],
                                                           [x.casefold() for x in hyps])[0])
    main(["evaluate", "--ckpt", str(last), "--data", str(folder), "--decoders", "greedy", "beam", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert [(r["model"], r["decoder"]) for r in rows] == [("last", "greedy"), ("last", "beam")]
    main(["evaluate", "--ckpt", str(last), "--data", str(folder), "--report", "--report-out", str(folder / "r.json")])
    out = capsys.readouterr().out
    report = json.loads((folder / "r.json").read_text(encoding="utf-8"))
    assert "Most frequent confusions" in out and "Worst lines:" in out and report["lines"] == 3
    assert report["cer"] == pytest.approx(cer([r["ref"] for r in report["worst"]], [r["hyp"] for r in report["worst"]]))
    main(["evaluate", "--ckpt", str(last), "--ckpt", str(best), "--data", str(folder)])
    table = capsys.readouterr().out.splitlines()
    assert "val.tsv, split val" in table[0] and "CER %" in table[1]
    names = [line.split("|")[1].strip() for line in table[3:]]  # a Markdown table: header, rule, rows
    assert names == ["last", best.stem] and all("relu_add" in line for line in table[3:])


def test_transcribe(run, folder, capsys):
    last = str(only(run.rglob("last.ckpt")))
    [want] = load_model(last).transcribe([folder / "line1.png"])
    main(["transcribe", str(folder / "line1.png"), "--ckpt", last, "--json"])
    [row] = json.loads(capsys.readouterr().out)
    assert row["model"] == "last" and row["image"].endswith("line1.png") and row["text"] == want.text
    assert row["confidence"] == pytest.approx(want.confidence, abs=1e-6)
    assert set(row["ms"]) == {"preprocess", "encoder", "decoder", "ctc"}
    main(["transcribe", str(folder), "--ckpt", last, "--json"])  # a folder: its images, not val.tsv
    rows = json.loads(capsys.readouterr().out)
    assert sorted(Path(r["image"]).name for r in rows) == ["line0.png", "line1.png", "line2.png"]
    main(["transcribe", str(folder), "--ckpt", last])
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_transcribe_expands_globs(folder, capsys):
    """A quoted glob (as on Windows, or from a script) is expanded by htr itself; a glob that matches
    nothing is an error naming it."""
    main(["transcribe", str(folder / "line[02].png"), str(folder / "*1.png"), "--model", "gru", "--json"])
    rows = json.loads(capsys.readouterr().out)
    paths = [folder / "line0.png", folder / "line2.png", folder / "line1.png"]
    assert [Path(r["image"]) for r in rows] == paths
    assert [r["text"] for r in rows] == [t.text for t in load_model("gru").transcribe(paths)]
    with pytest.raises(SystemExit) as exit_info:
        main(["transcribe", str(folder / "nope*.png"), "--model", "gru"])
    assert exit_info.value.code == 1
    assert "nope*.png: no such file, folder or glob match" in capsys.readouterr().err


@pytest.fixture(scope="module")
def example_folder(tmp_path_factory):
    """The app's three real example lines (poilus val writers) as a TSV folder."""
    from shutil import copy

    root = tmp_path_factory.mktemp("examples")
    lines = {"poilus_1.png": "Versailles le 10 Décembre 1916.", "poilus_2.png": "le 11 Novembre 1915",
             "poilus_3.png": "Ma Femme devra aider ma Mère,"}  # app/examples/ATTRIBUTION.md
    for name in lines:
        copy(ROOT / "app" / "examples" / name, root / name)
    (root / "val.tsv").write_text("".join(f"{n}\t{t}\n" for n, t in lines.items()), encoding="utf-8")
    return root


@pytest.mark.parametrize("cell", ["relu_add", "gru"])
def test_evaluate_shipped_model_every_decoder_exactly(cell, example_folder, capsys, hand_rates):
    """`htr evaluate --decoders greedy beam beam+lm` of a shipped model: each row's CER/WER equal the
    hand-counted rates of the model's own transcription of the same lines with that decoder."""
    main(["evaluate", "--model", cell, "--data", str(example_folder), "--decoders", "greedy", "beam", "beam+lm",
          "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert [(r["model"], r["decoder"]) for r in rows] == [(cell, d) for d in ("greedy", "beam", "beam+lm")]
    paths, refs = folder_lines(example_folder)
    model = load_model(cell)
    for r in rows:
        hyps = [t.text for t in model.transcribe(paths, decoder=r["decoder"])]
        assert [r["cer"], r["wer"]] == pytest.approx(hand_rates(refs, hyps)), (r["decoder"], hyps)
        assert r["lines"] == 3 and r["cer"] < 1  # a shipped model reads these lines


def test_predict_writes_one_row_per_line(run, tmp_path):
    out = tmp_path / "out.tsv"
    main(["predict", "--config", CONFIG, *SMALL_DATA, *SMALL_MODEL, *QUIET,
          "--trainer.default_root_dir", str(tmp_path), "--ckpt_path", str(only(run.rglob("last.ckpt"))),
          "--predictions", str(out)])
    rows = [line.split("\t") for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r[0] for r in rows] == [f"synth-val-0-{i:06d}" for i in range(4)]  # the val split (no test split)
    assert all(len(r) == 3 for r in rows)
    # the texts and confidences of the checkpoint's own reading of the same 4 rendered lines
    data = synthetic_val()
    data.setup("validate")
    items = [data.datasets["val"][i] for i in range(4)]
    assert [it["id"] for it in items] == [r[0] for r in rows]
    want = load_model(only(run.rglob("last.ckpt"))).run_batch([it["image"] for it in items])
    assert [r[1] for r in rows] == [t.text for t in want]
    assert [float(r[2]) for r in rows] == pytest.approx([t.confidence for t in want], abs=1e-3)


# ---- CTC loss -----------------------------------------------------------------------------------
def tiny_module(cell="relu_add", height=32) -> HTRModule:
    return HTRModule(RecognizerConfig(cell=cell, height=height, channels=(8, 16, 16), feature_size=32,
                                      hidden_size=32, num_layers=1, dropout=0.0))


def make_batch(module: HTRModule, lines: list[tuple[int, str]], height=32) -> dict:
    """(width, text) pairs -> a collated batch of random images."""
    g = torch.Generator().manual_seed(0)
    return collate([{"image": torch.rand(1, height, w, generator=g), "target": module.codec.encode(t), "text": t}
                    for w, t in lines], pad_to_multiple=8)


class _HalfwayTimer(Timer):
    """A 20-minute budget, 10 minutes of which have run."""

    def time_elapsed(self, stage: str = "train") -> float:
        return 600.0


@pytest.mark.parametrize("callbacks, expected", [
    ([], 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 800 / 19800))),  # steps: 4 % of the cosine
    ([_HalfwayTimer(duration="00:00:20:00")], 0.05 + 0.95 * 0.5)])      # time: half of the budget
def test_cosine_schedule_follows_steps_or_time_budget(callbacks, expected):
    module = tiny_module()  # warmup_steps 200
    module.trainer = SimpleNamespace(estimated_stepping_batches=20000, callbacks=callbacks)
    schedule = module.configure_optimizers()["lr_scheduler"]["scheduler"].lr_lambdas[0]
    assert schedule(99) == pytest.approx(0.5)  # linear warm-up either way
    assert schedule(1000) == pytest.approx(expected)


def test_ctc_feasible():
    t = [torch.tensor(x) for x in ([1, 2, 3], [4, 4], [4, 4], [5, 5, 5], [])]
    # 3 distinct characters need 3 frames; "aa" needs a blank between: 3; "aaa": 5; an empty label: 0
    assert ctc_feasible(t, torch.tensor([3, 2, 3, 4, 1])).tolist() == [True, False, True, False, True]


def test_ctc_loss_skips_lines_that_cannot_fit():
    torch.manual_seed(0)
    module = tiny_module().eval()  # eval: batch norm does not mix the lines
    # 8 px -> 2 frames for 12 characters: skipped; the wide line is the batch's widest (no padding)
    batch = make_batch(module, [(8, "twelve chars"), (200, "ok line")])
    loss, log_probs, frames, skipped = module.ctc_loss(batch)
    assert skipped == 1 and frames.tolist() == [2, 50] and torch.isfinite(loss)
    kept = {"image": batch["images"][1], "target": module.codec.encode("ok line"), "text": "ok line"}
    alone, *_, none_skipped = module.ctc_loss(collate([kept], pad_to_multiple=8))  # the same image alone
    assert none_skipped == 0 and torch.allclose(loss, alone)  # the mean runs over the kept line only
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)

    module.log = lambda *args, **kwargs: None  # training_step outside a Trainer
    module.train()
    module.training_step(batch, 0)
    module.training_step(batch, 1)
    assert module.skipped_lines == 2  # counted over the run


def test_ctc_loss_all_infeasible_is_zero_with_a_graph():
    module = tiny_module().train()
    batch = make_batch(module, [(8, "much too long"), (12, "also too long")])
    loss, _, _, skipped = module.ctc_loss(batch)
    assert skipped == 2 and loss.item() == 0.0 and loss.requires_grad
    loss.backward()  # no error, no NaN: zero gradients
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    assert grads and all(torch.equal(g, torch.zeros_like(g)) for g in grads)


# ---- a tiny model learns 8 lines by heart -------------------------------------------------------
# Steps to CER 0 measured on this machine (1 thread, Adam lr 3e-3, torch seed 0; other weight-init seeds in
# brackets): relu_add 370 (290-520 over seeds 0-3), gru 440 (440-500 over seeds 0-2). The bound leaves ~2x
# margin. About 15 ms a step for relu_add, 25 ms for gru: 5 s and 11 s here.
OVERFIT_MAX_STEPS = 1000


@pytest.mark.parametrize("cell", ["relu_add", "gru"])
def test_overfits_eight_lines(cell, learn_by_heart):
    # one intra-op thread (the one_thread fixture), as in the measurements above
    torch.manual_seed(0)
    module = tiny_module(cell)
    # short lines (4-10 characters), height 32, no augmentation: every line fits its frames
    ds = SyntheticLineDataset("train", module.codec, SyntheticConfig(seed=0, train_size=8, min_chars=4, max_chars=10),
                              PreprocessConfig(height=32))
    batch = collate([ds[i] for i in range(8)], pad_to_multiple=8)
    assert ctc_feasible(list(batch["targets"].split(batch["target_lengths"].tolist())),
                        module.net.encoder.frame_lengths(batch["widths"])).all()
    hyps = learn_by_heart(module, batch, OVERFIT_MAX_STEPS)
    assert hyps == batch["texts"], f"not learnt in {OVERFIT_MAX_STEPS} steps: {list(zip(batch['texts'], hyps))}"


# ---- configs ------------------------------------------------------------------------------------
CONFIGS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "configs").rglob("*.yaml"))
TRAINER_PRESETS = [c for c in CONFIGS if c.startswith("configs/trainer/")]
DATASET_CONFIGS = [f"configs/{d}.yaml" for d in ("synthetic", "poilus", "iam", "rimes")]


def print_config(capsys, *configs: str, extra: tuple[str, ...] = ()) -> dict:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *[a for c in configs for a in ("--config", c)], *extra, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def test_every_config_parses(capsys):
    assert len(CONFIGS) >= 10 and len(TRAINER_PRESETS) == 3 and set(DATASET_CONFIGS) <= set(CONFIGS)
    for config in CONFIGS:
        if config in TRAINER_PRESETS:  # a preset is a second config: check it on top of a dataset config
            print_config(capsys, "configs/synthetic.yaml", config)
            continue
        cfg = print_config(capsys, config)
        recognizer = cfg["model"]["recognizer"]
        if recognizer is None:  # the network comes from init_from: the data's height must be that model's
            assert cfg["data"]["init_args"]["height"] == load_model(cfg["model"]["init_from"]).net.config.height
            continue
        if config in DATASET_CONFIGS:  # one file for the three cells; relu_add unless the command line says
            assert recognizer["cell"] == "relu_add"
        assert cfg["data"]["init_args"]["height"] == recognizer["height"]


@pytest.mark.parametrize("config", DATASET_CONFIGS)
def test_the_command_line_chooses_the_cell(capsys, config):
    default = print_config(capsys, config)
    for cell in ("gru", "lstm"):
        cfg = print_config(capsys, config, extra=("--model.recognizer.cell", cell))
        assert cfg["model"]["recognizer"]["cell"] == cell
        cfg["model"]["recognizer"]["cell"] = "relu_add"
        assert cfg == default  # the cell is the only difference


@pytest.mark.parametrize("preset, trainer, workers", [
    ("cpu", {"accelerator": "cpu", "devices": 1}, 2),
    ("gpu", {"accelerator": "gpu", "devices": 1, "precision": "16-mixed"}, 8),
    ("ddp", {"accelerator": "gpu", "strategy": "ddp", "devices": 4, "num_nodes": 1}, 4)])
def test_trainer_presets_merge_over_a_dataset_config(capsys, preset, trainer, workers):
    cfg = print_config(capsys, "configs/poilus.yaml", f"configs/trainer/{preset}.yaml",
                       extra=("--model.recognizer.cell", "gru"))
    assert {k: cfg["trainer"][k] for k in trainer} == trainer
    assert cfg["model"]["recognizer"]["cell"] == "gru"  # the command line's cell survives the preset
    assert cfg["trainer"]["max_steps"] == 4000  # the dataset config's budget is kept
    data = cfg["data"]
    assert data["class_path"] == "htr.data.FolderDataModule"  # the preset's init_args merge, not replace
    assert data["init_args"]["num_workers"] == workers and data["init_args"]["root"] == "../shared/realdata/poilus"


@pytest.mark.parametrize("dataset, class_path",
                         [("iam", "htr.data.IAMDataModule"), ("rimes", "htr.data.RIMESDataModule")])
def test_iam_rimes_configs_mirror_poilus(dataset, class_path):
    def load(name):
        return yaml.safe_load((ROOT / "configs" / name).read_text())

    cfg, poilus = load(f"{dataset}.yaml"), load("poilus.yaml")
    assert cfg["model"] == poilus["model"] and cfg["trainer"] == poilus["trainer"]  # same network and budget
    assert cfg["data"]["class_path"] == class_path and cfg["data"]["init_args"]["root"] == f"data/{dataset}"
    shared = ("synthetic_ratio", "batch_size", "num_workers", "height")
    assert {k: cfg["data"]["init_args"][k] for k in shared} == {k: poilus["data"]["init_args"][k] for k in shared}
