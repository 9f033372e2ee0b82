"""The perceptual distance used in distillation: zero for the same images, larger for worse copies, and a
gradient that reaches the copy."""
import pytest
import torch

from faststeal.metrics.perceptual import StemFeatures


@pytest.fixture(scope="module")
def stem():
    return StemFeatures()


def _images(n=4, channels=3, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, channels, size // 4, size // 4, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(base, size=size, mode="bilinear", align_corners=False)


def test_same_images_are_at_distance_zero_and_blur_costs_less_than_other_images(stem):
    x = _images()
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1)
    assert stem.distance(x, x).item() == pytest.approx(0.0, abs=1e-6)
    d_blur = stem.distance(blurred, x).item()
    d_other = stem.distance(_images(seed=1), x).item()
    assert 0 < d_blur < d_other


def test_gradients_reach_the_copy_and_not_the_network(stem):
    x, copy = _images(), _images(seed=2).requires_grad_(True)
    stem.distance(copy, x).backward()
    assert copy.grad is not None and copy.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in stem.parameters())
    stem.train()
    assert not stem.training          # folded batch norm: always the inference graph


def test_grey_images_are_read_as_three_channels_and_small_ones_refused(stem):
    grey = _images(channels=1)
    assert [m.shape[1] for m in stem(grey)] == [32, 32, 64, 192]
    with pytest.raises(ValueError, match="H >= 32"):
        stem(_images(size=16))


def test_the_trainer_refuses_a_perceptual_term_without_distillation_or_network():
    from faststeal.data import ImageSet
    from faststeal.train import TrainConfig, Trainer

    data = ImageSet(torch.zeros(8, 1, 32, 32, dtype=torch.uint8), None, "zeros", "zeros", codes=torch.zeros(8, 4))
    with pytest.raises(ValueError, match="perceptual"):
        Trainer(TrainConfig(arch="fast", resolution=32, latent_dim=4, distill=1.0, perceptual=1.0), data,
                checkpoint_path="unused.pt")


def test_under_bf16_autocast_the_distance_stays_close_to_float32(stem):
    """The fast path the trainer takes with precision bf16, against the float32 reference."""
    x, y = _images(size=64), _images(size=64, seed=3)
    blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1)
    reference = [stem.distance(blurred, x).item(), stem.distance(y, x).item()]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = [stem.distance(blurred, x).float().item(), stem.distance(y, x).float().item()]
    assert fast == pytest.approx(reference, rel=0.05)
    assert fast[0] < fast[1]                        # it still ranks a blurred copy above other images
