"""Triton fused equalized-LR conv/linear against the reference (interpreter on CPU, compiled on CUDA).

float32 tolerances: rtol=1e-4, atol=1e-5 (observed differences are ~1e-6: only summation order differs).
Shapes are tiny and awkward on purpose: batch 1, channel counts that are not multiples of the blocks
(16/32/64), odd spatial sizes, 1x1/3x3/4x4 kernels, fused up and down.
"""
import pytest
import torch

pytest.importorskip("triton")
from faststeal import kernels as K  # noqa: E402

TOL = dict(rtol=1e-4, atol=1e-5)

CASES = [  # (n, c, size, co, k, up, down, pixelnorm, activation, bias)
    (1, 3, 5, 5, 3, 1, 1, False, "lrelu", True),
    (2, 5, 7, 6, 3, 2, 1, True, "lrelu", True),      # generator block: upsample + conv + pixel norm
    (2, 6, 9, 4, 3, 1, 2, False, "lrelu", True),     # discriminator block, odd size: conv + 2x2 average
    (1, 4, 4, 7, 4, 1, 1, True, "lrelu", True),      # PGGAN 4x4 head (valid conv)
    (2, 3, 5, 5, 1, 1, 1, False, "linear", False),   # toRGB-like 1x1, no bias
    (1, 3, 6, 5, 1, 1, 2, True, "lrelu", True),
    (2, 3, 3, 4, 3, 2, 2, False, "linear", True),
    (1, 17, 3, 33, 3, 1, 1, False, "lrelu", True),   # channels crossing block boundaries
    (1, 70, 2, 70, 3, 1, 1, True, "lrelu", True),    # more channels than BLOCK_N/BLOCK_K; pixel norm wide
]


def _run(impl, x, w, b, **kw):
    x = x.detach().requires_grad_(True)
    w = w.detach().requires_grad_(True)
    b = b.detach().requires_grad_(True) if b is not None else None
    y = K.eqlr_conv2d(x, w, b, impl=impl, **kw)
    g = torch.sin(torch.arange(y.numel(), dtype=y.dtype, device=y.device)).view_as(y)
    grads = torch.autograd.grad(y, [t for t in (x, w, b) if t is not None], g)
    return (y, *grads)


@pytest.mark.parametrize("case", CASES)
def test_conv_forward_backward_matches_reference(case, device):
    n, c, s, co, k, up, down, pn, act, has_b = case
    g = torch.Generator().manual_seed(sum(case[:5]))
    x = torch.randn(n, c, s, s, generator=g)
    w = torch.randn(co, c, k, k, generator=g)
    b = torch.randn(co, generator=g) if has_b else None
    x, w, b = (t.to(device) if t is not None else None for t in (x, w, b))
    kw = dict(up=up, down=down, pixelnorm=pn, activation=act, act_gain=1.25, alpha=0.2)
    want = _run("torch", x, w, b, **kw)
    got = _run("triton", x, w, b, **kw)
    assert got[0].shape == want[0].shape
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, **TOL)


def test_conv_stride_and_explicit_padding(device):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 3, 7, 7, generator=g).to(device)
    w = torch.randn(4, 3, 3, 3, generator=g).to(device)
    b = torch.randn(4, generator=g).to(device)
    for kw in (dict(stride=2, padding=1), dict(stride=1, padding=0), dict(stride=2, padding=0, down=2)):
        for a, e in zip(_run("triton", x, w, b, **kw), _run("torch", x, w, b, **kw)):
            torch.testing.assert_close(a, e, **TOL)


@pytest.mark.parametrize("pixelnorm", [False, True])
def test_linear_matches_reference(pixelnorm, device):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(3, 10, generator=g).to(device)
    w = torch.randn(19, 10, generator=g).to(device)
    b = torch.randn(19, generator=g).to(device)
    outs = []
    for impl in ("torch", "triton"):
        xx, ww, bb = (t.clone().requires_grad_(True) for t in (x, w, b))
        y = K.eqlr_linear(xx, ww, bb, impl=impl, pixelnorm=pixelnorm, gain=1.0, activation="lrelu")
        outs.append((y, *torch.autograd.grad(y.pow(2).sum(), (xx, ww, bb))))
    for a, e in zip(outs[1], outs[0]):
        torch.testing.assert_close(a, e, **TOL)


def test_double_backward_gradient_penalty(device):
    """create_graph=True (R1 / WGAN-GP) works through the Triton path and matches the reference."""
    g = torch.Generator().manual_seed(9)
    x0 = torch.randn(2, 3, 4, 4, generator=g).to(device)
    w0 = torch.randn(5, 3, 3, 3, generator=g).to(device)
    res = []
    for impl in ("torch", "triton"):
        x = x0.clone().requires_grad_(True)
        w = w0.clone().requires_grad_(True)
        y = K.eqlr_conv2d(x, w, None, impl=impl, down=2)
        (gx,) = torch.autograd.grad(y.sum(), x, create_graph=True)
        res.append(torch.autograd.grad(gx.pow(2).sum(), w)[0])
    torch.testing.assert_close(res[1], res[0], **TOL)


def test_no_grad_forward(device):
    x = torch.randn(1, 2, 3, 3, device=device)
    w = torch.randn(3, 2, 3, 3, device=device)
    with torch.no_grad():
        torch.testing.assert_close(K.eqlr_conv2d(x, w, impl="triton"), K.eqlr_conv2d(x, w, impl="torch"), **TOL)


def test_negative_activation_gain(device):
    g = torch.Generator().manual_seed(11)
    x = torch.randn(1, 3, 4, 4, generator=g).to(device)
    w = torch.randn(5, 3, 3, 3, generator=g).to(device)
    b = torch.randn(5, generator=g).to(device)
    kw = dict(act_gain=-0.5, pixelnorm=True)
    for a, e in zip(_run("triton", x, w, b, **kw), _run("torch", x, w, b, **kw)):
        torch.testing.assert_close(a, e, **TOL)
