"""Images -> 2048-d Inception features, fast: inference mode, channels_last, optional bf16 / TF32 / compile.

bf16 autocast and TF32 change the features slightly (their FID error is measured by
bench/fid_throughput.py and written in docs/results/speed.md); the default is exact float32.
"""
from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import torch

from faststeal import distributed

from . import protocol
from .inception import DEFAULT_WEIGHTS_SHA1, _sha1, load_inception


def default_device() -> torch.device:
    """This rank's GPU under torchrun (each rank its own), else the first GPU, else the CPU."""
    return distributed.device()


def extractor_id(weights_id: str, precision: str) -> str:
    """What a cached statistic depends on: weights, protocol and numeric precision."""
    return hashlib.sha1(f"{weights_id}|{protocol.PROTOCOL}|{precision}".encode()).hexdigest()[:16]


def weights_id(weights: str | Path | None) -> str:
    return DEFAULT_WEIGHTS_SHA1 if weights is None else _sha1(Path(weights))


class FeatureExtractor:
    """Callable: any accepted image batch (see protocol.py) -> float32 (N, 2048) features on `device`."""

    def __init__(self, weights: str | Path | None = None, device: str | torch.device | None = None,
                 precision: str = "float32", compile: bool = False):
        if precision not in ("float32", "bf16", "tf32"):
            raise ValueError(f"precision must be float32, bf16 or tf32, got {precision!r}")
        self.device = torch.device(device) if device is not None else default_device()
        self.precision = precision
        self.model = load_inception(weights, self.device)
        self.weights_id = weights_id(weights)
        self._forward = torch.compile(self.model, dynamic=False) if compile else self.model

    @property
    def id(self) -> str:
        return extractor_id(self.weights_id, self.precision)

    def _context(self):
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        if self.precision == "bf16":
            stack.enter_context(torch.autocast(self.device.type, dtype=torch.bfloat16))
        if self.device.type == "cuda":
            prev = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
            tf32 = self.precision == "tf32"
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
            stack.callback(self._restore_tf32, prev)
        return stack

    @staticmethod
    def _restore_tf32(prev):
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = prev

    def from_resized(self, x: torch.Tensor) -> torch.Tensor:
        """Features of float (N, C, 299, 299) values in [0, 255] (protocol steps 4-5 applied here)."""
        with self._context():
            out = self._forward(protocol.finish(x.to(self.device, non_blocking=True)))
        return out.float()

    def __call__(self, images) -> torch.Tensor:
        u8 = protocol.to_uint8_nchw(images).to(self.device, non_blocking=True)
        return self.from_resized(protocol.resize_299(u8))
