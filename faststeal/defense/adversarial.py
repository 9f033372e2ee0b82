"""Adversarial output perturbation: push each served image's Inception features away from where the
target's features live, inside an L-inf budget the honest viewer barely sees.

An attack GAN trained on such images learns features that sit away from the target's, which is exactly
what fidelity (an FID in the same Inception space) punishes. The loss is the squared distance of each
image's 2048-d feature to a reference mean (the target's own feature mean when known, else the clean
batch's mean), maximised by ``steps`` signed-gradient steps through the FID pipeline (protocol resize,
TF scaling, FIDInception) and projected back to the budget after each step. Without a reference the result
depends on which images share a batch, so a sharded (torchrun) collection matches one process only when a
reference is set (``run_defend`` always sets the undefended target's mean).

Cost: one Inception forward + backward at 299x299 per image per step (plus a forward pass for the reference
when none is given), whatever the image size. On a CPU this dominates everything else; 10K queries with
steps=2 are for a GPU (``device``, CUDA by default when available). Keep steps small.
"""
from __future__ import annotations

import math

import torch

from faststeal.metrics import get_extractor, protocol
from faststeal.metrics.features import default_device

from .base import Param, content_seeds, register
from .image import ImageDefense


@register
class AdversarialFeatures(ImageDefense):
    name = "adv"
    strength_key = "eps"
    params = (Param("eps", float, 4.0, "L-inf budget in pixel levels of 0..255; 0 = off", low=0.0, high=255.0),
              Param("steps", int, 2, "signed-gradient steps", low=1, high=1000),
              Param("step", float, 0.0, "step size in pixel levels; 0 = eps / steps * 1.25", low=0.0),
              Param("batch", int, 16, "images per Inception pass", low=1, high=4096),
              Param("start", str, "random", "random (seeded uniform start in the budget) or zero",
                    choices=("random", "zero")))

    def __init__(self, seed: int = 0, reference=None, device=None, **values):
        super().__init__(seed, **values)
        self.reference = None if reference is None else torch.as_tensor(reference, dtype=torch.float32)
        if device is None:
            device = default_device()
        self.device = torch.device(device)
        self._model = None

    @property
    def strength(self) -> float:
        return self.eps

    @property
    def budget(self) -> int:
        """The budget in whole pixel levels actually enforced on the uint8 output."""
        return int(math.floor(self.eps))

    def set_reference(self, mu) -> None:
        """Use this 2048-d feature mean (e.g. the undefended target's) as the point to push away from."""
        mu = torch.as_tensor(mu, dtype=torch.float32).flatten()
        if mu.numel() != 2048:
            raise ValueError(f"adv: the reference must be a 2048-d feature mean, got {mu.numel()} values")
        self.reference = mu

    def model(self):
        if self._model is None:
            self._model = get_extractor(device=self.device).model
        return self._model

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable features of float (N, C, H, W) pixel values in [0, 255]."""
        return self.model()(protocol.finish(protocol.resize_299(x)))

    def apply(self, x):
        if self.budget == 0:
            return x.clone()
        return torch.cat([self._perturb(chunk) for chunk in x.split(self.batch)])

    def _perturb(self, x: torch.Tensor) -> torch.Tensor:
        clean = x.to(self.device).float()
        eps = float(self.budget)
        step = self.step or 1.25 * eps / self.steps
        if self.start == "random":
            delta = torch.empty_like(clean)
            for i, s in enumerate(content_seeds(x, self.seed, self.name)):
                g = torch.Generator().manual_seed(s)
                delta[i] = (torch.rand(x.shape[1:], generator=g) * 2 - 1).to(self.device) * eps
        else:
            delta = torch.zeros_like(clean)
        ref = self.reference
        if ref is None:
            with torch.no_grad():
                ref = self.features(clean).mean(0)
        ref = ref.to(self.device)
        delta = ((clean + delta).clamp(0, 255) - clean)
        for _ in range(self.steps):
            delta.requires_grad_(True)
            loss = (self.features(clean + delta) - ref).pow(2).sum()
            (grad,) = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                delta = (delta + step * grad.sign()).clamp(-eps, eps)
                delta = (clean + delta).clamp(0, 255) - clean
        out = (clean + delta.detach()).round().clamp(clean - eps, clean + eps).clamp(0, 255)
        return out.to(torch.uint8).cpu()
