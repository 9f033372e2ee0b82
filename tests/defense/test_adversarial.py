"""The adversarial perturbation runs the real FID Inception forward and backward (about a minute for one
8x8 image on a busy 2-core CPU), so the test uses a single image and a single step."""
import pytest
import torch

from faststeal.defense import build


def test_respects_the_linf_budget_and_moves_features_away():
    x = torch.randint(0, 256, (1, 1, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    d = build("adv", eps=2.5, steps=1, start="zero", seed=0)
    assert d.budget == 2                      # fractional budgets are floored on uint8 output
    with torch.no_grad():
        clean = d.features(x.float())
    d.set_reference(clean[0] + 0.01)          # push away from (almost) the clean features themselves
    out = d(x)
    assert out.shape == x.shape and out.dtype == torch.uint8
    diff = (out.int() - x.int()).abs()
    assert 0 < int(diff.max()) <= 2
    with torch.no_grad():
        pert = d.features(out.float())
    assert (pert - d.reference).pow(2).sum() > (clean - d.reference).pow(2).sum()


def test_reference_must_be_a_feature_mean():
    with pytest.raises(ValueError, match="2048"):
        build("adv").set_reference(torch.zeros(10))
