"""DALI input pipelines for FID (optional: `pip install faststeal[dali]`; torch is the fallback).

Two pipelines, both ending in the protocol resize (triangle filter, half-pixel centres, antialiased,
float output, no rounding; protocol.py step 3):
  * external: uint8 batches we already hold (arrays, generator samples) via fn.external_source;
  * folder:   fn.readers.file + fn.decoders.image ("mixed" = nvJPEG on a GPU, "cpu" otherwise).
With no GPU the pipeline runs on the CPU (device_id=None). The output matches the torch path exactly when
enlarging; when shrinking DALI clamps at the border where torch renormalises the filter, which moves the
outermost pixel ring only (test_sources.py bounds the FID difference).
"""
from __future__ import annotations

import math
from typing import Iterator

import torch

from . import protocol

# DALI is an optional extra, and importing it takes ~0.6 s: it is looked for on first use, so a command that
# computes no FID (or only asks for --help) never pays for it. None: not looked for yet.
HAVE_DALI: bool | None = None


def available() -> bool:
    global HAVE_DALI
    if HAVE_DALI is None:
        try:
            import nvidia.dali  # noqa: F401
            HAVE_DALI = True
        except ImportError:  # pragma: no cover - exercised where DALI is absent
            HAVE_DALI = False
    return HAVE_DALI


def _resize(images):
    from nvidia.dali import fn, types

    return fn.resize(images, resize_x=protocol.SIZE, resize_y=protocol.SIZE, interp_type=types.INTERP_LINEAR,
                     antialias=True, dtype=types.FLOAT)


def _device_id(device: torch.device) -> int | None:
    return (device.index or 0) if device.type == "cuda" else None


def _to_torch(out, device: torch.device) -> torch.Tensor:
    """DALI (N, 299, 299, C) float batch -> torch (N, C, 299, 299) on `device`."""
    if device.type == "cuda":
        from nvidia.dali.plugin.pytorch import feed_ndarray

        t = out.as_tensor()
        dst = torch.empty(t.shape(), dtype=torch.float32, device=device)
        feed_ndarray(t, dst, cuda_stream=torch.cuda.current_stream(device))
        return dst.permute(0, 3, 1, 2)
    return torch.from_numpy(out.as_array()).to(device).permute(0, 3, 1, 2)


def external_batches(uint8_batches: Iterator[torch.Tensor], n: int, batch: int,
                     device) -> Iterator[torch.Tensor]:
    """Resize uint8 NCHW batches (any size, 1 or 3 channels) with DALI; yields protocol-resized floats."""
    if not available():
        raise RuntimeError("DALI is not installed: pip install nvidia-dali-cuda120 (or use loader='torch')")
    from nvidia.dali import fn, pipeline_def

    device = torch.device(device)
    on_gpu = device.type == "cuda"

    @pipeline_def(batch_size=batch, num_threads=2, device_id=_device_id(device), exec_async=False,
                  exec_pipelined=False, prefetch_queue_depth=1)
    def pipe():
        x = fn.external_source(name="images", device="gpu" if on_gpu else "cpu", layout="HWC")
        return _resize(x)

    p = pipe()
    p.build()
    for chunk in uint8_batches:
        hwc = chunk.permute(0, 2, 3, 1).contiguous()
        data = hwc if on_gpu else hwc.cpu().numpy()
        p.feed_input("images", data if on_gpu else list(data), layout="HWC")
        out, = p.run()
        yield _to_torch(out, device)


def folder_batches(files, batch: int, device) -> Iterator[torch.Tensor]:
    """Read, decode (as RGB: grey files get repeated channels) and resize image files with DALI."""
    if not available():
        raise RuntimeError("DALI is not installed: pip install nvidia-dali-cuda120 (or use loader='torch')")
    from nvidia.dali import fn, pipeline_def, types

    device = torch.device(device)
    on_gpu = device.type == "cuda"
    n = len(files)
    batch = min(batch, n)

    @pipeline_def(batch_size=batch, num_threads=2, device_id=_device_id(device))
    def pipe():
        raw, _ = fn.readers.file(files=[str(f) for f in files], random_shuffle=False, pad_last_batch=True,
                                 name="reader")
        images = fn.decoders.image(raw, device="mixed" if on_gpu else "cpu", output_type=types.RGB)
        return _resize(images)

    p = pipe()
    p.build()
    for i in range(math.ceil(n / batch)):
        out, = p.run()
        t = _to_torch(out, device)
        yield t[:min(batch, n - i * batch)]
