"""Bootstrap intervals for FID and KID from the features already computed, so one run says how far its
number would move with another draw of the same size (seeds alone only show the generator's share).

Each resample draws n rows with replacement on each side, independently; the interval is the percentile
interval of the resampled values. A resample is held as counts per row, never as copied rows:

  FID, n <= d on both sides: with G = F2 F1^T computed once, the centred cross product of a resample is G's
      rows and columns of the drawn points minus the mean terms, scaled by sqrt(counts) on both sides; its
      singular values give tr sqrt(S1 S2) (the low-rank route of frechet.trace_sqrt_low_rank), so a resample
      costs one symmetric eigenvalue problem of (distinct rows)^2 size and no product with d.
  FID, larger n: the count-weighted covariance and the usual d x d route (slow: seconds per resample).
  KID: the unbiased MMD^2 of the resample over pairs of distinct points (copies of one point are not paired,
      which would bias it up), from kernel matrices built once; samples above KID_MAX_ROWS use a
      fixed random subset of that many rows for the interval (reported as kid_ci_rows).

Resampled FIDs sit above the full-sample FID (a resample holds ~63% distinct points and FID is biased up at
small n), so the interval is a spread more than a bracket around the point value; boot_mean shows the shift.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from .frechet import BiasedFIDWarning, _eigvalsh, frechet_distance
from .prdc import as_features

KID_MAX_ROWS = 4096     # three float64 kernel matrices of this size: ~400 MB


def check_interval(level: float, resamples: int) -> None:
    """One-line errors for an interval level outside (0, 1) or too few resamples (before any work)."""
    if not 0 < level < 1:
        raise ValueError(f"the interval level must be between 0 and 1 (e.g. 0.95), got {level}")
    if resamples < 2:
        raise ValueError(f"the bootstrap needs at least 2 resamples (200 or more for a 95% interval), got {resamples}")


def draw_counts(n: int, resamples: int, gen: torch.Generator) -> torch.Tensor:
    """(resamples, n) float64 counts: how often each of n rows is drawn in each resample of size n."""
    idx = torch.randint(n, (resamples, n), generator=gen)
    counts = torch.zeros(resamples, n, dtype=torch.float64)
    return counts.scatter_add_(1, idx, torch.ones(resamples, n, dtype=torch.float64))


def _pair(f1, f2) -> tuple[torch.Tensor, torch.Tensor]:
    f1, f2 = as_features(f1, "features A"), as_features(f2, "features B")
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"features differ in size ({f1.shape[1]} vs {f2.shape[1]}); compute both with the "
                         f"same extractor")
    if min(f1.shape[0], f2.shape[0]) < 2:
        raise ValueError(f"the bootstrap needs at least 2 samples per side, got {f1.shape[0]} and {f2.shape[0]}")
    return f1, f2.to(f1.device)


def fid_resamples(f1, f2, counts1: torch.Tensor, counts2: torch.Tensor) -> np.ndarray:
    """FID of each resample given by count rows (draw_counts) of the two feature samples."""
    f1, f2 = _pair(f1, f2)
    (n1, d), n2 = f1.shape, f2.shape[0]
    out = np.empty(counts1.shape[0])
    gram = f2 @ f1.mT if max(n1, n2) <= d else None
    sq1, sq2 = (f1 * f1).sum(1), (f2 * f2).sum(1)
    for b in range(counts1.shape[0]):
        w1, w2 = counts1[b].to(f1.device), counts2[b].to(f1.device)
        u1, u2 = w1.nonzero().squeeze(1), w2.nonzero().squeeze(1)
        w1, w2 = w1[u1], w2[u2]
        x1, x2 = f1[u1], f2[u2]
        mu1, mu2 = (w1 @ x1) / n1, (w2 @ x2) / n2
        if gram is not None:
            tr1 = (float(w1 @ sq1[u1]) - n1 * float(mu1 @ mu1)) / (n1 - 1)
            tr2 = (float(w2 @ sq2[u2]) - n2 * float(mu2 @ mu2)) / (n2 - 1)
            k = gram[u2][:, u1] - (x2 @ mu1).unsqueeze(1) - (x1 @ mu2).unsqueeze(0) + mu1 @ mu2
            k *= w2.sqrt().unsqueeze(1) * w1.sqrt().unsqueeze(0)
            cross = _nuclear_norm(k) / math.sqrt((n1 - 1) * (n2 - 1))
            diff = mu1 - mu2
            out[b] = max(float(diff @ diff) + tr1 + tr2 - 2.0 * cross, 0.0)
        else:
            a1 = (x1 - mu1) * w1.sqrt().unsqueeze(1)
            a2 = (x2 - mu2) * w2.sqrt().unsqueeze(1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", BiasedFIDWarning)  # duplicates: said once for the whole interval
                out[b] = frechet_distance(mu1, a1.mT @ a1 / (n1 - 1), mu2, a2.mT @ a2 / (n2 - 1), method="eigh")
    return out


def _nuclear_norm(k: torch.Tensor) -> float:
    """Sum of singular values via the eigenvalues of the smaller Gram matrix: ~30x faster than an SVD here."""
    g = k @ k.mT if k.shape[0] <= k.shape[1] else k.mT @ k
    return float(_eigvalsh((g + g.mT) / 2).clamp(min=0).sqrt().sum())


def _kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x @ y.mT / x.shape[1] + 1) ** 3


def kid_resamples(f1, f2, counts1: torch.Tensor, counts2: torch.Tensor) -> np.ndarray:
    """MMD^2 (KID's cubic kernel) of each resample given by count rows, over pairs of distinct points."""
    f1, f2 = _pair(f1, f2)
    n1, n2 = f1.shape[0], f2.shape[0]
    w1, w2 = counts1.to(f1.device), counts2.to(f1.device)
    k11, k22, k21 = _kernel(f1, f1), _kernel(f2, f2), _kernel(f2, f1)
    # within a sample, pairs of draws of two different points only (w^T K w less every point with its own
    # copies): copies paired with each other would inflate k(x, x') terms, as self-pairs do in a V-statistic
    def within(w, k):
        return (((w @ k) * w).sum(1) - (w * w) @ k.diagonal()) / (w.sum(1) ** 2 - (w * w).sum(1))

    s21 = ((w2 @ k21) * w1).sum(1) / (n1 * n2)
    mmd = within(w1, k11) + within(w2, k22) - 2 * s21
    return mmd.cpu().numpy()


def percentile_interval(values, level: float) -> tuple[float, float]:
    """The (1 - level) / 2 and (1 + level) / 2 quantiles of the resampled values."""
    lo, hi = np.quantile(np.asarray(values, dtype=np.float64), [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_intervals(f1, f2, level: float = 0.95, resamples: int = 200, seed: int = 0,
                        metrics=("fid", "kid")) -> dict:
    """{fid_ci: [lo, hi], fid_boot_mean, fid_boot_std, kid_ci, ..., ci_level, bootstrap, bootstrap_seed}.

    The same seed gives the same intervals; FID and KID share the drawn rows (KID above KID_MAX_ROWS rows
    draws from its fixed subset).
    """
    check_interval(level, resamples)
    unknown = set(metrics) - {"fid", "kid"}
    if unknown:
        raise ValueError(f"bootstrap intervals exist for fid and kid, not {sorted(unknown)}")
    f1, f2 = _pair(f1, f2)
    gen = torch.Generator().manual_seed(seed)
    c1, c2 = draw_counts(f1.shape[0], resamples, gen), draw_counts(f2.shape[0], resamples, gen)
    out = {"ci_level": level, "bootstrap": resamples, "bootstrap_seed": seed}
    for metric in metrics:
        if metric == "fid":
            values = fid_resamples(f1, f2, c1, c2)
        else:
            g1, g2, k1, k2 = f1, f2, c1, c2
            if max(f1.shape[0], f2.shape[0]) > KID_MAX_ROWS:
                sub = torch.Generator().manual_seed(seed + 1)
                g1, g2 = (f[torch.randperm(f.shape[0], generator=sub)[:KID_MAX_ROWS].to(f.device)]
                          for f in (f1, f2))
                k1, k2 = draw_counts(g1.shape[0], resamples, sub), draw_counts(g2.shape[0], resamples, sub)
                out["kid_ci_rows"] = [int(g1.shape[0]), int(g2.shape[0])]
            values = kid_resamples(g1, g2, k1, k2)
        lo, hi = percentile_interval(values, level)
        out.update({f"{metric}_ci": [lo, hi], f"{metric}_boot_mean": float(values.mean()),
                    f"{metric}_boot_std": float(values.std(ddof=1))})
    return out
