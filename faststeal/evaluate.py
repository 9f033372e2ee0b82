"""The measurements every run reports, and a run's reference statistics.

fidelity = FID(attack, target), accuracy = FID(attack, real), utility = FID(served, real). Real data is
fitted to the model's resolution and channels exactly as the target saw it in training, so a padded
32x32 Fashion-MNIST target is compared with padded 32x32 real images. Statistics of real data are cached.

A run's reference statistics live in one ``Evaluator``, built once and shared by every attack of the run: for
an in-process target its statistics, its FID floor and the real data's; for a target the thief only reaches
over HTTP, which it never loads, fidelity is measured against the served images the adversary bought (the
only view of the target it has), and the target's FID and the accuracy need real data given with
--eval-data, else they are reported as n/a.
"""
from __future__ import annotations

from functools import cached_property

import torch

from .checkpoint import LoadedTarget, content_digest, load_generator
from .data import ImageSet
from .metrics import bootstrap_intervals, compute_stats, frechet_distance, prdc_of_stats
from .metrics.sources import TensorSource
from .sampling import FLOOR_SEED, SAMPLE_SEED, SAMPLER_ID, generate

STATS_BATCH = 50     # images per feature batch of in-memory samples


def image_stats(images: torch.Tensor, name: str, fingerprint: str | None = None, batch: int = STATS_BATCH,
                progress: bool = True):
    """Streamed Inception statistics of uint8 (N, C, H, W) images (cached when a fingerprint is given)."""

    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"{name}: expected non-empty uint8 (N, C, H, W) images, got {images.dtype} "
                         f"{tuple(images.shape)}")
    source = TensorSource(name, "array", fingerprint, images)
    return compute_stats(source, n=images.shape[0], batch=batch, cache=fingerprint is not None,
                         progress=progress)


def fid(stats_a, stats_b) -> float:
    """Frechet distance of two FeatureStats (warns, not fails, when N is below the feature dimension)."""
    return float(frechet_distance(stats_a.mu, stats_a.sigma, stats_b.mu, stats_b.sigma, n1=stats_a.n,
                                  n2=stats_b.n, rows1=stats_a.centered_rows(), rows2=stats_b.centered_rows()))


def coverage(reference, copy) -> dict | None:
    """Precision, recall, density and coverage of ``copy`` against ``reference`` (both FeatureStats), from the
    feature rows the statistics kept (samples of up to KEEP_ROWS images): no second feature pass. None when
    either kept none. Precision: how much of the copy looks like the reference; recall/coverage: how much of
    the reference the copy produces."""
    if reference is None or reference.centered_rows() is None or copy.centered_rows() is None:
        return None
    if min(reference.n, copy.n) < 6:           # k = 5 neighbours need 6 samples a side
        return None
    return {k: float(v) for k, v in prdc_of_stats(reference, copy).items()}


INTERVAL_LEVEL, INTERVAL_RESAMPLES = 0.95, 100


def fid_interval(reference, copy) -> list[float] | None:
    """A 95% bootstrap interval of FID(copy, reference) over both samples' kept feature rows (None when either
    kept none). It covers which images were drawn at this n, not which seed trained the copy: seeds move
    fidelity further (see the results pages)."""
    if reference is None or reference.rows is None or copy.rows is None or min(reference.n, copy.n) < 2:
        return None
    found = bootstrap_intervals(reference.rows, copy.rows, level=INTERVAL_LEVEL, resamples=INTERVAL_RESAMPLES,
                                metrics=("fid",))
    return [round(v, 4) for v in found["fid_ci"]]


def generator_stats(source, n: int, *, seed: int = SAMPLE_SEED, name: str = "generator",
                    progress: bool = True, cache: bool = False):
    """Statistics of n samples of a generator: a checkpoint path, builtin:NAME, a LoadedTarget or a loaded
    ImageGenerator. A file's samples are a pure function of its bytes, n and seed, so with ``cache`` their
    statistics are cached under the file's digest (a bare ImageGenerator has none and is never cached)."""
    if isinstance(source, LoadedTarget):
        gen, digest = source.generator, source.model_id
    elif isinstance(source, torch.nn.Module):
        gen, digest = source, None
    else:
        gen, digest = load_generator(source), content_digest(source)
    fingerprint = f"generator:{digest}:{SAMPLER_ID}:seed{seed}:n{n}" if cache and digest else None
    images = generate(gen, n, seed=seed)          # uint8 (n, C, H, W) by construction: no checks to repeat
    return compute_stats(TensorSource(name, "array", fingerprint, images), n=n, batch=STATS_BATCH,
                         cache=fingerprint is not None, progress=progress)


