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
