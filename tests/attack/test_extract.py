import json

import numpy as np
import pytest

from faststeal.attack.extract import ExtractOptions, run_extract


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_end_to_end_extract_writes_every_report_file(tiny_target, tmp_path):
    real = np.random.default_rng(0).integers(0, 256, (64, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "real.npy", real)
    opts = ExtractOptions(target=str(tiny_target), attack="sngan", queries=48, attack_kimg=0.016, attack_width=8,
                          attack_latent_dim=8, batch=8, fid_n=16, real=str(tmp_path / "real.npy"), real_count=16,
                          target_discriminator=True, finetune_kimg=0.008, eval_data=str(tmp_path / "real.npy"),
                          out=str(tmp_path / "run"), progress=False)
    metrics = run_extract(opts)
    run = tmp_path / "run"
    for name in ("config.json", "metrics.json", "report.md", "samples.png", "attack.pt", "attack-finetuned.pt",
                 "attack-mixed.pt", "attack-drs.pt", "queries/meta.json"):
        assert (run / name).exists(), name
    saved = json.loads((run / "metrics.json").read_text())
    for key in ("fidelity", "accuracy", "target_fid", "queries"):
        assert key in saved
    assert saved["queries"] == 48 and saved["fidelity"] > 0 and saved["accuracy"] > 0
    assert [v["variant"].split()[0] for v in metrics["variants"]] == ["queries", "+", "queries", "DRS"]
    assert json.loads((run / "config.json").read_text())["versions"]["torch"]
    assert "fidelity" in (run / "report.md").read_text()
    # A second run reuses the queries and the finished attacks instead of paying again.
    again = run_extract(opts)
    assert again["fidelity"] == pytest.approx(metrics["fidelity"])
