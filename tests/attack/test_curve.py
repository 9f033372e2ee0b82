"""The convergence plot: a band where the points carry bootstrap intervals, none where they do not."""
import numpy as np
from PIL import Image

from faststeal.attack.curve import plot_curves


def _pixels(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def test_points_with_intervals_are_drawn_with_a_band(tmp_path):
    points = [{"train_seconds": t, "fidelity_fid": f, "fidelity_kid": k} for t, f, k in
              ((0, 300.0, 0.30), (10, 200.0, 0.20), (20, 150.0, 0.12))]
    banded = [dict(p, fidelity_fid_ci=[p["fidelity_fid"] * 0.8, p["fidelity_fid"] * 1.2],
                   fidelity_kid_ci=[p["fidelity_kid"] - 0.05, p["fidelity_kid"] + 0.05]) for p in points]
    reference = {"n": 128, "fid_floor": 60.0, "kid_floor": 0.001}
    plot_curves({"copy": points}, reference, tmp_path / "plain.png")
    plot_curves({"copy": banded}, reference, tmp_path / "band.png")
    plain, band = _pixels(tmp_path / "plain.png"), _pixels(tmp_path / "band.png")
    assert plain.shape == band.shape
    changed = np.abs(plain - band).sum(axis=2) > 0
    assert changed.mean() > 0.01        # the bands cover a visible share of both panels
