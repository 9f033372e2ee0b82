"""The owner's mark: random signs, seeded by the key, on a band of 2-D DCT frequencies.

The pattern is sum_i s_i b_i over the orthonormal DCT basis images b_i whose frequency radius lies in the band
(every channel), with signs s_i = +-1 drawn from a hash of the key. Because the basis is orthonormal, projecting
any image onto the band gives back coefficients c_i, and sum_i s_i c_i / |c| has mean 0 and variance exactly 1
over random keys, whatever the image: that is what makes the detector's p-value honest (see ``detect``).
A band rather than white noise, because a generator learns smooth patterns far more readily than pixel noise.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache

import torch


@dataclass(frozen=True)
class Band:
    """DCT frequencies (u, v) of an R x R image with low <= sqrt(u^2 + v^2) < high (u, v in 0..R-1)."""

    low: float = 1.0
    high: float = 8.0

    def check(self) -> None:
        if not (0 <= self.low < self.high):
            raise ValueError(f"the band needs 0 <= low < high, got low={self.low:g} high={self.high:g}")


@lru_cache(maxsize=8)
def dct_matrix(n: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix D (n x n): row u is the u-th cosine, D @ D.T = I."""
    k = torch.arange(n, dtype=torch.float64)
    d = torch.cos(math.pi * (k[None, :] + 0.5) * k[:, None] / n) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d


@lru_cache(maxsize=32)
def band_mask(resolution: int, band: Band) -> torch.Tensor:
    """Boolean (R, R) mask of the DCT frequencies in the band."""
    band.check()
    u = torch.arange(resolution, dtype=torch.float64)
    r = torch.sqrt(u[:, None] ** 2 + u[None, :] ** 2)
    mask = (r >= band.low) & (r < band.high)
    if not mask.any():
        raise ValueError(f"the band [{band.low:g}, {band.high:g}) holds no frequency of a {resolution}x{resolution} "
                         f"image; frequencies run 0..{resolution - 1}")
    return mask


def coefficients(images: torch.Tensor, band: Band) -> torch.Tensor:
    """Band coefficients of float images (N, C, R, R) -> (N, C * K), in pixel units (orthonormal basis)."""
    r = images.shape[-1]
    d = dct_matrix(r).to(images.dtype)
    spectrum = d @ images @ d.T
    return spectrum[..., band_mask(r, band)].reshape(images.shape[0], -1)


def from_coefficients(coef: torch.Tensor, channels: int, resolution: int, band: Band) -> torch.Tensor:
    """Inverse of ``coefficients``: (N, C * K) -> images (N, C, R, R) with nothing outside the band."""
    mask = band_mask(resolution, band)
    spectrum = torch.zeros(coef.shape[0], channels, resolution, resolution, dtype=coef.dtype)
    spectrum[..., mask] = coef.reshape(coef.shape[0], channels, -1)
    d = dct_matrix(resolution).to(coef.dtype)
    return d.T @ spectrum @ d


def key_seed(key: str) -> int:
    """A 63-bit seed from the key (a hash, so similar keys give unrelated patterns)."""
    if not isinstance(key, str) or not key:
        raise ValueError("the watermark key must be a non-empty string")
    digest = hashlib.blake2b(key.encode(), digest_size=8, person=b"fs-mark").digest()
    return int.from_bytes(digest, "little") >> 1


def key_signs(key: str, size: int) -> torch.Tensor:
    """The key's +-1 signs, one per band coefficient (float64, length ``size``)."""
    g = torch.Generator().manual_seed(key_seed(key))
    return torch.randint(0, 2, (size,), generator=g).double() * 2 - 1


def pattern(key: str, channels: int, resolution: int, band: Band) -> torch.Tensor:
    """The key's pattern (C, R, R), float64, scaled to a root-mean-square of 1 pixel level."""
    k = int(band_mask(resolution, band).sum()) * channels
    p = from_coefficients(key_signs(key, k)[None], channels, resolution, band)[0]
    return p / p.pow(2).mean().sqrt()
