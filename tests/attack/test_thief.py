"""Training one attack GAN: a stored attack is reused only when it was trained the same way."""
import pytest
import torch

from faststeal.attack.thief import StaleCheckpoint, train_attack
from faststeal.checkpoint import load_checkpoint, save_checkpoint
from faststeal.data import ImageSet
from faststeal.train import TrainConfig


def _data():
    g = torch.Generator().manual_seed(0)
    return ImageSet(torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8, generator=g), None, "rand", "rand")


def test_a_file_from_before_a_setting_existed_is_reused_when_the_run_uses_its_default(tmp_path):
    config = dict(arch="fast", resolution=8, channels=1, latent_dim=4, width=8, batch=8, kimg=0.016)
    path = tmp_path / "attack.pt"
    first = train_attack(TrainConfig(**config), _data(), path, progress=False)
    state = load_checkpoint(path)
    del state["config"]["perceptual"]                      # as written before the perceptual term existed
    save_checkpoint(state, path)
    again = train_attack(TrainConfig(**config), _data(), path, progress=False)
    assert again["kimg"] == first["kimg"]
    with pytest.raises(StaleCheckpoint, match="ema_kimg"):
        train_attack(TrainConfig(**config, ema_kimg=1.0), _data(), path, progress=False)
