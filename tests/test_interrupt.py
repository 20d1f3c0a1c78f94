"""Training that survives being stopped (htr.checkpointing, htr.data.resumable).

* SIGTERM mid-run: `htr fit` (a real process) exits 143 with a checkpoint at the step it stopped and
  prints the resume command, which continues to the planned last step;
* SIGINT: exit 130 with a checkpoint; a second signal stops at once (no checkpoint written);
* SIGKILL at a step that is not a validation step, then `--ckpt_path last.ckpt`: the resumed run's
  per-step losses and final weights equal an uninterrupted run's bit for bit, for the synthetic data
  module (width buckets) and the folder module (a real + synthetic mix, augmentation, 2 workers);
* a kill during a checkpoint write leaves the previous checkpoint loadable, and a truncated or empty
  checkpoint is a CheckpointError naming the file;
* a resumed run logs into the folder of its checkpoint (CSV, TensorBoard, config, checkpoints);
* the training stream alone: a loader stopped after k batches and restored from its state_dict
  serves the same batches as one that was never stopped (bucketed with 0 and 2 workers, mix sampler).

Tiny networks and data, a few steps each; the runs that must die do so in a forked copy of this
process (fast: nothing to import again), the SIGTERM one in a fresh `python -m htr.cli`.
"""
from __future__ import annotations

import csv
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from htr.checkpointing import atomic_save, read_checkpoint, remove_orphans
from htr.cli import main
from htr.data.augment import Augmenter
from htr.data.bucketing import WidthBucketedBatches, resume_point
from htr.data.images import collate
from htr.data.mixing import MixSampler, WeightedMix
from htr.data.resumable import ResumableLoader, SeededItems, SeededSampler, train_worker_init_fn
from htr.data.synthetic import SyntheticConfig, SyntheticLineDataset
from htr.errors import CheckpointError
from htr.inference import load_model
from htr.text.codec import DEFAULT_CHARSET, Codec

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

SMALL_MODEL = ["--model.recognizer.hidden_size", "16", "--model.recognizer.feature_size", "32",
               "--model.recognizer.channels", "[8, 16, 16, 16]"]
# 10 steps over 3 epochs of 4 batches, validation after steps 4 and 8 (and 10, the last), every step logged;
# no time budget (the schedule would follow the clock) and no progress bar.
RUN = ["--trainer.max_steps", "10", "--trainer.val_check_interval", "4", "--trainer.max_time", "null",
       "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
       "--trainer.enable_model_summary", "false", "--trainer.num_sanity_val_steps", "1"]
SYNTHETIC = ["--config", "configs/synthetic.yaml", "--data.init_args.train_size", "16",
             "--data.init_args.val_size", "4", "--data.init_args.batch_size", "4",
             "--data.init_args.num_workers", "0", "--data.init_args.bucket_batches", "2", *SMALL_MODEL]

SIGNAL_AT = '''
import os
from pytorch_lightning.callbacks import Callback


class SignalAt(Callback):
    """Sends this process `signum` (`times` times) at the end of training step `step`."""

    def __init__(self, step: int, signum: int, times: int = 1) -> None:
        self.step, self.signum, self.times = step, signum, times

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            for _ in range(self.times):
                os.kill(os.getpid(), self.signum)
'''


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)  # the configs' relative paths
    monkeypatch.setattr(sys, "argv", ["htr"])
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "htr_test_signals.py").write_text(SIGNAL_AT)
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same weights need the same thread count
    yield
    torch.set_num_threads(threads)


def signal_config(tmp_path: Path, step: int, signum: int, times: int = 1) -> list[str]:
    path = tmp_path / "mods" / f"signal-{step}-{signum}-{times}.yaml"
    path.write_text(textwrap.dedent(f"""\
        trainer:
          callbacks:
          - class_path: htr_test_signals.SignalAt
            init_args: {{step: {step}, signum: {signum}, times: {times}}}
        """))
    return ["--config", str(path)]


def fit(root: Path, data: list[str], *extra: str) -> None:
    main(["fit", *data, *RUN, "--trainer.default_root_dir", str(root), *extra])


