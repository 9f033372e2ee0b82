"""Fixtures for the defense tests: a tiny random 8x8 target and a private statistics cache."""
import pytest
import torch

from faststeal.checkpoint import save_checkpoint
from faststeal.models import build_discriminator, build_generator


@pytest.fixture(scope="session", autouse=True)
def _two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(min(2, previous))
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTSTEAL_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def tiny_target(tmp_path_factory):
    """An untrained 8x8 grey PGGAN (latent 8) saved as a target checkpoint; random but fixed weights."""
    torch.manual_seed(0)
    g, d = build_generator("pggan", 8, 1, 8, 8), build_discriminator("pggan", 8, 1, 8)
    path = tmp_path_factory.mktemp("target") / "target.pt"
    config = dict(arch="pggan", resolution=8, channels=1, latent_dim=8, width=8, data_source=None)
    save_checkpoint({"config": config, "G_ema": g.state_dict(), "D": d.state_dict(), "progress": {"kimg": 0}},
                    path)
    return path


@pytest.fixture
def images():
    """12 random uint8 images, grey and colour, including the extreme values 0 and 255."""
    g = torch.Generator().manual_seed(1)
    grey = torch.randint(0, 256, (6, 1, 16, 16), generator=g, dtype=torch.uint8)
    grey[0] = 0
    grey[1] = 255
    colour = torch.randint(0, 256, (6, 3, 16, 16), generator=g, dtype=torch.uint8)
    return {"grey": grey, "colour": colour}
