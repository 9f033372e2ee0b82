import pytest
import torch

from faststeal import losses


class Quadratic(torch.nn.Module):
    """D(x) = sum(x^2): grad = 2 x, so the penalty has a closed form."""

    def forward(self, x):
        return x.pow(2).flatten(1).sum(1)


def test_gradient_penalty_matches_hand_computation():
    torch.manual_seed(0)
    real, fake = torch.randn(5, 2, 3, 3), torch.randn(5, 2, 3, 3)
    gen = torch.Generator().manual_seed(7)
    gp = losses.gradient_penalty(Quadratic(), real, fake, generator=gen)
    eps = torch.rand(5, 1, 1, 1, generator=torch.Generator().manual_seed(7))
    x_hat = fake + eps * (real - fake)
    expected = ((2 * x_hat).flatten(1).norm(dim=1) - 1).pow(2).mean()
    torch.testing.assert_close(gp, expected)


def test_gradient_penalty_zero_for_unit_gradient_critic():
    w = torch.randn(1, 12)
    w = w / w.norm()
    critic = lambda x: (x.flatten(1) * w).sum(1)  # noqa: E731
    gp = losses.gradient_penalty(critic, torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2))
    assert float(gp) < 1e-10


def test_gradient_penalty_is_differentiable_wrt_critic_parameters():
    lin = torch.nn.Linear(6, 1)
    gp = losses.gradient_penalty(lambda x: lin(x.flatten(1)).view(-1), torch.randn(3, 6, 1, 1),
                                 torch.randn(3, 6, 1, 1))
    gp.backward()
    expected = 2 * (lin.weight.norm() - 1) * lin.weight / lin.weight.norm()
    torch.testing.assert_close(lin.weight.grad, expected.detach())


def test_wgan_gp_and_hinge_values():
    d_real, d_fake = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 0.5])
    gp = torch.tensor(0.2)
    expected = (-0.25) - 2.0 + 10 * 0.2 + 0.001 * 5.0
    torch.testing.assert_close(losses.wgan_gp_d_loss(d_real, d_fake, gp), torch.tensor(expected))
    torch.testing.assert_close(losses.hinge_d_loss(d_real, d_fake), torch.tensor(0.0 + (0.0 + 1.5) / 2))
    torch.testing.assert_close(losses.hinge_g_loss(d_fake), torch.tensor(0.25))


def test_each_recipe_is_one_objective_with_its_weights():
    assert losses.objective("wgan-gp", gp_lambda=5.0, drift=0.01) == losses.WGANGP(gp_lambda=5.0, drift=0.01)
    assert losses.objective("logistic-r1", r1_gamma=0.3) == losses.LogisticR1(r1_gamma=0.3)
    assert losses.objective("hinge") == losses.Hinge()
    with pytest.raises(ValueError, match="loss must be one of"):
        losses.objective("least-squares")


def test_objectives_compute_the_recipes_losses():
    torch.manual_seed(0)
    D = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 1))
    real, fake = torch.randn(4, 1, 4, 4), torch.randn(4, 1, 4, 4)
    d_real, d_fake = D(real), D(fake)
    eps = torch.rand(4, 1, 1, 1)
    wgan = losses.WGANGP().critic_loss(D, real, fake, d_real, d_fake, draw_eps=lambda dtype: eps, critic_step=0)
    expected = losses.wgan_gp_d_loss(d_real, d_fake, losses.gradient_penalty(D, real, fake, eps=eps))
    assert torch.equal(wgan, expected)
    logistic = losses.LogisticR1(r1_gamma=0.2)
    plain = losses.logistic_d_loss(d_real, d_fake)
    lazy = logistic.critic_loss(D, real, fake, d_real, d_fake, draw_eps=None, critic_step=losses.R1_EVERY)
    skipped = logistic.critic_loss(D, real, fake, d_real, d_fake, draw_eps=None, critic_step=1)
    assert torch.equal(skipped, plain)                         # R1 only on every R1_EVERY-th critic step
    assert torch.allclose(lazy, plain + 0.2 / 2 * losses.R1_EVERY * losses.r1_penalty(D, real))
    assert torch.equal(losses.Hinge().generator_loss(d_fake), losses.hinge_g_loss(d_fake))
