"""``faststeal verify``: load a suspect, run the detector, optionally check the null on wrong keys."""
from __future__ import annotations

import secrets
import time

from .detect import (  # noqa: F401 (MIN_IMAGES, EXACT_DRAWS: CLI)
    EXACT_DRAWS,
    MIN_IMAGES,
    VerifyError,
    detect,
    detect_many_keys,
    normal_sf,
)
from .pattern import Band
from .suspect import reference_moment, suspect_images


def null_check(images, band: Band, reference, count: int, exact_draws: int = 0) -> dict:
    """p-values of ``count`` random wrong keys on the same images (exact ones with exact_draws, as the
    verdict's), and a KS test of their uniformity."""
    keys = [secrets.token_hex(8) for _ in range(count)]
    if exact_draws:
        z, exact = detect_many_keys(images, keys, band, reference, exact_draws=exact_draws)
        p = [float(v) for v in exact]
    else:
        z = detect_many_keys(images, keys, band, reference)
        p = [normal_sf(float(v)) for v in z]
    from scipy.stats import kstest  # on use: scipy.stats adds ~0.9 s to every command's start

    ks = kstest(p, "uniform")
    return {"keys": count, "ks_p": float(ks.pvalue), "min_p": min(p), "below_1e-3": sum(v < 1e-3 for v in p),
            "z_mean": float(z.mean()), "z_std": float(z.std())}


def verify(suspect: str, key: str, *, n: int = 5000, reference: str | None = None, low: float = 1.0,
           high: float = 8.0, null_keys: int = 0, seed: int = 0, exact_draws: int = EXACT_DRAWS,
           api_key: str | None = None, hints=None) -> dict:
    """The verdict for one suspect as a dict (``line`` is the one-line answer).

    ``api_key`` pays for a suspect served over HTTP; ``hints`` describe a foreign suspect generator."""
    if not key:
        raise VerifyError("the key is empty; give the key the images were served with")
    band = Band(low, high)
    try:
        band.check()
    except ValueError as exc:
        raise VerifyError(str(exc)) from None
    start = time.perf_counter()
    images = suspect_images(suspect, n, seed, api_key=api_key, hints=hints)
    if len(images) < MIN_IMAGES:
        raise VerifyError(f"{suspect}: {len(images)} images are too few for a decision; give at least {MIN_IMAGES}")
    ref = None
    if reference:
        ref = reference_moment(reference, n, seed + 1)
        if ref.shape != images.shape[1:]:
            raise VerifyError(f"reference {reference} makes {tuple(ref.shape)} images, the suspect "
                              f"{tuple(images.shape[1:])}")
    d = detect(images, key, band, ref, exact_draws=exact_draws)
    out = {"suspect": suspect, **d.as_dict(), "reference": reference, "band": [low, high]}
    line = f"{suspect}: {d.line()}"
    if null_keys:
        out["null"] = null_check(images, band, ref, null_keys, exact_draws)
        line += (f"; {null_keys} wrong keys: KS p = {out['null']['ks_p']:.3f}, smallest p = "
                 f"{out['null']['min_p']:.3g}")
    out["seconds"] = round(time.perf_counter() - start, 2)
    out["line"] = line
    return out
