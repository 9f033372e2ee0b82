"""FID, KID and precision/recall/density/coverage for faststeal: the standard FID Inception as a plain
module, streamed float64 statistics, a Frechet distance without sqrtm, DALI or torch input pipelines,
bootstrap intervals, FID extrapolated to unlimited n. The input protocol is in protocol.py.
"""
from .api import compute_features, compute_metric, compute_stats, get_extractor
from .bootstrap import bootstrap_intervals
from .features import FeatureExtractor
from .fid_infinity import fid_infinity
from .frechet import BiasedFIDWarning, frechet_distance
from .inception import FIDInception, load_inception
from .kid import kernel_inception_distance
from .prdc import density_coverage, prdc_of_stats, precision_recall  # prdc.prdc: the module keeps its name
from .protocol import PROTOCOL, preprocess
from .sources import open_source
from .stats import FeatureStats, cache_dir

__all__ = [
    "BiasedFIDWarning", "FIDInception", "FeatureExtractor", "FeatureStats", "PROTOCOL", "bootstrap_intervals",
    "cache_dir", "compute_features", "compute_metric", "compute_stats", "density_coverage", "fid_infinity",
    "frechet_distance",
    "get_extractor", "kernel_inception_distance", "load_inception", "open_source", "prdc_of_stats",
    "precision_recall", "preprocess",
]
