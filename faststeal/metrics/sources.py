"""What FID can be computed from, named by one string:

  fashion-mnist[:train|test]  the real data set (first N images)
  PATH/ (folder)              PNG/JPEG/... images, sorted, read as a stream (sizes may differ)
  FILE.npy / FILE.npz         a uint8 image array (NHW, NHWC or NCHW)
  FILE.npz with mu and sigma  precomputed statistics (FID only)
  CKPT.pt / builtin:NAME      a generator checkpoint, sampled straight into the extractor by
                              faststeal.sampling (the same images as every other evaluation sample)

Each image source yields batches of protocol-resized float images in [0, 255] (protocol.py steps 1-3),
by plain torch or by a DALI pipeline (dali.py). Under torchrun each rank yields only its own batches
(``owned``): the batch boundaries stay those of one process, so every image's features are unchanged.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import torch

from faststeal import distributed
from faststeal.checkpoint import load_generator
from faststeal.data import (
    IMAGE_SUFFIXES,
    DataError,
    folder_fingerprint,
    image_files,
    load_dataset,
    read_image_file,
    source_kind,
)
from faststeal.sampling import SAMPLE_SEED, uint8_batches
from faststeal.targets import open_target

from . import dali, protocol
from .stats import FeatureStats

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


SourceError = DataError   # one error type for every image source, whether read for training or for FID


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
        super().__init__(spec, "folder", folder_fingerprint(files), len(files))
        self.files = files

    @staticmethod
    def read(path: Path) -> torch.Tensor:
        """One file -> uint8 (1, C, H, W) through the same decoder as training data (data.read_image_file)."""
        return torch.from_numpy(read_image_file(path)).permute(2, 0, 1)[None]

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
        # Owned batches are full except perhaps the very last one, so re-batching their concatenation by
        # `batch` reproduces the same boundaries.
        files = [f for chunk in self._chunks(n, batch) for f in chunk]
        return dali.folder_batches(files, batch, device) if files else iter(())


class GeneratorSource(Source):
    """A generator: a checkpoint, or any in-process target as ``gen:SPEC``; images are made batch by batch on
    the extractor's device, from the one sampler every measurement uses."""

    def __init__(self, spec, seed: int = SAMPLE_SEED, target=None):
        super().__init__(spec, "generator", None, None)
        if target is None:
            self.generator = load_generator(spec)
        else:
            self.generator = target.generator
        self.seed = seed

    def uint8_batches(self, n, batch, device):
        # every rank draws all latents (the same z per image) and keeps its own batches
        return uint8_batches(self.generator.to(device), n, seed=self.seed, batch=batch, device=device, take=owned)

    def torch_batches(self, n, batch, device):
        for u8 in self.uint8_batches(n, batch, device):
            yield protocol.resize_299(u8)


class StatsSource(Source):
    def __init__(self, spec):
        self.stats = FeatureStats.load(spec)
        super().__init__(spec, "stats", None, self.stats.n)


GENERATED = "gen:"


def open_source(spec: str, hints=None) -> Source:
    """Parse a source string (the grammar is data.source_kind's, shared with training data).

    ``gen:SPEC`` is any in-process target (TorchScript, .pt2, ONNX, py:, a checkpoint), with ``hints`` for
    what its probe cannot find."""
    spec = str(spec)
    if spec.startswith(GENERATED):
        return GeneratorSource(spec, target=open_target(spec[len(GENERATED):], hints=hints))
    kind = source_kind(spec)
    if kind == "generator":
        return GeneratorSource(spec)
    if kind == "stats":
        return StatsSource(spec)
    if kind == "folder":
        files = image_files(Path(spec))
        if not files:
            raise SourceError(f"{spec}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
        return FolderSource(spec, files)
    data = load_dataset(spec)
    return TensorSource(spec, "dataset" if kind == "fashion-mnist" else "array", data.fingerprint, data.images)
