"""Image grids: the picture a person looks at to judge a generator."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .fileio import atomic_write


def make_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2, pad_value: int = 32) -> np.ndarray:
    """uint8 (N, C, H, W) -> one HWC uint8 array with images in rows of ``nrow`` (default: square)."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"make_grid expects uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    n, c, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), pad_value, dtype=np.uint8)
    arr = images.permute(0, 2, 3, 1).cpu().numpy()
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y:y + h, x:x + w] = arr[i]
    return grid


def save_png(array: np.ndarray, path, upscale: int = 1) -> Path:
    """Write an HWC uint8 array as PNG atomically (temp file + rename); nearest upscale for tiny images."""
    if upscale > 1:
        array = array.repeat(upscale, axis=0).repeat(upscale, axis=1)
    img = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
    return atomic_write(path, lambda f: img.save(f, format="PNG"))


def save_grid(images: torch.Tensor, path, nrow: int | None = None, upscale: int | None = None) -> Path:
    """Save uint8 images as a grid PNG; images below 64 px are upscaled 2x so they are visible."""
    if upscale is None:
        upscale = 2 if images.shape[-1] < 64 else 1
    return save_png(make_grid(images, nrow), path, upscale=upscale)
