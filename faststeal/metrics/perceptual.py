"""Early feature maps of the FID Inception, for a perceptual distance when a copy is distilled on pairs.

Why: a copy regressed onto the target's images with L1 alone learns the layout and colours and leaves fine
texture blurred, because averaging over what it cannot yet place costs L1 little. The first layers of the
network that FID itself uses respond to edges and texture, so a distance between their (channel-normalised)
maps, as LPIPS does with other networks, pushes the copy towards the texture. Only the five stem convolutions
run, at the images' own size: a small cost next to the 299x299 pass that FID makes.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from .inception import FIDInception, _max3s2, read_weights


class StemFeatures(nn.Module):
    """images in [-1, 1], (N, 1 or 3, H, W) with H, W >= 32 -> the maps after stem convolutions 1, 2, 3 and 5.

    Frozen (no parameter takes gradients) but differentiable in its input. Grey images are repeated to three
    channels, as FID does.
    """

    TAPS = (0, 1, 2, 4)

    def __init__(self, weights: str | Path | None = None):
        super().__init__()
        self.stem = FIDInception().load_state(read_weights(weights)).stem.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "StemFeatures":
        return super().train(False)          # folded batch norm: always the inference graph

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 4 or x.shape[1] not in (1, 3) or min(x.shape[-2:]) < 32:
            raise ValueError(f"StemFeatures expects (N, 1 or 3, H >= 32, W >= 32) images, got {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        maps = []
        for i, layer in enumerate(self.stem):
            if i == 3:
                x = _max3s2(x)
            x = layer(x)
            if i in self.TAPS:
                maps.append(x)
        return maps

    def distance(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """LPIPS-style distance: each map unit-normalised over channels at every position, squared differences
        summed over channels, averaged over positions and images, summed over maps. Channel normalisation keeps
        every map's contribution on one scale. Gradients flow to ``student`` only."""
        total = student.new_zeros(())
        with torch.no_grad():
            want = self(teacher)
        for a, b in zip(self(student), want):
            a = a / (a.norm(dim=1, keepdim=True) + 1e-8)
            b = b / (b.norm(dim=1, keepdim=True) + 1e-8)
            total = total + (a - b).pow(2).sum(dim=1).mean()
        return total
