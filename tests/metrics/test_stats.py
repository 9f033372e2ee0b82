"""Streaming statistics: exact moments, batch-size and shard independence, save/load, cache."""
import numpy as np
import pytest
import torch

from faststeal.metrics import FeatureStats, cache_dir, compute_stats


def test_moments_match_numpy_and_batch_size_independent():
    x = torch.randn(103, 32, dtype=torch.float64) * 3 + 1
    ref_mu, ref_cov = x.mean(0).numpy(), np.cov(x.numpy(), rowvar=False)
    for b in (1, 7, 64, 103):
        s = FeatureStats(dim=32)
        for chunk in x.split(b):
            s.update(chunk)
        assert s.n == 103
        np.testing.assert_allclose(s.mu.numpy(), ref_mu, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(s.sigma.numpy(), ref_cov, rtol=1e-10, atol=1e-12)
    shards = [FeatureStats(dim=32).update(c) for c in x.split(40)]
    merged = FeatureStats(dim=32)
    for sh in shards:
        merged.merge(sh)
    np.testing.assert_allclose(merged.sigma.numpy(), ref_cov, rtol=1e-10, atol=1e-12)


def test_save_load_round_trip_and_merge_after_load(tmp_path):
    x = torch.randn(50, 8, dtype=torch.float64)
    a, b = FeatureStats(dim=8, meta={"protocol": "p"}).update(x[:20]), FeatureStats(dim=8).update(x[20:])
    path = a.save(tmp_path / "a.npz")
    loaded = FeatureStats.load(path)
    assert loaded.n == 20 and loaded.meta["protocol"] == "p"
    np.testing.assert_allclose(loaded.sigma.numpy(), a.sigma.numpy(), rtol=1e-12)
    loaded.merge(b)
    np.testing.assert_allclose(loaded.sigma.numpy(), np.cov(x.numpy(), rowvar=False), rtol=1e-10, atol=1e-13)
    np.savez(tmp_path / "pytorch_fid.npz", mu=np.zeros(8), sigma=np.eye(8))  # mu/sigma only
    other = FeatureStats.load(tmp_path / "pytorch_fid.npz")
    assert other.meta["n_known"] is False
    np.testing.assert_allclose(other.sigma.numpy(), np.eye(8), atol=1e-12)


def test_pipeline_batch_size_independent_and_cached(tmp_path, fmnist_test):
    arr = tmp_path / "imgs.npy"
    np.save(arr, fmnist_test[:6])
    s3 = compute_stats(str(arr), batch=3, loader="torch", cache=False)
    s6 = compute_stats(str(arr), batch=6, loader="torch", cache=True)
    assert s3.n == s6.n == 6
    np.testing.assert_allclose(s3.mu.numpy(), s6.mu.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s3.sigma.numpy(), s6.sigma.numpy(), rtol=1e-4, atol=1e-6)
    cached = list(cache_dir().glob("*.npz"))
    assert len(cached) == 1 and str(tmp_path) in str(cached[0])  # FASTSTEAL_CACHE is honoured
    again = compute_stats(str(arr), batch=6, loader="torch")  # served from the cache file
    np.testing.assert_allclose(again.sigma.numpy(), s6.sigma.numpy(), rtol=1e-12, atol=1e-15)
    assert again.meta["source"] == str(arr) and again.meta["protocol"]


def test_a_damaged_cache_entry_is_recomputed_with_a_warning(tmp_path, fmnist_test):
    arr = tmp_path / "imgs.npy"
    np.save(arr, fmnist_test[:4])
    first = compute_stats(str(arr), batch=4, loader="torch")
    (entry,) = cache_dir().glob("*.npz")
    entry.write_bytes(entry.read_bytes()[:100])          # a copy killed half-way
    with pytest.warns(UserWarning, match="damaged FID cache entry"):
        again = compute_stats(str(arr), batch=4, loader="torch")
    np.testing.assert_allclose(again.mu.numpy(), first.mu.numpy(), rtol=1e-6)
    assert FeatureStats.load(entry).n == 4                # rewritten whole