def real_stats(data: ImageSet, n: int, progress: bool = True):
    """Statistics of the first n real images (a seeded shuffle would defeat the cache; the order is fixed)."""
    images = data.images[:n]
    return image_stats(images, f"real:{data.source}", fingerprint=f"{data.fingerprint}:{images.shape[0]}",
                       progress=progress)


NO_BASELINE = ("no undefended view of the target: pass --baseline (the undefended checkpoint or a server "
               "without --defense)")


class Evaluator:
    """FID statistics of the target and the real data, computed once and shared by every attack of a run.

    The target is known either in process (``target``, a LoadedTarget: its samples are drawn here) or only by
    images that stand in for it (``served``, an ImageSet: what the thief bought from a URL, or an undefended
    server's images); with neither, fidelity is n/a and ``target_error`` says why. ``real``: the real data
    (data.evaluation_data), or None with ``real_error`` saying why there is none.

    In process there is also the FID floor: FID between the target's evaluation sample and a second,
    independent sample at the same n, i.e. the score of a perfect copy at this n (FID is biased upwards at
    small n). From served images there is none: the adversary did not buy a second sample.
    """
    def __init__(self, fid_n: int, real: ImageSet | None, *, target: LoadedTarget | None = None, served=None,
                 progress: bool = True, real_error: str | None = None, target_error: str = NO_BASELINE):
        self.fid_n, self.progress, self.target, self._stand_in = fid_n, progress, target, served
        self._floor = None
        self.real, self.real_error, self.target_error = real, real_error, target_error

    @cached_property
    def target_stats(self):
        """The target's statistics (its samples in process, else the served images standing in), or None."""
        if self.target is not None:
            return generator_stats(self.target, self.fid_n, name="target", progress=self.progress, cache=True)
        if self._stand_in is not None:
            return image_stats(self._stand_in.images[:self.fid_n], "served images", progress=self.progress)
        return None

    @cached_property
    def real_stats(self):
        return real_stats(self.real, self.fid_n, self.progress) if self.real is not None else None

    def target_fid(self) -> float | None:
        if self.target_stats is None or self.real_stats is None:
            return None
        return fid(self.target_stats, self.real_stats)

    def fid_floor(self) -> float | None:
        """Computed on first use (a second fid_n-image sample of the target, cached): defend never asks."""
        if self.target is None:
            return None
        if self._floor is None:
            second = generator_stats(self.target, self.fid_n, seed=FLOOR_SEED, name="target (second sample)",
                                     progress=self.progress, cache=True)
            self._floor = fid(second, self.target_stats)
        return self._floor

    def copy_stats(self, checkpoint):
        """Statistics of fid_n samples of an attack checkpoint: what ``attack`` and ``served`` compare."""
        return generator_stats(checkpoint, self.fid_n, name="attack", progress=self.progress)

    def attack(self, copy) -> dict:
        """Fidelity and accuracy of a copy (its ``copy_stats``), precision/recall/density/coverage against the
        target and the real data, and fidelity's interval."""
        return {"fidelity": fid(copy, self.target_stats) if self.target_stats is not None else None,
                "accuracy": fid(copy, self.real_stats) if self.real_stats is not None else None,
                "vs_target": coverage(self.target_stats, copy), "vs_real": coverage(self.real_stats, copy),
                "fidelity_ci": fid_interval(self.target_stats, copy)}

    def served(self, images: torch.Tensor, copy) -> dict:
        """What serving ``images`` (uint8, through a defense) costs honest users (utility = FID(served, real)),
        how far they are from the target (served_vs_target, with precision/coverage), and how far the copy
        trained on them (its ``copy_stats``) is from them (attack_vs_served)."""
        shown = image_stats(images, "served", progress=self.progress)
        anchored = self.target_stats is not None
        return {"utility": fid(shown, self.real_stats) if self.real_stats is not None else None,
                "served_vs_target": fid(shown, self.target_stats) if anchored else None,
                "served_vs_target_prdc": coverage(self.target_stats, shown) if anchored else None,
                "attack_vs_served": fid(copy, shown)}
