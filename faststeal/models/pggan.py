"""Progressive GAN (Karras et al. 2018): equalized LR, pixel norm, minibatch stddev, fade-in growing.

Both networks are built for the final resolution at once; ``level`` (0 = 4x4, 1 = 8x8, ...) and
``alpha`` (fade-in weight of the newest block, 0..1) select the part that is active while growing.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from faststeal import kernels

from .layers import EqualizedConv2d, EqualizedLinear, MinibatchStddev


def level_count(resolution: int) -> int:
    """Number of resolution levels from 4x4 up to ``resolution`` (32 -> 4 levels: 4, 8, 16, 32)."""
    levels = int(math.log2(resolution)) - 1
    if 2 ** (levels + 1) != resolution or resolution < 8:
        raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
    return levels


def width_at(res: int, width: int) -> int:
    """Feature maps at a resolution: ``width`` up to 16x16, then halving per doubling (at least 8)."""
    return max(8, width if res <= 16 else width * 16 // res)


class PGGANGenerator(nn.Module):
    def __init__(self, resolution: int = 32, channels: int = 1, latent_dim: int = 128, width: int = 128):
        super().__init__()
        self.resolution, self.channels, self.latent_dim, self.width = resolution, channels, latent_dim, width
        self.levels = level_count(resolution)
        c4 = width_at(4, width)
        # The 4x4 head: a dense layer to 4x4xC (gain sqrt(2)/4 as for a 4x4 "conv" on a 1x1 input), then 3x3.
        self.dense = EqualizedLinear(latent_dim, c4 * 16, gain=math.sqrt(2) / 4)
        self.blocks = nn.ModuleList([EqualizedConv2d(c4, c4, 3, pixelnorm=True)])
        self.to_rgb = nn.ModuleList([EqualizedConv2d(c4, channels, 1, gain=1.0, activation="linear")])
        for level in range(1, self.levels):
            cin, cout = width_at(2 ** (level + 1), width), width_at(2 ** (level + 2), width)
            self.blocks.append(nn.Sequential(EqualizedConv2d(cin, cout, 3, up=2, pixelnorm=True),
                                             EqualizedConv2d(cout, cout, 3, pixelnorm=True)))
            self.to_rgb.append(EqualizedConv2d(cout, channels, 1, gain=1.0, activation="linear"))

    def forward(self, z: torch.Tensor, level: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        level = self.levels - 1 if level is None else level
        h = kernels.pixel_norm(z)
        h = self.dense(h).view(z.shape[0], -1, 4, 4)
        h = self.blocks[0](kernels.pixel_norm(h))
        prev = h
        for k in range(1, level + 1):
            prev = h
            h = self.blocks[k](h)
        out = self.to_rgb[level](h)
        if alpha < 1.0 and level > 0:
            skip = F.interpolate(self.to_rgb[level - 1](prev), scale_factor=2, mode="nearest")
            out = torch.lerp(skip, out, alpha)
        return out


class PGGANDiscriminator(nn.Module):
    def __init__(self, resolution: int = 32, channels: int = 1, width: int = 128, mbstd_group: int = 4):
        super().__init__()
        self.resolution, self.channels, self.width = resolution, channels, width
        self.levels = level_count(resolution)
        self.from_rgb = nn.ModuleList()
        self.blocks = nn.ModuleList()
        c4 = width_at(4, width)
        self.from_rgb.append(EqualizedConv2d(channels, c4, 1))
        self.blocks.append(nn.Sequential(
            MinibatchStddev(mbstd_group),
            EqualizedConv2d(c4 + 1, c4, 3),
            EqualizedConv2d(c4, c4, 4, padding=0),                 # 4x4 -> 1x1
            nn.Flatten(),
            EqualizedLinear(c4, 1, gain=1.0, activation="linear"),
        ))
        for level in range(1, self.levels):
            c_hi, c_lo = width_at(2 ** (level + 2), width), width_at(2 ** (level + 1), width)
            self.from_rgb.append(EqualizedConv2d(channels, c_hi, 1))
            self.blocks.append(nn.Sequential(EqualizedConv2d(c_hi, c_hi, 3),
                                             EqualizedConv2d(c_hi, c_lo, 3, down=2)))

    def forward(self, x: torch.Tensor, level: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        level = self.levels - 1 if level is None else level
        expected = 2 ** (level + 2)
        if x.shape[-1] != expected:
            raise ValueError(f"discriminator at level {level} expects {expected}x{expected} images, "
                             f"got {tuple(x.shape)}")
        h = self.blocks[level](self.from_rgb[level](x))
        if level == 0:
            return h.view(-1)
        if alpha < 1.0:
            skip = self.from_rgb[level - 1](F.avg_pool2d(x, 2))
            h = torch.lerp(skip, h, alpha)
        for k in range(level - 1, -1, -1):
            h = self.blocks[k](h)
        return h.view(-1)
