import torch

from faststeal.attack import drs


def test_rejection_sampling_with_the_true_density_ratio_recovers_p_r():
    """p_g = N(0, 1), p_r = N(1, 1): log p_r/p_g = x - 1/2. Accepted samples must follow N(1, 1)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400_000, generator=g)
    keep = drs.rejection_sample(x - 0.5, gamma=0.0, seed=1)
    accepted = x[keep]
    assert abs(float(accepted.mean()) - 1.0) < 0.03
    assert abs(float(accepted.std()) - 1.0) < 0.03


def test_acceptance_rate_is_controllable_and_monotone():
    logits = torch.randn(10_000, generator=torch.Generator().manual_seed(2))
    for rate in (0.2, 0.5, 0.9):
        gamma = drs.gamma_for_rate(logits, rate)
        assert abs(float(drs.acceptance_probabilities(logits, gamma).mean()) - rate) < 0.01
    p = drs.acceptance_probabilities(logits, 0.0)
    order = logits.argsort()
    assert bool((p[order][1:] >= p[order][:-1] - 1e-7).all())


def test_logistic_calibration_recovers_a_known_logit():
    g = torch.Generator().manual_seed(3)
    real, fake = torch.randn(50_000, generator=g) + 1.0, torch.randn(50_000, generator=g)
    # A critic that reports 3x the true log ratio plus an offset; calibration must undo the scale.
    a, b = drs.calibrate_logistic(3 * real + 2, 3 * fake + 2)
    assert abs(a * 3 - 1.0) < 0.05
    assert abs((a * 2 + b) - (-0.5)) < 0.05
