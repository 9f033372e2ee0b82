"""Differentiable augmentation (Zhao et al. 2020, "DiffAugment") for GANs trained on few images.

The same random transform family is applied to real and generated images before the discriminator, and
gradients flow through it to the generator, so D cannot memorise a small query set and G is not taught
to reproduce the augmentations. Draws come from the global torch RNG (seeded by the trainer).

Each transform can also be applied to a random share ``p`` of the images only: the adaptive augmentation
(``AdaptiveStrength``, after Karras et al. 2020, "ADA") raises ``p`` while the discriminator is too sure of
the real images and lowers it otherwise, so a small query set is augmented as much as it needs and no more.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


def parse_policy(text: str | None) -> tuple[str, ...]:
    """'translation,cutout' -> ('translation', 'cutout'); '' or None or 'none' -> ()."""
    if not text or text == "none":
        return ()
    parts = tuple(p.strip() for p in str(text).split(",") if p.strip())
    bad = [p for p in parts if p not in POLICIES]
    if bad:
        raise ValueError(f"augment policy must be a comma list of {POLICIES} or 'none', got {text!r}")
    return parts


def _color(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    x = x + (torch.rand(n, 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)                    # brightness
    if x.shape[1] > 1:                                                                        # saturation
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (torch.rand(n, 1, 1, 1, dtype=x.dtype, device=x.device) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)                                                # contrast
    return (x - mean) * (torch.rand(n, 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + mean


def _translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ratio * size pixels, filling with zeros (a gather, so it is differentiable)."""
    n, _, h, w = x.shape
    sh, sw = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    dy = torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device)
    ys = (torch.arange(h, device=x.device).view(1, h, 1) + dy).clamp(-1, h)
    xs = (torch.arange(w, device=x.device).view(1, 1, w) + dx).clamp(-1, w)
    padded = F.pad(x, (1, 1, 1, 1))                       # index -1 / h land on the zero border
    b = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded.permute(0, 2, 3, 1)[b, ys + 1, xs + 1].permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero a random square of half the image side in each image."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = ((ys - cy + ch // 2).clamp(min=0) < ch) & ((ys - cy + ch // 2) >= 0) \
        & ((xs - cx + cw // 2) >= 0) & ((xs - cx + cw // 2) < cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


_OPS = {"color": _color, "translation": _translation, "cutout": _cutout}


def diff_augment(x: torch.Tensor, policy: tuple[str, ...], p: float = 1.0) -> torch.Tensor:
    """Apply the policy's transforms in order, each to a random share ``p`` of the images (each image drawn
    apart for each transform); the identity for an empty policy or ``p`` 0. At ``p`` 1 no extra draw is made,
    so the random stream is the one of a fixed policy."""
    if p <= 0:
        return x
    for name in policy:
        out = _OPS[name](x)
        if p < 1:
            chosen = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p
            out = torch.where(chosen, out, x)
        x = out
    return x


class AdaptiveStrength:
    """The share ``p`` of images the discriminator sees augmented, steered by how sure it is of the reals.

    Every ``interval`` critic steps the mean sign of D's outputs on the (augmented) real images is compared
    with ``target``: above it, D is memorising the reals and ``p`` rises; below it, ``p`` falls. Either way by
    the images of those steps over ``ramp_kimg`` thousand, so ``p`` can cross from 0 to 1 in ``ramp_kimg``
    (much shorter than ADA's 500 kimg: a CPU copy trains a few hundred kimg in all). The caller averages the
    sign sum and count over ranks before ``update`` so every rank keeps the same ``p``.
    """

    def __init__(self, target: float, batch: int, ramp_kimg: float = 20.0, interval: int = 4):
        if not 0 < target < 1:
            raise ValueError(f"the adaptive augmentation's target must be between 0 and 1, got {target}")
        self.target, self.batch, self.ramp_kimg, self.interval = target, batch, ramp_kimg, interval
        self.p = 0.0
        self.signs = 0.0            # sum of sign(D(real)) since the last update
        self.count = 0              # outputs summed into signs
        self.steps = 0              # critic steps since the last update
        self.last_r = float("nan")  # the last mean sign: the overfitting signal, for the curve

    def observe(self, d_real: torch.Tensor) -> None:
        """Add one critic step's outputs on the reals (kept as a tensor: no device sync until ``update``)."""
        self.signs = self.signs + torch.sign(d_real.detach().float()).sum()
        self.count += d_real.numel()
        self.steps += 1

    def due(self) -> bool:
        return self.steps >= self.interval

    def update(self, signs: float, count: float) -> None:
        """Move ``p`` from the summed signs of the last ``interval`` steps (over all ranks) and start again."""
        self.last_r = float(signs) / max(float(count), 1.0)
        step = self.batch * self.interval / (self.ramp_kimg * 1000.0)
        direction = 1.0 if self.last_r > self.target else -1.0
        self.p = min(max(self.p + direction * step, 0.0), 1.0)
        self.signs, self.count, self.steps = 0.0, 0, 0

    def state(self) -> dict:
        return {"p": self.p, "signs": float(self.signs), "count": self.count, "steps": self.steps,
                "last_r": self.last_r}

    def load_state(self, state: dict) -> None:
        self.p, self.signs = float(state["p"]), float(state["signs"])
        self.count, self.steps, self.last_r = int(state["count"]), int(state["steps"]), float(state["last_r"])
