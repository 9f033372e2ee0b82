"""Frechet distance between two Gaussians: |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2).

Only the trace of the square root is needed, never the root itself, so no method forms sqrtm(S1 S2):

  eigh           float64, CPU or GPU. With S1 = L L^T (Cholesky; sqrt(S1) from eigh when S1 is singular),
                 S1 S2 is similar to the symmetric PSD matrix L^T S2 L, so
                 tr sqrt(S1 S2) = sum sqrt(eigvalsh(L^T S2 L)), eigenvalues clipped at 0. No complex numbers.
  newton_schulz  float64, GEMM only (suits GPUs): coupled Newton-Schulz iteration on S1 S2 / ||S1 S2||_F,
                 stopped when ||I - Z Y|| is tiny; falls back to eigh if it does not converge (singular or
                 very ill-conditioned input) and says so.
  scipy          scipy.linalg.sqrtm on S1 S2, the reference of pytorch-fid; real part; slow.
  auto           newton_schulz on CUDA tensors, eigh otherwise.

Singular covariances (fewer samples than dimensions, N < 2049 for 2048-d features) give a finite value and
a warning that it is biased.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.linalg
import torch

METHODS = ("auto", "eigh", "newton_schulz", "scipy", "low_rank")


class BiasedFIDWarning(UserWarning):
    """The value is finite but biased: a covariance is singular (too few samples) or N is small."""


def _as_f64(x, name: str, device=None) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.asarray(x))
    elif not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    x = x.detach().to(dtype=torch.float64, device=device if device is not None else x.device)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _check(mu1, s1, mu2, s2) -> None:
    d = mu1.shape[0]
    if mu1.ndim != 1 or mu2.shape != mu1.shape:
        raise ValueError(f"means must be 1-D of equal length, got {tuple(mu1.shape)} and {tuple(mu2.shape)}")
    for name, s in (("sigma1", s1), ("sigma2", s2)):
        if s.shape != (d, d):
            raise ValueError(f"{name} must be ({d}, {d}), got {tuple(s.shape)}")


def _definite(s: torch.Tensor) -> bool:
    return int(torch.linalg.cholesky_ex(s)[1]) == 0


def _psd_sqrt(s: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh(s)
    return (v * w.clamp(min=0).sqrt()) @ v.mT


def _factor(s: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """A matrix F with F F^T = s: Cholesky when s is positive definite, else the PSD square root."""
    chol, info = torch.linalg.cholesky_ex(s)
    if int(info) == 0:
        return chol, True
    return _psd_sqrt(s), False


def _eigvalsh(m: torch.Tensor) -> torch.Tensor:
    if m.device.type == "cpu":
        # LAPACK dsyev through scipy: the fastest symmetric eigenvalue driver measured on the target CPUs.
        w = scipy.linalg.eigvalsh(m.numpy(), driver="ev", check_finite=False)
        return torch.from_numpy(w)
    return torch.linalg.eigvalsh(m)


def trace_sqrt_eigh(s1: torch.Tensor, s2: torch.Tensor) -> tuple[float, bool]:
    """tr sqrt(S1 S2) by the symmetric route; also whether S1 was positive definite."""
    f, definite = _factor(s1)
    m = f.mT @ s2 @ f
    m = (m + m.mT) / 2
    return float(_eigvalsh(m).clamp(min=0).sqrt().sum()), definite


def trace_sqrt_low_rank(a1: torch.Tensor, a2: torch.Tensor) -> float:
    """tr sqrt(S1 S2) for S = A^T A / (n - 1) from the centered samples A themselves (n1, n2 rows).

    The nonzero eigenvalues of S1 S2 are those of M M^T / c with M = A2 A1^T and c = (n1 - 1)(n2 - 1), so the
    trace is the sum of M's singular values over sqrt(c): exact, and an n2 x n1 problem instead of d x d."""
    m = a2.double() @ a1.double().mT
    scale = math.sqrt((a1.shape[0] - 1) * (a2.shape[0] - 1))
    return float(torch.linalg.svdvals(m).sum()) / scale


def trace_sqrt_newton_schulz(s1: torch.Tensor, s2: torch.Tensor, max_iter: int = 100,
                             tol: float = 1e-10) -> tuple[float | None, int]:
    """tr sqrt(S1 S2) by coupled Newton-Schulz (GEMMs only); (None, iters) when it does not converge."""
    a = s1 @ s2
    norm = torch.linalg.matrix_norm(a)
    if norm == 0:
        return 0.0, 0
    n = a.shape[0]
    eye = torch.eye(n, dtype=a.dtype, device=a.device)
    y, z = a / norm, eye.clone()
    for it in range(1, max_iter + 1):
        zy = z @ y
        err = float(torch.linalg.matrix_norm(eye - zy)) / math.sqrt(n)
        if not math.isfinite(err):
            return None, it
        if err < tol:
            return float(torch.trace(y)) * math.sqrt(float(norm)), it
        t = 1.5 * eye - 0.5 * zy
        y, z = y @ t, t @ z
    return None, max_iter


