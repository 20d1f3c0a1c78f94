"""Text side of recognition: the codec (characters <-> CTC indices), CTC decoding, a character LM, CER/WER.

Names are imported lazily (the metrics pull in torchmetrics, which inference does not need).
"""
from importlib import import_module

# The default beam width of every beam decoder: a wider beam keeps more of the LM's alternatives
# (poilus val: docs/results/recognition.md, "Beam+lm scoring").
BEAM_WIDTH = 32
# beam+lm's scoring weights where a model states none (the shipped models carry their own).
LM_WEIGHT = 0.5
INSERTION_BONUS = 0.0

_EXPORTS = {
    "DEFAULT_CHARSET": "codec", "Codec": "codec", "clean_labels": "codec", "normalize_text": "codec",
    "greedy_decode": "decoding", "beam_search": "decoding", "decode_batch": "decoding",
    "CharNgramLM": "lm", "ErrorRate": "metrics", "cer": "metrics", "wer": "metrics",
}
__all__ = ["BEAM_WIDTH", "LM_WEIGHT", "INSERTION_BONUS", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"htr.text.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'htr.text' has no attribute {name!r}")
