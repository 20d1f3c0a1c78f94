"""CNN encoder: a line image (N, 1, H, W) -> a feature sequence (T, N, F), T = W / 4.

Conv blocks (3x3 conv, max pool, batch norm, ReLU): 2x2 pools in the first two blocks, then a
height-only pool in each later block while the height is above 4 (with the default four blocks at
height 64: 64 -> 32 -> 16 -> 8 -> 4 rows); the remaining rows are flattened into the channel axis and
projected to F.
Keeping 4 px of width per frame leaves CTC about 5 frames per character on 64 px high cursive lines.

Pooling comes before the norm and the ReLU, so that they run on a quarter of the positions; `htr
bench step` times the whole recogniser both ways (docs/results/cells.md). In eval mode the two
orders give the same numbers when every batch-norm scale is positive (max pooling commutes with an
increasing per-channel map); that is how the models trained with pooling last were carried over
(``pool_before_norm=False`` keeps that order).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

WIDTH_REDUCTION = 4  # pixels of input width per output frame


class ConvBlock(nn.Sequential):
    """3x3 conv, batch norm, ReLU and an optional max pool, applied conv -> pool -> norm -> ReLU.

    The children keep the order (conv, norm, ReLU, pool) of the pool-last layout, so both layouts
    share one state-dict (keys ``0.weight`` conv, ``1.*`` norm).
    """

    def __init__(self, c_in: int, c_out: int, pool: tuple[int, int] | None, pool_before_norm: bool = True) -> None:
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                                   nn.ReLU(inplace=True)]
        if pool is not None:
            layers.append(nn.MaxPool2d(pool))
        super().__init__(*layers)
        self.pool_before_norm = pool_before_norm

    def forward(self, x: Tensor) -> Tensor:
        if not self.pool_before_norm:
            return super().forward(x)
        conv, norm, relu, *pool = self
        x = conv(x)
        for p in pool:
            x = p(x)
        return relu(norm(x))


class CNNEncoder(nn.Module):
    def __init__(self, height: int = 64, channels: tuple[int, ...] = (16, 32, 64, 96),
                 feature_size: int = 256, dropout: float = 0.1, pool_before_norm: bool = True) -> None:
        super().__init__()
        if height % 4 or height < 8:
            raise ValueError(f"encoder height must be a multiple of 4 and >= 8, got {height}")
        blocks, h, c_in = [], height, 1
        for i, c_out in enumerate(channels):
            if i < 2:
                pool, h = (2, 2), h // 2
            elif h > 4:
                pool, h = (2, 1), h // 2
            else:
                pool = None
            blocks.append(ConvBlock(c_in, c_out, pool, pool_before_norm))
            c_in = c_out
        self.height = height
        self.out_height = h
        # Channels-last (NHWC) activations: CPU max pooling is much faster on them than on NCHW
        # (docs/results/cells.md).
        self.conv = nn.Sequential(*blocks).to(memory_format=torch.channels_last)
        self.dropout = nn.Dropout(dropout)
        self.project = nn.Linear(c_in * h, feature_size)
        self.feature_size = feature_size

    @staticmethod
    def frame_lengths(widths: Tensor) -> Tensor:
        """Valid output frames for input widths (the two 2x2 pools floor-divide by 4)."""
        return (widths // WIDTH_REDUCTION).clamp(min=1)

    def forward(self, images: Tensor) -> Tensor:
        f = self.conv(images.contiguous(memory_format=torch.channels_last))  # (N, 1, H, W) -> (N, C, h, W/4)
        N, C, h, T = f.shape
        f = f.permute(3, 0, 1, 2).reshape(T, N, C * h)  # (N, C, h, T) -> (T, N, C*h)
        return self.project(self.dropout(f))  # (T, N, C*h) -> (T, N, F)
