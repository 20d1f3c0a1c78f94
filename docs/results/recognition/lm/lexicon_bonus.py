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

import numpy as np
import torch

from htr.evaluate import build_datamodule
from htr.inference import load_model
from htr.text.codec import normalize_text
from htr.text.metrics import edit_counts

WORD = re.compile(r"\w+")
POILUS = Path("../shared/realdata/poilus")


def search(lp: np.ndarray, model, lexicon: set[str], bonus: float, beam_width: int = 16) -> str:
    """The prefix beam search of htr.text.decoding._beam_search_python with the lexicon term in its rank."""
    lm, codec, w, ins = model.lm, model.codec, model.decoding["lm_weight"], model.decoding["insertion_bonus"]
    texts = {(): (0.0, "")}

    def state(prefix):
        if prefix not in texts:
            logp, text = state(prefix[:-1])
            ch = codec.charset[prefix[-1] - 1]
            texts[prefix] = (logp + lm.score(text, ch), text + ch)
        return texts[prefix]

    def rank(prefix, pb, pnb, final=False):
        logp, text = state(prefix)
        words = WORD.findall(text)
        if not final and words and (text[-1].isalnum() or text[-1] == "_"):
            words = words[:-1]  # the word still being written
        s = np.logaddexp(pb, pnb) + ins * len(prefix) + w * logp + bonus * sum(x in lexicon for x in words)
        return s + w * lm.score(text, lm.EOS) if final else s

    beams = {(): (0.0, -np.inf)}
    for frame in lp:
        chars = [int(c) for c in np.argsort(frame)[::-1][:beam_width] if c != 0 and frame[c] >= -10.0]
        nxt: dict = {}

        def add(prefix, b, nb):
            cur = nxt.setdefault(prefix, [-np.inf, -np.inf])
            cur[0], cur[1] = np.logaddexp(cur[0], b), np.logaddexp(cur[1], nb)

        for prefix, (pb, pnb) in beams.items():
            total = np.logaddexp(pb, pnb)
            add(prefix, total + frame[0], -np.inf)
            if prefix:
                add(prefix, -np.inf, pnb + frame[prefix[-1]])
            for c in chars:
                add(prefix + (c,), -np.inf, (pb if prefix and c == prefix[-1] else total) + frame[c])
        beams = dict(sorted(nxt.items(), key=lambda kv: rank(kv[0], *kv[1]), reverse=True)[:beam_width])
    return state(max(beams, key=lambda p: rank(p, *beams[p], final=True)))[1]


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
                lps += [lp[: int(frames[k]), k].double().numpy() for k in range(len(ims))]
        for bonus in args.bonus:
            hyps = [search(lp, model, lexicon, bonus) for lp in lps]
            edits, chars = edit_counts(refs, hyps)
            print(f"{name} bonus {bonus:g}{' +wordfreq' if args.wordfreq else ''}: CER {100 * edits / chars:.2f} %",
                  flush=True)


if __name__ == "__main__":
    main()
