"""FID extrapolated to unlimited n: the fit recovers a known limit and slope, and refuses what it cannot fit."""
import numpy as np
import pytest
import torch

from faststeal.metrics import compute_metric, fid_infinity
from faststeal.metrics.fid_infinity import subset_sizes
from faststeal.metrics.frechet import frechet_distance_of_features


def _gauss(n, d, shift, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) + shift


def test_the_limit_of_two_samples_of_one_distribution_is_near_zero_while_fid_at_n_is_not():
    a, b = _gauss(600, 64, 0.0, 1), _gauss(600, 64, 0.0, 2)
    r = fid_infinity(a, b, seed=0)
    at_n = frechet_distance_of_features(a, b)
    assert at_n > 3                                    # the bias at n: d^2 / n-ish for unit Gaussians
    assert abs(r["fid_inf"]) < 0.2 * at_n              # the fit removes most of it
    assert r["fid_inf_slope"] > 0                      # FID falls as the subsets grow
    assert r["fid_inf_fids"][-1] == pytest.approx(at_n)   # the largest subset is the whole sample


def test_a_true_mean_shift_survives_the_extrapolation():
    d, shift = 32, 1.0
    a, b = _gauss(1500, d, 0.0, 1), _gauss(1500, d, shift, 2)
    r = fid_infinity(a, b, seed=0)
    true_fid = d * shift ** 2                          # equal covariances: FID is the squared mean distance
    assert r["fid_inf"] == pytest.approx(true_fid, rel=0.1)
    assert r["fid_inf"] < frechet_distance_of_features(a, b)
    assert r["fid_inf_se"] > 0


def test_the_same_seed_gives_the_same_fit_and_another_seed_another():
    a, b = _gauss(200, 16, 0.0, 1), _gauss(200, 16, 0.5, 2)
    assert fid_infinity(a, b, seed=3) == fid_infinity(a, b, seed=3)
    assert fid_infinity(a, b, seed=3)["fid_inf"] != fid_infinity(a, b, seed=4)["fid_inf"]


def test_subset_sizes_span_a_fifth_of_n_to_n():
    sizes = subset_sizes(2000)
    assert sizes[0] == 400 and sizes[-1] == 2000 and len(sizes) == 15
    assert np.all(np.diff(sizes) > 0)


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 3}, "too few"), ({"n": 100, "points": 2}, "at least 3"), ({"n": 100, "min_fraction": 1.5}, "fraction"),
])
def test_fits_that_cannot_be_made_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message):
        subset_sizes(**kwargs)


def test_features_of_different_sizes_or_with_nan_are_refused():
    with pytest.raises(ValueError, match="differ in size"):
        fid_infinity(torch.zeros(10, 4), torch.zeros(10, 5))
    bad = torch.randn(10, 4)
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fid_infinity(torch.randn(10, 4), bad)


def test_the_metric_runs_from_image_arrays_with_fid_beside_it(tmp_path, extractor):
    g = np.random.default_rng(0)
    for name in ("a", "b"):
        np.save(tmp_path / f"{name}.npy", g.integers(0, 256, (24, 1, 32, 32), dtype=np.uint8))
    r = compute_metric(str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), metric="fid-inf", batch=12)
    assert r["fid_inf_sizes"][-1] == 24 and r["fid"] == pytest.approx(r["fid_inf_fids"][-1])
    assert np.isfinite(r["fid_inf"]) and np.isfinite(r["fid_inf_se"])
