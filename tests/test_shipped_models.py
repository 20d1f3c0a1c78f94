"""The shipped recognisers read handwriting: the app's example lines (poilus val, writers never trained
on), synthetic lines in the held-out fonts, and (when ../shared is present) the whole poilus val split.
Garbage, untrained or synthetic-only weights fail these bounds (the old shipped relu_add read "e"
for a whole line); the measured figures are in MODELS.md."""
from pathlib import Path

import pytest

from htr.evaluate import build_datamodule, evaluate_model
from htr.inference import load_model, shipped_models
from htr.text.metrics import cer

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "app" / "examples"
POILUS = ROOT.parent / "shared" / "realdata" / "poilus"
REAL_LINES = {"poilus_1.png": "Versailles le 10 Décembre 1916.", "poilus_2.png": "le 11 Novembre 1915",
              "poilus_3.png": "Ma Femme devra aider ma Mère,"}  # app/examples/ATTRIBUTION.md
SYNTHETIC_LINES = {"synthetic_1.png": "Paris, le 3 mars 1916", "synthetic_2.png": "Je lègue tous mes biens à ma femme"}
CELLS = ("relu_add", "gru", "lstm")


def read(name: str, lines: dict[str, str], decoder: str) -> tuple[list[str], list[str]]:
    model = load_model(name)
    hyps = [t.text for t in model.transcribe([EXAMPLES / f for f in lines], decoder=decoder)]
    return list(lines.values()), hyps


def test_every_cell_ships_a_recogniser_and_a_base_model():
    assert set(CELLS) <= set(shipped_models())
    assert {f"base-{c}" for c in CELLS} <= set(shipped_models(base=True))
    for cell in CELLS:
        assert load_model(cell).cell == load_model(f"base-{cell}").cell == cell
        assert load_model(cell).lm is not None  # beam+lm decoding is possible with every shipped model


@pytest.mark.parametrize("cell", CELLS)
def test_shipped_model_reads_the_real_example_lines(cell):
    refs, hyps = read(cell, REAL_LINES, "beam+lm")
    assert cer(refs, hyps) < 0.3, list(zip(refs, hyps))


@pytest.mark.parametrize("cell", CELLS)
def test_base_model_reads_synthetic_lines_in_held_out_fonts(cell):
    refs, hyps = read(f"base-{cell}", SYNTHETIC_LINES, "greedy")
    assert cer(refs, hyps) < 0.25, list(zip(refs, hyps))


@pytest.mark.skipif(not (POILUS / "val.tsv").is_file(), reason=f"poilus data not found at {POILUS}")
@pytest.mark.parametrize("cell", CELLS)
def test_shipped_model_on_poilus_val_greedy(cell):
    model = load_model(cell)
    row = evaluate_model(model, build_datamodule(POILUS, model.net.config.height, 16), "val", "greedy")
    assert row["lines"] == 239 and row["cer"] < 0.35, row


@pytest.mark.parametrize("cell", CELLS)
def test_beam_lm_uses_the_shipped_lm(cell):
    """beam+lm decoding is the beam search with the model file's LM and scoring options, and the LM
    changes what is read: beam+lm differs from plain beam search on at least one real example line."""
    import torch

    from htr.data.images import collate
    from htr.text import BEAM_WIDTH
    from htr.text.decoding import decode_batch

    model = load_model(cell)
    paths = [EXAMPLES / f for f in REAL_LINES]
    beam = [t.text for t in model.transcribe(paths, decoder="beam")]
    with_lm = model.transcribe(paths, decoder="beam+lm")
    assert any(a != b.text for a, b in zip(beam, with_lm)), list(zip(beam, [t.text for t in with_lm]))
    batch = collate([{"image": model.preprocess(p)} for p in paths], pad_to_multiple=8)
    with torch.no_grad():
        log_probs, frames = model.net(batch["images"], batch["widths"])
    want = decode_batch(log_probs, frames, beam_width=BEAM_WIDTH, lm=model.lm, codec=model.codec, **model.decoding)
    assert [t.text for t in with_lm] == [model.codec.decode(idx) for idx, _ in want]
