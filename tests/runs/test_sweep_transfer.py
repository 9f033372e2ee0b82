import json

import numpy as np
import pytest

from faststeal.checkpoint import save_checkpoint
from faststeal.models import build_discriminator, build_generator
from faststeal.runs.options import ExtractOptions
from faststeal.runs.sweep import run_sweep
from faststeal.runs.transfer import TransferOptions, run_transfer


@pytest.fixture
def real_npy(tmp_path):
    np.save(tmp_path / "real.npy", np.random.default_rng(0).integers(0, 256, (32, 8, 8), dtype=np.uint8))
    return str(tmp_path / "real.npy")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_sweep_trains_one_attack_per_budget_and_plots(tiny_target, tmp_path, real_npy):
    opts = ExtractOptions(target=str(tiny_target), attack="pggan", queries=32, attack_kimg=0.008, attack_width=8,
                          attack_latent_dim=8, batch=4, fid_n=8, eval_data=real_npy, out=str(tmp_path / "s"),
                          progress=False)
    metrics = run_sweep(opts, [32, 16])
    assert [r["queries"] for r in metrics["sweep"]] == [16, 32]
    assert (tmp_path / "s" / "sweep.png").exists() and (tmp_path / "s" / "attack-16.pt").exists()
    assert json.loads((tmp_path / "s" / "queries" / "meta.json").read_text())["count"] == 32
    assert all(r["attack_kimg_reached"] >= 0.008 and r["train_seconds"] > 0 for r in metrics["sweep"])
    # where the wall time went, both budgets' training and measuring added up
    saved = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert list(saved["stage_seconds"]) == ["queries", "training", "measurement", "plot"]
    assert saved["stage_seconds"]["training"] >= sum(r["train_seconds"] for r in metrics["sweep"]) - 0.1
    assert sum(saved["stage_seconds"].values()) <= saved["wall_seconds"] + 0.5
    assert "wall time by stage (every budget together): queries " in (tmp_path / "s" / "report.md").read_text()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_transfer_compares_finetuning_with_scratch(tmp_path, real_npy):
    g, d = build_generator("sngan", 8, 1, 8, 8), build_discriminator("sngan", 8, 1, 8)
    src = save_checkpoint({"config": dict(arch="sngan", resolution=8, channels=1, latent_dim=8, width=8),
                           "G_ema": g.state_dict(), "D": d.state_dict(), "progress": {}}, tmp_path / "src.pt")
    m = run_transfer(TransferOptions(source=str(src), data=real_npy, kimg=0.008, evals=1, fid_n=8, batch=4,
                                     out=str(tmp_path / "t"), progress=False))
    assert set(m["curves"]) == {"fine-tuned stolen model", "from scratch"}
    assert all(len(c) == 2 for c in m["curves"].values())
    assert (tmp_path / "t" / "transfer.png").exists() and (tmp_path / "t" / "report.md").exists()
    assert list(m["stage_seconds"]) == ["new-domain data and its statistics", "training, fine-tuned stolen model",
                                        "FID along the curves", "training, from scratch", "plot"]
    assert "This run's wall time by stage: new-domain data" in (tmp_path / "t" / "report.md").read_text()
