"""Test-wide settings. Triton must see TRITON_INTERPRET before it is first imported, so it is set here."""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _thread_policy_restored():
    """A CLI test that runs without --threads starts a ThreadGovernor; it must not outlive that test.

    Left in place it would re-fit torch's threads inside later tests (on a machine whose neighbours differ),
    and the tests that compare bits computed with a fixed thread count would fail there only.
    """
    from faststeal import cpu

    threads = torch.get_num_threads()
    yield
    cpu._governor = None
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """FID statistics computed by tests go to a temporary cache, never the user's."""
    monkeypatch.setenv("FASTSTEAL_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def tiny_target(tmp_path_factory):
    """An untrained 8x8 grey PGGAN (latent 8) saved as a target checkpoint; random but fixed weights."""
    from faststeal.checkpoint import save_checkpoint
    from faststeal.models import build_discriminator, build_generator

    torch.manual_seed(0)
    g, d = build_generator("pggan", 8, 1, 8, 8), build_discriminator("pggan", 8, 1, 8)
    path = tmp_path_factory.mktemp("target") / "target.pt"
    config = dict(arch="pggan", resolution=8, channels=1, latent_dim=8, width=8, data_source=None)
    save_checkpoint({"config": config, "G_ema": g.state_dict(), "D": d.state_dict(), "progress": {"kimg": 0}},
                    path)
    return path
