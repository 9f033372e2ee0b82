"""The functions library code and the CLI call: statistics / features of a source, and FID or KID of two.

Statistics of cacheable sources (real data sets, folders, array files) are stored under cache_dir(),
keyed by source fingerprint, N, loader and extractor id (weights, protocol, precision), so a second run
over the same real data is a file read.

Under torchrun every rank calls these functions alike: each extracts its own batches (sources.owned), the
statistics are summed over ranks (features gathered, for KID) so all ranks return the single-process
result, and rank 0 alone writes the cache and shows progress.
"""
from __future__ import annotations

import sys
import warnings

import torch
from tqdm import tqdm

from faststeal import cpu, distributed

from . import dali, protocol
from .bootstrap import bootstrap_intervals, check_interval
from .features import FeatureExtractor, default_device, extractor_id, weights_id
from .fid_infinity import MIN_ROWS as MIN_FID_INF_ROWS
from .fid_infinity import fid_infinity
from .frechet import BiasedFIDWarning, frechet_distance, frechet_distance_of_features
from .kid import kernel_inception_distance
from .prdc import K_DC, prdc
from .sources import Source, SourceError, StatsSource, open_source, owned_count
from .stats import KEEP_ROWS, FeatureStats, cache_path

_EXTRACTORS: dict = {}


def compute_device(device=None) -> torch.device:
    """The device features and distances are computed on: as asked, else this rank's GPU, else the CPU."""
    device = torch.device(device) if device is not None else default_device()
    if device.type == "cuda" and device.index is None:  # plain "cuda": this rank's GPU, not always GPU 0
        device = default_device()
    return device


def get_extractor(device=None, precision: str = "float32", weights=None) -> FeatureExtractor:
    """A shared extractor per (device, precision, weights): loading the weights takes a second or two."""
    device = compute_device(device)
    key = (str(device), precision, str(weights))
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = FeatureExtractor(weights=weights, device=device, precision=precision)
    return _EXTRACTORS[key]


def _loader(loader: str) -> str:
    if loader not in ("auto", "dali", "torch"):
        raise ValueError(f"loader must be auto, dali or torch, got {loader!r}")
    if loader == "auto":
        return "dali" if dali.available() else "torch"
    if loader == "dali" and not dali.available():
        raise RuntimeError("loader='dali' but DALI is not installed (pip install nvidia-dali-cuda120)")
    return loader


def iter_features(source: Source, n: int, batch: int, extractor: FeatureExtractor, loader: str = "auto",
                  progress: bool = False):
    """Yield (b, 2048) float32 feature batches of this rank's share of the first n images of `source`."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    loader = _loader(loader)
    dev = extractor.device
    batches = (source.dali_batches if loader == "dali" else source.torch_batches)(n, batch, dev)
    with tqdm(total=owned_count(n, batch), desc=f"features {source.spec}", unit="img",
              disable=not progress or not distributed.is_main(), file=sys.stderr, leave=False) as bar:
        for x in batches:
            cpu.adapt()
            feats = extractor.from_resized(x)
            bar.update(feats.shape[0])
            yield feats


def compute_stats(spec: str | Source, n: int | None = None, batch: int = 64, device=None,
                  precision: str = "float32", loader: str = "auto", cache: bool = True,
                  progress: bool = False, weights=None) -> FeatureStats:
    """Streaming float64 statistics of a source's Inception features (read from / written to the cache)."""
    source = spec if isinstance(spec, Source) else open_source(spec)
    if isinstance(source, StatsSource):
        return source.stats
    count = source.count(n)
    if n is not None and count < n:
        warnings.warn(f"{source.spec}: only {count} images available, using all of them", stacklevel=2)
    loader = _loader(loader)
    path = None
    if cache and source.fingerprint is not None:  # checked before loading the network: a hit is instant
        path = cache_path(source.fingerprint, count, loader, extractor_id(weights_id(weights), precision))
        # rank 0 decides hit or miss for all: a rank that computed alone would wait forever in all_reduce
        if distributed.on_main(_usable_cache_entry, path):
            return FeatureStats.load(path)
    extractor = get_extractor(device, precision, weights)
    stats = FeatureStats(meta={"protocol": protocol.PROTOCOL, "source": source.spec,
                               "fingerprint": source.fingerprint, "extractor": extractor.id, "loader": loader,
                               "precision": precision})
    for feats in iter_features(source, count, batch, extractor, loader, progress):
        stats.update(feats)
    stats.all_reduce().to_cpu()       # cached and fresh statistics alike live on the CPU
    stats.meta["n"] = stats.n
    if path is not None:
        distributed.on_main(stats.save, path)
    return stats


def _usable_cache_entry(path) -> bool:
    """True when a cache file exists and reads; a damaged one (e.g. a killed copy) is recomputed."""
    if not path.is_file():
        return False
    try:
        FeatureStats.load(path)
    except ValueError as exc:
        warnings.warn(f"ignoring a damaged FID cache entry, recomputing it ({exc})", stacklevel=3)
        return False
    return True


