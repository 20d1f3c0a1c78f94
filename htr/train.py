"""The LightningModule: CTC loss, optimiser and schedule, logging. It receives the network's
configuration and builds the plain `Recognizer` (htr.nn); it owns no layers of its own."""
from __future__ import annotations

import logging
import math
import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, Timer
from torch import Tensor
from torch.nn import functional as F

from htr.errors import CodecError, DatasetError
from htr.inference import load_model
from htr.nn.recognizer import Recognizer, RecognizerConfig
from htr.text.codec import DEFAULT_CHARSET, Codec
from htr.text.decoding import decode_batch
from htr.text.metrics import ErrorRate
from htr.transfer import CharsetMode, init_recognizer, merge_charsets

log = logging.getLogger(__name__)


def ctc_feasible(targets: list[Tensor], frames: Tensor) -> Tensor:
    """Which labels can be aligned to their frames: CTC needs one frame per character plus one
    blank between each pair of equal neighbours."""
    need = torch.tensor([len(t) + int((t[1:] == t[:-1]).sum()) for t in targets], dtype=torch.int64)
    return need <= frames.cpu()


class ValidateAtLastStep(Callback):
    """Validate (and so checkpoint) after the last step of a `max_steps` run.

    Lightning validates every `val_check_interval` steps but not at `max_steps` unless the two align,
    so the last steps of a run were never validated and `last.ckpt` held an older state. Asking the
    trainer to stop at the last step makes it validate first, as it does when `max_time` runs out.
    """

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
            trainer.should_stop = True


