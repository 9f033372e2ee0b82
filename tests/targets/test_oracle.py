import math
import threading

import pytest
import torch

from faststeal.targets.oracle import BudgetExceeded, LatentPrior, TargetOracle


def test_serves_uint8_images_and_counts(tiny_target):
    oracle = TargetOracle(tiny_target, budget=10, seed=1)
    x = oracle.query(4)
    assert x.dtype == torch.uint8 and x.shape == (4, 1, 8, 8)
    z = torch.randn(3, 8)
    assert oracle.query(z).shape == (3, 1, 8, 8)
    assert oracle.served == 7 and oracle.remaining == 3
    assert [e["latents"] for e in oracle.log] == ["normal", "chosen"]


def test_budget_is_hard_and_over_budget_serves_nothing(tiny_target):
    oracle = TargetOracle(tiny_target, budget=5)
    oracle.query(3)
    with pytest.raises(BudgetExceeded, match="2 of the budget of 5 left"):
        oracle.query(3)
    assert oracle.served == 3
    oracle.query(2)
    with pytest.raises(BudgetExceeded):
        oracle.query(torch.randn(1, 8))
    assert oracle.served == 5


def test_concurrent_requests_never_exceed_budget(tiny_target):
    oracle = TargetOracle(tiny_target, budget=50)
    got, refused = [], []

    def worker():
        for _ in range(6):
            try:
                got.append(oracle.query(3).shape[0])
            except BudgetExceeded:
                refused.append(1)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(got) == oracle.served <= 50 and sum(got) == 48 and refused


def test_oracle_hides_the_weights(tiny_target):
    oracle = TargetOracle(tiny_target, budget=1)
    for value in vars(oracle).values():
        assert not isinstance(value, (torch.nn.Module, torch.Tensor))
    assert not hasattr(oracle, "generator") and not hasattr(oracle, "parameters")
    import pickle
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(oracle)


def test_prior_stream_is_positional(tiny_target):
    a = TargetOracle(tiny_target, budget=3000, seed=4)
    whole = a.query(2500)
    b = TargetOracle(tiny_target, budget=3000, seed=4)
    parts = torch.cat([b.query(700), b.query(1800)])
    assert torch.equal(whole, parts)


@pytest.mark.parametrize("text,var", [("normal", 1.0), ("uniform", 1.0), ("truncated:1", None)])
def test_priors_have_the_right_moments(text, var):
    prior = LatentPrior.parse(text)
    z = prior.sample(200_000, 4, torch.Generator().manual_seed(0))
    if var is None:  # truncated standard normal on [-a, a]: 1 - 2 a phi(a) / (2 Phi(a) - 1)
        a = prior.threshold
        phi = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
        big_phi = 0.5 * (1 + math.erf(a / math.sqrt(2)))
        var = 1 - 2 * a * phi / (2 * big_phi - 1)
        assert float(z.abs().max()) <= a
    assert abs(float(z.mean())) < 0.01
    assert abs(float(z.var()) - var) < 0.01
    with pytest.raises(ValueError):
        LatentPrior.parse("cauchy")


def test_budget_is_read_only_and_every_charging_path_checks_its_count(tiny_target):
    oracle = TargetOracle(tiny_target, budget=5)
    with pytest.raises(AttributeError):
        oracle.budget = 10 ** 9
    for bad in (lambda: oracle.query(-1), lambda: oracle.account(-1000), lambda: oracle._reserve(-1000),
                lambda: oracle.query_shard(-3), lambda: oracle.query(2, offset=-1)):
        with pytest.raises(ValueError, match=">= 0"):
            bad()
    assert oracle.served == 0 and oracle.remaining == 5
    with pytest.raises(ValueError, match="served"):
        TargetOracle(tiny_target, budget=5, served=-10)
    oracle.account(3)                  # images bought earlier count once, never refund
    oracle.account(1)
    assert oracle.served == 3 and not hasattr(oracle, "prior_codes")
    import faststeal.targets.oracle as module

    assert "process boundary is the server" in " ".join(module.__doc__.split())
