"""Model registry: build a generator/discriminator pair from a plain config dict."""
from __future__ import annotations

from .dcgan import DCGANDiscriminator, DCGANGenerator
from .pggan import PGGANDiscriminator, PGGANGenerator
from .sngan import SNGANDiscriminator, SNGANGenerator

# arch -> (generator class, discriminator class). "fast" is the default thief: PGGAN's equalized-LR networks
# trained at full resolution with another recipe (see faststeal.train.ARCH_DEFAULTS); its checkpoints load
# like any other.
NETWORKS = {"pggan": (PGGANGenerator, PGGANDiscriminator), "sngan": (SNGANGenerator, SNGANDiscriminator),
            "fast": (PGGANGenerator, PGGANDiscriminator), "dcgan": (DCGANGenerator, DCGANDiscriminator)}
ARCHS = tuple(NETWORKS)


def _networks(arch: str) -> tuple[type, type]:
    if arch not in NETWORKS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    return NETWORKS[arch]


def build_generator(arch: str, resolution: int, channels: int, latent_dim: int, width: int):
    return _networks(arch)[0](resolution, channels, latent_dim, width)


def build_discriminator(arch: str, resolution: int, channels: int, width: int):
    return _networks(arch)[1](resolution, channels, width)


__all__ = ["ARCHS", "build_generator", "build_discriminator", "PGGANGenerator", "PGGANDiscriminator",
           "SNGANGenerator", "SNGANDiscriminator", "DCGANGenerator", "DCGANDiscriminator"]