class HTRModule(pl.LightningModule):
    def __init__(self, recognizer: RecognizerConfig | None = None, charset: str = DEFAULT_CHARSET,
                 lr: float = 1e-3, weight_decay: float = 1e-2, warmup_steps: int = 200,
                 beam_width: int = 1, recurrent_on_cpu: bool = False, init_from: str | None = None,
                 init_charset: CharsetMode = "union", data_charset: str | None = None,
                 freeze_encoder: bool = False) -> None:
        """The CTC training of a ``Recognizer``.

        Args:
            recognizer: the network (cell, sizes). Left unset with ``init_from``, the source model's.
            charset: the data's characters, in the order its targets are encoded (linked from the data
                module by the CLI).
            lr: AdamW's peak learning rate.
            weight_decay: AdamW's decoupled weight decay.
            warmup_steps: linear warm-up, then cosine decay to 5 % of lr over the run (max_steps, or
                trainer.max_time when that budget ends first).
            beam_width: decoding for validation/test/predict (1 = greedy).
            recurrent_on_cpu: on an accelerator, keep the recurrent decoder and classifier on the CPU,
                where relu_add has compiled kernels (its per-step loop is launch-bound on CUDA).
            init_from: start from this model's weights instead of random ones: a shipped name
                (relu_add, base-gru, ...), a .ckpt or a .safetensors file (htr.transfer).
            init_charset: with init_from, the model's characters: "union" keeps the source's and adds the
                data's new ones, "new" keeps the data's only.
            data_charset: set when restoring a saved module: the data's charset when it differs from the
                model's (``charset`` then holds the model's). Leave unset.
            freeze_encoder: train the recurrent decoder and classifier only; the CNN encoder keeps its
                weights and batch-norm statistics (fine-tuning on few lines, as kraken's --freeze-backbone).
        """
        super().__init__()
        if isinstance(recognizer, dict):
            recognizer = RecognizerConfig.from_dict(recognizer)
        data_codec = Codec(data_charset or charset)
        if init_from:
            source = load_model(init_from)
            self.codec = Codec(merge_charsets(source.codec.charset, data_codec.charset, init_charset))
            self.net, rows = init_recognizer(source, recognizer, self.codec, str(init_from))
            log.info("initialised from %s: %d classifier rows copied, %d new, codec of %d characters (%s)",
                     init_from, rows["copied"], rows["new"], len(self.codec.charset), init_charset)
        else:
            self.codec = Codec(charset)
            self.net = Recognizer(recognizer or RecognizerConfig(), num_classes=len(self.codec))
        # Targets arrive encoded with the data's codec: map them to the model's when the two differ.
        if data_codec != self.codec:
            unknown = self.codec.missing(data_codec.charset)
            if unknown:
                raise CodecError(f"the data's characters {''.join(unknown)!r} are not in the model's charset; "
                                 f"expected init_charset='union' or a charset that holds them")
            mapping = [0] + self.codec.encode(data_codec.charset)
            self.register_buffer("target_map", torch.tensor(mapping, dtype=torch.long), persistent=False)
        else:
            self.target_map = None
        # What rebuilds this module exactly (load_from_checkpoint): the model's charset, the data's if
        # different, and no init_from (the weights come from the checkpoint).
        self.save_hyperparameters({"recognizer": self.net.config.to_dict(), "charset": self.codec.charset,
                                   "data_charset": None if self.target_map is None else data_codec.charset,
                                   "lr": lr, "weight_decay": weight_decay, "warmup_steps": warmup_steps,
                                   "beam_width": beam_width, "recurrent_on_cpu": recurrent_on_cpu,
                                   "freeze_encoder": freeze_encoder})
        self.net.encoder.requires_grad_(not freeze_encoder)
        self.init_from = init_from
        self.metrics = torch.nn.ModuleDict({
            f"{stage}_{name}": ErrorRate(unit, ignore_case=ic)
            for stage in ("val", "test")
            for name, unit, ic in (("cer", "char", False), ("wer", "word", False), ("cer_nocase", "char", True))})
        self.skipped_lines = 0  # training lines whose label cannot fit their frame count

    def setup(self, stage: str) -> None:
        data = getattr(self.trainer, "datamodule", None)
        height = getattr(data, "height", None)
        if height is not None and height != self.net.config.height:
            raise DatasetError(f"the data module's line height is {height} px but the network expects "
                               f"{self.net.config.height} px; set data.init_args.height: {self.net.config.height}")

    def on_fit_start(self) -> None:
        if self.hparams.recurrent_on_cpu and self.device.type != "cpu":
            self.net.decoder.cpu()
            self.net.classifier.cpu()

    on_validation_start = on_test_start = on_predict_start = on_fit_start

    # ---- loss ---------------------------------------------------------------------------------
    def ctc_loss(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor, Tensor, int]:
        """Mean per-character CTC loss over the lines whose label fits; returns the number skipped."""
        log_probs, frames = self.net(batch["images"], batch["widths"])  # (T, N, C), (N,)
        encoded = batch["targets"] if self.target_map is None else self.target_map[batch["targets"]]
        targets = list(encoded.split(batch["target_lengths"].tolist()))
        ok = ctc_feasible(targets, frames)
        skipped = int((~ok).sum())
        if not bool(ok.any()):
            return log_probs.sum() * 0.0, log_probs, frames, skipped  # keeps the graph, no NaN
        keep = ok.nonzero().squeeze(1).tolist()
        kept_targets = [targets[i] for i in keep]
        lengths = torch.tensor([len(t) for t in kept_targets], dtype=torch.int64)
        frames = frames.to(log_probs.device)
        losses = F.ctc_loss(log_probs[:, keep].float(), torch.cat(kept_targets).to(log_probs.device),
                            frames[keep], lengths, blank=0, reduction="none", zero_infinity=True)
        return (losses / lengths.clamp(min=1).to(losses)).mean(), log_probs, frames, skipped

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        loss, _, _, skipped = self.ctc_loss(batch)
        self.skipped_lines += skipped
        n = len(batch["texts"])
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log("train/skipped_lines", float(self.skipped_lines), batch_size=n, sync_dist=True, reduce_fx="sum")
        return loss

    # ---- evaluation ---------------------------------------------------------------------------
    def transcribe_batch(self, log_probs: Tensor, frames: Tensor) -> list[tuple[str, float]]:
        decoded = decode_batch(log_probs.float().cpu(), frames.cpu(), beam_width=self.hparams.beam_width)
        return [(self.codec.decode(idx), conf) for idx, conf in decoded]

    def _eval_step(self, stage: str, batch: dict[str, Any]) -> None:
        loss, log_probs, frames, _ = self.ctc_loss(batch)
        hyps = [text for text, _ in self.transcribe_batch(log_probs, frames)]
        n = len(hyps)
        self.log(f"{stage}/loss", loss, batch_size=n, sync_dist=True)
        for name in ("cer", "wer", "cer_nocase"):
            metric = self.metrics[f"{stage}_{name}"]
            metric.update(batch["texts"], hyps)
            self.log(f"{stage}/{name}", metric, prog_bar=name == "cer", batch_size=n)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        log_probs, frames = self.net(batch["images"], batch["widths"])
        return [{"id": i, "text": text, "confidence": conf}
                for i, (text, conf) in zip(batch["ids"], self.transcribe_batch(log_probs, frames))]

    # ---- optimisation -------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "HTRModule":
        super().train(mode)
        if self.hparams.get("freeze_encoder"):
            self.net.encoder.eval()  # frozen batch-norm statistics and no encoder dropout
        return self

    def configure_optimizers(self):
        trainable = [p for p in self.parameters() if p.requires_grad]
        optimiser = torch.optim.AdamW(trainable, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = min(self.hparams.warmup_steps, total // 2)
        timer = next((c for c in self.trainer.callbacks if isinstance(c, Timer)), None)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, total - warmup)
            remaining = timer.time_remaining("train") if timer is not None else None
            if remaining is not None:  # trainer.max_time set: the cosine spans the time budget if it ends first
                elapsed = timer.time_elapsed("train")
                progress = max(progress, elapsed / max(1e-9, elapsed + remaining))
            return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Everything needed to rebuild the network and read its output, in plain JSON-able types (and
        # what a callback put there already, e.g. htr.checkpointing's interrupt mark), plus what an
        # exact resume needs beyond Lightning's own state: the global random streams (dropout) and the
        # count of skipped lines. Plain types and tensors only: weights_only loading still works.
        checkpoint.setdefault("htr", {}).update({
            "codec": self.codec.to_dict(), "recognizer": self.net.config.to_dict(), "init_from": self.init_from,
            "skipped_lines": self.skipped_lines, "rng": rng_state()})

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("htr") or {}
        self.skipped_lines = int(saved.get("skipped_lines", 0))
        self._rng_to_restore = saved.get("rng")

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # A resumed run takes up the random streams where the checkpointed run left them, at the last
        # moment before its first step (after the sanity check and the loaders' start).
        state = getattr(self, "_rng_to_restore", None)
        if state is not None:
            set_rng_state(state)
            self._rng_to_restore = None


def rng_state() -> dict[str, Any]:
    """The global random states (torch CPU and CUDA, numpy, Python), in weights_only-loadable types."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
            "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "python": list(random.getstate()[1]) + [random.getstate()[2]]}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    *keys, gauss = state["python"]
    random.setstate((3, tuple(keys), gauss))
