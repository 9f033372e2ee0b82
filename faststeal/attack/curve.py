"""Convergence you can see: fidelity of the copy measured during training, against time and images seen.

A probe holds Inception features of a small fixed sample of the target (and of the real data), then scores
the attack's EMA generator on a sample of the same size. At small n FID is biased upwards, so every point
is drawn beside two reference lines at that same n: the target's own FID(target, real) and the FID floor,
FID between two independent sample sets of the target (what a perfect copy would score). KID, unbiased at
small n, is recorded too. Each point also carries a 95% bootstrap interval of both (resampling the two
probe samples' features: cheap at this n), drawn as a band, so that two curves can be told apart from the
draw of probe images. For a copy distilled on chosen latents the probe also takes the paired L1 on codes it
never bought (held_out_l1): beside the L1 on its training pairs it says whether the copy learned the target's
mapping or memorised its pairs. The run's headline numbers remain FID on --fid-n images.
"""
from __future__ import annotations

import warnings

import torch

from faststeal.data import ImageSet
from faststeal.fileio import atomic_write
from faststeal.metrics import BiasedFIDWarning, get_extractor, kernel_inception_distance
from faststeal.metrics.bootstrap import bootstrap_intervals
from faststeal.metrics.frechet import frechet_distance_of_features
from faststeal.sampling import FLOOR_SEED, PROBE_SEED, generate

PROBE_RESAMPLES = 100     # per point; at n = 128 the whole bootstrap costs well under a second


def _features(images: torch.Tensor, batch: int = 50) -> torch.Tensor:
    extractor = get_extractor()
    return torch.cat([extractor(images[i:i + batch]).cpu() for i in range(0, images.shape[0], batch)]).double()


def _fid(a: torch.Tensor, b: torch.Tensor) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BiasedFIDWarning)      # biased at small n by design; see the lines
        return frechet_distance_of_features(a, b)


def _kid(a: torch.Tensor, b: torch.Tensor) -> float:
    return kernel_inception_distance(a, b, subsets=20)[0]


class FidelityProbe:
    """Scores generators against the target on ``n`` samples; builds its references on creation."""

    def __init__(self, target_generator, n: int = 256, real: ImageSet | None = None, paired: bool = False):
        if n < 2:
            raise ValueError(f"the curve needs at least 2 samples per point, got {n}")
        self.n = n
        samples = [generate(target_generator, n, seed=seed) for seed in (PROBE_SEED, FLOOR_SEED)]
        # paired: a copy that shares the target's codes is also compared image by image on the same codes
        self.target_images = samples[0] if paired else None
        self.target, twin = (_features(images) for images in samples)      # the floor: a second target sample
        self.reference = {"n": n, "fid_floor": _fid(twin, self.target), "kid_floor": _kid(twin, self.target)}
        if real is not None:
            g = torch.Generator().manual_seed(PROBE_SEED)
            pick = torch.randperm(len(real), generator=g)[:n]
            r = _features(real.images[pick])
            self.reference.update(target_fid=_fid(self.target, r), target_kid=_kid(self.target, r))

    def __call__(self, generator) -> dict:
        """{fidelity_fid, fidelity_kid} of one generator (eval mode, fixed sample seed), each with its 95%
        bootstrap interval (fidelity_fid_ci, fidelity_kid_ci); with ``paired``, also held_out_l1."""
        feats = _features(generate(generator, self.n, seed=PROBE_SEED + 1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")                     # biased at small n by design; see the lines
            ci = bootstrap_intervals(feats, self.target, resamples=PROBE_RESAMPLES, metrics=("fid", "kid"))
        point = {"fidelity_fid": _fid(feats, self.target), "fidelity_kid": _kid(feats, self.target),
                 "fidelity_fid_ci": ci["fid_ci"], "fidelity_kid_ci": ci["kid_ci"]}
        if self.target_images is not None:
            point["held_out_l1"] = held_out_l1(generate(generator, self.n, seed=PROBE_SEED), self.target_images)
        return point


def held_out_l1(copy: torch.Tensor, target: torch.Tensor) -> float:
    """Mean absolute difference of two uint8 image sets on the [-1, 1] scale the paired L1 trains on."""
    return float((copy.float() - target.float()).abs().mean() / 127.5)


def plot_curves(curves: dict[str, list[dict]], reference: dict, path, title: str = "") -> None:
    """Fidelity (probe FID and KID) against training seconds, one line per run with its bootstrap band where
    the points carry one, reference lines dashed."""
    from matplotlib.figure import Figure  # on use: matplotlib adds ~0.7 s to every command's start

    fig = Figure(figsize=(11, 4))       # no pyplot: no backend or global state, safe in any process
    axes = fig.subplots(1, 2)
    for label, points in curves.items():
        t = [p["train_seconds"] for p in points]
        for ax, key in ((axes[0], "fidelity_fid"), (axes[1], "fidelity_kid")):
            line, = ax.plot(t, [p[key] for p in points], marker="o", label=label)
            if all(p.get(f"{key}_ci") for p in points):
                ax.fill_between(t, [p[f"{key}_ci"][0] for p in points], [p[f"{key}_ci"][1] for p in points],
                                color=line.get_color(), alpha=0.15, linewidth=0)
    n = reference["n"]
    for ax, key, name in ((axes[0], "fid", "FID"), (axes[1], "kid", "KID")):
        if f"target_{key}" in reference:
            ax.axhline(reference[f"target_{key}"], color="grey", ls="--", label=f"target's own {name}(target, real)")
        ax.axhline(reference[f"{key}_floor"], color="black", ls=":", label=f"{name} floor (two target samples)")
        ax.set_xlabel("training time (s)")
        ax.set_ylabel(f"fidelity: {name}(attack, target), n={n}")
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
