"""The FID input protocol, written down once. Every path (torch, DALI, CPU, GPU) follows these steps.

1. Layout: torch tensors are NCHW, numpy arrays are NHWC (or NHW for grey); 1 or 3 channels.
2. Values become uint8: uint8 stays; float images are taken to be in [-1, 1] (a generator's output) and
   map to round((x + 1) * 127.5) clipped to [0, 255]. So sampling a generator straight into the extractor
   gives the same features as saving its images as PNG files and reading them back.
3. Resize to 299x299 with the triangle (bilinear) filter, half-pixel centres, antialiased when shrinking
   (the PIL / torch ``antialias=True`` / DALI ``antialias`` convention), on float values in [0, 255], no
   rounding afterwards. Non-square images are stretched. Images already 299x299 are not resampled.
   The TorchScript weights file does not resize by itself, so this step is ours to fix; bilinear is the
   filter of the original TF FID graph.
4. Grey images are repeated to 3 channels (after resizing; the same thing, cheaper).
5. Scale to the TF range: (x - 128) / 128, float32, channels_last.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SIZE = 299
PROTOCOL = "inception-tf2015-pool3/uint8/bilinear-aa-299/grey-repeat/tf-range"


def to_uint8_nchw(images) -> torch.Tensor:
    """Steps 1-2: any accepted batch -> uint8 (N, C, H, W) tensor with C in {1, 3}, on its own device."""
    if isinstance(images, np.ndarray):
        arr = images
        if arr.ndim == 3:
            arr = arr[..., None]
        if arr.ndim != 4:
            raise ValueError(f"numpy images must be NHWC or NHW, got shape {arr.shape}")
        arr = np.ascontiguousarray(arr)
        images = torch.from_numpy(arr if arr.flags.writeable else arr.copy()).permute(0, 3, 1, 2)
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch tensor (NCHW) or numpy array (NHWC), got {type(images)}")
    if images.ndim != 4:
        raise ValueError(f"torch images must be NCHW, got shape {tuple(images.shape)}")
    if images.shape[1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got {images.shape[1]} (shape "
                         f"{tuple(images.shape)}; torch tensors are NCHW, numpy arrays NHWC)")
    if images.dtype == torch.uint8:
        return images
    if not images.is_floating_point():
        raise ValueError(f"images must be uint8 or float, got {images.dtype}")
    if images.numel() and images.detach().abs().max() > 4:
        raise ValueError("float images must be in [-1, 1] (generator convention); pass uint8 for 0..255 data")
    return ((images.detach().float() + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


def resize_299(x: torch.Tensor) -> torch.Tensor:
    """Step 3 on float values in [0, 255] (N, C, H, W); returns float32 (N, C, 299, 299)."""
    x = x.float()
    if x.shape[-2:] == (SIZE, SIZE):
        return x
    return F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=True)


def finish(x: torch.Tensor) -> torch.Tensor:
    """Steps 4-5 on resized float values in [0, 255]: grey -> RGB, TF range, channels_last."""
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return ((x - 128.0) / 128.0).contiguous(memory_format=torch.channels_last)


def preprocess(images, device: str | torch.device = "cpu") -> torch.Tensor:
    """All steps: any accepted batch -> extractor input on `device`."""
    u8 = to_uint8_nchw(images).to(device, non_blocking=True)
    return finish(resize_299(u8))
