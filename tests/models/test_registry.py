import pytest
import torch

from faststeal.models import ARCHS, NETWORKS, build_discriminator, build_generator

TANH_OUTPUT = {"sngan", "dcgan"}    # PGGAN's last layer is linear: its images are clipped when they are made


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("resolution,channels", [(32, 1), (64, 3)])
def test_every_network_builds_at_full_size(arch, resolution, channels):
    g, d = build_generator(arch, resolution, channels, 16, 16), build_discriminator(arch, resolution, channels, 16)
    assert (type(g), type(d)) == NETWORKS[arch]
    x = g(torch.randn(3, 16))            # progressive networks default to their last level
    assert x.shape == (3, channels, resolution, resolution) and bool(torch.isfinite(x).all())
    assert arch not in TANH_OUTPUT or float(x.abs().max()) <= 1.0
    assert d(x).shape == (3,)


def test_an_unknown_architecture_names_the_known_ones():
    with pytest.raises(ValueError, match="dcgan"):
        build_generator("stylegan9", 32, 1, 16, 16)
