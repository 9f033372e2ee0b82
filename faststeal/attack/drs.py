"""Discriminator rejection sampling (Azadi et al. 2019) with the target's own discriminator.

An optimal discriminator D*(x) = p_r / (p_r + p_g) has logit log(p_r / p_g). Keeping each query x with
probability proportional to exp(logit(x)) therefore turns samples of p_g into samples of p_r: an adversary
holding the target's discriminator (knowledge level 4) can filter its queries towards the real data.

WGAN and hinge critics do not output calibrated logits. When the adversary also holds some real images the
scores are calibrated by a one-dimensional logistic regression (real vs queried); otherwise they are
standardised (a heuristic scale, stated in the report).
"""
from __future__ import annotations

import torch

from faststeal.data import to_float


@torch.no_grad()
def discriminator_scores(discriminator, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Raw discriminator outputs for uint8 images (higher = judged more real)."""
    return torch.cat([discriminator(to_float(chunk)).float().view(-1) for chunk in images.split(batch)])


def calibrate_logistic(real_scores: torch.Tensor, fake_scores: torch.Tensor, steps: int = 200):
    """Fit logit = a * score + b separating real (1) from generated (0) scores; returns (a, b)."""
    x = torch.cat([real_scores, fake_scores]).double()
    y = torch.cat([torch.ones_like(real_scores), torch.zeros_like(fake_scores)]).double()
    mean, std = x.mean(), x.std().clamp_min(1e-12)
    xs = (x - mean) / std
    # Class-balanced weights so the fitted offset does not depend on how many real images there are.
    w = torch.where(y > 0, 0.5 / y.sum(), 0.5 / (1 - y).sum())
    params = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([params], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = params[0] * xs + params[1]
        loss = (w * torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")).sum()
        loss.backward()
        return loss

    opt.step(closure)
    a, b = params.detach()
    return float(a / std), float(b - a * mean / std)


def acceptance_probabilities(logits: torch.Tensor, gamma: float = 0.0, eps: float = 1e-6) -> torch.Tensor:
    """Azadi et al.'s acceptance: sigmoid(F), F = d - d_max - log(1 - exp(d - d_max - eps)) - gamma.

    With gamma = 0 this is exact rejection sampling, p = exp(d - d_max) = ratio / max ratio; larger
    gamma accepts fewer samples, smaller gamma more.
    """
    d = logits.double()
    delta = d - d.max()
    f = delta - torch.log1p(-torch.exp(delta - eps)) - gamma
    return torch.sigmoid(f).float()


def gamma_for_rate(logits: torch.Tensor, rate: float, eps: float = 1e-6) -> float:
    """The gamma whose expected acceptance rate is ``rate`` (bisection; acceptance falls as gamma grows)."""
    if not 0 < rate <= 1:
        raise ValueError(f"acceptance rate must be in (0, 1], got {rate}")
    lo, hi = -50.0, 50.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if float(acceptance_probabilities(logits, mid, eps).mean()) > rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def rejection_sample(logits: torch.Tensor, *, gamma: float | None = None, rate: float | None = None,
                     seed: int = 0) -> torch.Tensor:
    """Indices of accepted samples. Give gamma directly, or a target acceptance ``rate``."""
    if gamma is None:
        gamma = 0.0 if rate is None else gamma_for_rate(logits, rate)
    probs = acceptance_probabilities(logits, gamma)
    u = torch.rand(probs.shape, generator=torch.Generator().manual_seed(seed))
    return torch.nonzero(u < probs).view(-1)


def standardise(scores: torch.Tensor) -> torch.Tensor:
    return (scores - scores.mean()) / scores.std().clamp_min(1e-12)
