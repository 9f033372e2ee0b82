import pytest
import torch

from faststeal.models.dcgan import DCGANGenerator, stage_count


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
