"""The app in a real browser: the chromium on PATH (Debian's package) driven by Playwright's Python package.

Starts the app in-process on a free localhost port, uploads a bundled example, runs the transcription,
reads every model's transcription and latency from the page, saves a screenshot to
artifacts/browser/app.png, then checks that a bad file gets a message in the page, that the app still
works, and that a drawing on the sketch pad is transcribed.
No browser is downloaded: `.ci/run` apt-installs chromium when `command -v chromium` finds none. Without
one the test is skipped, with the install line; under CI=true it fails instead.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

# what .ci/run looks for (`command -v chromium`), then the other names distributions use
_FOUND = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
CHROMIUM = Path(_FOUND) if _FOUND else None
ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "artifacts" / "browser" / "app.png"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="session", autouse=True)  # session: checked before the session-scoped app starts
def _chromium():
    if CHROMIUM is None:
        from conftest import skip_or_fail

        skip_or_fail("no chromium on PATH (apt-get install chromium; .ci/run does it)")


def test_transcribe_an_example_in_chromium(app_url, app_models, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from app import ui
    from htr.inference import load_model

    url, names = app_url, list(app_models)
    example = ui.EXAMPLES_DIR / "poilus_1.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.set_default_timeout(60_000)
            page.goto(url)
            page.locator("#input-image input[type=file]").set_input_files(str(example))
            expect(page.locator("#input-image img").first).to_be_visible()
            page.locator("#run").click()
            expect(page.locator("#status")).to_contain_text("Transcribed", timeout=90_000)

            texts, totals = {}, {}
            for n in names:
                texts[n] = page.locator(f"#text-{ui.slug(n)} textarea").input_value()
                stats = page.locator(f"#stats-{ui.slug(n)}").inner_text()
                m = re.search(r"total ([\d.]+) ms \(preprocess ([\d.]+), encoder ([\d.]+), decoder ([\d.]+), "
                              r"ctc ([\d.]+)\)", stats)
                assert m, stats
                totals[n] = [float(x) for x in m.groups()]
                assert totals[n][0] > 0 and totals[n][0] == pytest.approx(sum(totals[n][1:]), abs=0.25)
                assert re.search(r"confidence [01]\.\d{3}", stats), stats
            for n in names:  # the page shows what the model reads
                assert texts[n] == load_model(n).transcribe([example])[0].text
            expect(page.locator("#latency-table")).to_contain_text("decoder ms")
            if {"relu_add", "gru", "lstm"} <= set(names):
                expect(page.locator("#speedup")).to_contain_text("relu_add vs gru")
                expect(page.locator("#speedup")).to_contain_text("relu_add vs lstm")
            page.wait_for_timeout(500)  # let the bar chart draw
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            print(f"\nbrowser read: {texts}; ms (total, preprocess, encoder, decoder, ctc): {totals}")

            # a bad file: a message in the page, then the next request works
            bad = tmp_path / "notes.png"
            bad.write_bytes(b"not an image at all\n" * 10)
            page.get_by_role("tab", name="Any file").click()
            page.locator("#input-file input[type=file]").set_input_files(str(bad))
            expect(page.locator("#input-file")).to_contain_text("notes.png")
            page.locator("#run").click()
            expect(page.locator("#status")).to_contain_text("notes.png: unreadable or corrupt image", timeout=60_000)
            page.get_by_role("tab", name="Upload or paste").click()
            page.locator("#run").click()
            expect(page.locator("#status")).to_contain_text("Transcribed poilus_1.png", timeout=60_000)

            # the sketch pad: a drawn scribble is transcribed (whatever it reads)
            page.get_by_role("tab", name="Draw").click()
            page.get_by_role("button", name="Brush").click()
            box = page.locator("#input-sketch canvas").first.bounding_box()
            x, y = box["x"] + 0.2 * box["width"], box["y"] + 0.5 * box["height"]
            page.mouse.move(x, y)
            page.mouse.down()
            for i in range(40):
                page.mouse.move(x + 12 * i, y + (15 if i % 4 < 2 else -15))
            page.mouse.up()
            page.locator("#run").click()
            expect(page.locator("#status")).to_contain_text("Transcribed drawing", timeout=60_000)
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 10_000
