import pytest
import torch

from faststeal.defense import DefensePipeline, build, parse_pipeline
from faststeal.targets.oracle import BudgetExceeded, TargetOracle


def test_pipeline_splits_into_oracle_hooks():
    p = parse_pipeline("truncate:psi=0.5+noise:sigma=0.1+blur:sigma=1")
    assert [d.name for d in p.latent] == ["truncate"] and [d.name for d in p.image] == ["noise", "blur"]
    z = torch.ones(2, 4)
    assert torch.equal(p.latent_transform(z), 0.5 * z)
    assert DefensePipeline([]).latent_transform is None and DefensePipeline([]).image_transform is None
    with pytest.raises(TypeError):
        DefensePipeline(["noise"])


def test_defended_oracle_changes_images_and_still_counts_the_budget(tiny_target):
    plain = TargetOracle(tiny_target, budget=10, seed=4)
    p = parse_pipeline("noise:sigma=0.1")
    guarded = TargetOracle(tiny_target, budget=10, seed=4, **p.oracle_hooks())
    a, b = plain.query(6), guarded.query(6)
    assert b.shape == a.shape and b.dtype == torch.uint8
    assert not torch.equal(a, b)
    assert guarded.served == 6 and guarded.remaining == 4
    with pytest.raises(BudgetExceeded):
        guarded.query(5)
    assert guarded.served == 6


def test_latent_defense_applies_to_chosen_codes_too(tiny_target):
    z = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
    plain = TargetOracle(tiny_target, budget=8)
    guarded = TargetOracle(tiny_target, budget=8, **parse_pipeline("anchors:k=3").oracle_hooks())
    a, b = plain.query(z), guarded.query(z)
    assert not torch.equal(a, b)
    # identical to serving the anchor codes themselves without a defense
    again = TargetOracle(tiny_target, budget=8).query(build("anchors", k=3)(z))
    assert torch.equal(b, again)


def test_identity_pipeline_serves_the_undefended_images(tiny_target):
    p = parse_pipeline("noise:sigma=0+truncate:psi=1")
    assert p.is_identity
    a = TargetOracle(tiny_target, budget=5, seed=1).query(5)
    b = TargetOracle(tiny_target, budget=5, seed=1, **p.oracle_hooks()).query(5)
    assert torch.equal(a, b)
