"""Every Frechet method agrees with scipy's sqrtm; singular covariances give a finite value and a warning."""
import warnings

import numpy as np
import pytest
import torch

from faststeal.metrics import BiasedFIDWarning, frechet_distance, kernel_inception_distance
from faststeal.metrics.frechet import frechet_distance_of_features, trace_sqrt_newton_schulz

METHODS = ["eigh", "newton_schulz", "scipy", "auto"]


def gaussians(n1, n2, d, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((d, d)) / np.sqrt(d)
    x = rng.standard_normal((n1, d))
    y = rng.standard_normal((n2, d)) @ (np.eye(d) + 0.3 * a) + 0.2
    return x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)


@pytest.mark.parametrize("d", [16, 128])
def test_methods_agree_with_scipy(d):
    mu1, s1, mu2, s2 = gaussians(4 * d, 5 * d, d)
    ref = frechet_distance(mu1, s1, mu2, s2, method="scipy")
    for m in METHODS:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # well conditioned: no warning at all
            value = frechet_distance(mu1, s1, mu2, s2, method=m)
        assert isinstance(value, float)
        assert abs(value - ref) <= 1e-6 * ref, m


def test_torch_and_numpy_inputs_agree():
    mu1, s1, mu2, s2 = gaussians(100, 120, 20, seed=1)
    a = frechet_distance(mu1, s1, mu2, s2)
    b = frechet_distance(*(torch.from_numpy(v).float() for v in (mu1, s1, mu2, s2)))
    c = frechet_distance(torch.from_numpy(mu1), torch.from_numpy(s1), mu2, s2, method="newton_schulz")
    assert abs(a - b) < 1e-4 * a and abs(a - c) < 1e-9 * a


def test_identical_is_zero_and_mean_shift_exact():
    mu1, s1, _, _ = gaussians(100, 100, 10)
    for m in METHODS:
        assert frechet_distance(mu1, s1, mu1, s1, method=m) == pytest.approx(0, abs=1e-9)
        assert frechet_distance(mu1, s1, mu1 + 1, s1, method=m) == pytest.approx(10, rel=1e-8)


@pytest.mark.parametrize("method", METHODS)
def test_singular_covariances_finite_real_and_warned(method):
    mu1, s1, mu2, s2 = gaussians(20, 30, 64, seed=2)  # N < d: rank-deficient covariances
    with pytest.warns(BiasedFIDWarning, match="biased"):
        value = frechet_distance(mu1, s1, mu2, s2, method=method)
    assert isinstance(value, float) and np.isfinite(value) and value > 0
    eigh = frechet_distance(mu1, s1, mu2, s2, method="eigh") if method != "eigh" else value
    assert abs(value - eigh) < 1e-3 * eigh  # the methods still agree closely


def test_sample_counts_trigger_the_warning():
    mu1, s1, mu2, s2 = gaussians(400, 400, 16)
    with pytest.warns(BiasedFIDWarning):
        frechet_distance(mu1, s1, mu2, s2, n1=10, n2=400)


def test_newton_schulz_reports_non_convergence_and_falls_back():
    mu1, s1, mu2, s2 = gaussians(200, 200, 50, seed=3)
    tr, iters = trace_sqrt_newton_schulz(torch.from_numpy(s1), torch.from_numpy(s2), max_iter=2)
    assert tr is None and iters == 2
    tr, iters = trace_sqrt_newton_schulz(torch.from_numpy(s1), torch.from_numpy(s2))
    assert tr is not None and iters < 100


def test_input_validation():
    mu, s = np.zeros(3), np.eye(3)
    with pytest.raises(ValueError, match="method"):
        frechet_distance(mu, s, mu, s, method="sqrtm")
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        frechet_distance(mu, s, mu, np.eye(4))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(mu, s * np.nan, mu, s)


def _kid_reference(x, y):
    """Unbiased MMD^2 written as explicit sums over pairs (small n only)."""
    d = x.shape[1]
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    m, n = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    syy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return sxx + syy - 2 * sxy


def test_kid_matches_pairwise_formula_and_is_near_zero_for_same_distribution():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((12, 8)), rng.standard_normal((12, 8)) + 0.5
    mean, std = kernel_inception_distance(x, y, subsets=1, subset_size=12)
    assert mean == pytest.approx(_kid_reference(x, y), rel=1e-10) and std == 0
    same = kernel_inception_distance(rng.standard_normal((200, 8)), rng.standard_normal((200, 8)),
                                     subsets=10, subset_size=100)[0]
    diff = kernel_inception_distance(rng.standard_normal((200, 8)), rng.standard_normal((200, 8)) + 0.5,
                                     subsets=10, subset_size=100)[0]
    assert abs(same) < 0.05 < diff


@pytest.mark.parametrize("n1,n2,d", [(30, 40, 64), (128, 128, 2048), (80, 50, 32)])
def test_features_path_equals_the_covariance_path(n1, n2, d):
    from faststeal.metrics.frechet import frechet_distance_of_features

    g = torch.Generator().manual_seed(n1 + d)
    a = torch.randn(n1, d, generator=g, dtype=torch.float64) * 2 + 1
    b = torch.randn(n2, d, generator=g, dtype=torch.float64) @ torch.randn(d, d, generator=g, dtype=torch.float64) / d
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = frechet_distance(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T), method="eigh")
    assert frechet_distance_of_features(a, b) == pytest.approx(want, rel=1e-6)
    assert frechet_distance_of_features(a, a) == pytest.approx(0.0, abs=1e-6 * want)


def test_small_samples_take_the_low_rank_route_with_the_same_value():
    # a FID of two small samples is a few-hundred-row SVD instead of 2048 x 2048 eigendecompositions
    from faststeal.evaluate import fid
    from faststeal.metrics.stats import KEEP_ROWS, FeatureStats

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(40, 2048, generator=g), torch.randn(30, 2048, generator=g) * 1.3 + 0.2
    sa, sb = FeatureStats().update(a[:25]).update(a[25:]), FeatureStats().update(b)
    assert sa.centered_rows().shape == (40, 2048)
    eigh = frechet_distance(sa.mu, sa.sigma, sb.mu, sb.sigma, method="eigh", n1=40, n2=30)
    # eigh adds sqrt(rounding noise) of the ~2000 zero eigenvalues (~1e-4 in all); the low-rank route has none
    assert fid(sa, sb) == pytest.approx(eigh, rel=1e-7)
    assert fid(sa, sb) == pytest.approx(frechet_distance_of_features(a, b), rel=1e-12)
    big = FeatureStats().update(torch.randn(KEEP_ROWS + 1, 8, generator=g).repeat(1, 256))
    assert big.centered_rows() is None and not big.keeps_rows          # rows dropped past KEEP_ROWS
    merged = FeatureStats().merge(sa).merge(FeatureStats.from_moments(sb.mu, sb.sigma, 30))
    assert merged.centered_rows() is None                               # loaded stats carry no rows


def test_cached_small_statistics_keep_their_rows(tmp_path):
    from faststeal.metrics.stats import FeatureStats

    s = FeatureStats().update(torch.randn(12, 2048, generator=torch.Generator().manual_seed(1)))
    s.save(tmp_path / "s.npz")
    again = FeatureStats.load(tmp_path / "s.npz")
    assert again.centered_rows() is not None and torch.allclose(again.centered_rows(), s.centered_rows())
