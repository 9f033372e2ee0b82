import pytest
import torch

from faststeal.defense import DefenseError, parse_pipeline


def test_watermark_needs_a_key_and_a_valid_band():
    with pytest.raises(DefenseError, match="give the owner's key"):
        parse_pipeline("watermark:strength=4")
    with pytest.raises(DefenseError, match="low < high"):
        parse_pipeline("watermark:key=a,low=5,high=2")


def test_watermark_is_modulated_by_the_image_and_off_at_zero():
    black, white = torch.zeros(2, 1, 32, 32, dtype=torch.uint8), torch.full((2, 1, 32, 32), 200, dtype=torch.uint8)
    mark = parse_pipeline("watermark:key=a,strength=6").image_transform
    assert torch.equal(mark(black), black)                      # black pixels carry nothing
    change = mark(white).float() - white.float()
    rms = float(change.pow(2).mean().sqrt())
    assert abs(rms - 6 * 200 / 255) < 0.3                        # strength is the RMS on white, scaled by x/255
    assert torch.equal(change[0], change[1])                     # the same pattern on every image
    assert torch.equal(parse_pipeline("watermark:key=a,strength=0").image_transform(white), white)


def test_spec_hides_the_key():
    spec = parse_pipeline("watermark:key=hunter2,strength=6").spec()
    assert "hunter2" not in spec and spec.startswith("watermark:key=#")
    assert spec != parse_pipeline("watermark:key=hunter3,strength=6").spec()
