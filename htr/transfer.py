"""Starting a recogniser from a trained one (fine-tuning), with the codec merged by character.

``init_recognizer(source, config, data_charset, mode)`` builds a new ``Recognizer`` for the data's
characters and copies the source model's weights into it: encoder and recurrent decoder whole,
classifier row by row, matched by character (the blank row to the blank row). The codec follows
kraken's ``--resize`` options:

- ``"union"``: every character the source knows keeps its row, in the source's order; the data's
  new characters are appended with new rows. Nothing the model could read is lost.
- ``"new"``: the data's characters only, in the data's order; rows of shared characters are copied,
  the source's other characters are dropped.

A new row starts with zero weights and a bias well below every copied one, so that at step 0 the new
characters take almost no probability and the copied characters' log-probabilities barely move; the
gradient of the first lines that hold the character lifts its row.
"""
from __future__ import annotations

from typing import Literal

import torch

from htr.errors import CheckpointError
from htr.inference import Transcriber
from htr.nn.recognizer import Recognizer, RecognizerConfig
from htr.text.codec import Codec

CharsetMode = Literal["union", "new"]
CHARSET_MODES = ("union", "new")
# Fields that fix the weights' shapes and meaning; the rest (dropout, initial biases) may differ.
ARCHITECTURE_FIELDS = ("cell", "height", "channels", "feature_size", "pool_before_norm", "hidden_size", "num_layers",
                       "bidirectional")
NEW_ROW_BIAS_MARGIN = 8.0  # a new character's logit starts this far below the lowest copied bias: p < 1e-3


def merge_charsets(model_charset: str, data_charset: str, mode: CharsetMode = "union") -> str:
    """The fine-tuned model's charset: see the module docstring for the two modes."""
    if mode == "union":
        return model_charset + "".join(ch for ch in data_charset if ch not in model_charset)
    if mode == "new":
        return data_charset
    raise CheckpointError(f"init_charset={mode!r}; expected one of {CHARSET_MODES}")


def check_compatible(source: RecognizerConfig, target: RecognizerConfig, source_name: str) -> None:
    """CheckpointError naming both configurations when the weights cannot carry over."""
    a, b = source.to_dict(), target.to_dict()
    differ = [f for f in ARCHITECTURE_FIELDS if a[f] != b[f]]
    if differ:
        shown = ", ".join(f"{f}: {a[f]!r} in {source_name} vs {b[f]!r} configured" for f in differ)
        raise CheckpointError(f"cannot initialise from {source_name}: the architectures differ ({shown}); "
                              f"expected the same {', '.join(ARCHITECTURE_FIELDS)} (leave model.recognizer "
                              f"unset to take the source model's)")


def init_recognizer(source: Transcriber, config: RecognizerConfig | None, codec: Codec,
                    source_name: str) -> tuple[Recognizer, dict[str, int]]:
    """A Recognizer for ``codec`` starting from ``source``'s weights. Returns it and the counts of
    classifier rows copied and new. ``config`` None takes the source's configuration."""
    config = config or source.net.config
    check_compatible(source.net.config, config, source_name)
    net = Recognizer(config, num_classes=len(codec))
    body = {k: v for k, v in source.net.state_dict().items() if not k.startswith("classifier.")}
    missing, unexpected = net.load_state_dict(body, strict=False)
    if unexpected or any(not k.startswith("classifier.") for k in missing):
        raise CheckpointError(f"{source_name}: weights do not match the network: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    old_w, old_b = source.net.classifier.weight.detach(), source.net.classifier.bias.detach()
    rows = [0] + [source.codec.encode(ch)[0] if ch in source.codec else -1 for ch in codec.charset]  # 0: blank
    copied = torch.tensor([r >= 0 for r in rows])
    with torch.no_grad():
        weight, bias = net.classifier.weight, net.classifier.bias
        weight.zero_()
        bias.fill_(float(old_b.min()) - NEW_ROW_BIAS_MARGIN)
        index = torch.tensor([r for r in rows if r >= 0])
        weight[copied] = old_w[index]
        bias[copied] = old_b[index]
    return net, {"copied": int(copied.sum()) - 1, "new": int((~copied).sum())}
