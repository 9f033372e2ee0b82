"""Launch settings per shape and architecture; the split pixel norm they choose for wide layers matches the
reference (interpreter on CPU, compiled on CUDA). Tolerances as in test_triton_conv.py."""
import pytest
import torch
from faststeal.kernels import launch_settings as LS

TOL = dict(rtol=1e-4, atol=1e-5)


def test_architecture_mapping():
    for arch in LS.SHARED_MEMORY_LIMIT:
        assert LS.settings_arch(arch) == arch
    assert LS.settings_arch(None) == LS.PORTABLE_ARCH       # the interpreter
    assert LS.settings_arch(100) == 90                      # data-centre Blackwell: large shared memory
    assert LS.settings_arch(120) == LS.PORTABLE_ARCH        # consumer Blackwell: 99 KiB
    assert LS.settings_arch(75) == LS.PORTABLE_ARCH


def test_pixel_norm_mode_and_blocks():
    narrow = LS.conv_fwd(3, 16, 9, 1, True, 86)
    assert (narrow["PIXELNORM"], narrow["BLOCK_N"]) == (1, 16)
    assert LS.conv_fwd(64, 64, 9, 1, True, 86)["PIXELNORM"] == 1
    wide = LS.conv_fwd(512, 512, 9, 1, True, 86)
    assert (wide["PIXELNORM"], wide["BLOCK_N"]) == (2, LS.CONV_MAX_BLOCK_N)  # no channel limit: split
    assert LS.conv_fwd(512, 512, 9, 1, False, 86)["PIXELNORM"] == 0


def test_pipeline_depth_follows_shared_memory():
    for down in (1, 2):
        big = [LS.conv_fwd(64, 64, 9, down, False, a)["num_stages"] for a in (80, 90)]
        small = [LS.conv_fwd(64, 64, 9, down, False, a)["num_stages"] for a in (86, 89)]
        assert min(big) > max(small)
    assert LS.conv_fwd(64, 64, 16, 2, False, 86)["num_stages"] < LS.conv_fwd(64, 64, 9, 1, False, 86)["num_stages"]


@pytest.mark.parametrize("co,up", [(150, 1), (130, 2)])
def test_split_pixel_norm_matches_reference(co, up, device):
    """More channels than one tile: partial sums per tile, then the finishing kernel; backward loops over chunks."""
    pytest.importorskip("triton")
    from faststeal import kernels as K
    assert LS.conv_fwd(4, co, 9, 1, True, None)["PIXELNORM"] == 2
    g = torch.Generator().manual_seed(co)
    x0 = torch.randn(2, 4, 3, 3, generator=g).to(device)
    w0 = torch.randn(co, 4, 3, 3, generator=g).to(device)
    b0 = torch.randn(co, generator=g).to(device)
    res = []
    for impl in ("torch", "triton"):
        x, w, b = (t.clone().requires_grad_(True) for t in (x0, w0, b0))
        y = K.eqlr_conv2d(x, w, b, impl=impl, up=up, pixelnorm=True, act_gain=1.25)
        gy = torch.cos(torch.arange(y.numel(), dtype=y.dtype, device=y.device)).view_as(y)
        res.append((y, *torch.autograd.grad(y, (x, w, b), gy)))
    for a, e in zip(res[1], res[0]):
        torch.testing.assert_close(a, e, **TOL)