def trace_sqrt_scipy(s1: torch.Tensor, s2: torch.Tensor) -> float:
    """Reference: scipy's sqrtm (Schur method), real part; retried with a tiny ridge if not finite."""
    a, b = s1.cpu().numpy(), s2.cpu().numpy()
    root = scipy.linalg.sqrtm(a @ b)
    root = root[0] if isinstance(root, tuple) else root  # old scipy returned (root, err) with disp=False
    if not np.isfinite(root).all():
        eps = 1e-6 * np.eye(a.shape[0])
        root = scipy.linalg.sqrtm((a + eps) @ (b + eps))
        root = root[0] if isinstance(root, tuple) else root
    return float(np.trace(root).real)


def frechet_distance(mu1, sigma1, mu2, sigma2, method: str = "auto", n1: int | None = None,
                     n2: int | None = None, rows1=None, rows2=None) -> float:
    """Frechet distance of N(mu1, sigma1) and N(mu2, sigma2); numpy arrays or torch tensors -> float.

    n1, n2 (sample counts), when given, only serve the small-sample warning. rows1, rows2: the centered
    samples behind sigma1, sigma2 (FeatureStats.centered_rows), when both are small enough to be kept; with
    method "auto" they replace the d x d square root by the exact low-rank route.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    device = sigma1.device if isinstance(sigma1, torch.Tensor) else None
    mu1, s1 = _as_f64(mu1, "mu1", device), _as_f64(sigma1, "sigma1", device)
    mu2, s2 = _as_f64(mu2, "mu2", device), _as_f64(sigma2, "sigma2", device)
    _check(mu1, s1, mu2, s2)
    d = mu1.shape[0]
    if method == "auto" and rows1 is not None and rows2 is not None:
        method = "low_rank"
    if method == "auto":
        method = "newton_schulz" if s1.device.type == "cuda" else "eigh"
    singular = any(n is not None and n <= d for n in (n1, n2)) or not (_definite(s1) and _definite(s2))
    if method == "newton_schulz":
        tr, iters = trace_sqrt_newton_schulz(s1, s2)
        if tr is None:
            if not singular:
                warnings.warn(f"Newton-Schulz did not converge in {iters} iterations; using eigh",
                              RuntimeWarning, stacklevel=2)
            method = "eigh"
    if method == "low_rank":
        if rows1 is None or rows2 is None:
            raise ValueError("method low_rank needs rows1 and rows2 (the centered samples)")
        tr = trace_sqrt_low_rank(torch.as_tensor(rows1).to(s1.device), torch.as_tensor(rows2).to(s1.device))
    if method == "eigh":
        tr, _ = trace_sqrt_eigh(s1, s2)
    elif method == "scipy":
        tr = trace_sqrt_scipy(s1, s2)
    if singular:
        warnings.warn(f"singular covariance (fewer samples than the {d} feature dimensions?): the Frechet "
                      f"distance is finite but biased; use more samples", BiasedFIDWarning, stacklevel=2)
    diff = mu1 - mu2
    value = float(diff @ diff) + float(torch.trace(s1)) + float(torch.trace(s2)) - 2.0 * tr
    return max(value, 0.0)  # rounding can leave -1e-12 for identical inputs


def frechet_distance_of_features(f1: torch.Tensor, f2: torch.Tensor) -> float:
    """Frechet distance of two (n, d) feature samples, through an n1 x n2 matrix when n < d.

    With fewer samples than dimensions each covariance is A^T A / (n - 1) of the centred features A, and the
    non-zero eigenvalues of sigma1 @ sigma2 are the squared singular values of A1 A2^T / sqrt((n1-1)(n2-1)),
    so tr sqrt(sigma1 sigma2) is that matrix's nuclear norm: a 128 x 128 SVD instead of 2048 x 2048
    eigendecompositions for the fidelity curve's small probes. Same value as frechet_distance on
    torch.cov of the same features (tests/metrics/test_frechet.py); biased at small n like any FID.
    """
    a, b = f1.double(), f2.double()
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(a.shape[0], b.shape[0]) < 2:
        raise ValueError(f"need two (n >= 2, d) feature matrices of one width, got {tuple(a.shape)}, "
                         f"{tuple(b.shape)}")
    n1, n2, d = a.shape[0], b.shape[0], a.shape[1]
    if max(n1, n2) > d:
        return frechet_distance(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T), n1=n1, n2=n2)
    ca, cb = a - a.mean(0), b - b.mean(0)
    tr1, tr2 = float((ca * ca).sum()) / (n1 - 1), float((cb * cb).sum()) / (n2 - 1)
    cross = trace_sqrt_low_rank(ca, cb)
    diff = a.mean(0) - b.mean(0)
    return max(float(diff @ diff) + tr1 + tr2 - 2.0 * cross, 0.0)
