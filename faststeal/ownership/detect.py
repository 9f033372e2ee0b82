"""The detector: does a suspect's output carry the owner's keyed pattern?

Statistic: the suspect's fourth-moment image M = mean over images of (x/255)^4, minus the same image of the
owner's unmarked target when given (``reference``), projected onto the band of the pattern (coefficients c);
then z = sum_i s_i c_i / |c| with the key's signs s. The mark is served multiplied by the image,
x * (1 + strength * P / 255), so x^4 carries about four times the relative mark and weights each pixel by its
brightness cubed: copies learn the mark on bright garments and hardly on dark ones, and the plain mean
(power 1) drowned the bright pixels' mark in the dark ones' errors (the comparison: docs/results/ownership.md).

For a key the suspect never saw, the signs are independent of c, so z has mean 0 and variance exactly 1
over keys (a Rademacher sum with weights c/|c|) and is close to normal when no single coefficient dominates.
The p-value is the one-sided normal tail of z, or, with ``exact_draws``, the rank of z among that many random
sign vectors on the same c: a key the suspect never saw is one more such draw, so that p-value is uniform by
construction, where the normal shape is an approximation a KS test over ~1,000 keys can see for some suspects.
Any key-independent choice of statistic keeps this null exact; the power only decides how much of a copy's
mark it finds.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from faststeal.errors import FaststealError

from .pattern import Band, coefficients, key_signs

DEFAULT_BAND = Band()   # the defense's default band (a frozen value, shared)

MIN_IMAGES = 100          # fewer samples leave the moment image too noisy for a decision
STOLEN_P = 1e-3           # p below this: the suspect carries the mark
EXACT_DRAWS = 10_000      # random sign vectors of the exact null: p resolves down to 1 / 10,001
INNOCENT_P = 1e-2         # p above this: no evidence; in between: inconclusive
POWER = 4                 # the moment of the pixel values the statistic averages (see above)
STATISTIC = f"band of mean (x/255)^{POWER}"   # names the statistic in stored results' keys


class VerifyError(FaststealError, ValueError):
    """Bad input to verification (one-line message)."""


@dataclass
class Detection:
    z: float
    p_value: float            # what the verdict uses: the exact p when null_draws > 0, else p_normal
    n: int
    coefficients: int
    verdict: str
    p_normal: float | None = None
    null_draws: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        how = f"exact over {self.null_draws} null draws" if self.null_draws else "normal approximation"
        return (f"{self.verdict}: z = {self.z:.2f}, p = {self.p_value:.3g} ({how}; {self.n} images, "
                f"{self.coefficients} band coefficients)")


def normal_sf(z: float) -> float:
    """P(N(0,1) > z), accurate far into the tail."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def verdict(p: float) -> str:
    if p < STOLEN_P:
        return f"MARKED (p < {STOLEN_P:g}): the suspect carries the key's pattern"
    if p > INNOCENT_P:
        return f"not marked (p > {INNOCENT_P:g}): no evidence of the key's pattern"
    return f"inconclusive ({STOLEN_P:g} <= p <= {INNOCENT_P:g})"


def moment_image(images: torch.Tensor) -> torch.Tensor:
    """The statistic's image of a set of images (N, C, R, R): mean of (x/255)^POWER, float64 (C, R, R).
    The owner's reference is this image of the unmarked target's samples."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise VerifyError(f"expected images (N, C, R, R), got {getattr(images, 'shape', type(images))}")
    return (images.double() / 255.0).pow(POWER).mean(0)


def band_moments(images: torch.Tensor, band: Band, reference: torch.Tensor | None = None) -> torch.Tensor:
    """Band coefficients (C * K,) of the images' moment image, minus the reference's (``moment_image`` of
    the owner's unmarked samples) when given."""
    m = moment_image(images)                 # checks that these are images (N, C, R, R)
    if images.shape[-1] != images.shape[-2]:
        raise VerifyError(f"expected square images, got {images.shape[-2]}x{images.shape[-1]}")
    if images.shape[0] < MIN_IMAGES:
        raise VerifyError(f"{images.shape[0]} images are too few for a decision; give at least {MIN_IMAGES}")
    if reference is not None:
        m = m - torch.as_tensor(reference, dtype=torch.float64).reshape(m.shape)
    try:
        return coefficients(m[None], band)[0]
    except ValueError as exc:
        raise VerifyError(str(exc)) from None


def z_scores(c: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """z for every row of signs (M, K) against coefficients c (K,)."""
    norm = c.norm()
    if norm < 1e-12:           # only rounding error: the images are flat in the band
        raise VerifyError("the suspect's images are constant in the mark's band; nothing to test")
    return signs @ c / norm


def exact_p_values(c: torch.Tensor, z, draws: int = EXACT_DRAWS, seed: int = 0) -> torch.Tensor:
    """P(z' >= z) for each z, counted over ``draws`` random sign vectors z' on the same coefficients c.

    p = (1 + #{z' >= z}) / (1 + draws): a rank test, exact under the null for any c (no normal approximation);
    its smallest value is 1 / (1 + draws).
    """
    if draws < 1:
        raise VerifyError(f"the exact null needs at least one draw, got {draws}")
    g = torch.Generator().manual_seed(seed)
    norm, null = c.norm(), []
    for start in range(0, draws, 1024):
        signs = torch.randint(0, 2, (min(1024, draws - start), c.numel()), generator=g).double() * 2 - 1
        null.append(signs @ c / norm)
    null = torch.sort(torch.cat(null)).values
    z = torch.as_tensor(z, dtype=torch.float64).reshape(-1)
    at_least = draws - torch.searchsorted(null, z)          # how many draws reach z
    return (1 + at_least).double() / (1 + draws)


def detect(images: torch.Tensor, key: str, band: Band = DEFAULT_BAND, reference=None,
           exact_draws: int = 0) -> Detection:
    """Test uint8 or float images (N, C, R, R) of a suspect for the key's pattern (exact p with exact_draws)."""
    if not key:
        raise VerifyError("the key is empty; give the key the images were served with")
    c = band_moments(images, band, reference)
    z = float(z_scores(c, key_signs(key, c.numel())[None])[0])
    p_normal = normal_sf(z)
    p = float(exact_p_values(c, z, exact_draws)[0]) if exact_draws else p_normal
    return Detection(z=z, p_value=p, n=int(images.shape[0]), coefficients=int(c.numel()), verdict=verdict(p),
                     p_normal=p_normal, null_draws=exact_draws)


def detect_many_keys(images: torch.Tensor, keys: list[str], band: Band = DEFAULT_BAND, reference=None,
                     exact_draws: int = 0):
    """z of the same images under many keys (the empirical null when the keys are not the owner's); with
    ``exact_draws`` also their exact p-values: (z, p)."""
    c = band_moments(images, band, reference)
    signs = torch.stack([key_signs(k, c.numel()) for k in keys])
    z = z_scores(c, signs)
    return (z, exact_p_values(c, z, exact_draws)) if exact_draws else z
