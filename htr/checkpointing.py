"""Training that survives being stopped: atomic checkpoint files, a checkpoint on SIGTERM / SIGINT,
and one folder per run.

* ``atomic_save`` / ``AtomicCheckpointIO`` (htr.ckptfile): a checkpoint is written to a temporary file in its own
  folder, flushed and fsynced, then renamed over the old one (and the folder fsynced), so a kill at
  any moment leaves the previous checkpoint whole. The temporary file is removed on every exit path
  Python sees; one left by a SIGKILL is removed by the next save to that folder.
* ``read_checkpoint``: a missing, empty or truncated file is a ``CheckpointError`` that names it and
  says what was found (instead of torch's bare ``EOFError``).
* ``InterruptCheckpoint``: during ``htr fit`` the first SIGTERM or SIGINT lets the current optimiser
  step finish, writes ``last.ckpt`` (marked ``checkpoint["htr"]["interrupted"]``) with the state an
  exact resume needs (the data loader's position, htr.data.resumable, and the random streams,
  htr.train), and ends the run; ``htr fit`` then exits with 128 + the signal number (143 / 130) and
  prints where the checkpoint is and the command that resumes it. A second signal stops at once.
* ``plan_run`` + ``RunCSVLogger`` / ``RunTensorBoardLogger``: the CSV log, the TensorBoard log, the
  checkpoints and the resolved config of a run share ``<root>/<cell>/version_N/``; a run resumed from
  a checkpoint of that layout appends to that folder (log rows and events of the steps after the
  checkpoint, which the resumed run logs again, are dropped).
"""
from __future__ import annotations

import csv
import json
import os
import re
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning_fabric.loggers.logger import rank_zero_experiment
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import Checkpoint, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from htr.ckptfile import _WRITING, TMP_SUFFIX, atomic_save, read_checkpoint, remove_orphans

__all__ = ["TMP_SUFFIX", "atomic_save", "read_checkpoint", "remove_orphans", "AtomicCheckpointIO",
           "InterruptCheckpoint", "RunCSVLogger", "RunTensorBoardLogger", "plan_run"]
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with ``atomic_save`` (local paths) and ``read_checkpoint``'s errors."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):  # remote (fsspec) paths: Lightning's own way
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_save(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any = lambda storage, loc: storage,
                        weights_only: bool | None = None) -> dict[str, Any]:
        if "://" in str(path):
            return super().load_checkpoint(path, map_location, weights_only)
        kwargs = {} if weights_only is None else {"weights_only": weights_only}
        return read_checkpoint(path, map_location=map_location, **kwargs)


