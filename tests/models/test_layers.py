import math

import torch
import torch.nn.functional as F

from faststeal import kernels
from faststeal.models.layers import (
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStddev,
    SNConv2d,
    SNLinear,
    apply_spectral_norm,
)


def test_equalized_conv_scales_by_gain_over_sqrt_fan_in():
    torch.manual_seed(0)
    layer = EqualizedConv2d(5, 7, 3, gain=1.3, activation="linear")
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, 5, 9, 9)
    expected = F.conv2d(x, layer.weight * (1.3 / math.sqrt(5 * 3 * 3)), layer.bias, padding=1)
    torch.testing.assert_close(layer(x), expected)


def test_equalized_conv_up_down_and_lrelu():
    torch.manual_seed(1)
    x = torch.randn(1, 3, 6, 6)
    up = EqualizedConv2d(3, 4, 3, up=2)
    ref = F.leaky_relu(F.conv2d(F.interpolate(x, scale_factor=2), up.weight * math.sqrt(2) / math.sqrt(27),
                                up.bias, padding=1), 0.2)
    torch.testing.assert_close(up(x), ref)
    down = EqualizedConv2d(3, 4, 3, down=2, activation="linear")
    assert down(x).shape == (1, 4, 3, 3)
    head = EqualizedConv2d(3, 4, 4, padding=0)
    assert head(torch.randn(2, 3, 4, 4)).shape == (2, 4, 1, 1)


def test_equalized_linear_fan_in():
    layer = EqualizedLinear(10, 3, gain=2.0, activation="linear")
    x = torch.randn(4, 10)
    torch.testing.assert_close(layer(x), x @ (layer.weight * 2.0 / math.sqrt(10)).t())


def test_pixel_norm_gives_unit_rms_per_pixel():
    x = torch.randn(3, 16, 5, 5) * 7
    y = kernels.pixel_norm(x)
    torch.testing.assert_close(y.pow(2).mean(dim=1), torch.ones(3, 5, 5), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y * x.pow(2).mean(1, keepdim=True).sqrt(), x, rtol=1e-4, atol=1e-4)


def test_minibatch_stddev_shape_and_value():
    torch.manual_seed(2)
    x = torch.randn(8, 3, 4, 4)
    y = MinibatchStddev(group_size=4)(x)
    assert y.shape == (8, 4, 4, 4)
    torch.testing.assert_close(y[:, :3], x)
    # Groups are samples {i, i+2, i+4, i+6}: column i % 2 of a (4, 2, ...) reshape.
    for col in range(2):
        members = x[col::2]
        expected = (members.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        for i in range(col, 8, 2):
            torch.testing.assert_close(y[i, 3], torch.full((4, 4), float(expected)))
    # A batch of identical samples has (almost) zero spread.
    same = MinibatchStddev()(x[:1].repeat(4, 1, 1, 1))
    assert float(same[:, 3].max()) < 1e-3
    # Batch size not divisible by the group: the whole batch is one group.
    assert MinibatchStddev(4)(torch.randn(6, 2, 3, 3)).shape == (6, 3, 3, 3)


def test_spectral_norm_converges_to_largest_singular_value():
    torch.manual_seed(3)
    model = torch.nn.Sequential(SNConv2d(4, 6, 3), SNLinear(12, 5)).train()
    for _ in range(200):
        apply_spectral_norm(model)
    for layer in model:
        w = layer.weight.reshape(layer.weight.shape[0], -1)
        torch.testing.assert_close(torch.linalg.matrix_norm(layer.weight_sn.reshape(w.shape), 2),
                                   torch.tensor(1.0), rtol=1e-4, atol=1e-4)


def test_spectral_norm_eval_mode_keeps_u():
    model = torch.nn.Sequential(SNLinear(6, 4))
    model.train()
    apply_spectral_norm(model)
    u = model[0].u.clone()
    model.eval()
    apply_spectral_norm(model)
    assert torch.equal(model[0].u, u)
