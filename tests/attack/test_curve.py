"""The convergence plot: a band where the points carry bootstrap intervals, none where they do not."""
import numpy as np
import pytest
import torch
from PIL import Image

from faststeal.attack.curve import FidelityProbe, held_out_l1, plot_curves


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


def test_the_held_out_l1_is_the_paired_l1_s_scale():
    black, white = torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    assert held_out_l1(black, black) == 0.0
    assert held_out_l1(black, white) == pytest.approx(2.0)          # -1 against +1
    half = white.clone()
    half[0] = 0                                                     # one image of two wrong: half the distance
    assert held_out_l1(half, white) == pytest.approx(1.0)


class _Black(torch.nn.Module):
    """A generator of the target's shape that paints every code black."""
    def __init__(self, target):
        super().__init__()
        self.latent_dim, self.channels, self.resolution = target.latent_dim, target.channels, target.resolution

    def forward(self, z):
        return -torch.ones(z.shape[0], self.channels, self.resolution, self.resolution)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_paired_probe_compares_the_copy_with_the_target_code_by_code():
    from faststeal.checkpoint import ImageGenerator
    from faststeal.models import build_generator
    from faststeal.sampling import PROBE_SEED, generate

    torch.manual_seed(0)
    target = ImageGenerator(build_generator("pggan", 8, 1, 8, 8)).eval()
    paired = FidelityProbe(target, n=4, paired=True)
    assert paired(target)["held_out_l1"] == 0.0                           # the target itself, code by code
    # black against the target's probe sample: the distance of each pixel from -1, on the target's own codes
    want = generate(target, 4, seed=PROBE_SEED).float().mean() / 127.5
    assert paired(_Black(target))["held_out_l1"] == pytest.approx(float(want))
    assert "held_out_l1" not in FidelityProbe(target, n=4)(target)        # from images alone: no pairs
