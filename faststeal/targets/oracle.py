"""The target in-process: a generator behind an oracle that returns uint8 images and counts every one.

A ``TargetOracle`` is a convenience for experiments, a black box by convention only: no public attribute
leads to the weights (the generator lives in a closure), the budget is read-only, every charging path checks
its count and a request that would cross the budget raises ``BudgetExceeded`` and serves nothing. But Python
code in the same process can always reach past that (the closure, the private counters). The process
boundary is the server: ``faststeal serve`` keeps weights and budget in another process and a database,
and ``faststeal.targets.http.HttpOracle`` is the same interface over HTTP.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import torch

from faststeal import distributed
from faststeal.checkpoint import LoadedTarget, load_target
from faststeal.data import to_uint8
from faststeal.errors import FaststealError

PRIORS = ("normal", "uniform", "truncated")


class BudgetExceeded(FaststealError, RuntimeError):
    """A query asked for more images than the budget has left."""


class LatentsRefused(FaststealError, ValueError):
    """Codes were sent to a target that serves images for a count only."""


def checked_codes(z: torch.Tensor, latent_dim: int, accepts_latents: bool) -> torch.Tensor:
    """Chosen codes as a float32 CPU (N, latent_dim) tensor, checked the same way by every oracle."""
    if not accepts_latents:
        raise LatentsRefused("this target serves images for a count only and does not accept latent codes")
    z = z.detach().float().cpu()
    if z.dim() != 2 or z.shape[1] != latent_dim:
        raise ValueError(f"z must have shape (N, {latent_dim}), got {tuple(z.shape)}")
    if not torch.isfinite(z).all():
        raise ValueError("z holds NaN or inf")
    return z


@dataclass(frozen=True)
class LatentPrior:
    """The distribution the owner draws latent codes from.

    normal: N(0, I). uniform: U(-sqrt(3), sqrt(3)) per coordinate (unit variance, like the normal).
    truncated: N(0, I) resampled until every coordinate lies in [-threshold, threshold].
    """

    kind: str = "normal"
    threshold: float = 2.0

    @staticmethod
    def parse(text: str) -> "LatentPrior":
        """'normal', 'uniform', 'truncated' or 'truncated:1.5'."""
        kind, _, arg = str(text).partition(":")
        if kind not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS} (truncated:THRESHOLD allowed), got {text!r}")
        if arg and kind != "truncated":
            raise ValueError(f"only the truncated prior takes a parameter, got {text!r}")
        threshold = float(arg) if arg else 2.0
        if threshold <= 0:
            raise ValueError(f"truncation threshold must be > 0, got {threshold}")
        return LatentPrior(kind, threshold)

    def __str__(self) -> str:
        return f"truncated:{self.threshold:g}" if self.kind == "truncated" else self.kind

    def sample(self, n: int, dim: int, generator: torch.Generator) -> torch.Tensor:
        if self.kind == "normal":
            return torch.randn(n, dim, generator=generator)
        if self.kind == "uniform":
            return (torch.rand(n, dim, generator=generator) * 2 - 1) * math.sqrt(3.0)
        z = torch.randn(n, dim, generator=generator)
        bad = z.abs() > self.threshold
        while bad.any():
            z[bad] = torch.randn(int(bad.sum()), generator=generator)
            bad = z.abs() > self.threshold
        return z


def _make_server(generator, batch: int):
    """Close over the generator so the oracle object holds no reference an attacker could follow."""

    @torch.no_grad()
    def serve(z: torch.Tensor) -> torch.Tensor:
        return torch.cat([to_uint8(generator(chunk)) for chunk in z.split(batch)])

    return serve


class TargetOracle:
    """Query access to a target generator, as an adversary would have it.

    ``query(n)`` draws n codes from the owner's prior (knowledge level 1); ``query(z)`` takes codes chosen by
    the adversary (level 2). Both return uint8 (N, C, R, R). ``served`` counts images given out, ``log`` the
    requests. Optional ``latent_transform``/``image_transform`` are the owner's defenses, applied on the
    serving side and invisible to the caller. Not a security boundary (see the module docstring): for one,
    run ``faststeal serve`` and query it with ``HttpOracle``.
    """

    def __init__(self, checkpoint, budget: int, prior="normal", seed: int = 0, *, batch: int = 256,
                 latent_transform=None, image_transform=None, served: int = 0, accept_latents: bool = True):
        if budget < 0:
            raise ValueError(f"budget must be >= 0, got {budget}")
        target = checkpoint if isinstance(checkpoint, LoadedTarget) else load_target(checkpoint)
        generator = target.generator
        # Which model this API serves (a model version, as real APIs announce): stored query sets are keyed
        # on it, so images bought from one file never pass for another's behind the same path.
        self.model_id = target.model_id
        self.latent_dim = generator.latent_dim
        self.resolution = generator.resolution
        self.channels = generator.channels
        self._budget = int(budget)
        self.prior = prior if isinstance(prior, LatentPrior) else LatentPrior.parse(prior)
        self.seed = seed
        self.accepts_latents = bool(accept_latents)    # False: an API that takes only a count (level 1 only)
        self._serve = _make_server(generator, batch)
        self._latent_transform = latent_transform
        self._image_transform = image_transform
        self._lock = threading.Lock()
        if int(served) < 0:
            raise ValueError(f"served must be >= 0, got {served}")
        self._served = int(served)
        self.log: list[dict] = []

    @property
    def budget(self) -> int:
        """Read-only: a budget is set when the oracle is made."""
        return self._budget

    @property
    def served(self) -> int:
        return self._served

    @property
    def remaining(self) -> int:
        return self._budget - self._served

    def account(self, count: int) -> None:
        """Count ``count`` images bought earlier (e.g. a stored query set) against the budget, if not yet."""
        count = int(count)
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        if count > self._served:
            self._reserve(count - self._served)

    def __getstate__(self):
        raise TypeError("TargetOracle cannot be pickled: it would carry the target's weights")

    def _reserve(self, n: int) -> int:
        n = int(n)
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        with self._lock:
            if n > self._budget - self._served:
                raise BudgetExceeded(f"query for {n} images refused: {self._budget - self._served} of the "
                                     f"budget of {self._budget} left")
            start = self._served
            self._served += n
            return start

    def query(self, n_or_z, *, offset: int | None = None, request_id: str | None = None) -> torch.Tensor:
        """Serve images for n prior draws or for given codes z (N, latent_dim).

        Prior draws are reproducible: image i of the oracle's whole history always comes from the same code,
        so a resumed collection continues the same stream. ``offset`` (the stream position) is for sharded
        collection; by default the next position is used. ``request_id`` is only recorded here; over HTTP it
        makes a retry free (see ``HttpOracle``).
        """
        if isinstance(n_or_z, torch.Tensor):
            z = checked_codes(n_or_z, self.latent_dim, self.accepts_latents)
            n, source = z.shape[0], "chosen"
        else:
            n, source = int(n_or_z), str(self.prior)
            if n < 0:
                raise ValueError(f"n must be >= 0, got {n}")
            if offset is not None and int(offset) < 0:
                raise ValueError(f"offset must be >= 0, got {offset}")
            z = None
        if n == 0:
            return torch.empty(0, self.channels, self.resolution, self.resolution, dtype=torch.uint8)
        start = self._reserve(n)
        if z is None:
            z = self._prior_codes(start if offset is None else offset, n)
        images = self._produce(z)
        self.log.append({"n": n, "latents": source, "seed": self.seed, "start": start, "request_id": request_id})
        return images

    def query_shard(self, n: int, *, offset: int | None = None) -> torch.Tensor:
        """This rank's share of a request for n prior draws, under torch.distributed.

        Every rank must call it with the same arguments. The whole request counts against the budget on every
        rank (so all oracles agree on ``served`` and on refusing), but a rank generates only the positions
        ``distributed.shard_range(n)`` of offset..offset+n; gathering the shards in rank order gives exactly
        what ``query(n, offset=offset)`` serves in one process. Defenses are applied per image: latent ones
        are pure functions of the code and image ones of the image, so where a position is generated does
        not change it. Without torch.distributed this is ``query(n)``.
        """
        n = int(n)
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        # One collective per request: the oracles must agree on the budget state, or the global count lies.
        states = distributed.all_gather_objects((self._budget, self._served))
        if len(set(states)) > 1:
            raise RuntimeError(f"oracles disagree across ranks (budget, served): {states}; every rank must "
                               f"make the same requests")
        start = self._reserve(n)                        # same outcome on every rank: all serve or all refuse
        first = start if offset is None else offset
        lo, hi = distributed.shard_range(n)
        if hi == lo:
            images = torch.empty(0, self.channels, self.resolution, self.resolution, dtype=torch.uint8)
        else:
            images = self._produce(self._prior_codes(first + lo, hi - lo))
        self.log.append({"n": hi - lo, "latents": str(self.prior), "seed": self.seed, "start": first + lo,
                         "request": n, "rank": distributed.rank()})
        return images

    def _produce(self, z: torch.Tensor) -> torch.Tensor:
        """Codes -> served uint8 images, through the owner's defenses."""
        if self._latent_transform is not None:
            z = self._latent_transform(z)
        images = self._serve(z).cpu()
        if self._image_transform is not None:
            images = self._image_transform(images)
        return images

    def _prior_codes(self, start: int, n: int, block: int = 1000) -> torch.Tensor:
        """Codes start..start+n of the owner's prior stream, drawn in blocks seeded by (seed, block index).

        Private: the owner's codes are what the images-only adversary does not know."""
        out, pos = [], start
        while pos < start + n:
            b = pos // block
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + b)
            codes = self.prior.sample(block, self.latent_dim, g)
            lo, hi = pos - b * block, min(block, start + n - b * block)
            out.append(codes[lo:hi])
            pos = b * block + hi
        return torch.cat(out)
