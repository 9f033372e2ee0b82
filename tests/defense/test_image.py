import pytest
import torch

from faststeal.defense import build

IMAGE = ["noise", "blur", "jpeg"]
OFF = {"noise": {"sigma": 0}, "blur": {"sigma": 0}, "jpeg": {"quality": 100}, "adv": {"eps": 0}}
STRONG = {"noise": {"sigma": 0.2}, "blur": {"sigma": 2.0}, "jpeg": {"quality": 10}}


@pytest.mark.parametrize("name", IMAGE)
@pytest.mark.parametrize("kind", ["grey", "colour"])
def test_image_defense_keeps_shape_dtype_range_and_changes_pixels(name, kind, images):
    x = images[kind]
    y = build(name, **STRONG[name])(x)
    assert y.shape == x.shape and y.dtype == torch.uint8
    assert int(y.min()) >= 0 and int(y.max()) <= 255
    assert not torch.equal(y, x)


@pytest.mark.parametrize("name", IMAGE + ["adv"])
def test_strength_zero_is_identity(name, images):
    d = build(name, **OFF[name])
    assert d.strength == 0 and d.is_identity
    for x in images.values():
        assert torch.equal(d(x), x)


@pytest.mark.parametrize("name", ["noise", "jpeg"])
def test_seeded_and_reproducible(name, images):
    x = images["colour"]
    a, b = build(name, seed=3, **STRONG[name]), build(name, seed=3, **STRONG[name])
    assert torch.equal(a(x), b(x))
    assert torch.equal(a(x), a(x))          # no hidden state: asking twice gives the same image


def test_noise_depends_on_seed_and_image_not_on_batch(images):
    x = images["grey"]
    a, b = build("noise", seed=1, sigma=0.1), build("noise", seed=2, sigma=0.1)
    assert not torch.equal(a(x), b(x))
    assert torch.equal(a(x)[2:4], a(x[2:4]))  # noise keyed on content, so batching does not matter


def test_noise_has_the_requested_spread():
    x = torch.full((64, 1, 16, 16), 128, dtype=torch.uint8)
    x += torch.arange(64, dtype=torch.uint8).view(64, 1, 1, 1) % 3  # distinct images, distinct noise
    diff = build("noise", sigma=0.02)(x).float() - x.float()
    assert diff.std().item() == pytest.approx(0.02 * 255, rel=0.1)


def test_blur_preserves_constant_images_and_smooths_edges():
    flat = torch.full((1, 1, 8, 8), 77, dtype=torch.uint8)
    assert torch.equal(build("blur", sigma=1.5)(flat), flat)
    edge = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    edge[..., 4:] = 255
    out = build("blur", sigma=1.0)(edge)
    assert 0 < out[0, 0, 0, 3] < 255 and 0 < out[0, 0, 0, 4] < 255


def test_jpeg_lower_quality_distorts_more(images):
    x = images["colour"]
    err = [(build("jpeg", quality=q)(x).float() - x.float()).abs().mean().item() for q in (95, 50, 5)]
    assert err[0] < err[1] < err[2]


def test_image_defense_rejects_float_input():
    with pytest.raises(ValueError, match="uint8"):
        build("noise")(torch.zeros(2, 1, 8, 8))