def fit_in_child(root: Path, data: list[str], *extra: str) -> int:
    """`fit` in a forked copy of this process; its exit status (128 + signal if a signal ended it)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            fit(root, data, *extra)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def only(paths) -> Path:
    paths = sorted(paths)
    assert len(paths) == 1, paths
    return paths[0]


def losses(run_folder: Path) -> list[tuple[int, str]]:
    with (run_folder / "metrics.csv").open() as f:
        return [(int(r["step"]), r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    differ = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"


def no_temp_files(root: Path) -> bool:
    return not [p for p in root.rglob("*.tmp")]


# ---- a folder of rendered lines for FolderDataModule ------------------------------------------------
@pytest.fixture(scope="module")
def lines(tmp_path_factory) -> Path:
    """train.tsv (8 lines) + val.tsv (2 lines), rendered synthetic lines saved as PNG."""
    root = tmp_path_factory.mktemp("lines")
    ds = SyntheticLineDataset("val", Codec(DEFAULT_CHARSET), SyntheticConfig(seed=7, val_size=10, max_chars=16))
    for split, indices in (("train", range(8)), ("val", range(8, 10))):
        rows = []
        for i in indices:
            image, text, _ = ds.load(i)
            image.save(root / f"l{i}.png")
            rows.append(f"l{i}.png\t{text}\n")
        (root / f"{split}.tsv").write_text("".join(rows), encoding="utf-8")
    return root


def folder_data(root: Path) -> list[str]:
    # 8 real + 4 synthetic lines an epoch (the mix sampler), augmented, loaded by 2 workers
    return ["--config", "configs/poilus.yaml", "--data.init_args.root", str(root),
            "--data.init_args.synthetic_ratio", "0.5", "--data.init_args.batch_size", "4",
            "--data.init_args.num_workers", "2", *SMALL_MODEL]


# ---- exact resume after SIGKILL ---------------------------------------------------------------------
@pytest.mark.parametrize("module", ["synthetic", "folder"])
def test_resume_after_sigkill_reproduces_an_uninterrupted_run(tmp_path, lines, module):
    data = SYNTHETIC if module == "synthetic" else folder_data(lines)
    fit(tmp_path / "whole", data)
    whole = only((tmp_path / "whole").glob("*/version_*"))
    assert [s for s, _ in losses(whole)] == list(range(10))

    # killed after step 6 (not a validation step: the last checkpoint is step 4's)
    status = fit_in_child(tmp_path / "cut", data, *signal_config(tmp_path, 6, signal.SIGKILL))
    assert status == 128 + signal.SIGKILL
    cut = only((tmp_path / "cut").glob("*/version_*"))
    last = cut / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4 and "interrupted" not in ckpt["htr"]
    assert ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["batches"] == 4 % len_epoch(module)

    fit(tmp_path / "elsewhere", data, "--ckpt_path", str(last))
    assert only((tmp_path / "cut").glob("*/version_*")) == cut and not (tmp_path / "elsewhere").exists()
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 10
    assert losses(cut) == losses(whole)  # the same batches: the same loss at every step, each step once
    assert_same_weights(last, whole / "checkpoints" / "last.ckpt")
    assert no_temp_files(tmp_path)


def len_epoch(module: str) -> int:
    return 4 if module == "synthetic" else 3  # 16 lines, or 8 real + 4 synthetic, in batches of 4


# ---- SIGTERM / SIGINT ---------------------------------------------------------------------------------
def test_sigterm_checkpoints_exits_143_and_the_printed_command_resumes(tmp_path):
    """A real `htr fit` process: SIGTERM at step 5 (inside a validation interval)."""
    root = tmp_path / "runs"
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "mods"), os.environ.get("PYTHONPATH", "")])}
    args = ["fit", *SYNTHETIC, *RUN, "--trainer.default_root_dir", str(root),
            *signal_config(tmp_path, 5, signal.SIGTERM)]
    proc = subprocess.run([sys.executable, "-m", "htr.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 143, proc.stderr[-3000:]
    last = only(root.rglob("last.ckpt"))
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 5
    assert ckpt["htr"]["interrupted"] == {"signal": "SIGTERM", "step": 5, "epoch": 1}
    assert f"stopped by SIGTERM after step 5 of 10; checkpoint: {last}" in proc.stderr
    [command] = re.findall(r"resume with: (.*)", proc.stderr)
    assert command.startswith("htr fit ") and command.endswith(f"--ckpt_path {last}")
    assert no_temp_files(root)
    assert [s for s, _ in losses(last.parent.parent)] == list(range(5))

    main(shlex.split(command)[1:])  # the printed command, as it is (its SignalAt fires at step 5 only)
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 10
    assert [s for s, _ in losses(last.parent.parent)] == list(range(10))
    fit(tmp_path / "whole", SYNTHETIC)  # resumed at a step that is not a validation step: still exact
    whole = only((tmp_path / "whole").glob("*/version_*"))
    assert losses(last.parent.parent) == losses(whole)
    assert_same_weights(last, whole / "checkpoints" / "last.ckpt")


def test_sigint_exits_130_with_a_checkpoint(tmp_path, capsys):
    before = signal.getsignal(signal.SIGINT)  # Python's default_int_handler, or SIG_IGN under a non-interactive `&`
    with pytest.raises(SystemExit) as stop:
        fit(tmp_path, SYNTHETIC, *signal_config(tmp_path, 3, signal.SIGINT))
    assert stop.value.code == 130
    last = only(tmp_path.rglob("last.ckpt"))
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 3 and ckpt["htr"]["interrupted"]["signal"] == "SIGINT"
    assert "resume with: htr fit " in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is before  # the handler given back


def test_a_second_signal_stops_at_once(tmp_path):
    status = fit_in_child(tmp_path, SYNTHETIC, *signal_config(tmp_path, 3, signal.SIGTERM, times=2))
    assert status == 143
    assert not list(tmp_path.rglob("last.ckpt"))  # stopped before any checkpoint (the first is at step 4)
    assert no_temp_files(tmp_path)


def test_signal_at_a_validation_step_checkpoints_after_the_validation(tmp_path):
    with pytest.raises(SystemExit) as stop:
        fit(tmp_path, SYNTHETIC, *signal_config(tmp_path, 4, signal.SIGTERM))
    assert stop.value.code == 143
    run = only(tmp_path.glob("*/version_*"))
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4 and ckpt["htr"]["interrupted"]["step"] == 4
    assert list((run / "checkpoints").glob("best-*step=4.ckpt"))  # the validation ran and was checkpointed
    with (run / "metrics.csv").open() as f:
        assert [int(r["step"]) for r in csv.DictReader(f) if r.get("val/cer")] == [3]


# ---- one run, one folder --------------------------------------------------------------------------------
def test_a_run_and_its_resume_share_one_folder(tmp_path):
    with pytest.raises(SystemExit):
        fit(tmp_path, SYNTHETIC, *signal_config(tmp_path, 6, signal.SIGTERM))
    run = only(tmp_path.glob("relu_add/version_*"))
    assert run.name == "version_0"
    fit(tmp_path, SYNTHETIC, "--ckpt_path", str(run / "checkpoints" / "last.ckpt"))
    assert [p.name for p in tmp_path.glob("relu_add/*")] == ["version_0"]  # no version_1 for the resume
    names = {p.name for p in run.iterdir()}
    assert {"metrics.csv", "hparams.yaml", "config.yaml", "checkpoints"} <= names
    assert len([n for n in names if n.startswith("events.out.tfevents")]) == 2  # TensorBoard: both processes
    assert [s for s, _ in losses(run)] == list(range(10))
    fit(tmp_path, SYNTHETIC, "--trainer.max_steps", "2")  # a new run: the next folder, for every log
    fresh = tmp_path / "relu_add" / "version_1"
    assert {"metrics.csv", "config.yaml", "checkpoints"} <= {p.name for p in fresh.iterdir()}
    assert any(p.name.startswith("events.out.tfevents") for p in fresh.iterdir())


# ---- checkpoint files ---------------------------------------------------------------------------------
def test_a_kill_during_a_checkpoint_write_leaves_the_previous_one(tmp_path, monkeypatch):
    folder = tmp_path / "ck"
    path = folder / "last.ckpt"
    atomic_save({"step": 1, "w": torch.ones(1000)}, path)
    real_save = torch.save

    def save_then_die(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    pid = os.fork()
    if pid == 0:
        torch.save = save_then_die
        try:
            atomic_save({"step": 2}, path)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert read_checkpoint(path)["step"] == 1  # the previous checkpoint, whole
    [orphan] = folder.glob(".last.ckpt.*.tmp")  # SIGKILL leaves its temporary file (in the same folder)
    assert orphan.stat().st_size > 0

    def save_then_interrupt(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"step": 3}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert read_checkpoint(path)["step"] == 1
    assert not list(folder.glob("*.tmp"))  # the interrupted write's file and the SIGKILL orphan: gone
    atomic_save({"step": 4}, path)
    assert read_checkpoint(path)["step"] == 4 and sorted(p.name for p in folder.iterdir()) == ["last.ckpt"]
    assert remove_orphans(folder) == []


def test_truncated_or_empty_checkpoint_is_a_checkpoint_error(tmp_path):
    good = tmp_path / "good.ckpt"
    atomic_save({"state_dict": {"w": torch.arange(10_000.0)}}, good)
    data = good.read_bytes()
    (tmp_path / "empty.ckpt").write_bytes(b"")
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"empty\.ckpt: the file is empty \(0 bytes\)"):
        read_checkpoint(tmp_path / "empty.ckpt")
    with pytest.raises(CheckpointError, match=rf"cut\.ckpt: {len(data) // 2} bytes, .*truncated"):
        read_checkpoint(tmp_path / "cut.ckpt")
    with pytest.raises(CheckpointError, match=r"empty\.ckpt: the file is empty"):
        load_model(tmp_path / "empty.ckpt")  # htr evaluate / transcribe / export
    with pytest.raises(CheckpointError, match=r"cut\.ckpt: .*truncated"):  # htr fit --ckpt_path, before training
        fit(tmp_path / "runs", SYNTHETIC, "--ckpt_path", str(tmp_path / "cut.ckpt"))
    run = tmp_path / "runs" / "relu_add" / "version_0" / "checkpoints"
    run.mkdir(parents=True)
    (run / "last.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"last\.ckpt: the file is empty"):
        fit(tmp_path / "runs", SYNTHETIC, "--ckpt_path", str(run / "last.ckpt"))


# ---- the training stream alone ---------------------------------------------------------------------
class Lines(Dataset):
    """Items whose width is a scrambled function of the index, with an augmenter of their own: the
    item records the first random number its augmenter draws (the per-line augmentation seed)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.augmenter = Augmenter(seed=0)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        w = 10 + (i * 7919) % 391
        draw = float(self.augmenter.pipeline.random_generator.random())
        return {"image": torch.full((1, 4, w), float(i)), "target": torch.tensor([1 + i % 5]), "text": str(draw),
                "id": str(i)}


