"""Precision and recall (Kynkaanniemi et al. 2019) and density and coverage (Naeem et al. 2020) of features.

FID mixes two failures of a copy: images that look wrong and parts of the target's output it never makes.
These four numbers split them, from the same Inception features FID uses. With `real` the reference sample
(the target's or the data's features) and `fake` the copy's, and B(x, r) the closed ball of radius r:

  precision  share of fake points inside some real ball B(x_i, NN_k(x_i)), k = 3
  recall     share of real points inside some fake ball B(y_j, NN_k(y_j)), k = 3
  density    mean over fake points of the number of real balls (k = 5) holding it, over k
  coverage   share of real points whose own ball (k = 5) holds some fake point

NN_k(x) is the distance from x to its k-th nearest other point of its own sample. Distances are exact in
float64 (squared, through |a|^2 + |b|^2 - 2 a.b with the self-distance set to 0), computed in row blocks so
that two 10,000 x 2,048 samples need a few hundred MB beyond the features themselves.
"""
from __future__ import annotations

import numpy as np
import torch

from .stats import KEEP_ROWS

K_PR = 3            # neighbourhood of precision / recall (Kynkaanniemi et al.)
K_DC = 5            # neighbourhood of density / coverage (Naeem et al.)
BLOCK_BYTES = 64 << 20   # one float64 distance block; a few such temporaries live at once


def as_features(x, name: str = "features", device=None) -> torch.Tensor:
    """(n, d) float64 tensor from an array or tensor; a one-line ValueError for a wrong shape or NaN/inf."""
    if not isinstance(x, torch.Tensor):
        x = torch.from_numpy(np.asarray(x))
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n, d) array, got shape {tuple(x.shape)}")
    x = x.detach().to(dtype=torch.float64, device=device if device is not None else x.device)
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).any(1).sum())
        raise ValueError(f"{name} hold NaN or inf in {bad} of {x.shape[0]} rows; drop those images or "
                         f"recompute their features")
    return x


def _check_pair(real: torch.Tensor, fake: torch.Tensor, kmax: int) -> None:
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features differ in size ({real.shape[1]} vs {fake.shape[1]}); "
                         f"compute both with the same extractor")
    for name, x in (("real", real), ("fake", fake)):
        if x.shape[0] < kmax + 1:
            raise ValueError(f"{name} features: {x.shape[0]} sample(s), but k = {kmax} nearest neighbours need "
                             f"at least {kmax + 1}; use more images")


def _rows_per_block(cols: int) -> int:
    return max(1, BLOCK_BYTES // (8 * max(cols, 1)))


def _sq_dist(a: torch.Tensor, b: torch.Tensor, a2: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances of the rows of a and b (a2, b2: their squared norms), clipped at 0."""
    d = torch.addmm(b2.unsqueeze(0), a, b.mT, alpha=-2.0)
    return d.add_(a2.unsqueeze(1)).clamp_(min=0)


def knn_radii(x, ks=(K_PR, K_DC)) -> dict[int, torch.Tensor]:
    """{k: (n,) squared distance from each row of x to its k-th nearest other row}, for every k in ks."""
    x = as_features(x)
    kmax = max(ks)
    if x.shape[0] < kmax + 1:
        raise ValueError(f"{x.shape[0]} sample(s), but k = {kmax} nearest neighbours need at least {kmax + 1}")
    return _radii(x, (x * x).sum(1), ks)


def _radii(x: torch.Tensor, x2: torch.Tensor, ks) -> dict[int, torch.Tensor]:
    n, kmax = x.shape[0], max(ks)
    out = {k: torch.empty(n, dtype=torch.float64, device=x.device) for k in ks}
    step = _rows_per_block(n)
    for s in range(0, n, step):
        e = min(s + step, n)
        d = _sq_dist(x[s:e], x, x2[s:e], x2)
        idx = torch.arange(s, e, device=x.device)
        d[idx - s, idx] = 0.0       # a row's distance to itself, exactly (it is always among the k + 1 smallest)
        nearest = d.topk(kmax + 1, dim=1, largest=False, sorted=True).values
        for k in ks:
            out[k][s:e] = nearest[:, k]
    return out


def prdc(real, fake, k_pr: int = K_PR, k_dc: int = K_DC, device=None) -> dict:
    """{precision, recall, density, coverage} of `fake` features against `real` ones (plain floats).

    real, fake: (n, d) arrays or tensors (float32 features are widened to float64). device: where the
    distances are computed (default: where `real` lives).
    """
    if min(k_pr, k_dc) < 1:
        raise ValueError(f"k must be >= 1, got k_pr={k_pr}, k_dc={k_dc}")
    real = as_features(real, "real features", device)
    fake = as_features(fake, "fake features", real.device)
    _check_pair(real, fake, max(k_pr, k_dc))
    r2, f2 = (real * real).sum(1), (fake * fake).sum(1)
    ks = sorted({k_pr, k_dc})
    real_r, fake_r = _radii(real, r2, ks), _radii(fake, f2, (k_pr,))[k_pr]
    n, m = real.shape[0], fake.shape[0]
    fake_inside = torch.zeros(m, dtype=torch.bool, device=real.device)     # precision
    fake_count = torch.zeros(m, dtype=torch.float64, device=real.device)   # density
    recalled = torch.zeros(n, dtype=torch.bool, device=real.device)
    covered = torch.zeros(n, dtype=torch.bool, device=real.device)
    step = _rows_per_block(m)
    for s in range(0, n, step):
        e = min(s + step, n)
        d = _sq_dist(real[s:e], fake, r2[s:e], f2)                      # (real block, fake)
        fake_inside |= (d <= real_r[k_pr][s:e, None]).any(0)
        fake_count += (d <= real_r[k_dc][s:e, None]).sum(0, dtype=torch.float64)
        recalled[s:e] = (d <= fake_r[None, :]).any(1)
        covered[s:e] = d.amin(1) <= real_r[k_dc][s:e]
    return {"precision": float(fake_inside.double().mean()), "recall": float(recalled.double().mean()),
            "density": float(fake_count.sum()) / (k_dc * m), "coverage": float(covered.double().mean())}


def precision_recall(real, fake, k: int = K_PR) -> tuple[float, float]:
    """(precision, recall) with k-NN balls of size k (Kynkaanniemi et al. 2019)."""
    r = prdc(real, fake, k_pr=k, k_dc=k)
    return r["precision"], r["recall"]


def density_coverage(real, fake, k: int = K_DC) -> tuple[float, float]:
    """(density, coverage) with k-NN balls of size k (Naeem et al. 2020)."""
    r = prdc(real, fake, k_pr=k, k_dc=k)
    return r["density"], r["coverage"]


def prdc_of_stats(real_stats, fake_stats, k_pr: int = K_PR, k_dc: int = K_DC) -> dict:
    """PRDC of two FeatureStats that kept their rows (samples of up to stats.KEEP_ROWS images).

    Lets evaluation code that already holds the statistics of a small probe report PRDC without a second
    pass through the Inception network.
    """
    rows = []
    for name, s in (("real", real_stats), ("fake", fake_stats)):
        if s.centered_rows() is None:
            raise ValueError(f"{name} statistics ({s.n} images) kept no feature rows (only samples of up to "
                             f"{KEEP_ROWS} do); compute PRDC from compute_features() instead")
        rows.append(s.rows)
    return prdc(rows[0], rows[1], k_pr=k_pr, k_dc=k_dc)
