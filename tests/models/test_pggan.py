import pytest
import torch
import torch.nn.functional as F

from faststeal.models.pggan import PGGANDiscriminator, PGGANGenerator, level_count, width_at


def test_levels_and_widths():
    assert level_count(32) == 4 and level_count(64) == 5
    assert [width_at(r, 128) for r in (4, 8, 16, 32, 64)] == [128, 128, 128, 64, 32]
    with pytest.raises(ValueError):
        level_count(48)


@pytest.mark.parametrize("resolution,channels", [(32, 1), (64, 3)])
def test_shapes_at_every_level(resolution, channels):
    g = PGGANGenerator(resolution, channels, latent_dim=16, width=16)
    d = PGGANDiscriminator(resolution, channels, width=16)
    z = torch.randn(4, 16)
    for level in range(level_count(resolution)):
        x = g(z, level, 0.5)
        assert x.shape == (4, channels, 2 ** (level + 2), 2 ** (level + 2))
        assert d(x, level, 0.5).shape == (4,)
    with pytest.raises(ValueError, match="expects 8x8"):
        d(torch.randn(4, channels, 16, 16), 1)


def test_fade_in_is_continuous():
    """Starting to fade in a new block (alpha=0) must not change what G makes or what D says."""
    torch.manual_seed(0)
    g, d = PGGANGenerator(32, 1, 16, 16), PGGANDiscriminator(32, 1, 16)
    z = torch.randn(4, 16)
    for level in range(1, 4):
        before = g(z, level - 1, 1.0)
        after = g(z, level, 0.0)
        torch.testing.assert_close(after, F.interpolate(before, scale_factor=2, mode="nearest"))
        x = torch.randn(4, 1, 2 ** (level + 2), 2 ** (level + 2))
        torch.testing.assert_close(d(x, level, 0.0), d(F.avg_pool2d(x, 2), level - 1, 1.0))
        # alpha slightly above 0 moves smoothly
        assert (g(z, level, 0.01) - after).abs().max() < 0.1 * (after.abs().max() + 1)
