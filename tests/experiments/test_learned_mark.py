"""experiments/learned_mark.py: the learned mark's pixel budget, that its coder learns, and its exact null."""

import pytest
import torch


@pytest.fixture(scope="module")
def lm(load_script):
    return load_script("experiments/learned_mark")


def _images(n=64, res=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, res, res, generator=g) * 255).to(torch.uint8)


def test_the_mark_spends_the_shipped_marks_pixel_budget(lm):
    torch.manual_seed(0)
    enc = lm.Encoder(1, 8, 16)
    white = torch.full((4, 1, 16, 16), 200, dtype=torch.uint8)     # no clipping at 200 +- a few levels
    bits = torch.ones(4, 8)
    served = lm.mark(enc, white, bits, 6.0, differentiable=True)
    rms = (served - white.float()).pow(2).mean((1, 2, 3)).sqrt()
    # strength 6 RMS on white, times the image (200/255), plus rounding to whole levels
    assert torch.allclose(rms, torch.full((4,), 6.0 * 200 / 255), atol=0.15)
    black = torch.zeros(2, 1, 16, 16, dtype=torch.uint8)
    assert torch.equal(lm.mark(enc, black, bits[:2], 6.0), black)   # black pixels carry nothing


def test_the_coder_learns_to_read_its_bits(lm):
    enc, dec = lm.train_coder(_images(256), bits=4, strength=24.0, steps=150, seed=0, log=lambda *_: None)
    images = _images(200, seed=1)
    bits = torch.tensor([1.0, -1.0, -1.0, 1.0]).expand(200, -1)
    with torch.no_grad():
        read = dec(lm.to_unit(lm.mark(enc, images, bits, 24.0))).sign()
    assert (read == bits).float().mean() > 0.8


def test_a_wrong_key_is_one_more_draw_of_the_exact_null(lm):
    torch.manual_seed(0)
    dec = lm.Decoder(1, 16, 16)
    images, reference = _images(300, seed=2), torch.zeros(16, dtype=torch.float64)
    ps = [lm.score(dec, images, reference, f"wrong-{i}")["p"] for i in range(200)]
    # p = (1 + draws reaching z) / (1 + draws): about uniform over keys, never below 1 / 10,001
    assert min(ps) >= 1 / 10001
    assert 0.3 < sum(ps) / len(ps) < 0.7
    assert sum(p < 0.05 for p in ps) < 25
