import torch

from faststeal.models.layers import SpectralNormed
from faststeal.models.sngan import SNGANDiscriminator


def test_training_forward_advances_u_once_per_forward():
    d = SNGANDiscriminator(32, 1, 8).train()
    # A layer with one output row has the trivial u = [+-1]; every other u must move.
    layers = [m for m in d.modules() if isinstance(m, SpectralNormed) and m.u.numel() > 1]
    assert len(layers) > 5
    u0 = [m.u.clone() for m in layers]
    d(torch.randn(2, 1, 32, 32))
    assert all(not torch.equal(a, m.u) for a, m in zip(u0, layers))
    d.eval()
    u1 = [m.u.clone() for m in layers]
    d(torch.randn(2, 1, 32, 32))
    assert all(torch.equal(a, m.u) for a, m in zip(u1, layers))


def test_discriminator_is_roughly_lipschitz_after_power_iterations():
    torch.manual_seed(0)
    d = SNGANDiscriminator(32, 1, 8).train()
    for _ in range(30):
        d(torch.zeros(1, 1, 32, 32))
    d.eval()
    x = torch.randn(8, 1, 32, 32, requires_grad=True)
    (grad,) = torch.autograd.grad(d(x).sum(), x)
    # Each layer is 1-Lipschitz; residual sums and pooling keep the bound modest.
    assert float(grad.flatten(1).norm(dim=1).max()) < 50
