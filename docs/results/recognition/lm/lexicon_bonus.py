"""Does a lexicon bonus help beam+lm? The reference prefix search of htr.text.decoding, plus `bonus` per
completed word found in a lexicon: the words of the LM's training text (the recipe's real training
lines), optionally with wordfreq's 50,000 most frequent French words (`--wordfreq`, needs
`pip install wordfreq`; its data is CC-BY-SA 4.0, used here only to measure, not shipped).

    python docs/results/recognition/lm/lexicon_bonus.py --models gru relu_add --bonus 0 1 2 4 [--wordfreq]

Beam width 16 (the Python search is slow), LM weight 0.8, insertion bonus 2 (the shipped ones).
Prints poilus val CER % per model and bonus. Results: docs/results/recognition.md ("Beam+lm scoring").
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch

from htr.evaluate import build_datamodule
from htr.inference import load_model
from htr.text.codec import normalize_text
from htr.text.decoding import beam_search
from htr.text.metrics import edit_counts

WORD = re.compile(r"\w+")
POILUS = Path("../shared/realdata/poilus")


class LexiconBonusLM:
    """The model's char LM, plus bonus / lm_weight whenever a character (or the line's end) completes a
    word of the lexicon: beam+lm's rank then gains `bonus` per completed lexicon word."""

    def __init__(self, lm, lexicon: set[str], bonus: float, lm_weight: float) -> None:
        self.lm, self.lexicon, self.extra, self.EOS = lm, lexicon, bonus / lm_weight, lm.EOS

    def score(self, text: str, ch: str) -> float:
        ends_word = WORD.fullmatch(ch) is None and bool(text) and WORD.fullmatch(text[-1]) is not None
        word = WORD.findall(text)[-1] if ends_word else ""
        return self.lm.score(text, ch) + (self.extra if word in self.lexicon else 0.0)


def search(lp: torch.Tensor, model, lexicon: set[str], bonus: float, beam_width: int = 16) -> str:
    """htr.text.decoding's reference (Python) prefix search, scored with the lexicon bonus."""
    w = model.decoding["lm_weight"]
    indices, _ = beam_search(lp, beam_width, LexiconBonusLM(model.lm, lexicon, bonus, w), w, model.codec,
                             model.decoding["insertion_bonus"], impl="python")
    return model.codec.decode(indices)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["gru", "relu_add"])
    p.add_argument("--bonus", nargs="+", type=float, default=[0.0, 1.0, 2.0, 4.0])
    p.add_argument("--wordfreq", action="store_true")
    args = p.parse_args()
    train = [normalize_text(s.text) for s in build_datamodule("configs/recipe/finetune.yaml", 48).read_split("train")]
    lexicon = {w for t in train for w in WORD.findall(t)}
    if args.wordfreq:
        from wordfreq import top_n_list

        top = top_n_list("fr", 50000, wordlist="large")
        lexicon |= set(top) | {w.capitalize() for w in top}
    rows = [line.split("\t", 1) for line in (POILUS / "val.tsv").read_text(encoding="utf-8").splitlines() if line]
    refs = [normalize_text(t) for _, t in rows]
    for name in args.models:
        model = load_model(name)
        lps = []
        with torch.inference_mode():
            for i in range(0, len(rows), 16):  # each line's log-probs as if run alone (forward_lines)
                ims = [model.preprocess(POILUS / "images" / n) for n, _ in rows[i:i + 16]]
                lp, frames, _, _ = model.forward_lines(ims)
                lps += [lp[: int(frames[k]), k].double() for k in range(len(ims))]
        for bonus in args.bonus:
            hyps = [search(lp, model, lexicon, bonus) for lp in lps]
            edits, chars = edit_counts(refs, hyps)
            print(f"{name} bonus {bonus:g}{' +wordfreq' if args.wordfreq else ''}: CER {100 * edits / chars:.2f} %",
                  flush=True)


if __name__ == "__main__":
    main()