def _signature(batch: dict) -> tuple:
    return tuple(batch["ids"]), tuple(batch["texts"]), batch["images"].shape[-1]


def _loaders(kind: str, workers: int, seed: int = 5):
    batch = partial(collate, pad_to_multiple=1)
    common = dict(num_workers=workers, persistent_workers=workers > 0, worker_init_fn=train_worker_init_fn,
                  generator=torch.Generator().manual_seed(seed))
    if kind == "bucketed":
        return ResumableLoader(WidthBucketedBatches(Lines(45), 4, batch, pool_batches=3, seed=seed), batch_size=None,
                               **common)
    mix = WeightedMix([Lines(10), Lines(8)], [1.0, 0.5])  # 10 + 4 draws an epoch
    sampler = MixSampler(mix, seed, with_seeds=True) if kind == "mix" else SeededSampler(Lines(14), seed, True)
    dataset = SeededItems(mix if kind == "mix" else sampler.dataset)
    return ResumableLoader(dataset, batch_size=4, sampler=sampler, collate_fn=batch, **common)


@pytest.mark.parametrize("kind, workers", [("bucketed", 0), ("bucketed", 2), ("mix", 0), ("shuffled", 2)])
def test_a_restored_loader_serves_what_an_uninterrupted_one_would(kind, workers):
    whole = _loaders(kind, workers)
    epochs = [[_signature(b) for b in whole] for _ in range(3)]
    per_epoch = len(whole)
    assert len(epochs[0]) == per_epoch and epochs[0] != epochs[1]
    for stop in (0, 1, per_epoch - 1, per_epoch, per_epoch + 2):
        first = _loaders(kind, workers)
        served, it = [], iter(first)
        for _ in range(stop):
            if len(served) % per_epoch == 0 and served:
                it = iter(first)
            served.append(_signature(next(it)))
        if stop % per_epoch == 0 and stop:
            next(it, None)  # Lightning finishes the epoch's iterator
        state = first.state_dict()
        restored = _loaders(kind, workers, seed=99)  # another seed: the state's wins
        restored.load_state_dict(state)
        rest = [_signature(b) for b in restored] + [_signature(b) for b in restored]
        flat = [b for e in epochs for b in e]
        assert served + rest == flat[:stop + len(rest)], f"stopped after {stop} batches"


def test_resume_point_follows_the_dataloader_turns():
    # workers with 3, 1 and 2 batches take turns w0 w1 w2 w0 w2 w0
    assert resume_point([3, 1, 2], 0) == ([0, 0, 0], 0)
    assert resume_point([3, 1, 2], 1) == ([1, 0, 0], 1)
    assert resume_point([3, 1, 2], 3) == ([1, 1, 1], 0)
    assert resume_point([3, 1, 2], 4) == ([2, 1, 1], 2)  # w1 has finished: w2's turn
    assert resume_point([3, 1, 2], 5) == ([2, 1, 2], 0)
    assert resume_point([3, 1, 2], 6) == ([3, 1, 2], 0)
    assert resume_point([5], 3) == ([3], 0)
