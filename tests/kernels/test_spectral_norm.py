"""Spectral norm: reference against exact singular values and torch's parametrization; Triton against the
reference (interpreter on CPU). float32 tolerances: rtol=1e-4, atol=1e-6 for Triton vs reference."""
import pytest
import torch
import torch.nn.functional as F
from faststeal.kernels import reference as ref
from torch.nn.utils import parametrizations

TOL = dict(rtol=1e-4, atol=1e-6)


def _shapes():
    return [(5, 3, 3, 3), (40, 150), (1, 7), (33, 2, 4, 4), (130, 3)]


def test_reference_converges_to_matrix_2_norm():
    g = torch.Generator().manual_seed(0)
    for shape in _shapes():
        w = torch.randn(shape, generator=g, dtype=torch.float64)
        u = torch.randn(shape[0], generator=g, dtype=torch.float64)
        w_sn, sigma, _ = ref.spectral_norm(w, u, n_iter=500)
        exact = torch.linalg.matrix_norm(w.reshape(shape[0], -1), 2)
        torch.testing.assert_close(sigma, exact, rtol=1e-6, atol=0)
        torch.testing.assert_close(torch.linalg.matrix_norm(w_sn.reshape(shape[0], -1), 2),
                                   torch.ones((), dtype=torch.float64), rtol=1e-6, atol=0)


@pytest.mark.parametrize("n_power_iterations", [1, 3])
def test_reference_matches_torch_parametrization(n_power_iterations):
    """Same init and same order as torch: u0, v0 ~ N(0, 1) normalised; each round u = normalize(W v),
    v = normalize(W^T u); sigma = u^T W v. Registration runs 15 warm-up rounds plus one training-mode
    forward. Storing only u, the reference reproduces this exactly once the first u = normalize(W v0)."""
    conv = torch.nn.Conv2d(6, 9, 3)
    w = conv.weight.detach().clone()
    torch.manual_seed(123)
    sn = parametrizations.spectral_norm(conv, n_power_iterations=n_power_iterations)
    torch.manual_seed(123)
    torch.empty(9).normal_(0, 1)  # u0: unused, since torch's first round overwrites u from v0
    v0 = F.normalize(torch.empty(54).normal_(0, 1), dim=0)
    u1 = F.normalize(w.reshape(9, -1) @ v0, dim=0)
    _, _, u = ref.spectral_norm(w, u1, n_iter=14 + n_power_iterations)
    torch.testing.assert_close(u, sn.parametrizations.weight[0]._u, rtol=1e-5, atol=1e-6)
    for _ in range(3):  # training-mode forwards: n_power_iterations rounds each
        want = sn.weight
        got, _, u = ref.spectral_norm(w, u, n_iter=n_power_iterations)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(u, sn.parametrizations.weight[0]._u, rtol=1e-5, atol=1e-6)
    sn.eval()  # eval: no update
    got, _, _ = ref.spectral_norm(w, u, update_u=False)
    torch.testing.assert_close(got, sn.weight, rtol=1e-5, atol=1e-6)


def _grads(outs, sigmas, weights):
    loss = sum((o * torch.cos(o.detach())).sum() for o in outs) + sum(s * (i + 1) for i, s in enumerate(sigmas))
    return torch.autograd.grad(loss, weights)


@pytest.mark.parametrize("update_u,n_iter", [(True, 1), (True, 4), (False, 1), (True, 0)])
def test_triton_multi_matches_reference(update_u, n_iter, device):
    pytest.importorskip("triton")
    from faststeal import kernels as K
    g = torch.Generator().manual_seed(n_iter)
    ws = [torch.randn(s, generator=g).to(device).requires_grad_(True) for s in _shapes()]
    us = [torch.randn(s[0], generator=g).to(device) for s in _shapes()]
    res = [K.spectral_norm_multi(ws, us, impl=impl, n_iter=n_iter, update_u=update_u)
           for impl in ("torch", "triton")]
    for part in range(3):
        for a, e in zip(res[1][part], res[0][part]):
            torch.testing.assert_close(a, e, **TOL)
    for a, e in zip(_grads(res[1][0], res[1][1], ws), _grads(res[0][0], res[0][1], ws)):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-5)


def test_triton_single_matches_reference_and_leaves_inputs_alone(device):
    pytest.importorskip("triton")
    from faststeal import kernels as K
    w = torch.randn(12, 4, 3, 3, device=device, requires_grad=True)
    u = torch.randn(12, device=device)
    u_copy = u.clone()
    got = K.spectral_norm(w, u, impl="triton", n_iter=2)
    want = K.spectral_norm(w, u, impl="torch", n_iter=2)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, **TOL)
    assert torch.equal(u, u_copy)
