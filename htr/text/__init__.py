"""Text side of recognition: the codec (characters <-> CTC indices), CTC decoding, a character LM, CER/WER."""
from htr.text.codec import DEFAULT_CHARSET, Codec, clean_labels, normalize_text
from htr.text.decoding import beam_search, decode_batch, greedy_decode
from htr.text.lm import CharNgramLM
from htr.text.metrics import ErrorRate, cer, wer

__all__ = ["DEFAULT_CHARSET", "Codec", "clean_labels", "normalize_text", "greedy_decode", "beam_search",
           "decode_batch", "CharNgramLM", "ErrorRate", "cer", "wer"]
