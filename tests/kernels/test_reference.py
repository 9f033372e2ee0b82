"""The torch reference is the oracle, so its own gradients are checked numerically in float64."""
import math

import pytest
import torch
import torch.nn.functional as F
from faststeal.kernels import reference as ref

CONV_CASES = [  # (n, c, size, co, k, up, down, pixelnorm, activation)
    (1, 2, 3, 3, 3, 1, 1, False, "lrelu"),
    (2, 3, 4, 2, 3, 2, 1, True, "lrelu"),
    (1, 2, 5, 3, 3, 1, 2, False, "linear"),
    (2, 2, 4, 3, 4, 1, 1, True, "lrelu"),
    (1, 3, 3, 2, 1, 1, 1, False, "lrelu"),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_gradcheck_float64(case):
    n, c, s, co, k, up, down, pn, act = case
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, s, s, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(co, c, k, k, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(co, generator=g, dtype=torch.float64, requires_grad=True)

    def f(x, w, b):
        return ref.eqlr_conv2d(x, w, b, up=up, down=down, pixelnorm=pn, activation=act, act_gain=1.3)

    assert torch.autograd.gradcheck(f, (x, w, b), fast_mode=True)


def test_linear_gradcheck_float64():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: ref.eqlr_linear(x, w, b, pixelnorm=True), (x, w, b))


def test_spectral_norm_gradcheck_float64():
    """Gradient w.r.t. W with u, v constant (Miyato et al.).

    With update_u=False, sigma = u^T W normalize(W^T u) = |W^T u|, whose exact gradient is u v^T, so the
    numerical check is exact for any u (with power-iteration updates, u would depend on W).
    """
    g = torch.Generator().manual_seed(2)
    w = torch.randn(4, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    u = torch.randn(4, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda w: ref.spectral_norm(w, u, update_u=False)[0], (w,))
    assert torch.autograd.gradcheck(lambda w: ref.spectral_norm(w, u, update_u=False)[1], (w,))


def test_conv_matches_plain_torch_ops():
    """The reference equals the textbook chain: upsample, conv with scaled weight, pool, bias, lrelu, norm."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 5, 5, generator=g)
    w = torch.randn(4, 3, 3, 3, generator=g)
    b = torch.randn(4, generator=g)
    out = ref.eqlr_conv2d(x, w, b, up=2, pixelnorm=True)
    z = F.conv2d(F.interpolate(x, scale_factor=2), w * math.sqrt(2) / math.sqrt(27), b, padding=1)
    a = F.leaky_relu(z, 0.2)
    want = a / torch.sqrt(a.pow(2).mean(1, keepdim=True) + 1e-8)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-6)
    out = ref.eqlr_conv2d(x, w, b, down=2, activation="linear")
    want = F.avg_pool2d(F.conv2d(x, w * math.sqrt(2) / math.sqrt(27), padding=1), 2) + b.view(1, -1, 1, 1)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-6)


def test_bad_arguments():
    x = torch.randn(1, 2, 4, 4)
    w = torch.randn(3, 2, 3, 3)
    with pytest.raises(ValueError):
        ref.eqlr_conv2d(x, w, up=3)
    with pytest.raises(ValueError):
        ref.eqlr_conv2d(x, w, activation="relu")
