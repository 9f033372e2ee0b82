"""GAN objectives: WGAN-GP with drift (PGGAN), hinge (SNGAN), non-saturating logistic with R1 (fast thief).

Each function returns a scalar loss to minimise plus nothing else; the training loop owns the optimisers.
An ``Objective`` pairs one recipe's critic and generator losses (``objective(kind, ...)``), so the loop
calls the same two methods whatever the recipe.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

R1_EVERY = 16          # lazy R1: penalise every 16th critic step, scaled by 16 (Karras et al. 2020)


def gradient_penalty(discriminator, real: torch.Tensor, fake: torch.Tensor, *, generator=None, eps=None,
                     **d_kwargs) -> torch.Tensor:
    """Mean over the batch of (||grad_x D(x_hat)||_2 - 1)^2 at random interpolates x_hat (Gulrajani 2017).

    ``eps`` (N, 1, 1, 1) are the interpolation weights; drawn here when not given (data-parallel training
    passes each rank its slice of the global draw).
    """
    if eps is None:
        eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype, generator=generator)
    x_hat = torch.lerp(fake.detach(), real.detach(), eps).requires_grad_(True)
    scores = discriminator(x_hat, **d_kwargs)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1.0).pow(2).mean()


def wgan_gp_d_loss(d_real: torch.Tensor, d_fake: torch.Tensor, penalty: torch.Tensor, *,
                   gp_lambda: float = 10.0, drift: float = 0.001) -> torch.Tensor:
    """Critic loss: E[D(fake)] - E[D(real)] + lambda * GP + drift * E[D(real)^2] (PGGAN's epsilon_drift)."""
    return d_fake.mean() - d_real.mean() + gp_lambda * penalty + drift * d_real.pow(2).mean()


def wgan_g_loss(d_fake: torch.Tensor) -> torch.Tensor:
    return -d_fake.mean()


def hinge_d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """E[relu(1 - D(real))] + E[relu(1 + D(fake))]."""
    return torch.relu(1.0 - d_real).mean() + torch.relu(1.0 + d_fake).mean()


def hinge_g_loss(d_fake: torch.Tensor) -> torch.Tensor:
    return -d_fake.mean()


def logistic_d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN critic loss: E[softplus(-D(real))] + E[softplus(D(fake))]."""
    return torch.nn.functional.softplus(-d_real).mean() + torch.nn.functional.softplus(d_fake).mean()


def logistic_g_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss E[softplus(-D(fake))] (Goodfellow et al. 2014)."""
    return torch.nn.functional.softplus(-d_fake).mean()


def r1_penalty(discriminator, real: torch.Tensor, **d_kwargs) -> torch.Tensor:
    """Mean over the batch of ||grad_x D(x)||^2 at real images (Mescheder et al. 2018).

    One double backward through D on reals only, which is why it can be applied lazily (every k steps,
    scaled by k) at a fraction of WGAN-GP's cost.
    """
    x = real.detach().requires_grad_(True)
    scores = discriminator(x, **d_kwargs)
    (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
    return grad.pow(2).flatten(1).sum(dim=1).mean()


def paired_l1(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between the copy's and the target's image for the same latent code.

    L1 rather than MSE: it blurs less where the copy is unsure between modes, and the adversarial term
    the caller adds removes most of the remaining blur.
    """
    return (student - teacher.detach()).abs().mean()


@dataclass(frozen=True)
class WGANGP:
    """PGGAN's critic: Wasserstein loss, gradient penalty at interpolates and the drift term."""

    gp_lambda: float = 10.0
    drift: float = 0.001

    def critic_loss(self, D, real, fake, d_real, d_fake, *, draw_eps: Callable, critic_step: int, **d_kwargs):
        """``draw_eps(dtype)``: the interpolation weights of this rank's part of the batch."""
        gp = gradient_penalty(D, real, fake, eps=draw_eps(real.dtype), **d_kwargs)
        return wgan_gp_d_loss(d_real, d_fake, gp, gp_lambda=self.gp_lambda, drift=self.drift)

    def generator_loss(self, d_fake):
        return wgan_g_loss(d_fake)


@dataclass(frozen=True)
class Hinge:
    """SNGAN's hinge loss."""

    def critic_loss(self, D, real, fake, d_real, d_fake, *, draw_eps: Callable, critic_step: int, **d_kwargs):
        return hinge_d_loss(d_real, d_fake)

    def generator_loss(self, d_fake):
        return hinge_g_loss(d_fake)


@dataclass(frozen=True)
class LogisticR1:
    """The fast thief's non-saturating logistic loss with lazy R1 on real images (every R1_EVERY-th critic
    step, scaled by R1_EVERY)."""

    r1_gamma: float = 0.1

    def critic_loss(self, D, real, fake, d_real, d_fake, *, draw_eps: Callable, critic_step: int, **d_kwargs):
        loss = logistic_d_loss(d_real, d_fake)
        if self.r1_gamma > 0 and critic_step % R1_EVERY == 0:
            loss = loss + (self.r1_gamma / 2 * R1_EVERY) * r1_penalty(D, real, **d_kwargs)
        return loss

    def generator_loss(self, d_fake):
        return logistic_g_loss(d_fake)


OBJECTIVES = {"wgan-gp": WGANGP, "hinge": Hinge, "logistic-r1": LogisticR1}


def objective(kind: str, *, gp_lambda: float = 10.0, drift: float = 0.001, r1_gamma: float = 0.0):
    """The objective named ``kind`` ("wgan-gp", "hinge", "logistic-r1") with its weights."""
    if kind not in OBJECTIVES:
        raise ValueError(f"loss must be one of {', '.join(OBJECTIVES)}, got {kind!r}")
    weights = {"wgan-gp": {"gp_lambda": gp_lambda, "drift": drift}, "logistic-r1": {"r1_gamma": r1_gamma}}
    return OBJECTIVES[kind](**weights.get(kind, {}))
