"""Latent-side defenses: the owner changes which codes reach the generator, never the images themselves.

Each image stays a realistic sample of the target, but the served distribution is narrower or shifted, so
an attack trained on it learns a distorted copy. The maps assume N(0, I) codes (the default prior): then
``truncate:threshold`` and ``region`` serve exactly the prior restricted to their region. Under another prior
the output still lies in the declared region, only its density differs. All maps are pure functions of
(code, seed), row by row: no random state and no dependence on batch or position, so a resumed
or sharded (torchrun) collection serves what one uninterrupted process would have.
"""
from __future__ import annotations

import math

import torch

from .base import Defense, DefenseError, Param, register

_EPS = 1e-12


def _chi2():
    """scipy's chi-square distribution, imported on first use: scipy.stats adds ~0.9 s to every command's start."""
    from scipy.stats import chi2

    return chi2


def _phi(x: torch.Tensor) -> torch.Tensor:
    return torch.special.ndtr(x)


def _phi_inv(u: torch.Tensor) -> torch.Tensor:
    return torch.special.ndtri(u.clamp(_EPS, 1 - _EPS))


def squeeze_normal(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Monotone map of N(0,1) values onto N(0,1) truncated to [lo, hi] (inverse-CDF; float64 inside).

    Same distribution as resampling every value outside [lo, hi] until it falls inside, without randomness.
    """
    x64 = x.double()
    a, b = _phi(torch.tensor(lo, dtype=torch.float64)), _phi(torch.tensor(hi, dtype=torch.float64))
    return _phi_inv(a + (b - a) * _phi(x64)).clamp(lo, hi).to(x.dtype)


class LatentDefense(Defense):
    side = "latent"

    def contains(self, served: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        """Bool (N,): whether each served code lies in the region this defense declares."""
        raise NotImplementedError


@register
class Truncation(LatentDefense):
    """Pull codes towards the mean: z -> psi * z, after squeezing coordinates beyond +-threshold inside.

    Defaults to psi=0.7 without a threshold; giving only a threshold keeps psi=1.
    """

    name = "truncate"
    strength_key = "psi"
    params = (Param("psi", float, 0.7, "scale towards the mean; 1 = off", low=1e-6, high=1.0),
              Param("threshold", float, math.inf, "coordinates beyond +-T are redrawn inside; inf = off",
                    low=1e-3))

    def __init__(self, seed: int = 0, **values):
        if "threshold" in values and "psi" not in values:
            values["psi"] = 1.0          # 'truncate:threshold=T' alone does not also scale
        super().__init__(seed, **values)

    @property
    def strength(self) -> float:
        cut = 0.0 if math.isinf(self.threshold) else 2 * (1 - float(_phi(torch.tensor(self.threshold))))
        return (1 - self.psi) + cut

    def apply(self, z):
        if not math.isinf(self.threshold):
            z = squeeze_normal(z, -self.threshold, self.threshold)
        return z * self.psi

    def contains(self, served, codes=None):
        bound = self.psi * self.threshold * (1 + 1e-5)
        return (served.abs() <= bound).all(dim=1)


@register
class Region(LatentDefense):
    """Serve only a sub-region of the prior holding a fraction ``keep`` of its mass.

    halfspace: {w.z >= t} for a secret unit direction w (from the seed), t = Phi^-1(1 - keep); only the
    component along w moves. ball: {|z| <= R}, R^2 the keep-quantile of chi^2_d; only the radius moves.
    box: {|z_i| <= c} with (2 Phi(c) - 1)^d = keep; each coordinate moves on its own.
    """

    name = "region"
    strength_key = "keep"
    params = (Param("shape", str, "halfspace", "halfspace, ball or box", choices=("halfspace", "ball", "box")),
              Param("keep", float, 0.5, "prior mass of the served region; 1 = off", low=1e-6, high=1.0))

    @property
    def strength(self) -> float:
        return 1 - self.keep

    def direction(self, dim: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 7919 + dim)
        w = torch.randn(dim, generator=g, dtype=torch.float64)
        return w / w.norm()

    def bound(self, dim: int) -> float:
        """t (halfspace), R (ball) or c (box) for this latent dimension."""
        if self.shape == "halfspace":
            return float(_phi_inv(torch.tensor(1 - self.keep, dtype=torch.float64)))
        if self.shape == "ball":
            return math.sqrt(_chi2().ppf(self.keep, dim))
        return float(_phi_inv(torch.tensor((1 + self.keep ** (1 / dim)) / 2, dtype=torch.float64)))

    def apply(self, z):
        dim, b = z.shape[1], self.bound(z.shape[1])
        if self.shape == "box":
            return squeeze_normal(z, -b, b)
        z64 = z.double()
        if self.shape == "halfspace":
            w = self.direction(dim)
            s = z64 @ w
            s_new = squeeze_normal(s, b, math.inf)
            return (z64 + (s_new - s)[:, None] * w).to(z.dtype)
        r2 = z64.pow(2).sum(1)
        chi2 = _chi2()
        q = torch.from_numpy(chi2.cdf(r2.numpy(), dim)) * self.keep
        r2_new = torch.from_numpy(chi2.ppf(q.clamp(_EPS, 1 - _EPS).numpy(), dim)).clamp(max=b * b)
        scale = torch.where(r2 > 0, (r2_new / r2.clamp(min=_EPS)).sqrt(), torch.zeros_like(r2))
        return (z64 * scale[:, None]).to(z.dtype)

    def contains(self, served, codes=None):
        dim, b = served.shape[1], self.bound(served.shape[1])
        s = served.double()
        tol = 1e-5 * max(1.0, abs(b))
        if self.shape == "halfspace":
            return s @ self.direction(dim) >= b - tol
        if self.shape == "ball":
            return s.norm(dim=1) <= b + tol
        return (s.abs() <= b + tol).all(dim=1)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of directions, linear interpolation of norms (rows of a, b; t (N,))."""
    na, nb = a.norm(dim=1, keepdim=True).clamp(min=_EPS), b.norm(dim=1, keepdim=True).clamp(min=_EPS)
    ua, ub = a / na, b / nb
    cos = (ua * ub).sum(1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7)
    omega = torch.acos(cos)
    t = t[:, None]
    direction = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / torch.sin(omega)
    return direction * ((1 - t) * na + t * nb)


@register
class Anchors(LatentDefense):
    """Serve interpolations between k secret anchor codes instead of free prior draws.

    The code picks a pair of anchors (the two with the largest dot product with it) and a position on the
    arc between them (Phi of its projection on a secret direction); ``mix`` then moves the code that far
    along the arc from itself to that point. At mix = 1 every served code lies on an arc between two anchors,
    so the adversary only ever sees a one-dimensional family per pair.
    """

    name = "anchors"
    strength_key = "mix"
    params = (Param("mix", float, 1.0, "how far each code moves to its anchor interpolation; 0 = off",
                    low=0.0, high=1.0),
              Param("k", int, 8, "number of secret anchors", low=2, high=4096))

    @property
    def strength(self) -> float:
        return self.mix

    def secrets(self, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(k, dim) anchors and a unit direction, from the seed only."""
        g = torch.Generator().manual_seed(self.seed * 104729 + dim)
        anchors = torch.randn(self.k, dim, generator=g, dtype=torch.float64)
        u = torch.randn(dim, generator=g, dtype=torch.float64)
        return anchors, u / u.norm()

    def apply(self, z):
        anchors, u = self.secrets(z.shape[1])
        z64 = z.double()
        pair = (z64 @ anchors.T).topk(2, dim=1).indices
        t = _phi(z64 @ u)
        target = slerp(anchors[pair[:, 0]], anchors[pair[:, 1]], t)
        if self.mix == 1:
            return target.to(z.dtype)
        return slerp(z64, target, torch.full_like(t, self.mix)).to(z.dtype)

    def contains(self, served, codes=None):
        """At mix = 1: on the plane of some anchor pair; below 1 also the original code's plane is allowed."""
        anchors, _ = self.secrets(served.shape[1])
        s = served.double()
        n, dim = s.shape
        best = torch.full((n,), math.inf, dtype=torch.float64)
        for i in range(self.k):
            for j in range(i + 1, self.k):
                pair = [anchors[i].expand(n, dim), anchors[j].expand(n, dim)]
                if codes is not None and self.mix < 1:
                    pair.append(codes.double())
                q = torch.linalg.qr(torch.stack(pair, dim=2))[0]             # (n, dim, 2 or 3)
                res = (s - (q @ (q.transpose(1, 2) @ s[:, :, None]))[..., 0]).norm(dim=1)
                best = torch.minimum(best, res)
        return best <= 1e-4 * s.norm(dim=1).clamp(min=1.0)

    def check(self):
        if self.k < 2:
            raise DefenseError(f"{self.name}: k must be >= 2, got {self.k}")
