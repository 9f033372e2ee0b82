import json

import numpy as np
import pytest
import torch

from faststeal.runs.extract import run_extract
from faststeal.runs.options import ExtractOptions


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_end_to_end_extract_writes_every_report_file(tiny_target, tmp_path):
    real = np.random.default_rng(0).integers(0, 256, (64, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "real.npy", real)
    opts = ExtractOptions(target=str(tiny_target), attack="sngan", queries=48, attack_kimg=0.016, attack_width=8,
                          attack_latent_dim=8, batch=8, fid_n=16, real=str(tmp_path / "real.npy"), real_count=16,
                          target_discriminator=True, finetune_kimg=0.008, eval_data=str(tmp_path / "real.npy"),
                          curve_n=8, out=str(tmp_path / "run"), progress=False)
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
    report = (run / "report.md").read_text()
    assert "fidelity" in report and "copy_coverage" in report and "fidelity_lo" in report
    lo, hi = saved["fidelity_ci"]
    assert 0 < lo <= hi   # the interval of the image-only copy, over both FID samples
    assert not any("held_out_l1" in p for p in saved["curve"])    # from images alone no code pairs an image
    # A second run reuses the queries and the finished attacks instead of paying again.
    again = run_extract(opts)
    assert again["fidelity"] == pytest.approx(metrics["fidelity"])


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_extract_under_torchrun_matches_one_process(tiny_target, tmp_path):
    """`torchrun --nproc_per_node 2 -m faststeal extract ...` (gloo): sharded queries, data-parallel attack
    training and sharded FID give the single-process numbers for every variant; only rank 0 prints."""
    import os
    import subprocess
    import sys

    from multiproc import free_port

    np.save(tmp_path / "real.npy", np.random.default_rng(0).integers(0, 256, (64, 8, 8), dtype=np.uint8))
    real = str(tmp_path / "real.npy")
    opts = ExtractOptions(target=str(tiny_target), attack="pggan", queries=48, attack_kimg=0.032, attack_width=8,
                          batch=8, fid_n=8, real=real, real_count=16, target_discriminator=True,
                          finetune_kimg=0.016, eval_data=real, curve_n=4, out=str(tmp_path / "one"), progress=False)
    one = run_extract(opts)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "faststeal", "extract", "--target", str(tiny_target), "--attack", "pggan", "--queries", "48",
           "--attack-kimg", "0.032",
           "--attack-width", "8", "--batch", "8", "--fid-n", "8", "--real", real, "--real-count", "16",
           "--target-discriminator", "--finetune-kimg", "0.016", "--eval-data", real, "--curve-n", "4",
           "--out", str(tmp_path / "two")]
    env = dict(os.environ, OMP_NUM_THREADS="1", FASTSTEAL_CACHE=str(tmp_path / "cache2"))
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("report:") == 1                      # rank 1 is silent
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert json.loads((tmp_path / "two" / "queries" / "meta.json").read_text())["count"] == 48
    assert [v["variant"] for v in two["variants"]] == [v["variant"] for v in one["variants"]]
    assert [p["images_seen"] for p in two["curve"]] == [p["images_seen"] for p in one["curve"]]
    for a, b in zip(two["variants"], one["variants"]):
        assert a["fidelity"] == pytest.approx(b["fidelity"], rel=1e-3)
        assert a["accuracy"] == pytest.approx(b["accuracy"], rel=1e-3)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_chosen_latent_extraction_records_its_curve(tiny_target, tmp_path):
    np.save(tmp_path / "real.npy", np.random.default_rng(0).integers(0, 256, (64, 8, 8), dtype=np.uint8))
    opts = ExtractOptions(target=str(tiny_target), attack="fast", knowledge="latents", queries=48,
                          attack_kimg=0.032, attack_width=8, batch=8, fid_n=16, curve_n=8, curve_points=2,
                          eval_data=str(tmp_path / "real.npy"), out=str(tmp_path / "run"), progress=False)
    m = run_extract(opts)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for key in ("knowledge", "fid_floor", "train_seconds", "curve", "curve_reference"):
        assert key in saved, key
    assert saved["knowledge"] == "latents" and saved["fid_floor"] >= 0 and saved["train_seconds"] > 0
    seen = [p["images_seen"] for p in m["curve"]]
    assert seen == sorted(seen) and seen[0] == 0 and seen[-1] >= 32 and len(seen) >= 3
    assert all("paired_l1" in p for p in m["curve"][1:])
    assert all(p["held_out_l1"] >= 0 for p in m["curve"])         # codes it never bought, from the start
    assert "codes never bought" in (tmp_path / "run" / "report.md").read_text()
    for p in m["curve"]:      # every probe point carries its bootstrap interval
        assert p["fidelity_fid_ci"][0] <= p["fidelity_fid_ci"][1] and p["fidelity_kid_ci"][0] <= p["fidelity_kid_ci"][1]
    assert (tmp_path / "run" / "curve.png").stat().st_size > 1000
    assert "FID floor" in (tmp_path / "run" / "report.md").read_text()
    assert saved["train_threads"] == pytest.approx(torch.get_num_threads())
    assert f"on {torch.get_num_threads():.1f} CPU threads on average" in (tmp_path / "run" / "report.md").read_text()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_rerun_with_other_attack_settings_never_reuses_the_old_attack(tiny_target, tmp_path):
    from faststeal.attack.thief import StaleCheckpoint

    base = dict(target=str(tiny_target), queries=32, attack_kimg=0.016, attack_width=8, attack_latent_dim=8,
                batch=8, fid_n=8, curve_n=0, out=str(tmp_path / "run"), progress=False)
    first = run_extract(ExtractOptions(attack="fast", **base))
    assert first["attack_settings"] == {"width": 8, "batch": 8, "lr": 0.002, "distill_lr": None, "lr_decay": 0.0,
                                        "r1_gamma": 0.1, "augment": "translation", "ada_target": 0.0, "ema_kimg": 5.0,
                                        "latent_dim": 8, "perceptual": 0.0, "perceptual_images": 0,
                                        "fresh_fakes": False, "precision": "float32"}
    for change in ({"attack": "pggan"}, {"attack": "fast", "attack_width": 16}, {"attack": "fast", "seed": 1},
                   {"r1_gamma": 1.0}, {"augment": "translation,color"}, {"attack_lr": 0.001}, {"lr_decay": 0.5},
                   {"ema_kimg": 2.0}, {"attack_precision": "bf16"}, {"ada_target": 0.6}):
        opts = ExtractOptions(**{**base, **change})
        with pytest.raises((StaleCheckpoint, Exception), match="trained with|holds queries"):
            run_extract(opts)
    # a perceptual term on 8x8 images is refused before anything is bought or trained
    from faststeal.errors import OptionError
    with pytest.raises(OptionError, match="at least 32x32"):
        run_extract(ExtractOptions(**{**base, "knowledge": "latents", "perceptual": 1.0, "out": str(tmp_path / "p")}))
    assert not (tmp_path / "p" / "queries").exists()
    with pytest.raises(OptionError, match="more than the thief's batch"):     # the batch is known once sized
        run_extract(ExtractOptions(**{**base, "knowledge": "latents", "perceptual": 1.0, "perceptual_images": 9,
                                      "out": str(tmp_path / "p")}))
    assert not (tmp_path / "p" / "queries").exists()
    # --fresh starts the run over with the new settings; a file the user keeps in the folder stays.
    (tmp_path / "run" / "notes.txt").write_text("mine")
    done = run_extract(ExtractOptions(**{**base, "attack": "pggan", "fresh": True}))
    assert done["attack"] == "pggan" and (tmp_path / "run" / "notes.txt").read_text() == "mine"
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["attack"] == "pggan"


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_time_budget_ends_the_attack_and_the_report_says_where(tiny_target, tmp_path):
    real = np.random.default_rng(0).integers(0, 256, (32, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "real.npy", real)
    opts = ExtractOptions(target=str(tiny_target), attack="sngan", queries=32, attack_kimg=1000.0, minutes=0.01,
                          attack_width=8, attack_latent_dim=8, batch=8, fid_n=8, curve_n=0,
                          eval_data=str(tmp_path / "real.npy"), out=str(tmp_path / "run"), progress=False)
    m = run_extract(opts)
    assert m["stopped"] == "minutes" and m["attack_kimg_reached"] < 1000 and m["train_seconds"] >= 0.6
    report = (tmp_path / "run" / "report.md").read_text()
    assert "stopped by the 0.01-minute budget" in report
    # the budget bounds the training steps; the report says where the rest of the wall time went
    stages = m["stage_seconds"]
    assert list(stages) == ["queries", "training with its probes and checkpoints", "final measurement", "pictures"]
    assert stages["training with its probes and checkpoints"] >= m["train_seconds"] - 0.1
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert sum(saved["stage_seconds"].values()) <= saved["wall_seconds"] + 0.5
    assert "This run's wall time by stage: queries " in report
