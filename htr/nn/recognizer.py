"""The recogniser: CNN encoder -> recurrent decoder (relu_add | gru | lstm) -> linear -> CTC log-probs."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from torch import Tensor, nn

from htr.nn.encoder import CNNEncoder
from htr.nn.recurrent import build_recurrent


@dataclass
class RecognizerConfig:
    cell: str = "relu_add"          # recurrent decoder: relu_add | gru | lstm
    height: int = 64                # input line height in px (must match the data's)
    channels: tuple[int, ...] = field(default=(16, 32, 64, 96))  # CNN blocks (light: CPU training)
    feature_size: int = 256         # encoder output per frame
    pool_before_norm: bool = True   # encoder blocks pool before batch norm + ReLU (faster; see
                                    # htr.nn.encoder); configurations saved without it had pooling last
    hidden_size: int = 128          # recurrent units per direction
    num_layers: int = 2
    bidirectional: bool = True
    dropout: float = 0.2            # between recurrent layers and before the classifier
    gate_bias: float = 1.0          # relu_add only: initial gate-score bias b_s; +1 starts forgetful,
                                    # which trains faster on lines (docs/results/synthetic.md)
    clip_grad_leak: float = 0.0     # relu_add only, training only: the clips' surrogate slope outside
                                    # [-1, 1] in the backward (0: the exact derivative); htr.nn.relu_add
    clip_grad_inward: bool = False  # with clip_grad_leak: the slope only where descent moves the value
                                    # back towards [-1, 1]
    lstm_forget_bias: float | None = 1.0  # lstm only: initial forget-gate bias (remember at first, as
                                    # Keras does by default); None keeps torch's uniform init

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RecognizerConfig":
        """A saved configuration (checkpoint hyper-parameters, shipped model metadata)."""
        d = dict(d)
        d["channels"] = tuple(d.get("channels", cls.channels))
        d.setdefault("pool_before_norm", False)  # saved before the option existed: the pool-last encoder
        return cls(**d)


class Recognizer(nn.Module):
    """(N, 1, H, W) images and their widths -> (T, N, C) CTC log-probabilities and frame lengths."""

    def __init__(self, config: RecognizerConfig, num_classes: int) -> None:
        super().__init__()
        self.config = config
        self.num_classes = num_classes
        self.encoder = CNNEncoder(config.height, config.channels, config.feature_size, dropout=config.dropout / 2,
                                  pool_before_norm=config.pool_before_norm)
        self.decoder = build_recurrent(config.cell, config.feature_size, config.hidden_size, config.num_layers,
                                       config.bidirectional, config.dropout, gate_bias=config.gate_bias,
                                       forget_bias=config.lstm_forget_bias, clip_grad_leak=config.clip_grad_leak,
                                       clip_grad_inward=config.clip_grad_inward)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(self.decoder.output_size, num_classes)

    def encode(self, images: Tensor, widths: Tensor) -> tuple[Tensor, Tensor]:
        """Images -> features (T, N, F) and valid frames per line (N,)."""
        return self.encoder(images), self.encoder.frame_lengths(widths)

    def decode(self, features: Tensor, lengths: Tensor) -> Tensor:
        """Features (T, N, F) -> log-probabilities (T, N, C); frames past each length are padding.

        The decoder may live on another device than the encoder (see HTRModule.recurrent_on_cpu):
        the features follow it.
        """
        features = features.to(self.classifier.weight.device)
        hidden, _ = self.decoder(features, lengths, final_state=False)  # (T, N, F) -> (T, N, D*H)
        return self.classifier(self.dropout(hidden)).log_softmax(-1)  # (T, N, D*H) -> (T, N, C)

    def forward(self, images: Tensor, widths: Tensor) -> tuple[Tensor, Tensor]:
        features, lengths = self.encode(images, widths)
        return self.decode(features, lengths), lengths
