"""The project's Inception gives the TorchScript module's features; the input protocol holds on every path."""
import numpy as np
import pytest
import torch

from faststeal.metrics import preprocess, protocol
from faststeal.metrics.inception import FIDInception, WeightsError, read_weights


def rel_err(a, b):
    return float((a - b).norm() / b.norm())


def test_features_equal_torchscript_random_and_real(extractor, reference, fmnist_test):
    random = torch.rand(2, 3, 299, 299) * 2 - 1                 # TF range directly
    real = preprocess(fmnist_test[:3])                          # Fashion-MNIST through the protocol
    x = torch.cat([random, real])
    with torch.inference_mode():
        ours = extractor.model(x.contiguous(memory_format=torch.channels_last))
        ref = reference(x.contiguous())
    assert ours.shape == (5, 2048)
    for i in range(5):
        assert rel_err(ours[i], ref[i]) < 1e-4
    assert float((ours - ref).abs().max() / ref.abs().max()) < 1e-4


def test_protocol_layouts_agree(fmnist_test):
    """NHW / NHWC numpy, NCHW uint8, grey vs repeated RGB and [-1, 1] floats give the same network input."""
    imgs = fmnist_test[:2]
    nchw = torch.from_numpy(imgs)[:, None]
    inputs = [preprocess(imgs), preprocess(imgs[..., None]), preprocess(nchw),
              preprocess(nchw.repeat(1, 3, 1, 1)), preprocess(nchw.float() / 127.5 - 1)]
    assert inputs[0].shape == (2, 3, 299, 299) and inputs[0].is_contiguous(memory_format=torch.channels_last)
    for x in inputs[1:]:
        torch.testing.assert_close(x, inputs[0], rtol=0, atol=1e-6)


def test_extractor_uses_the_protocol(extractor, fmnist_test):
    with torch.inference_mode():
        direct = extractor.model(preprocess(fmnist_test[:1]))
    torch.testing.assert_close(extractor(fmnist_test[:1]), direct.float())


def test_299_is_not_resampled_and_resize_is_bilinear():
    x = torch.randint(0, 256, (1, 3, 299, 299), dtype=torch.uint8)
    assert torch.equal(protocol.resize_299(x), x.float())
    small = torch.tensor([[[[0, 255]]]], dtype=torch.uint8).expand(1, 1, 1, 2)
    row = protocol.resize_299(small)[0, 0, 0]
    assert row[0] == 0 and row[-1] == 255 and torch.all(row[1:] >= row[:-1])  # monotone ramp, no overshoot


def test_input_validation(extractor):
    with pytest.raises(ValueError, match="1 or 3 channels"):
        extractor(torch.zeros(1, 4, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        extractor(torch.full((1, 3, 8, 8), 200.0))
    with pytest.raises(ValueError, match="NHWC or NHW"):
        extractor(np.zeros((8, 8), np.uint8))


def test_weights_layout_checked(tmp_path, reference):
    state = {k.removeprefix("net."): v for k, v in reference.named_parameters()}
    plain = tmp_path / "w.pt"
    torch.save({k: v for k, v in state.items() if k != "layers.mixed_10.conv.var"}, plain)
    with pytest.raises(WeightsError, match="mixed_10.conv.var"):
        FIDInception().load_state(read_weights(plain))
    torch.save({"x": torch.zeros(1)}, plain)
    with pytest.raises(WeightsError, match="not the FID Inception layout"):
        read_weights(plain)
    with pytest.raises(WeightsError, match="not found"):
        read_weights(tmp_path / "missing.pt")
