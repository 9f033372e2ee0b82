"""SNGAN (Miyato et al. 2018) ResNet generator and spectrally normalised ResNet discriminator.

The generator uses batch norm (statistics synced across ranks under torchrun) and no spectral norm;
every discriminator layer is spectrally normalised, with all power iterations done in one
``apply_spectral_norm`` call per forward.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import RankSyncedBatchNorm2d, SNConv2d, SNLinear, apply_spectral_norm


def _check_resolution(resolution: int) -> int:
    ups = int(math.log2(resolution)) - 2
    if 2 ** (ups + 2) != resolution or resolution < 8:
        raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
    return ups


class GenBlock(nn.Module):
    """BN-ReLU-up-conv-BN-ReLU-conv with an upsampled 1x1 shortcut."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.bn1, self.bn2 = RankSyncedBatchNorm2d(cin), RankSyncedBatchNorm2d(cout)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.shortcut = nn.Conv2d(cin, cout, 1)
        for conv in (self.conv1, self.conv2):
            nn.init.xavier_uniform_(conv.weight, math.sqrt(2))
        nn.init.xavier_uniform_(self.shortcut.weight)

    def forward(self, x):
        h = F.interpolate(F.relu(self.bn1(x)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h))))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class SNGANGenerator(nn.Module):
    def __init__(self, resolution: int = 32, channels: int = 1, latent_dim: int = 128, width: int = 128):
        super().__init__()
        self.resolution, self.channels, self.latent_dim, self.width = resolution, channels, latent_dim, width
        ups = _check_resolution(resolution)
        self.dense = nn.Linear(latent_dim, 16 * width)
        nn.init.xavier_uniform_(self.dense.weight)
        self.blocks = nn.Sequential(*[GenBlock(width, width) for _ in range(ups)])
        self.bn = RankSyncedBatchNorm2d(width)
        self.to_rgb = nn.Conv2d(width, channels, 3, padding=1)
        nn.init.xavier_uniform_(self.to_rgb.weight)

    def forward(self, z: torch.Tensor, level: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        h = self.dense(z).view(z.shape[0], self.width, 4, 4)
        h = self.blocks(h)
        return torch.tanh(self.to_rgb(F.relu(self.bn(h))))


class DisBlock(nn.Module):
    """ReLU-conv-ReLU-conv[-avgpool] with a 1x1 shortcut; ``first`` skips the leading ReLU (optimised block)."""

    def __init__(self, cin: int, cout: int, down: bool, first: bool = False):
        super().__init__()
        self.down, self.first = down, first
        self.conv1, self.conv2 = SNConv2d(cin, cout, 3), SNConv2d(cout, cout, 3)
        self.shortcut = SNConv2d(cin, cout, 1) if (cin != cout or down) else None

    def forward(self, x):
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        if self.down:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.shortcut is not None:
            if self.first:          # pool then conv, as in the optimised first block
                s = self.shortcut(F.avg_pool2d(s, 2) if self.down else s)
            else:
                s = self.shortcut(s)
                s = F.avg_pool2d(s, 2) if self.down else s
        return h + s


class SNGANDiscriminator(nn.Module):
    def __init__(self, resolution: int = 32, channels: int = 1, width: int = 128):
        super().__init__()
        self.resolution, self.channels, self.width = resolution, channels, width
        _check_resolution(resolution)
        blocks = [DisBlock(channels, width, down=True, first=True)]
        res = resolution // 2
        while res > 8:
            blocks.append(DisBlock(width, width, down=True))
            res //= 2
        blocks += [DisBlock(width, width, down=False), DisBlock(width, width, down=False)]
        self.blocks = nn.Sequential(*blocks)
        self.head = SNLinear(width, 1)

    def forward(self, x: torch.Tensor, level: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        if x.shape[-1] != self.resolution:
            raise ValueError(f"discriminator expects {self.resolution}x{self.resolution} images, got "
                             f"{tuple(x.shape)}")
        apply_spectral_norm(self)
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))
        return self.head(h).view(-1)
