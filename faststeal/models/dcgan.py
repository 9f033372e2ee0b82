"""DCGAN (Radford et al. 2016): transposed convolutions with batch norm, a strided-convolution critic.

The thief's second family: the networks many 64x64 generators in the wild are built from. Trained with the
non-saturating loss and Adam(2e-4, 0.5, 0.999) (see faststeal.train.ARCH_DEFAULTS). ``width`` is the feature
count next to the image (the original ngf/ndf); it doubles at every halving of the resolution.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn


def stage_count(resolution: int) -> int:
    """Stride-2 stages between 4x4 and ``resolution`` (64 -> 4)."""
    stages = int(math.log2(resolution)) - 2
    if 2 ** (stages + 2) != resolution or resolution < 8:
        raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
    return stages


def init_weights(module: nn.Module) -> None:
    """DCGAN's initialisation: N(0, 0.02) convolutions, N(1, 0.02) batch-norm scales."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class DCGANGenerator(nn.Module):
    """(N, latent_dim) codes -> (N, channels, resolution, resolution) in [-1, 1]."""

    def __init__(self, resolution: int = 64, channels: int = 3, latent_dim: int = 128, width: int = 32):
        super().__init__()
        self.resolution, self.channels, self.latent_dim, self.width = resolution, channels, latent_dim, width
        stages = stage_count(resolution)
        c = width * 2 ** (stages - 1)
        layers = [nn.ConvTranspose2d(latent_dim, c, 4, 1, 0, bias=False), nn.BatchNorm2d(c), nn.ReLU(True)]
        for _ in range(stages - 1):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU(True)]
            c //= 2
        layers += [nn.ConvTranspose2d(c, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], -1, 1, 1))


class DCGANDiscriminator(nn.Module):
    """(N, channels, resolution, resolution) -> (N,) logits."""

    def __init__(self, resolution: int = 64, channels: int = 3, width: int = 32):
        super().__init__()
        stages = stage_count(resolution)
        layers = [nn.Conv2d(channels, width, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        c = width
        for _ in range(stages - 1):
            layers += [nn.Conv2d(c, c * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c * 2), nn.LeakyReLU(0.2, True)]
            c *= 2
        layers += [nn.Conv2d(c, 1, 4, 1, 0, bias=False)]
        self.net = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1)