def compute_features(spec: str | Source, n: int | None = None, batch: int = 64, device=None,
                     precision: str = "float32", loader: str = "auto", progress: bool = False,
                     weights=None) -> torch.Tensor:
    """All (n, 2048) features on the CPU (for KID, which needs more than moments), on every rank."""
    source = spec if isinstance(spec, Source) else open_source(spec)
    if isinstance(source, StatsSource):
        raise ValueError(f"{source.spec}: a statistics file has no per-image features; KID needs images")
    extractor = get_extractor(device, precision, weights)
    mine = [f.cpu() for f in iter_features(source, source.count(n), batch, extractor, loader, progress)]
    if not distributed.active():
        return torch.cat(mine)
    # batch k is the (k // world)-th batch of rank k % world (round-robin): interleave back into order
    shares = distributed.all_gather_objects(mine)
    world = len(shares)
    return torch.cat([shares[k % world][k // world] for k in range(sum(map(len, shares)))])


METRICS = ("fid", "kid", "prdc", "all", "fid-inf")


def compute_metric(a: str, b: str, n: int | None = None, batch: int = 64, metric: str = "fid",
                   device=None, precision: str = "float32", loader: str = "auto", method: str = "auto",
                   cache: bool = True, progress: bool = False, weights=None, ci: float | None = None,
                   bootstrap: int = 200, seed: int = 0) -> dict:
    """FID, KID, PRDC or all three between two sources -> {metric: value, n1, n2, protocol, ...} (JSON types).

    For KID the dict also holds kid_std (over subsets). A biased (singular) FID adds "biased": True.
    prdc: {"prdc": {precision, recall, density, coverage}} of B's features against A's (A the reference). all: FID, KID
    and PRDC from one feature pass per side. fid-inf: FID at n and extrapolated to unlimited n (fid_inf,
    fid_inf_se, the subset sizes and FIDs of the fit; fid_infinity.py), from one feature pass. ci (e.g. 0.95):
    bootstrap intervals of FID and/or KID over `bootstrap` resamples drawn with `seed` (fid_ci, kid_ci, ...; see
    bootstrap.py).
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    opts = dict(n=n, batch=batch, device=device, precision=precision, loader=loader, progress=progress,
                weights=weights)
    out = {"protocol": protocol.PROTOCOL, "loader": _loader(loader), "precision": precision}
    a, b = (s if isinstance(s, Source) else open_source(s) for s in (a, b))
    # PRDC: a k-th nearest neighbour besides itself; FID-infinity: three subset sizes of at least 2 rows
    need = {"prdc": K_DC + 1, "all": K_DC + 1, "fid-inf": MIN_FID_INF_ROWS}.get(metric, 2)
    for source in (a, b):   # checked before any feature is computed
        if not isinstance(source, StatsSource) and source.count(n) < need:
            raise SourceError(f"{source.spec}: {source.count(n)} image(s); {metric.upper()} needs at least {need} "
                              f"per side")
    if metric in ("prdc", "all", "fid-inf") or ci is not None:
        return {**_from_features(a, b, metric, opts, ci, bootstrap, seed), **out}
    if metric == "kid":
        f1, f2 = compute_features(a, **opts), compute_features(b, **opts)
        out["kid"], out["kid_std"] = kernel_inception_distance(f1, f2)
        out["n1"], out["n2"] = int(f1.shape[0]), int(f2.shape[0])
        return {"kid": out.pop("kid"), **out}
    s1, s2 = compute_stats(a, cache=cache, **opts), compute_stats(b, cache=cache, **opts)
    n1 = s1.n if s1.meta.get("n_known", True) else None
    n2 = s2.n if s2.meta.get("n_known", True) else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BiasedFIDWarning)
        # the matrix square root runs where the features were computed (Newton-Schulz on a GPU)
        on = compute_device(device)
        value = frechet_distance(*(t.to(on) for t in (s1.mu, s1.sigma, s2.mu, s2.sigma)), method=method,
                                 n1=n1, n2=n2, rows1=s1.centered_rows(), rows2=s2.centered_rows())
    for w in caught:
        if issubclass(w.category, BiasedFIDWarning):
            out["biased"] = True
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    out.update(n1=n1 if n1 is not None else -1, n2=n2 if n2 is not None else -1)
    return {"fid": value, **out}


def _rows_of(source, opts: dict) -> torch.Tensor:
    """Per-image features of a source: its kept rows for a small statistics file, else one extraction pass."""
    if isinstance(source, StatsSource):
        if source.stats.centered_rows() is None:
            raise SourceError(f"{source.spec}: a statistics file of more than {KEEP_ROWS} images keeps no "
                              f"per-image features; PRDC, KID and --ci need the images themselves")
        return source.stats.rows
    return compute_features(source, **opts)


def _from_features(a, b, metric: str, opts: dict, ci: float | None, bootstrap: int, seed: int) -> dict:
    """Every asked number from one feature pass per side (the values of compute_stats' route up to rounding)."""
    if ci is not None:    # checked before the (long) feature pass
        check_interval(ci, bootstrap)
    f1, f2 = _rows_of(a, opts), _rows_of(b, opts)
    res = {}
    if metric in ("fid", "all", "fid-inf"):
        res["fid"] = frechet_distance_of_features(f1, f2)
        if min(f1.shape[0], f2.shape[0]) <= f1.shape[1]:
            res["biased"] = True
    if metric in ("kid", "all"):
        res["kid"], res["kid_std"] = kernel_inception_distance(f1, f2)
    if metric in ("prdc", "all"):
        res["prdc"] = prdc(f1, f2)     # nested: "precision" at the top level is the extractor's arithmetic
    if metric == "fid-inf":
        res.update(fid_infinity(f1, f2, seed=seed))
    if ci is not None:
        asked = [m for m in ("fid", "kid") if metric in (m, "all") or (m, metric) == ("fid", "fid-inf")]
        if not asked:
            raise ValueError("--ci gives intervals of FID and KID; use it with --metric fid, kid or all")
        res.update(bootstrap_intervals(f1, f2, level=ci, resamples=bootstrap, seed=seed, metrics=asked))
    res["n1"], res["n2"] = int(f1.shape[0]), int(f2.shape[0])
    return res
