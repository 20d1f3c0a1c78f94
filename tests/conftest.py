"""Fixtures shared by several test files: one torch thread, a learn-by-heart loop, the shared real data
(``../shared`` from the repository root), hand-counted error rates, and the app served for the API and
browser tests."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"  # the shared data sit next to the checkout: <repository>/../shared
# the app's three poilus example lines (not its paragraph): checks over one line alone are a few
# characters' luck either way
POILUS_EXAMPLE_LINES = sorted((ROOT / "app" / "examples").glob("poilus_[0-9].png"))


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """A missing tool that CI installs: fail under CI=true (so that CI cannot pass without it), skip here."""
    if in_ci():
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)  # also from a test module's top level


@pytest.fixture(scope="session")
def shared_data():
    """``shared_data("realdata/poilus")``: that folder under ../shared, or a skip naming where it was looked
    for. Missing shared data skips even under CI=true: the CI machine need not have them."""
    def find(relative: str, must_hold: str | None = None) -> Path:
        path = SHARED / relative
        if not (path / must_hold if must_hold else path).exists():
            pytest.skip(f"shared data not found: {path / (must_hold or '')} (expected at ../shared/{relative} "
                        f"from the repository root)")
        return path
    return find


def _levenshtein(a, b) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


@pytest.fixture(scope="session")
def hand_rates():
    """``hand_rates(refs, hyps) -> (cer, wer)``: corpus rates from a plain dynamic-programming edit distance,
    independent of htr.text.metrics (which uses the editdistance package)."""
    def rates(refs: list[str], hyps: list[str]) -> tuple[float, float]:
        chars = sum(_levenshtein(r, h) for r, h in zip(refs, hyps, strict=True)) / sum(len(r) for r in refs)
        words = sum(_levenshtein(r.split(), h.split()) for r, h in zip(refs, hyps)) / sum(len(r.split()) for r in refs)
        return chars, words
    return rates


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one torch and BLAS thread is as fast, and far faster than two on contended cores.
    Restored afterwards, also after a benchmark's own fix_threads."""
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    with threadpool_limits(1):
        torch.set_num_threads(1)
        yield
    torch.set_num_threads(threads)


@pytest.fixture
def learn_by_heart():
    """``learn(module, batch, max_steps, lr)``: Adam steps on one batch until greedy decoding reads every
    line (checked every 10 steps); returns the last transcriptions."""
    from htr.text.metrics import cer

    def learn(module, batch, max_steps: int, lr: float = 3e-3) -> list[str]:
        optimiser = torch.optim.Adam(module.parameters(), lr=lr)
        hyps: list[str] = []
        for step in range(1, max_steps + 1):
            module.train()
            loss, _, _, skipped = module.ctc_loss(batch)
            assert skipped == 0
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            if step % 10 == 0:
                module.eval()
                with torch.no_grad():
                    log_probs, frames = module.net(batch["images"], batch["widths"])
                hyps = [text for text, _ in module.transcribe_batch(log_probs, frames)]
                if cer(batch["texts"], hyps) == 0:
                    print(f"CER 0 after {step} steps")
                    break
        return hyps
    return learn


@pytest.fixture(scope="session")
def app_models():
    """The shipped models, loaded once for every app test."""
    from htr.inference import load_models, shipped_models

    if not shipped_models():
        pytest.skip("no shipped models in htr/models")
    return load_models()


@pytest.fixture(scope="session")
def app_url(app_models):
    """One app served in-process on a free localhost port, for the API and the browser tests alike."""
    from app import ui
    from htr.bench.app import free_port

    demo = ui.build_app(app_models, repeats=1)
    url = ui.serve(demo, "127.0.0.1", free_port(), block=False, quiet=True)
    try:
        yield url
    finally:
        demo.close()
