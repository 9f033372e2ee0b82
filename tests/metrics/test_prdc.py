"""PRDC against independent implementations on the same features, block independence, kept-row statistics,
and one-line errors for bad input."""
import numpy as np
import pytest
import torch

from faststeal.metrics import prdc as prdc_mod
from faststeal.metrics.prdc import density_coverage, knn_radii, prdc, prdc_of_stats, precision_recall
from faststeal.metrics.stats import KEEP_ROWS, FeatureStats


def features(seed, n, d=64, shift=0.0, scale=1.0, dtype=np.float64):
    return np.random.default_rng(seed).normal(shift, scale, size=(n, d)).astype(dtype)


def brute(real, fake, k_pr, k_dc):
    """The definitions written out with full distance matrices (closed balls)."""
    rr = np.linalg.norm(real[:, None] - real[None], axis=2)
    ff = np.linalg.norm(fake[:, None] - fake[None], axis=2)
    rf = np.linalg.norm(real[:, None] - fake[None], axis=2)
    r_pr, r_dc = np.sort(rr, 1)[:, k_pr], np.sort(rr, 1)[:, k_dc]
    f_pr = np.sort(ff, 1)[:, k_pr]
    return {"precision": (rf <= r_pr[:, None]).any(0).mean(), "recall": (rf <= f_pr[None]).any(1).mean(),
            "density": (rf <= r_dc[:, None]).sum(0).mean() / k_dc,
            "coverage": (rf.min(1) <= r_dc).mean()}


@pytest.mark.parametrize("k", [3, 5])
def test_agrees_with_the_prdc_package(k):
    pkg = pytest.importorskip("prdc", reason="pip install prdc (in the test extra)")
    real, fake = features(0, 300), features(1, 250, shift=0.2, scale=1.2)
    ours = prdc(real, fake, k_pr=k, k_dc=k)
    theirs = pkg.compute_prdc(real_features=real, fake_features=fake, nearest_k=k)
    for key in ours:
        assert abs(ours[key] - float(theirs[key])) <= 1e-6, key
    # the split: k = 3 for precision/recall, k = 5 for density/coverage, in one call
    both = prdc(real, fake)
    k3 = pkg.compute_prdc(real_features=real, fake_features=fake, nearest_k=3)
    k5 = pkg.compute_prdc(real_features=real, fake_features=fake, nearest_k=5)
    assert abs(both["precision"] - k3["precision"]) <= 1e-6 and abs(both["recall"] - k3["recall"]) <= 1e-6
    assert abs(both["density"] - k5["density"]) <= 1e-6 and abs(both["coverage"] - k5["coverage"]) <= 1e-6


def test_agrees_with_torch_fidelity_precision_recall():
    # torch-fidelity imports torchvision at import time; installing it here would replace the CPU torch build
    tf = pytest.importorskip("torch_fidelity.metric_prc",
                             reason="torch-fidelity needs torchvision, which would replace the CPU torch build")
    real, fake = features(2, 300, d=32), features(3, 280, d=32, shift=0.3)
    # torch-fidelity's features_1 is the generated sample, features_2 the real one
    p, r = tf.calculate_precision_recall_full(torch.from_numpy(fake), torch.from_numpy(real), neighborhood=3)
    ours = precision_recall(real, fake, k=3)
    assert abs(ours[0] - p) <= 1e-6 and abs(ours[1] - r) <= 1e-6


def test_matches_the_written_out_definitions_and_does_not_depend_on_blocks(monkeypatch):
    real, fake = features(4, 120, d=16), features(5, 90, d=16, shift=0.5)
    expect = brute(real, fake, 3, 5)
    whole = prdc(real, fake)
    monkeypatch.setattr(prdc_mod, "BLOCK_BYTES", 8 * 7 * 90)   # blocks of 7 rows: ragged last block
    assert prdc(real, fake) == whole
    for key, value in expect.items():
        assert whole[key] == pytest.approx(value, abs=1e-12), key
    assert precision_recall(real, fake) == (whole["precision"], whole["recall"])
    assert density_coverage(real, fake) == (whole["density"], whole["coverage"])


def test_float32_features_are_widened_and_identical_samples_score_one():
    real = features(6, 200, d=2048, dtype=np.float32)
    same = prdc(real, real.copy())
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    # each real ball (k = 5) holds its centre's copy and its 5 nearest neighbours: 6 n counts over 5 n
    assert same["density"] == pytest.approx(6 / 5, abs=1e-12)
    far = prdc(real, features(7, 200, d=2048, shift=50.0, dtype=np.float32))
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_radii_exclude_the_point_itself_but_count_duplicates():
    x = np.array([[0.0], [0.0], [1.0], [3.0], [7.0]])
    r = knn_radii(x, ks=(1, 2))
    assert r[1].tolist() == [0.0, 0.0, 1.0, 4.0, 16.0]
    assert r[2].tolist() == [1.0, 1.0, 1.0, 9.0, 36.0]


def test_from_statistics_that_kept_their_rows():
    real, fake = features(8, 40, d=32), features(9, 30, d=32, shift=0.3)
    s1, s2 = FeatureStats(dim=32), FeatureStats(dim=32)
    s1.update(torch.from_numpy(real[:25])).update(torch.from_numpy(real[25:]))
    s2.update(torch.from_numpy(fake))
    assert prdc_of_stats(s1, s2) == prdc(real, fake)
    big = FeatureStats(dim=32).update(torch.zeros(KEEP_ROWS + 1, 32))
    with pytest.raises(ValueError, match="kept no feature rows.*compute_features") as err:
        prdc_of_stats(s1, big)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("real, fake, words", [
    (features(0, 5), features(1, 50), "5 sample\\(s\\), but k = 5 .* at least 6"),
    (features(0, 50), features(1, 3), "fake features: 3 sample"),
    (features(0, 50), features(1, 50, d=32), "differ in size \\(64 vs 32\\)"),
    (np.where(np.arange(50)[:, None] == 7, np.nan, features(0, 50)), features(1, 50), "NaN or inf in 1 of 50"),
    (features(0, 50)[0], features(1, 50), "2-D"),
])
def test_bad_input_is_a_one_line_error(real, fake, words):
    with pytest.raises(ValueError, match=words) as err:
        prdc(real, fake)
    assert "\n" not in str(err.value)
