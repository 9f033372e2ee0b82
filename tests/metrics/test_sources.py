"""Every source kind, through DALI and through torch; both loaders give the same FID within tolerance.

Stated tolerances: enlarging (e.g. Fashion-MNIST 28 -> 299) the two resizes agree to float rounding,
FID within 1e-4 relative; shrinking differs on the outermost pixel ring only, FID within 1e-2 relative.
"""
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from faststeal.checkpoint import save_checkpoint
from faststeal.metrics import compute_features, compute_stats, dali, frechet_distance, open_source
from faststeal.metrics.sources import FolderSource, GeneratorSource, SourceError, StatsSource
from faststeal.models import build_generator

# DALI is an optional extra: only the comparisons that need it skip where it is absent.
needs_dali = pytest.mark.skipif(not dali.available(), reason="nvidia-dali not installed")


def fid(s1, s2):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny N: singular covariances, biased but deterministic
        return frechet_distance(s1.mu, s1.sigma, s2.mu, s2.sigma)


def stats(spec, loader, batch=4):
    return compute_stats(spec, batch=batch, loader=loader, cache=False, device="cpu")


@needs_dali
def test_dali_and_torch_agree_on_arrays(tmp_path, fmnist_test):
    a, b = tmp_path / "a.npy", tmp_path / "b.npz"
    np.save(a, fmnist_test[:5])
    np.savez(b, images=fmnist_test[32:37])
    ft = {ld: (stats(str(a), ld), stats(str(b), ld, batch=3)) for ld in ("torch", "dali")}
    f_torch, f_dali = fid(*ft["torch"]), fid(*ft["dali"])
    assert abs(f_torch - f_dali) <= 1e-4 * f_torch
    np.testing.assert_allclose(ft["dali"][0].mu.numpy(), ft["torch"][0].mu.numpy(), rtol=1e-4, atol=1e-5)


@needs_dali
def test_folder_mixed_sizes_and_modes_dali_vs_torch(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):  # smooth images (natural-image-like), RGB larger than 299 and grey smaller
        yy, xx = np.mgrid[0:320, 0:360]
        rgb = np.stack([(np.sin(xx / (20 + 5 * i)) + 1) * 100 + c * 20 for c in range(3)], -1)
        Image.fromarray(rgb.astype(np.uint8)).save(folder / f"rgb{i}.png")
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), mode="L").save(folder / f"grey{i}.png")
    src = open_source(str(folder))
    assert isinstance(src, FolderSource) and src.size == 8 and src.fingerprint
    t, d = stats(str(folder), "torch", batch=3), stats(str(folder), "dali", batch=3)
    assert t.n == d.n == 8
    t8 = stats(str(folder), "torch", batch=8)
    other = _shifted(t8)
    f_t, f_t8, f_d = fid(t, other), fid(t8, other), fid(d, other)
    assert abs(f_t - f_t8) <= 1e-5 * f_t8  # the batch size does not matter
    assert abs(f_d - f_t8) <= 1e-2 * f_t8  # DALI within the stated tolerance for shrinking


def _shifted(s):
    """A fixed second distribution to measure FID against (so the FID is not ~0)."""
    from faststeal.metrics import FeatureStats

    return FeatureStats.from_moments(s.mu + 0.05, s.sigma * 1.1, s.n)


@pytest.fixture(scope="module")
def generator_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    g = build_generator("sngan", 32, 1, 8, 8)
    state = {"config": dict(arch="sngan", resolution=32, channels=1, latent_dim=8, width=8),
             "G_ema": g.state_dict(), "D": {}, "progress": {}}
    path = tmp_path_factory.mktemp("gen") / "g.pt"
    save_checkpoint(state, path)
    return path


def test_generator_streams_batch_independent_and_equals_its_saved_images(tmp_path, generator_ckpt):
    from faststeal.checkpoint import CheckpointError

    try:
        src = open_source(str(generator_ckpt))
    except CheckpointError as exc:  # the checkpoint format needs a real discriminator state
        pytest.fail(f"checkpoint fixture rejected: {exc}")
    assert isinstance(src, GeneratorSource) and src.fingerprint is None and src.count(None) == 10_000
    f3 = compute_features(src, n=5, batch=3, loader="torch", device="cpu")
    f5 = compute_features(src, n=5, batch=5, loader="auto", device="cpu")  # DALI where installed
    torch.testing.assert_close(f3, f5, rtol=1e-4, atol=1e-4)
    images = torch.cat(list(src.uint8_batches(5, 2, "cpu")))  # the same images, as a uint8 file
    np.save(tmp_path / "g.npy", images.numpy())
    f_file = compute_features(str(tmp_path / "g.npy"), batch=5, loader="torch", device="cpu")
    torch.testing.assert_close(f_file, f3, rtol=1e-4, atol=1e-4)


def test_stats_file_source_and_errors(tmp_path):
    from faststeal.metrics import FeatureStats

    path = FeatureStats.from_moments(np.zeros(2048), np.eye(2048), 10).save(tmp_path / "s.npz")
    src = open_source(str(path))
    assert isinstance(src, StatsSource) and src.stats.n == 10
    with pytest.raises(ValueError, match="KID needs images"):
        compute_features(src)
    with pytest.raises(SourceError, match="no such file"):
        open_source(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        open_source(str(tmp_path / "empty"))
