"""The measurements every experiment reports, on in-memory images and generators.

fidelity = FID(attack, target), accuracy = FID(attack, real), utility = FID(served, real). Real data is
fitted to the model's resolution and channels exactly as the target saw it in training, so a padded
32x32 Fashion-MNIST target is compared with padded 32x32 real images. Statistics of real data are cached.
"""
from __future__ import annotations

import torch

from .data import ImageSet, load_dataset
from .sampling import SAMPLE_SEED, SAMPLER_ID, generate


def image_stats(images: torch.Tensor, name: str, fingerprint: str | None = None, batch: int = 50,
                progress: bool = True):
    """Streamed Inception statistics of uint8 (N, C, H, W) images (cached when a fingerprint is given)."""
    from .metrics import compute_stats
    from .metrics.sources import TensorSource

    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"{name}: expected non-empty uint8 (N, C, H, W) images, got {images.dtype} "
                         f"{tuple(images.shape)}")
    source = TensorSource(name, "array", fingerprint, images)
    return compute_stats(source, n=images.shape[0], batch=batch, cache=fingerprint is not None,
                         progress=progress)


def fid(stats_a, stats_b) -> float:
    """Frechet distance of two FeatureStats (warns, not fails, when N is below the feature dimension)."""
    from .metrics import frechet_distance

    return float(frechet_distance(stats_a.mu, stats_a.sigma, stats_b.mu, stats_b.sigma, n1=stats_a.n,
                                  n2=stats_b.n, rows1=stats_a.centered_rows(), rows2=stats_b.centered_rows()))


def coverage(reference, copy) -> dict | None:
    """Precision, recall, density and coverage of ``copy`` against ``reference`` (both FeatureStats), from the
    feature rows the statistics kept (samples of up to KEEP_ROWS images): no second feature pass. None when
    either kept none. Precision: how much of the copy looks like the reference; recall/coverage: how much of
    the reference the copy produces."""
    from .metrics import prdc_of_stats

    if reference is None or reference.centered_rows() is None or copy.centered_rows() is None:
        return None
    if min(reference.n, copy.n) < 6:           # k = 5 neighbours need 6 samples a side
        return None
    return {k: float(v) for k, v in prdc_of_stats(reference, copy).items()}


def generator_stats(source, n: int, *, seed: int = SAMPLE_SEED, name: str = "generator",
                    progress: bool = True, cache: bool = False):
    """Statistics of n samples of a generator: a checkpoint path, builtin:NAME, a LoadedTarget or a loaded
    ImageGenerator. A file's samples are a pure function of its bytes, n and seed, so with ``cache`` their
    statistics are cached under the file's digest (a bare ImageGenerator has none and is never cached)."""
    from .checkpoint import LoadedTarget, content_digest, load_generator

    if isinstance(source, LoadedTarget):
        gen, digest = source.generator, source.model_id
    elif isinstance(source, torch.nn.Module):
        gen, digest = source, None
    else:
        gen, digest = load_generator(source), content_digest(source)
    fingerprint = f"generator:{digest}:{SAMPLER_ID}:seed{seed}:n{n}" if cache and digest else None
    return image_stats(generate(gen, n, seed=seed), name, fingerprint=fingerprint, progress=progress)


def real_data_for(checkpoint_config: dict, spec: str | None = None) -> ImageSet:
    """The real data a target was trained on (or ``spec``), fitted to the target's resolution/channels."""
    trained_on = checkpoint_config.get("data_source")
    spec = spec or trained_on
    if not spec:
        raise ValueError("the target checkpoint does not record its training data; pass --eval-data")
    classes = (checkpoint_config.get("extra") or {}).get("classes") if spec == trained_on else None
    return load_dataset(spec, resolution=checkpoint_config["resolution"], channels=checkpoint_config["channels"],
                        classes=classes)


def real_stats(data: ImageSet, n: int, progress: bool = True):
    """Statistics of the first n real images (a seeded shuffle would defeat the cache; the order is fixed)."""
    images = data.images[:n]
    return image_stats(images, f"real:{data.source}", fingerprint=f"{data.fingerprint}:{images.shape[0]}",
                       progress=progress)
