"""FID extrapolated to an unlimited sample (FID-infinity, after Chong & Forsyth, CVPR 2020).

FID at n images per side sits above its limit by a bias that shrinks roughly like 1/n, and a CPU run measures
at n = 2,000, where the bias is large (the FID floor: two samples of one model at that n). Fitting
FID(m) = FID_inf + slope / m over random subsets of m rows, m spread between a fraction of n and n, and
reading the intercept gives a number that does not depend on n, from the features already computed.

Differences from the paper's recipe, stated so that numbers are read right: both sides are subsampled to the
same m (the paper holds the real side at 50,000 images), since here both sides are small; and the intercept
comes with the least-squares standard error of the fit, which covers the subsets drawn, not the draw of the
n images themselves (the bootstrap interval) nor the training seed.
"""
from __future__ import annotations

import numpy as np
import torch

from .frechet import frechet_distance_of_features
from .prdc import as_features

DEFAULT_POINTS = 15           # subset sizes in the fit
DEFAULT_MIN_FRACTION = 0.2    # the smallest subset, as a fraction of n
MIN_ROWS = 4                  # per side: subsets of 2, 3 and 4 rows, the fewest a line with a residual takes


def subset_sizes(n: int, points: int = DEFAULT_POINTS, min_fraction: float = DEFAULT_MIN_FRACTION) -> np.ndarray:
    """Subset sizes evenly spread from min_fraction * n to n (distinct, each at least 2)."""
    if not 0 < min_fraction < 1:
        raise ValueError(f"the smallest subset is a fraction of n between 0 and 1, got {min_fraction}")
    if points < 3:
        raise ValueError(f"a line through FID against 1/n needs at least 3 subset sizes, got {points}")
    low = max(2, round(n * min_fraction))
    sizes = np.unique(np.linspace(low, n, points).round().astype(int))
    if len(sizes) < 3:
        raise ValueError(f"{n} samples per side are too few for FID-infinity: subsets of {low} to {n} rows give "
                         f"fewer than 3 sizes")
    return sizes


def fid_infinity(f1, f2, points: int = DEFAULT_POINTS, min_fraction: float = DEFAULT_MIN_FRACTION,
                 seed: int = 0) -> dict:
    """{fid_inf, fid_inf_se, fid_inf_slope, fid_inf_sizes, fid_inf_fids, fid_inf_seed} of two (n, d) features.

    Each size m draws m rows of each side without replacement (one generator seeded with ``seed``), the
    largest size being min(n1, n2); FID(m) is regressed on 1/m by ordinary least squares.
    """
    f1, f2 = as_features(f1, "features A"), as_features(f2, "features B")
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"features differ in size ({f1.shape[1]} vs {f2.shape[1]}); compute both with the "
                         f"same extractor")
    n = min(f1.shape[0], f2.shape[0])
    sizes = subset_sizes(n, points, min_fraction)
    gen = torch.Generator().manual_seed(seed)
    fids = []
    for m in sizes:
        rows1 = torch.randperm(f1.shape[0], generator=gen)[:m]
        rows2 = torch.randperm(f2.shape[0], generator=gen)[:m]
        fids.append(frechet_distance_of_features(f1[rows1], f2[rows2]))
    x = np.stack([np.ones(len(sizes)), 1.0 / sizes], axis=1)
    y = np.asarray(fids, dtype=np.float64)
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    residual = y - x @ coef
    variance = float(residual @ residual) / (len(sizes) - 2)
    se = float(np.sqrt(variance * np.linalg.inv(x.T @ x)[0, 0]))
    return {"fid_inf": float(coef[0]), "fid_inf_se": se, "fid_inf_slope": float(coef[1]),
            "fid_inf_sizes": sizes.tolist(), "fid_inf_fids": [float(v) for v in fids], "fid_inf_seed": seed}
