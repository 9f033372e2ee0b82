"""The detector: does a suspect's output carry the owner's keyed pattern?

Statistic: weight the mean m of the suspect's images by m / 255 (the mark is served as x + strength * P * x/255,
so it lives where images are bright), project onto the band of the pattern (coefficients c) and take
z = sum_i s_i c_i / |c| with the key's signs s. For a key the suspect never saw, the signs are independent
of c, so z has mean 0 and variance exactly 1 over keys (a Rademacher sum with weights c/|c|) and is close to
normal when no single coefficient dominates; a copy that learned the pattern shifts c along s and z grows like
(mark strength in the copy) x (number of coefficients) / |c|. The p-value is the one-sided normal tail of z.
Averaging over images first removes what varies between images; what is left of the content is the suspect's
mean image in the band, which ``reference`` (the owner's unmarked mean, optional) can subtract.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from .pattern import Band, coefficients, key_signs

DEFAULT_BAND = Band()   # the defense's default band (a frozen value, shared)

MIN_IMAGES = 100          # fewer samples leave the mean image too noisy for a decision
STOLEN_P = 1e-3           # p below this: the suspect carries the mark
INNOCENT_P = 1e-2         # p above this: no evidence; in between: inconclusive


class VerifyError(ValueError):
    """Bad input to verification (one-line message)."""


@dataclass
class Detection:
    z: float
    p_value: float
    n: int
    coefficients: int
    verdict: str

    def as_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        return (f"{self.verdict}: z = {self.z:.2f}, p = {self.p_value:.3g} ({self.n} images, {self.coefficients} "
                f"band coefficients)")


def normal_sf(z: float) -> float:
    """P(N(0,1) > z), accurate far into the tail."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def verdict(p: float) -> str:
    if p < STOLEN_P:
        return f"MARKED (p < {STOLEN_P:g}): the suspect carries the key's pattern"
    if p > INNOCENT_P:
        return f"not marked (p > {INNOCENT_P:g}): no evidence of the key's pattern"
    return f"inconclusive ({STOLEN_P:g} <= p <= {INNOCENT_P:g})"


def band_means(images: torch.Tensor, band: Band, reference: torch.Tensor | None = None) -> torch.Tensor:
    """Band coefficients (C * K,) of the images' mean (minus the reference mean image when given), weighted
    pixel by pixel by the images' own mean brightness: any key-independent weight keeps the null exact."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise VerifyError(f"expected images (N, C, R, R), got {getattr(images, 'shape', type(images))}")
    if images.shape[-1] != images.shape[-2]:
        raise VerifyError(f"expected square images, got {images.shape[-2]}x{images.shape[-1]}")
    if images.shape[0] < MIN_IMAGES:
        raise VerifyError(f"{images.shape[0]} images are too few for a decision; give at least {MIN_IMAGES}")
    mean = images.double().mean(0, keepdim=True)
    weight = mean / 255.0
    if reference is not None:
        reference = torch.as_tensor(reference, dtype=torch.float64).reshape(mean.shape[1:])
        mean = mean - reference
    try:
        return coefficients(weight * mean, band)[0]
    except ValueError as exc:
        raise VerifyError(str(exc)) from None


def z_scores(c: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """z for every row of signs (M, K) against coefficients c (K,)."""
    norm = c.norm()
    if norm < 1e-9:            # only rounding error: the images are flat in the band
        raise VerifyError("the suspect's images are constant in the mark's band; nothing to test")
    return signs @ c / norm


def detect(images: torch.Tensor, key: str, band: Band = DEFAULT_BAND, reference=None) -> Detection:
    """Test uint8 or float images (N, C, R, R) of a suspect for the key's pattern."""
    if not key:
        raise VerifyError("the key is empty; give the key the images were served with")
    c = band_means(images, band, reference)
    z = float(z_scores(c, key_signs(key, c.numel())[None])[0])
    p = normal_sf(z)
    return Detection(z=z, p_value=p, n=int(images.shape[0]), coefficients=int(c.numel()), verdict=verdict(p))


def detect_many_keys(images: torch.Tensor, keys: list[str], band: Band = DEFAULT_BAND, reference=None) -> torch.Tensor:
    """z of the same images under many keys (the empirical null when the keys are not the owner's)."""
    c = band_means(images, band, reference)
    signs = torch.stack([key_signs(k, c.numel()) for k in keys])
    return z_scores(c, signs)
