import pytest
import torch

from faststeal.ownership.pattern import Band, band_mask, coefficients, dct_matrix, from_coefficients, key_signs, pattern


def test_dct_is_orthonormal():
    d = dct_matrix(16)
    assert torch.allclose(d @ d.T, torch.eye(16, dtype=torch.float64), atol=1e-12)


def test_coefficients_invert_inside_the_band():
    band = Band(1, 5)
    k = int(band_mask(16, band).sum()) * 3
    coef = torch.randn(2, k, dtype=torch.float64)
    images = from_coefficients(coef, 3, 16, band)
    assert torch.allclose(coefficients(images, band), coef, atol=1e-10)


def test_pattern_is_keyed_unit_rms_and_band_limited():
    band = Band(1, 8)
    a, b = pattern("owner", 1, 32, band), pattern("owner", 1, 32, band)
    assert torch.equal(a, b)
    assert abs(float(a.pow(2).mean()) - 1) < 1e-9
    other = pattern("owner2", 1, 32, band)
    assert abs(float((a * other).mean())) < 0.5          # unrelated keys: near-orthogonal patterns
    spectrum = dct_matrix(32) @ a[0] @ dct_matrix(32).T
    assert float(spectrum[~band_mask(32, band)].abs().max()) < 1e-9


def test_signs_are_plus_minus_one_and_differ_between_keys():
    s = key_signs("k", 1000)
    assert set(s.tolist()) == {-1.0, 1.0}
    assert not torch.equal(s, key_signs("k2", 1000))
    with pytest.raises(ValueError):
        key_signs("", 10)


def test_empty_band_is_refused():
    with pytest.raises(ValueError, match="holds no frequency"):
        band_mask(8, Band(20, 30))
    with pytest.raises(ValueError, match="low < high"):
        Band(3, 2).check()
