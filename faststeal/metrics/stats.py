"""Streaming feature statistics: count, sum and sum of outer products in float64.

Memory is O(d^2) whatever the number of images; two partial results (batches, shards, ranks) merge by
adding their sums, so the order and size of batches do not change the result beyond float64 rounding.
Saved as .npz with mu, sigma (the pytorch-fid keys, so such files load too), n and metadata.

Samples of at most KEEP_ROWS images also keep their feature rows: the Frechet distance of two such samples
then needs only the singular values of an n2 x n1 matrix instead of eigendecompositions at d = 2048 (see
frechet.trace_sqrt_low_rank), which is what makes per-probe FIDs during training cheap.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from faststeal import distributed
from faststeal.fileio import UnreadableFile, atomic_write, read_numpy

KEEP_ROWS = 2048     # samples up to this size (the default fid_n 2,000 included) keep their features:
                     # float32 as the network gives them, 16 MB at d = 2048, for the low-rank FID and PRDC


@dataclass
class FeatureStats:
    """Running moments of d-dimensional features; `meta` holds protocol, source fingerprint, weights id."""

    dim: int = 2048
    n: int = 0
    total: torch.Tensor | None = None   # (d,) float64
    outer: torch.Tensor | None = None   # (d, d) float64
    meta: dict = field(default_factory=dict)
    rows: torch.Tensor | None = None    # (n, d) float32 while n <= KEEP_ROWS and every row was seen
    keeps_rows: bool = True             # False once rows are dropped (or never known, as for loaded stats)

    def update(self, feats: torch.Tensor) -> "FeatureStats":
        """Add a (b, d) batch of features."""
        if feats.ndim != 2 or feats.shape[1] != self.dim:
            raise ValueError(f"features must be (b, {self.dim}), got {tuple(feats.shape)}")
        f = feats.detach().double()
        if self.total is None:
            self.total = torch.zeros(self.dim, dtype=torch.float64, device=f.device)
            self.outer = torch.zeros(self.dim, self.dim, dtype=torch.float64, device=f.device)
        self.total += f.sum(0)
        self.outer.addmm_(f.mT, f)
        self.n += f.shape[0]
        self._keep(feats.detach().float().cpu())
        return self

    def _keep(self, f: torch.Tensor | None) -> None:
        """Append rows while the sample stays small; drop them for good otherwise."""
        if not self.keeps_rows or f is None or self.n > KEEP_ROWS:
            self.rows, self.keeps_rows = None, False
            return
        self.rows = f.clone() if self.rows is None else torch.cat([self.rows, f])

    def centered_rows(self) -> torch.Tensor | None:
        """The kept rows minus the mean (A with sigma = A^T A / (n - 1)), or None."""
        if not self.keeps_rows or self.rows is None or self.rows.shape[0] != self.n:
            return None
        return self.rows.double() - self.mu.cpu()

    def merge(self, other: "FeatureStats") -> "FeatureStats":
        """Combine with the statistics of another shard (in place); returns self."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge {self.dim}-d and {other.dim}-d statistics")
        if other.n == 0:
            return self
        if self.total is None:
            self.total, self.outer = other.total.clone(), other.outer.clone()
        else:
            self.total += other.total.to(self.total.device)
            self.outer += other.outer.to(self.outer.device)
        self.n += other.n
        self._keep(other.rows if other.keeps_rows else None)
        return self

    def all_reduce(self) -> "FeatureStats":
        """Sum the moments over torch.distributed ranks (no-op in one process).

        A rank that owned no batch contributes zeros, so every rank makes the same collective calls.
        """
        if distributed.active():
            if self.total is None:
                self.total = torch.zeros(self.dim, dtype=torch.float64)
                self.outer = torch.zeros(self.dim, self.dim, dtype=torch.float64)
            n = torch.tensor([float(self.n)], dtype=torch.float64, device=self.total.device)
            for t in (n, self.total, self.outer):
                distributed.all_sum(t)
            self.n = int(n.item())
            # every rank's rows, if every rank kept them and the whole stays small (row order is irrelevant)
            shares = distributed.all_gather_objects(self.rows if self.keeps_rows else False)
            kept = [r for r in shares if r is not None and r is not False]
            whole = all(r is not False for r in shares) and self.n <= KEEP_ROWS
            self.rows = torch.cat(kept) if whole and kept else None
            self.keeps_rows = bool(whole and kept)
        return self

    def to_cpu(self) -> "FeatureStats":
        """Move the moments to the CPU (in place): features may be summed on a GPU."""
        if self.total is not None:
            self.total, self.outer = self.total.cpu(), self.outer.cpu()
        return self

    @property
    def mu(self) -> torch.Tensor:
        self._need(1)
        return self.total / self.n

    @property
    def sigma(self) -> torch.Tensor:
        """Unbiased covariance, 1/(N-1)."""
        self._need(2)
        mu = self.mu
        cov = (self.outer - self.n * torch.outer(mu, mu)) / (self.n - 1)
        return (cov + cov.mT) / 2

    def _need(self, k: int) -> None:
        if self.n < k:
            raise ValueError(f"statistics hold {self.n} samples; need at least {k}")

    def save(self, path: str | Path) -> Path:
        """Atomic write of an .npz with mu, sigma, n and meta (JSON); under torchrun rank 0 writes, all wait."""
        # computed on every rank: too few samples fails everywhere, not on rank 0 alone before the barrier
        arrays = dict(mu=self.mu.cpu().numpy(), sigma=self.sigma.cpu().numpy(), n=np.int64(self.n),
                      meta=np.array(json.dumps(self.meta)))
        if self.centered_rows() is not None:          # small samples keep their rows (the low-rank FID)
            arrays["rows"] = self.rows.numpy()
        return atomic_write(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def from_moments(cls, mu, sigma, n: int, meta: dict | None = None) -> "FeatureStats":
        """Rebuild the running sums from mean and covariance (so loaded stats can still be merged)."""
        mu = torch.as_tensor(np.asarray(mu), dtype=torch.float64)
        sigma = torch.as_tensor(np.asarray(sigma), dtype=torch.float64)
        d = mu.shape[0]
        if mu.ndim != 1 or sigma.shape != (d, d):
            raise ValueError(f"mu must be (d,) and sigma (d, d), got {tuple(mu.shape)}, {tuple(sigma.shape)}")
        outer = sigma * max(n - 1, 0) + n * torch.outer(mu, mu)
        return cls(dim=d, n=n, total=mu * n, outer=outer, meta=dict(meta or {}), keeps_rows=False)

    @classmethod
    def load(cls, path: str | Path) -> "FeatureStats":
        """Read our .npz or a pytorch-fid one (mu, sigma only: n unknown, stored as 0 -> reported as -1)."""
        path = Path(path)
        z = read_numpy(path)
        if not isinstance(z, dict) or "mu" not in z or "sigma" not in z:
            raise UnreadableFile(f"{path}: not a statistics file (needs arrays 'mu' and 'sigma')")
        mu, sigma = z["mu"], z["sigma"]
        try:
            n = int(z["n"]) if "n" in z else -1
            meta = json.loads(str(z["meta"])) if "meta" in z else {}
        except (TypeError, ValueError) as exc:
            raise UnreadableFile(f"{path}: damaged statistics metadata ({exc})") from None
        stats = cls.from_moments(mu, sigma, max(n, 2), meta)
        stats.n = n if n > 0 else stats.n
        stats.meta.setdefault("n_known", n > 0)
        rows = z.get("rows")
        if rows is not None and rows.ndim == 2 and rows.shape == (n, mu.shape[0]):
            stats.rows, stats.keeps_rows = torch.as_tensor(rows, dtype=torch.float32), True
        return stats


def cache_dir() -> Path:
    """$FASTSTEAL_CACHE, else $XDG_CACHE_HOME/faststeal, else ~/.cache/faststeal; FID stats go in fid/."""
    root = os.environ.get("FASTSTEAL_CACHE")
    if root:
        return Path(root) / "fid"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "faststeal" / "fid"


def cache_path(*key) -> Path:
    """Cache file for a key (source fingerprint, N, protocol, weights id ...)."""
    digest = hashlib.sha256(json.dumps([str(k) for k in key]).encode()).hexdigest()[:20]
    return cache_dir() / f"{digest}.npz"
