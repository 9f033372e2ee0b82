import pytest
import torch

from faststeal.augment import AdaptiveStrength, diff_augment, parse_policy


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


def test_a_share_p_of_the_images_is_augmented_each_drawn_apart():
    x = torch.ones(400, 1, 16, 16)
    assert diff_augment(x, ("cutout",), p=0.0) is x
    torch.manual_seed(3)
    cut = (diff_augment(x, ("cutout",), p=0.25) == 0).flatten(1).any(1)
    assert 0.15 < cut.float().mean() < 0.35                    # about a quarter, not all or none
    torch.manual_seed(4)
    full = diff_augment(x, ("cutout",), p=1.0)
    torch.manual_seed(4)
    assert torch.equal(full, diff_augment(x, ("cutout",)))     # p = 1 draws exactly what a fixed policy draws
    y = torch.rand(8, 3, 16, 16, requires_grad=True)
    diff_augment(y, ("color", "translation", "cutout"), p=0.5).sum().backward()
    assert y.grad.abs().sum() > 0


def test_adaptive_strength_rises_while_d_is_sure_of_the_reals_and_falls_otherwise():
    ada = AdaptiveStrength(0.6, batch=16, ramp_kimg=0.64, interval=4)     # one update moves p by 64/640
    sure, unsure = torch.full((16, 1), 3.0), torch.cat([torch.full((8, 1), 1.0), torch.full((8, 1), -1.0)])
    for _ in range(4):
        assert not ada.due()
        ada.observe(sure)
    assert ada.due()
    ada.update(ada.signs, ada.count)
    assert ada.p == pytest.approx(0.1) and ada.last_r == 1.0 and not ada.due()
    for _ in range(40):                                         # capped at 1
        for _ in range(4):
            ada.observe(sure)
        ada.update(ada.signs, ada.count)
    assert ada.p == 1.0
    for _ in range(4):
        ada.observe(unsure)                                     # half the reals called real: below 0.6
    ada.update(ada.signs, ada.count)
    assert ada.p == pytest.approx(0.9) and ada.last_r == 0.0
    ada.observe(sure)
    again = AdaptiveStrength(0.6, batch=16, ramp_kimg=0.64, interval=4)
    again.load_state(ada.state())
    assert again.state() == ada.state()
    with pytest.raises(ValueError, match="between 0 and 1"):
        AdaptiveStrength(1.0, batch=16)
