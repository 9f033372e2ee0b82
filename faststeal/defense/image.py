"""Image-side defenses: the owner degrades every served image a little, in the hope that the thief's copy
degrades more than the honest user's experience. All take and return uint8 (N, C, H, W)."""
from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .base import Defense, Param, content_seeds, register


class ImageDefense(Defense):
    side = "image"


@register
class GaussianNoise(ImageDefense):
    """Add N(0, (255 sigma)^2) per pixel, then round and clip. Noise is keyed on the image's bytes and the
    seed, so the same image always carries the same noise (re-querying cannot average it out)."""

    name = "noise"
    strength_key = "sigma"
    params = (Param("sigma", float, 0.05, "noise std as a fraction of the 0..255 range; 0 = off",
                    low=0.0, high=1.0),)

    @property
    def strength(self) -> float:
        return self.sigma

    def apply(self, x):
        noise = torch.empty(x.shape, dtype=torch.float32)
        for i, s in enumerate(content_seeds(x, self.seed, self.name)):
            noise[i] = torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(s))
        return (x.float() + 255.0 * self.sigma * noise).round_().clamp_(0, 255).to(torch.uint8)


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian of radius ceil(3 sigma) (at least 1)."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


@register
class GaussianBlur(ImageDefense):
    """Separable Gaussian blur with edge-replicating borders; deterministic (the seed is unused)."""

    name = "blur"
    strength_key = "sigma"
    params = (Param("sigma", float, 1.0, "blur std in pixels; 0 = off", low=0.0, high=32.0),)

    @property
    def strength(self) -> float:
        return self.sigma

    def apply(self, x):
        n, c, h, w = x.shape
        k = gaussian_kernel(self.sigma)
        r = (k.numel() - 1) // 2
        y = x.float().reshape(n * c, 1, h, w)
        y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
        y = F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
        return y.reshape(n, c, h, w).round_().clamp_(0, 255).to(torch.uint8)


@register
class JPEG(ImageDefense):
    """Re-encode every image as JPEG (PIL, 4:2:0 chroma for colour) and decode it again.

    quality=100 counts as off (strength 0) and serves the images untouched: even quality 100 would shift
    some pixel values, and a sweep needs an exact identity at its start.
    """

    name = "jpeg"
    strength_key = "quality"
    params = (Param("quality", int, 50, "JPEG quality 1..100; 100 = off", low=1, high=100),)

    @property
    def strength(self) -> float:
        return (100 - self.quality) / 99

    def apply(self, x):
        arr = x.permute(0, 2, 3, 1).contiguous().numpy()
        out = np.empty_like(arr)
        for i, img in enumerate(arr):
            pil = Image.fromarray(np.ascontiguousarray(img[..., 0] if img.shape[-1] == 1 else img))  # L or RGB
            buf = io.BytesIO()
            pil.save(buf, format="JPEG", quality=self.quality)
            buf.seek(0)
            dec = np.asarray(Image.open(buf).convert(pil.mode))
            out[i] = dec[..., None] if dec.ndim == 2 else dec
        return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
