"""The transposed-convolution generator: shapes, scale, and the one thing it is for (period-2 texture)."""
import math

import pytest
import torch

from faststeal.checkpoint import build_from_config
from faststeal.models import build_generator
from faststeal.models.layers import EqualizedConv2d
from faststeal.models.tconv import EqualizedConvTranspose2d, TConvGenerator


@pytest.mark.parametrize("resolution,channels", [(8, 1), (32, 1), (64, 3)])
def test_shapes(resolution, channels):
    g = build_generator("fast-tconv", resolution, channels, 16, 16)
    assert isinstance(g, TConvGenerator)
    assert g(torch.randn(3, 16)).shape == (3, channels, resolution, resolution)


def test_a_checkpoint_config_builds_the_tconv_generator_and_the_fast_discriminator():
    g, d = build_from_config({"arch": "fast-tconv", "resolution": 16, "channels": 3, "latent_dim": 8, "width": 8})
    assert isinstance(g, TConvGenerator)
    assert d(g(torch.randn(4, 8))).shape == (4,)


def test_he_scale_uses_the_taps_each_output_pixel_sums():
    layer = EqualizedConvTranspose2d(32, 8, activation="linear")
    assert layer.scale == pytest.approx(math.sqrt(2) / math.sqrt(32 * 4))
    torch.manual_seed(0)
    y = layer(torch.randn(64, 32, 8, 8))
    assert y.shape == (64, 8, 16, 16)
    assert y[..., 1:-1, 1:-1].var().item() == pytest.approx(2.0, rel=0.1)   # gain^2 for unit inputs


def test_transposed_upsampling_draws_a_period_two_pattern_nearest_upsampling_cannot():
    """From a flat feature map, a 4x4 stride-2 transposed conv can give the four pixel phases four values;
    PGGAN's nearest-neighbour upsample + 3x3 conv gives every interior pixel the same value, whatever its
    weights. This is the texture of DCGAN-style targets that the fast thief's copies missed."""
    flat = torch.ones(1, 4, 6, 6)
    tconv = EqualizedConvTranspose2d(4, 1, activation="linear")
    with torch.no_grad():
        tconv.weight.zero_()
        tconv.weight[:, :, 1::2, 1::2] = 1.0      # taps that land on even output rows and columns only
    out = tconv(flat)[0, 0, 2:-2, 2:-2]
    assert out[0::2, 0::2].min() > 0 and out[1::2, 1::2].abs().max() == 0

    torch.manual_seed(1)
    nearest = EqualizedConv2d(4, 1, 3, up=2, activation="linear")
    interior = nearest(flat)[0, 0, 2:-2, 2:-2]
    assert torch.allclose(interior, interior[0, 0].expand_as(interior), atol=1e-5)
