"""Test-wide settings. Triton must see TRITON_INTERPRET before it is first imported, so it is set here."""
import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

MAX_THREADS = min(2, torch.get_num_threads())     # OMP_NUM_THREADS=1 caps it, as for any torch program
LOOK_SECONDS = 5.0
torch.set_num_threads(MAX_THREADS)
_watch = {"governor": None, "threads": MAX_THREADS}


@pytest.fixture(autouse=True)
def _thread_policy():
    """Each test runs with the cores other processes leave free (at most MAX_THREADS), fixed for the test.

    The suite then shares a machine as faststeal's commands do: beside another job it uses one thread instead
    of fighting for both cores (looked at every LOOK_SECONDS, not per test). Tests that compare bits computed
    with a given thread count set it themselves. A CLI test that runs without --threads starts a
    ThreadGovernor; it ends with the test, or it would re-fit threads inside later tests.
    """
    from faststeal import cpu

    watch = _watch
    if watch["governor"] is None:
        watch["governor"] = cpu.ThreadGovernor(cpu.available_cores(), interval=LOOK_SECONDS)
    governor = watch["governor"]
    if governor.due():
        others = governor.others()
        if others is not None:
            watch["threads"] = min(MAX_THREADS, governor.fair_threads(others))
    torch.set_num_threads(watch["threads"])
    yield
    cpu._governor = None
    torch.set_num_threads(watch["threads"])


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


@pytest.fixture(scope="session")
def dcgan_specs(tmp_path_factory):
    """{kind: spec}: one DCGAN-tutorial generator (64x64 RGB) as py:, TorchScript, torch.export and ONNX."""
    from foreign_export import export_all

    return export_all(tmp_path_factory.mktemp("dcgan"))


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def load_script():
    """load_script("folder/name") -> folder/name.py under the repository root as a module (scripts/ and
    experiments/ hold files, not package modules), registered while the test file runs (dataclasses look
    their module up in sys.modules)."""
    loaded = []

    def load(relative: str):
        path = REPO / f"{relative}.py"
        spec = importlib.util.spec_from_file_location(f"{path.parent.name}_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        loaded.append(spec.name)
        return module

    yield load
    for name in loaded:
        sys.modules.pop(name, None)
