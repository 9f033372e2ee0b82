"""Model registry: build a generator/discriminator pair from a plain config dict."""
from __future__ import annotations

from .pggan import PGGANDiscriminator, PGGANGenerator
from .sngan import SNGANDiscriminator, SNGANGenerator

# "fast" is the default thief: PGGAN's equalized-LR networks trained at full resolution with another recipe
# (see faststeal.train.ARCH_DEFAULTS); its checkpoints load like any other.
ARCHS = ("pggan", "sngan", "fast")


def build_generator(arch: str, resolution: int, channels: int, latent_dim: int, width: int):
    if arch in ("pggan", "fast"):
        return PGGANGenerator(resolution, channels, latent_dim, width)
    if arch == "sngan":
        return SNGANGenerator(resolution, channels, latent_dim, width)
    raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")


def build_discriminator(arch: str, resolution: int, channels: int, width: int):
    if arch in ("pggan", "fast"):
        return PGGANDiscriminator(resolution, channels, width)
    if arch == "sngan":
        return SNGANDiscriminator(resolution, channels, width)
    raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")


__all__ = ["ARCHS", "build_generator", "build_discriminator", "PGGANGenerator", "PGGANDiscriminator",
           "SNGANGenerator", "SNGANDiscriminator"]
