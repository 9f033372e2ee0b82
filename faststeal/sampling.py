"""The one way faststeal samples a generator: z ~ N(0, I) from a seed, drawn in fixed chunks.

Training grids, evaluation (fidelity, accuracy, the FID floor, the fidelity curve), `faststeal sample` and
`faststeal fid CKPT ...` all sample through here, so the same checkpoint, seed and n give the same images
everywhere. Latents are drawn ``Z_CHUNK`` rows at a time whatever the batch size, so the images do not depend
on how they are batched either.
"""
from __future__ import annotations

from typing import Iterator

import torch

from .data import to_uint8

SAMPLE_SEED = 0          # default seed of every evaluation sample (fidelity, accuracy, the target's FID)
FLOOR_SEED = 98765       # the target's second, independent sample behind the FID floor
PROBE_SEED = 54321       # the samples of the fidelity probes drawn during training
Z_CHUNK = 1024           # latent rows drawn per call to the random generator
SAMPLER_ID = f"normal-chunk{Z_CHUNK}"   # part of every cache key of generated-image statistics


def latent_batches(n: int, dim: int, batch: int, seed: int = SAMPLE_SEED) -> Iterator[torch.Tensor]:
    """n rows of N(0, I) codes in batches of ``batch`` (the last may be short); independent of ``batch``."""
    if n < 0 or batch < 1:
        raise ValueError(f"need n >= 0 and batch >= 1, got n={n}, batch={batch}")
    gen = torch.Generator().manual_seed(seed)
    buf = torch.empty(0, dim)
    done = 0
    while done < n:
        b = min(batch, n - done)
        while buf.shape[0] < b:
            buf = torch.cat([buf, torch.randn(Z_CHUNK, dim, generator=gen)])
        yield buf[:b]
        buf, done = buf[b:], done + b


def generator_device(generator) -> torch.device:
    """Where a generator's weights live (codes are sent there); the CPU for one with no tensors."""
    for t in generator.parameters() if isinstance(generator, torch.nn.Module) else ():
        return t.device
    for t in generator.buffers() if isinstance(generator, torch.nn.Module) else ():
        return t.device
    return torch.device("cpu")


def uint8_batches(generator, n: int, *, seed: int = SAMPLE_SEED, batch: int = 256, device=None,
                  take=None) -> Iterator[torch.Tensor]:
    """Batches of uint8 (b, C, H, W) samples on the CPU; codes go to ``device`` (default: the generator's).

    ``take`` filters the latent batches (e.g. a rank's own)."""
    device = generator_device(generator) if device is None else device
    batches = latent_batches(n, generator.latent_dim, batch, seed)
    if take is not None:
        batches = take(batches)
    for z in batches:
        with torch.no_grad():
            out = generator(z.to(device=device, dtype=torch.get_default_dtype()))
        if not torch.isfinite(out).all():
            raise ValueError("the generator produced NaN or infinite values; the checkpoint is broken "
                             "(retrain it or use an earlier snapshot)")
        yield to_uint8(out).cpu()


def generate(generator, n: int, *, seed: int = SAMPLE_SEED, batch: int = 256, device=None) -> torch.Tensor:
    """n uint8 images of an ImageGenerator (see the module docstring for how codes are drawn)."""
    out = list(uint8_batches(generator, n, seed=seed, batch=batch, device=device))
    if out:
        return torch.cat(out)
    return torch.empty(0, generator.channels, generator.resolution, generator.resolution, dtype=torch.uint8)
