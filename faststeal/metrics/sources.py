"""What FID can be computed from, named by one string:

  fashion-mnist[:train|test]  the real data set (first N images)
  PATH/ (folder)              PNG/JPEG/... images, sorted, read as a stream (sizes may differ)
  FILE.npy / FILE.npz         a uint8 image array (NHW, NHWC or NCHW)
  FILE.npz with mu and sigma  precomputed statistics (FID only)
  CKPT.pt / builtin:NAME      a generator checkpoint, sampled straight into the extractor (z ~ N(0, I),
                              seed 0, drawn in fixed chunks so the images do not depend on the batch size)

Each image source yields batches of protocol-resized float images in [0, 255] (protocol.py steps 1-3),
by plain torch or by a DALI pipeline (dali.py). Under torchrun each rank yields only its own batches
(``owned``): the batch boundaries stay those of one process, so every image's features are unchanged.
"""
from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from faststeal import distributed

from . import protocol
from .stats import FeatureStats, is_stats_file

GENERATOR_SUFFIXES = (".pt", ".pth", ".ckpt")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
Z_CHUNK = 1024  # latent codes are drawn in chunks of this many rows, whatever the batch size
DEFAULT_GENERATOR_N = 10_000


def owned(batches: Iterable) -> Iterator:
    """This rank's batches of the single-process sequence (round-robin by index, ``distributed.owns_batch``).

    Filtering the full sequence, rather than re-batching a shard, keeps every batch exactly as one process
    would make it; the per-rank sums then add up to the single-process ones. In one process: all batches.
    """
    return (b for k, b in enumerate(batches) if distributed.owns_batch(k))


def owned_count(n: int, batch: int) -> int:
    """How many of the first n images this rank processes (for its progress bar)."""
    return sum(min(batch, n - i) for i in owned(range(0, n, batch)))


class SourceError(ValueError):
    """A source string names nothing usable; the message says what is accepted."""


@dataclass
class Source:
    spec: str
    kind: str                 # dataset | array | folder | generator | stats
    fingerprint: str | None   # None: never cached
    size: int | None          # images available; None: unlimited

    def count(self, n: int | None) -> int:
        """How many images to use: n, capped by what exists; all of a finite source when n is None."""
        if self.size is None:
            return n if n is not None else DEFAULT_GENERATOR_N
        if n is None or n > self.size:
            return self.size
        return n

    def torch_batches(self, n: int, batch: int, device) -> Iterator[torch.Tensor]:
        raise NotImplementedError

    def dali_batches(self, n: int, batch: int, device) -> Iterator[torch.Tensor]:
        from . import dali
        return dali.external_batches(self.uint8_batches(n, batch, device), n, batch, device)

    def uint8_batches(self, n: int, batch: int, device) -> Iterator[torch.Tensor]:
        raise NotImplementedError


class TensorSource(Source):
    """Images held as a uint8 (N, C, H, W) tensor (Fashion-MNIST, array files)."""

    def __init__(self, spec, kind, fingerprint, images: torch.Tensor):
        super().__init__(spec, kind, fingerprint, images.shape[0])
        self.images = images

    def uint8_batches(self, n, batch, device):
        return owned(self.images[i:min(i + batch, n)] for i in range(0, n, batch))

    def torch_batches(self, n, batch, device):
        for chunk in self.uint8_batches(n, batch, device):
            yield protocol.resize_299(chunk.to(device, non_blocking=True))


class FolderSource(Source):
    """An image folder read file by file, so memory does not grow with the number of images."""

    def __init__(self, spec, files: list[Path]):
        h = hashlib.sha256()
        for f in files:
            st = f.stat()
            h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        super().__init__(spec, "folder", h.hexdigest()[:16], len(files))
        self.files = files

    @staticmethod
    def read(path: Path) -> torch.Tensor:
        """One file -> uint8 (1, C, H, W), C in {1, 3}: grey stays grey, anything else becomes RGB."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                im = im.convert("L" if im.mode in ("L", "1", "I;16", "I", "F") else "RGB")
                arr = np.array(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise SourceError(f"{path}: cannot decode image ({exc.__class__.__name__})") from None
        arr = arr[:, :, None] if arr.ndim == 2 else arr
        return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None]

    def _chunks(self, n, batch) -> list[list[Path]]:
        return list(owned(self.files[i:min(i + batch, n)] for i in range(0, n, batch)))

    def torch_batches(self, n, batch, device):
        def load(files):
            resized = [protocol.resize_299(self.read(f)) for f in files]
            ch = max(r.shape[1] for r in resized)
            return torch.cat([r.expand(-1, ch, -1, -1) for r in resized])

        chunks = self._chunks(n, batch)
        with ThreadPoolExecutor(max_workers=2) as pool:  # decode the next batch while this one runs
            for out in pool.map(load, chunks):
                yield out.to(device, non_blocking=True)

    def dali_batches(self, n, batch, device):
        from . import dali

        # Owned batches are full except perhaps the very last one, so re-batching their concatenation by
        # `batch` reproduces the same boundaries.
        files = [f for chunk in self._chunks(n, batch) for f in chunk]
        return dali.folder_batches(files, batch, device) if files else iter(())


class GeneratorSource(Source):
    """A generator checkpoint; images are made batch by batch on the extractor's device."""

    def __init__(self, spec, seed: int = 0):
        from faststeal.checkpoint import load_generator

        super().__init__(spec, "generator", None, None)
        self.generator = load_generator(spec)
        self.seed = seed

    def _latents(self, n, batch):
        gen = torch.Generator().manual_seed(self.seed)
        buf = torch.empty(0, self.generator.latent_dim)
        done = 0
        while done < n:
            while buf.shape[0] < min(batch, n - done):
                buf = torch.cat([buf, torch.randn(Z_CHUNK, self.generator.latent_dim, generator=gen)])
            b = min(batch, n - done)
            yield buf[:b]
            buf, done = buf[b:], done + b

    def uint8_batches(self, n, batch, device):
        g = self.generator.to(device)
        for z in owned(self._latents(n, batch)):  # every rank draws all latents: the same z per image
            with torch.inference_mode():
                yield protocol.to_uint8_nchw(g(z.to(device)))

    def torch_batches(self, n, batch, device):
        for u8 in self.uint8_batches(n, batch, device):
            yield protocol.resize_299(u8)


class StatsSource(Source):
    def __init__(self, spec):
        self.stats = FeatureStats.load(spec)
        super().__init__(spec, "stats", None, self.stats.n)


def open_source(spec: str) -> Source:
    """Parse a source string (see the module docstring)."""
    spec = str(spec)
    if spec == "fashion-mnist" or spec.startswith("fashion-mnist:"):
        from faststeal.data import load_dataset

        data = load_dataset(spec)
        return TensorSource(spec, "dataset", data.fingerprint, data.images)
    if spec.startswith("builtin:"):
        return GeneratorSource(spec)
    path = Path(spec)
    if not path.exists():
        raise SourceError(f"{spec}: no such file or folder; give fashion-mnist[:train|test], an image folder, "
                          f"a uint8 .npy/.npz, a statistics .npz or a generator checkpoint")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise SourceError(f"{spec}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
        return FolderSource(spec, files)
    if is_stats_file(path):
        return StatsSource(spec)
    if path.suffix in (".npy", ".npz"):
        from faststeal.data import load_dataset

        data = load_dataset(spec)
        return TensorSource(spec, "array", data.fingerprint, data.images)
    if path.suffix in GENERATOR_SUFFIXES:
        return GeneratorSource(spec)
    raise SourceError(f"{spec}: unsupported file type (want a folder, .npy/.npz, or a .pt checkpoint)")
