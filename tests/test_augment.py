import pytest
import torch

from faststeal.augment import diff_augment, parse_policy


def test_parse_policy():
    assert parse_policy("translation,cutout") == ("translation", "cutout")
    assert parse_policy(None) == parse_policy("none") == parse_policy("") == ()
    with pytest.raises(ValueError, match="augment policy"):
        parse_policy("rotate")


def test_empty_policy_is_the_identity():
    x = torch.randn(4, 1, 8, 8)
    assert diff_augment(x, ()) is x


@pytest.mark.parametrize("policy", [("translation",), ("cutout",), ("color",), ("color", "translation", "cutout")])
def test_augmentations_keep_shape_and_pass_gradients(policy):
    torch.manual_seed(0)
    x = torch.rand(16, 3, 16, 16, requires_grad=True)
    y = diff_augment(x, policy)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_translation_moves_content_by_at_most_an_eighth():
    torch.manual_seed(1)
    x = torch.zeros(64, 1, 16, 16)
    x[:, :, 8, 8] = 1.0                                   # one bright pixel
    y = diff_augment(x, ("translation",))
    pos = y.flatten(1).argmax(dim=1)
    rows, cols = pos // 16, pos % 16
    assert (rows - 8).abs().max() <= 2 and (cols - 8).abs().max() <= 2
    assert (y.flatten(1).sum(1) == 1).all()               # shifted, never duplicated
    assert ((rows != 8) | (cols != 8)).any()              # and some actually moved


def test_cutout_blanks_a_quarter_of_each_image_inside_the_frame():
    torch.manual_seed(2)
    y = diff_augment(torch.ones(32, 1, 16, 16), ("cutout",))
    zeros = (y == 0).flatten(1).sum(1)
    assert zeros.max() <= 64 and zeros.min() >= 16       # an 8x8 square, possibly clipped by the border
