"""The targets kept with the experiments: files the results pages measure, so a rerun needs no retraining."""
from pathlib import Path

import torch

from faststeal.checkpoint import load_checkpoint
from faststeal.targets import open_target

TARGETS = Path(__file__).resolve().parents[2] / "experiments" / "targets"


def test_the_icons_pggan_target_is_the_documented_recipe_and_samples_colour_images():
    path = TARGETS / "icons64-pggan.pt"
    state = load_checkpoint(path)
    config = state["config"]
    assert (config["arch"], config["resolution"], config["channels"], config["width"], config["batch"]) == \
        ("pggan", 64, 3, 64, 32)
    assert (config["kimg"], config["phase_kimg"], config["seed"]) == (200.0, 6.0, 0)
    assert state["progress"]["kimg"] >= 200.0 and "optim_G" not in state        # finished, exported slim
    target = open_target(str(path))
    images = target.sample(8, seed=0)
    assert images.shape == (8, 3, 64, 64) and torch.isfinite(images).all()
    assert images.float().std(dim=0).mean() > 0          # different codes give different images
    assert torch.equal(images, target.sample(8, seed=0))
