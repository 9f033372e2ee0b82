"""The fast thief's generator with transposed-convolution upsampling (DCGAN's way of doubling resolution).

Why a second generator: PGGAN's upsampling (nearest neighbour, then a 3x3 conv) gives the four pixels of each
2x2 block the same input, so it cannot draw the period-2 patterns that the stride-2 transposed convolutions of
DCGAN-style generators leave all over their images; copies of such a target stay blurred. A free 4x4
transposed convolution has one set of weights per pixel phase and can. Everything else is the fast thief's:
equalized learning rate, pixel norm, leaky ReLU, the same dense 4x4 head, widths and discriminator.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from faststeal import kernels

from .layers import EqualizedConv2d, EqualizedLinear
from .pggan import level_count, width_at


class EqualizedConvTranspose2d(nn.Module):
    """4x4 transposed convolution with stride 2 (doubles the resolution), weights ~N(0, 1) scaled at run time.

    Each output pixel sums in_ch x 2 x 2 taps, so the He scale uses that fan-in (not in_ch x 4 x 4).
    """

    def __init__(self, in_ch: int, out_ch: int, *, gain: float = math.sqrt(2), activation: str = "lrelu",
                 pixelnorm: bool = False):
        super().__init__()
        if activation not in ("lrelu", "linear"):
            raise ValueError(f"activation must be 'lrelu' or 'linear', got {activation!r}")
        self.weight = nn.Parameter(torch.randn(in_ch, out_ch, 4, 4))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.scale = gain / math.sqrt(in_ch * 4)
        self.activation, self.pixelnorm = activation, pixelnorm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv_transpose2d(x, self.weight * self.scale, self.bias, stride=2, padding=1)
        if self.activation == "lrelu":
            y = F.leaky_relu(y, 0.2)
        return kernels.pixel_norm(y) if self.pixelnorm else y

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, {self.weight.shape[1]}, k=4, stride=2, {self.activation}"


class TConvGenerator(nn.Module):
    """z -> dense 4x4 -> per doubling: transposed 4x4 conv + 3x3 conv; the last doubling writes the image."""

    def __init__(self, resolution: int = 64, channels: int = 3, latent_dim: int = 128, width: int = 64):
        super().__init__()
        self.resolution, self.channels, self.latent_dim, self.width = resolution, channels, latent_dim, width
        self.levels = level_count(resolution)
        c4 = width_at(4, width)
        self.dense = EqualizedLinear(latent_dim, c4 * 16, gain=math.sqrt(2) / 4)
        self.head = EqualizedConv2d(c4, c4, 3, pixelnorm=True)
        blocks = []
        for level in range(1, self.levels):
            cin, cout = width_at(2 ** (level + 1), width), width_at(2 ** (level + 2), width)
            if level < self.levels - 1:
                blocks.append(nn.Sequential(EqualizedConvTranspose2d(cin, cout, pixelnorm=True),
                                            EqualizedConv2d(cout, cout, 3, pixelnorm=True)))
            else:
                blocks.append(EqualizedConvTranspose2d(cin, channels, gain=1.0, activation="linear"))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.dense(kernels.pixel_norm(z)).view(z.shape[0], -1, 4, 4)
        h = self.head(kernels.pixel_norm(h))
        for block in self.blocks:
            h = block(h)
        return h
