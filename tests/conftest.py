"""Fixtures shared by the app tests (gradio_client API and browser)."""
from __future__ import annotations

import pytest


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
