"""Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3,
averaged over random subsets (Binkowski et al. 2018). Needs the features themselves, not only their moments.
"""
from __future__ import annotations

import numpy as np
import torch


def _mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    d = x.shape[1]
    kxx = (x @ x.mT / d + 1) ** 3
    kyy = (y @ y.mT / d + 1) ** 3
    kxy = (x @ y.mT / d + 1) ** 3
    m, n = x.shape[0], y.shape[0]
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(sxx + syy - 2 * kxy.mean())


def kernel_inception_distance(feats1, feats2, subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
    """(mean, std) of the unbiased MMD^2 over `subsets` random subsets of min(subset_size, n1, n2) rows."""
    f1 = torch.as_tensor(np.asarray(feats1) if not isinstance(feats1, torch.Tensor) else feats1)
    f2 = torch.as_tensor(np.asarray(feats2) if not isinstance(feats2, torch.Tensor) else feats2)
    f1, f2 = f1.detach().double(), f2.detach().double().to(f1.device)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"features must be (n, d) with equal d, got {tuple(f1.shape)} and {tuple(f2.shape)}")
    size = min(subset_size, f1.shape[0], f2.shape[0])
    if size < 2:
        raise ValueError("KID needs at least 2 feature vectors on each side")
    gen = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        i = torch.randperm(f1.shape[0], generator=gen)[:size].to(f1.device)
        j = torch.randperm(f2.shape[0], generator=gen)[:size].to(f1.device)
        values.append(_mmd2_unbiased(f1[i], f2[j]))
    v = np.asarray(values)
    return float(v.mean()), float(v.std())
