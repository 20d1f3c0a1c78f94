"""The distributed path on CPU: DDP with the gloo backend on 2 processes.

`htr fit` runs in a subprocess (`python -m htr.cli`): Lightning's ddp strategy starts the other rank by
re-running that command line. A second test checks that the CER/WER metric objects sum their counts
across processes (what makes a DDP validation CER the corpus CER, not rank 0's share).
"""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from htr.text.metrics import ErrorRate, cer, wer

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


@pytest.mark.timeout(300)  # a hang guard (pytest-timeout): the exception kills the subprocess on its way out
def test_fit_ddp_two_cpu_processes(tmp_path):
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("MASTER_PORT", None)  # Lightning picks a free port
    cmd = [sys.executable, "-m", "htr.cli", "fit", "--config", "configs/synthetic.yaml",
           "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
           "--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.log_every_n_steps", "1",
           "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
           "--trainer.default_root_dir", str(tmp_path),
           # 8 training lines = one batch of 4 per process and step; 4 validation lines = 2 per process
           "--data.init_args.train_size", "8", "--data.init_args.val_size", "4", "--data.init_args.batch_size", "4",
           "--data.init_args.num_workers", "0",
           "--model.recognizer.hidden_size", "16", "--model.recognizer.feature_size", "32",
           "--model.recognizer.channels", "[8, 16, 16, 16]"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert ("distributed_backend=gloo" in log
            and "All distributed processes registered. Starting with 2 processes" in log)
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in log  # the second rank really ran

    [last] = tmp_path.rglob("last.ckpt")
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2 and ckpt["htr"]["recognizer"]["cell"] == "relu_add"
    assert list(tmp_path.rglob("best-*step=2.ckpt"))  # val/cer reached ModelCheckpoint's monitor
    [metrics] = tmp_path.rglob("metrics.csv")  # rank 0 writes the logs
    rows = list(csv.DictReader(metrics.open()))
    val = [r for r in rows if r.get("val/cer")]
    assert len(val) == 1 and float(val[0]["val/loss"]) > 0
    assert [int(r["step"]) for r in rows if r.get("train/loss")] == [0, 1]
    # The logged val/cer is the corpus CER of all 4 validation lines (2 per process): the same checkpoint
    # (validated, then saved, at step 2) read by one process over the same rendered lines gives it exactly.
    from htr.data import SyntheticDataModule
    from htr.evaluate import evaluate_model
    from htr.inference import load_model

    model = load_model(last)
    data = SyntheticDataModule(train_size=8, val_size=4, batch_size=4, num_workers=0, height=48, system_fonts=True,
                               augment=False)
    row = evaluate_model(model, data, "val", "greedy")
    assert row["lines"] == 4
    assert float(val[0]["val/cer"]) == pytest.approx(row["cer"], abs=1e-6)
    assert float(val[0]["val/wer"]) == pytest.approx(row["wer"], abs=1e-6)


# ---- metric synchronisation ---------------------------------------------------------------------
SHARDS = [(["le chat", "noir"], ["le chat", "nor"]),            # rank 0: 1 char error
          (["une maison bleue", "x"], ["une maisn bleu", "y"])]  # rank 1: 3 char errors


def _sync_worker(rank: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        metrics = [ErrorRate("char"), ErrorRate("word")]
        refs, hyps = SHARDS[rank]
        for m in metrics:
            m.update(refs, hyps)
        values = [float(m.compute()) for m in metrics]  # compute() all-reduces the counts
        torch.save(values, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(120)  # a hang guard (pytest-timeout); the finally kills the children if it fires
def test_error_rate_sums_counts_across_processes(tmp_path):
    # fork: the children need no fresh interpreter (spawn would re-import torch, several seconds)
    ctx = mp.start_processes(_sync_worker, args=(str(tmp_path / "init"), str(tmp_path / "out")), nprocs=2,
                             join=False, start_method="fork")
    try:
        while not ctx.join(timeout=1):
            pass
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
    # Counted by hand. Characters: "le chat" 7 + "noir" 4 + "une maison bleue" 16 + "x" 1 = 28, edits
    # noir>nor 1 + maison>maisn 1 + bleue>bleu 1 + x>y 1 = 4. Words: 2 + 1 + 3 + 1 = 7, wrong: nor, maisn,
    # bleu, y = 4. Rank 0 alone: 1 edit in 11 characters, 1 wrong word in 3.
    expected = [4 / 28, 4 / 7]
    assert cer(*SHARDS[0]) == pytest.approx(1 / 11) and wer(*SHARDS[0]) == pytest.approx(1 / 3)
    for rank in range(2):
        assert torch.load(tmp_path / f"out.{rank}") == pytest.approx(expected)