def use_atomic_checkpoints(trainer: Any) -> None:
    """Give the trainer's strategy an AtomicCheckpointIO, unless another IO was configured."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()


# ---- one run, one folder --------------------------------------------------------------------------
@dataclass(frozen=True)
class RunPlan:
    save_dir: str
    name: str
    version: int
    resume_step: int | None = None  # the checkpoint's global step when resuming into the folder

    @property
    def folder(self) -> Path:
        return Path(self.save_dir) / self.name / f"version_{self.version}"


RUN_ENV = "HTR_RUN_FOLDER"  # rank 0's choice, inherited by the DDP processes Lightning starts


def run_of_checkpoint(ckpt_path: str | Path) -> tuple[str, str, int] | None:
    """(save_dir, name, version) of ``<save_dir>/<name>/version_N/checkpoints/<file>``, else None."""
    p = Path(ckpt_path)
    match = re.fullmatch(r"version_(\d+)", p.parent.parent.name)
    if p.parent.name != "checkpoints" or match is None or not p.parent.parent.parent.name:
        return None
    return str(p.parent.parent.parent.parent), p.parent.parent.parent.name, int(match.group(1))


def next_version(save_dir: str | Path, name: str) -> int:
    root = Path(save_dir) / name
    taken = [int(m.group(1)) for d in (root.iterdir() if root.is_dir() else [])
             if d.is_dir() and (m := re.fullmatch(r"version_(\d+)", d.name))]
    return max(taken) + 1 if taken else 0


def plan_run(save_dir: str, name: str, ckpt_path: str | None = None) -> RunPlan:
    """Where a run logs and checkpoints: the folder of ``ckpt_path`` when it lies in a run folder
    (the resumed run appends there, from the checkpoint's step), else a new ``version_N``."""
    if ckpt_path and (found := run_of_checkpoint(ckpt_path)) is not None:
        step = read_checkpoint(ckpt_path, mmap=True).get("global_step")
        return RunPlan(*found, resume_step=int(step) if step is not None else None)
    inherited = os.environ.get(RUN_ENV)
    if inherited and os.environ.get("LOCAL_RANK", "0") != "0":  # a DDP child: rank 0 chose already
        chosen = json.loads(inherited)
        if chosen[:2] == [str(save_dir), name]:
            return RunPlan(str(save_dir), name, int(chosen[2]))
    plan = RunPlan(str(save_dir), name, next_version(save_dir, name))
    os.environ[RUN_ENV] = json.dumps([plan.save_dir, plan.name, plan.version])
    return plan


class _AppendingWriter(ExperimentWriter):
    """CSV writer that keeps an existing metrics.csv (Lightning's deletes it), minus the rows logged
    at steps >= ``purge_step``."""

    def __init__(self, log_dir: str, purge_step: int | None = None) -> None:
        self._purge_step = purge_step
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            fields = list(reader.fieldnames or [])
        self.metrics_keys = fields
        if self._purge_step is None:
            return
        kept = [r for r in rows if _row_step(r) < self._purge_step]
        if len(kept) != len(rows):
            with self._fs.open(self.metrics_file_path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows(kept)


def _row_step(row: dict[str, str]) -> float:
    try:
        return float(row.get("step") or "-inf")
    except ValueError:
        return float("-inf")


class RunCSVLogger(CSVLogger):
    """Lightning's CSVLogger, except that a resumed run appends to its folder's metrics.csv (after
    dropping the rows at steps >= ``purge_step``, which it logs again) and that the file is written
    out at every checkpoint, so the log holds at least every step the checkpoints hold."""

    def __init__(self, save_dir: str, name: str | None = "lightning_logs", version: int | str | None = None,
                 prefix: str = "", flush_logs_every_n_steps: int = 100, purge_step: int | None = None) -> None:
        super().__init__(save_dir, name=name, version=version, prefix=prefix,
                         flush_logs_every_n_steps=flush_logs_every_n_steps)
        self.purge_step = purge_step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(self.log_dir, self.purge_step)
        return self._experiment

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        self.save()


class RunTensorBoardLogger(TensorBoardLogger):
    """Lightning's TensorBoardLogger with SummaryWriter's ``purge_step``: a resumed run hides the events
    its folder holds from steps >= purge_step (logged again by the resumed run)."""

    def __init__(self, save_dir: str, name: str | None = "lightning_logs", version: int | str | None = None,
                 purge_step: int | None = None, default_hp_metric: bool = True) -> None:
        kwargs = {"purge_step": purge_step} if purge_step is not None else {}
        super().__init__(save_dir, name=name, version=version, default_hp_metric=default_hp_metric, **kwargs)


# ---- stopping on a signal ---------------------------------------------------------------------------
class TrainingInterrupted(SystemExit):
    """``htr fit`` stopped by a signal; the exit status is 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + int(signum))
        self.signum = int(signum)


def _say(message: str) -> None:
    print(f"htr fit: {message}", file=sys.stderr, flush=True)


def _signame(signum: int | None) -> str:
    return signal.Signals(signum).name if signum else "a signal"


def stop_now(signum: int) -> None:
    """The second signal: remove a checkpoint file being written, exit at once (no cleanup)."""
    for tmp in list(_WRITING):
        with suppress(OSError):
            os.unlink(tmp)
    _say(f"second {_signame(signum)}: stopping now, without a checkpoint of the steps since the last one")
    os._exit(128 + int(signum))


def stop_before_training(signum: int, frame: Any) -> None:
    """Handler until training starts: nothing to save yet, so stop at once (143 / 130)."""
    _say(f"{_signame(signum)} before the first training step: stopping, nothing to save")
    raise TrainingInterrupted(signum)


def install_handlers(handler: Any) -> dict[int, Any]:
    """Set ``handler`` for SIGTERM and SIGINT (main thread only); returns the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for s in STOP_SIGNALS:
        signal.signal(s, handler)
    return previous


def restore_handlers(previous: dict[int, Any], only_if: Any = None) -> None:
    """Put ``previous`` handlers back (only where ``only_if`` is still installed, if given)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for s, handler in previous.items():
        if only_if is None or signal.getsignal(s) == only_if:
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def resume_command(command: Sequence[str], ckpt: str | Path) -> str:
    """``command`` with its ``--ckpt_path`` replaced by ``ckpt``."""
    args, skip = [], False
    for a in command:
        if skip:
            skip = False
        elif a == "--ckpt_path":
            skip = True
        elif not a.startswith("--ckpt_path="):
            args.append(a)
    return shlex.join([*args, "--ckpt_path", str(ckpt)])


class InterruptCheckpoint(Checkpoint):
    """SIGTERM / SIGINT during fit: finish the step (and a validation due after it), write last.ckpt
    marked as an interrupt, end the run; a second signal stops at once (``stop_now``).

    Its handlers replace Lightning's SIGTERM handler once training starts. The run ends through
    Lightning's own deferred SIGTERM exit, which comes after the step's logging; ``htr fit`` turns it
    into exit status 128 + signal (``exit_error``). A ``Checkpoint`` so that Lightning runs it after the
    ModelCheckpoints: at a validation, best and last are written first.
    """

    def __init__(self, command: Sequence[str] | None = None) -> None:
        self.command = list(command) if command else ["htr", "fit"]
        self.signum: int | None = None
        self.path: str | None = None  # the interrupt checkpoint, once written
        self.step: int | None = None
        self.max_steps = -1
        self.resumed_from: str | None = None
        self._mark: dict[str, Any] | None = None
        self._previous: dict[int, Any] = {}

    # -- signals ------------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            stop_now(signum)
        self.signum = signum
        _say(f"{_signame(signum)} received: finishing the current step, then writing a checkpoint "
             f"(send it again to stop at once)")

    def _install(self) -> None:
        if not self._previous:
            self._previous = install_handlers(self._on_signal)

    def _uninstall(self) -> None:
        restore_handlers(self._previous, only_if=self._on_signal)
        self._previous = {}

    def _requested(self, trainer: Any) -> bool:
        asked = trainer.strategy.reduce_boolean_decision(self.signum is not None, all=False)  # any rank
        if asked and self.signum is None:
            self.signum = signal.SIGTERM  # another rank got the signal
        return bool(asked)

    # -- hooks --------------------------------------------------------------------------------------
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit":
            return
        self.signum, self.path, self.step, self.max_steps = None, None, None, trainer.max_steps
        self.resumed_from = str(trainer.ckpt_path) if trainer.ckpt_path else None
        if trainer.is_global_zero:
            for cb in trainer.checkpoint_callbacks:
                if isinstance(cb, ModelCheckpoint) and cb.dirpath and os.path.isdir(cb.dirpath):
                    remove_orphans(cb.dirpath)

    def on_sanity_check_start(self, trainer: Any, pl_module: Any) -> None:
        self._install()  # Lightning has registered its own SIGTERM handler by now: replace it

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._install()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage == "fit":
            self._uninstall()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        pass  # keep the handlers until htr fit exits: a second signal still stops at once

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.path is None and self._requested(trainer) and not _validation_follows(trainer):
            self._save(trainer)  # else after the validation due at this step (on_validation_end)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if self.path is not None or not self._requested(trainer):
            return
        if trainer.sanity_checking:  # no step since the start (or the resumed checkpoint): nothing to save
            _stop(trainer)
        else:
            self._save(trainer)

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        if self._mark is not None:
            checkpoint.setdefault("htr", {})["interrupted"] = dict(self._mark)

    def _save(self, trainer: Any) -> None:
        path = last_checkpoint_path(trainer)
        self._mark = {"signal": _signame(self.signum), "step": int(trainer.global_step),
                      "epoch": int(trainer.current_epoch)}
        try:
            trainer.save_checkpoint(path)
        finally:
            self._mark = None
        self.path, self.step = path, int(trainer.global_step)
        _stop(trainer)

    # -- the closing note ---------------------------------------------------------------------------
    def exit_error(self) -> TrainingInterrupted:
        """Print where the run stopped and how to resume it; the exception ``htr fit`` exits with."""
        signum = self.signum or signal.SIGTERM
        planned = f" of {self.max_steps}" if self.max_steps and self.max_steps > 0 else ""
        if self.path is not None:
            _say(f"stopped by {_signame(signum)} after step {self.step}{planned}; checkpoint: {self.path}")
            _say(f"resume with: {resume_command(self.command, self.path)}")
        elif self.resumed_from:
            _say(f"stopped by {_signame(signum)} before a training step; nothing new to save")
            _say(f"resume with: {resume_command(self.command, self.resumed_from)}")
        else:
            _say(f"stopped by {_signame(signum)} before a training step; nothing to save")
        return TrainingInterrupted(signum)


def _stop(trainer: Any) -> None:
    """End the run the way Lightning ends it on SIGTERM: after this step's logging (and validation),
    by a SIGTERMException that ``htr fit`` catches."""
    trainer._signal_connector.received_sigterm = True


def _validation_follows(trainer: Any) -> bool:
    """Whether Lightning validates right after this training batch (its own test, private API)."""
    try:
        loop = trainer.fit_loop
        return bool(loop.epoch_loop._should_check_val_fx(loop._data_fetcher))
    except Exception:  # noqa: BLE001 - another Lightning version: checkpoint at once
        return False


def last_checkpoint_path(trainer: Any) -> str:
    """Where ``last.ckpt`` goes: the folder of the ModelCheckpoint named "last" (or of the first one)."""
    callbacks = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath]
    named = [cb for cb in callbacks if cb.filename == "last"] or callbacks
    folder = named[0].dirpath if named else os.path.join(trainer.log_dir or trainer.default_root_dir, "checkpoints")
    return os.path.join(folder, "last.ckpt")
