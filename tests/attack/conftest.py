import pytest
import torch

from faststeal.checkpoint import save_checkpoint
from faststeal.models import build_discriminator, build_generator


@pytest.fixture(scope="session")
def tiny_target(tmp_path_factory):
    """An untrained 8x8 PGGAN saved as a target checkpoint (weights are random but fixed)."""
    torch.manual_seed(0)
    g, d = build_generator("pggan", 8, 1, 8, 8), build_discriminator("pggan", 8, 1, 8)
    path = tmp_path_factory.mktemp("target") / "target.pt"
    config = dict(arch="pggan", resolution=8, channels=1, latent_dim=8, width=8, data_source=None)
    save_checkpoint({"config": config, "G_ema": g.state_dict(), "D": d.state_dict(), "progress": {"kimg": 0}},
                    path)
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """FID statistics of test data go to a temporary cache, never the user's."""
    monkeypatch.setenv("FASTSTEAL_CACHE", str(tmp_path / "cache"))
