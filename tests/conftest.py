"""Fixtures shared by several test files: one torch thread, a learn-by-heart loop, and the app served
for the API and browser tests."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is as fast, and far faster than two on contended cores."""
    threads = torch.get_num_threads()
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
    from app import ui
    from htr.inference import shipped_models

    if not shipped_models():
        pytest.skip("no shipped models in htr/models")
    return ui.load_models()


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
