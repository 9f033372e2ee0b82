import pytest
import torch

from faststeal.models import build_discriminator, build_generator
from faststeal.models.dcgan import DCGANDiscriminator, DCGANGenerator, stage_count


@pytest.mark.parametrize("resolution,channels", [(32, 1), (64, 3)])
def test_shapes_and_range(resolution, channels):
    g, d = DCGANGenerator(resolution, channels, 16, 8), DCGANDiscriminator(resolution, channels, 8)
    x = g(torch.randn(3, 16))
    assert x.shape == (3, channels, resolution, resolution) and float(x.abs().max()) <= 1.0
    assert d(x).shape == (3,)


def test_codes_may_come_flat_or_as_maps():
    g = DCGANGenerator(32, 3, 16, 8).eval()
    z = torch.randn(2, 16)
    torch.testing.assert_close(g(z), g(z.view(2, 16, 1, 1)))


def test_width_doubles_towards_the_code():
    g = DCGANGenerator(64, 3, 16, 8)
    convs = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [m.out_channels for m in convs] == [64, 32, 16, 8, 3]
    assert stage_count(64) == 4 and stage_count(8) == 1


def test_refuses_sizes_it_cannot_build():
    with pytest.raises(ValueError, match="power of two"):
        DCGANGenerator(48, 3, 16, 8)


def test_registered_as_an_attack_architecture():
    assert isinstance(build_generator("dcgan", 32, 1, 16, 8), DCGANGenerator)
    assert isinstance(build_discriminator("dcgan", 32, 1, 8), DCGANDiscriminator)
