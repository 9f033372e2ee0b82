import json

import numpy as np
import pytest

from faststeal.checkpoint import load_checkpoint
from faststeal.runs.defend import run_defend, slug
from faststeal.runs.options import DefendOptions


def test_slug_is_file_safe():
    assert slug("region:shape=ball,keep=0.5+jpeg:quality=70") == "region-shapeball-keep0.5-jpeg-quality70"
    assert slug("none") == "none"


def test_run_defend_refuses_bad_options(tiny_target, tmp_path):
    with pytest.raises(ValueError, match="at least one --defense"):
        run_defend(DefendOptions(target=str(tiny_target), out=str(tmp_path / "r")))
    with pytest.raises(ValueError, match="given twice"):
        run_defend(DefendOptions(target=str(tiny_target), defenses=["noise:sigma=0.1", "noise:sigma=0.1"],
                                 out=str(tmp_path / "r")))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_end_to_end_defend_writes_the_trade_off(tiny_target, tmp_path):
    real = np.random.default_rng(0).integers(0, 256, (64, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "real.npy", real)
    opts = DefendOptions(target=str(tiny_target), defenses=["region:keep=0.3+noise:sigma=0.3"],
                         attack="sngan", queries=48, attack_kimg=0.016, attack_width=8, attack_latent_dim=8,
                         batch=8, fid_n=16, eval_data=str(tmp_path / "real.npy"), out=str(tmp_path / "run"),
                         progress=False)
    metrics = run_defend(opts)
    run = tmp_path / "run"
    saved = json.loads((run / "metrics.json").read_text())
    specs = [s["defense"] for s in saved["settings"]]
    assert specs == ["none", "region:keep=0.3+noise:sigma=0.3"]
    for s in saved["settings"]:
        for key in ("defense", "utility", "fidelity", "accuracy"):
            assert key in s and s[key] is not None
        assert s["utility"] > 0 and s["fidelity"] > 0
        assert (run / s["queries_dir"] / "meta.json").exists() and (run / s["attack_checkpoint"]).exists()
        assert json.loads((run / s["queries_dir"] / "meta.json").read_text())["count"] == 48
    assert saved["baseline"]["defense"] == "none" and saved["settings"][0]["utility_change"] == 0
    # the served distribution really differs from the undefended one
    assert saved["settings"][1]["served_vs_target"] > saved["settings"][0]["served_vs_target"]
    assert saved["settings"][0]["changed_pixels"] == 0 and saved["settings"][1]["changed_pixels"] > 0.5
    for name in ("config.json", "report.md", "tradeoff-fidelity.png", "tradeoff-accuracy.png",
                 "samples-none.png", "samples-region-keep0.3-noise-sigma0.3.png"):
        assert (run / name).exists(), name
    assert "utility" in (run / "report.md").read_text()
    # where the wall time went, both settings' buying, training and measuring added up
    assert list(saved["stage_seconds"]) == ["checks before buying", "queries", "training", "measurement",
                                            "comparison and pictures"]
    assert sum(saved["stage_seconds"].values()) <= saved["wall_seconds"] + 0.5
    assert "wall time by stage (every setting together): checks before buying " in (run / "report.md").read_text()
    # each attack was trained on its own setting's served images
    fingerprint = load_checkpoint(run / saved["settings"][1]["attack_checkpoint"])["data_fingerprint"]
    assert fingerprint.endswith("defense:region:keep=0.3+noise:sigma=0.3")
    assert metrics["settings"][1]["family"] == "region:keep=0.3+noise:sigma=0.3"
    # a rerun reuses every query set, attack and measurement instead of paying again
    stamps = {p.name: p.stat().st_mtime_ns for p in run.glob("attack-*.pt")}
    again = run_defend(opts)
    assert {p.name: p.stat().st_mtime_ns for p in run.glob("attack-*.pt")} == stamps
    assert again["settings"][1]["fidelity"] == metrics["settings"][1]["fidelity"]
    assert list(again["stage_seconds"]) == ["checks before buying", "stored rows read", "comparison and pictures"]
    # a changed option is not served from the stored rows: the query set no longer matches and is refused
    with pytest.raises(Exception, match="queries"):
        run_defend(DefendOptions(**{**opts.__dict__, "seed": 1}))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_defense_that_changes_nothing_is_called_out(tiny_target, tmp_path):
    """The tiny target is a PGGAN: it pixel-normalises z, so scaling codes (truncate psi) serves the same
    images. The report must say so rather than present training noise as a defense."""
    opts = DefendOptions(target=str(tiny_target), defenses=["truncate:psi=0.5"], attack="pggan", queries=32,
                         attack_kimg=0.008, attack_width=8, attack_latent_dim=8, batch=8, fid_n=16,
                         eval_data=None, out=str(tmp_path / "run"), progress=False)
    np.save(tmp_path / "real.npy", np.random.default_rng(0).integers(0, 256, (64, 8, 8), dtype=np.uint8))
    opts.eval_data = str(tmp_path / "real.npy")
    metrics = run_defend(opts)
    assert metrics["settings"][1]["changed_pixels"] < 1e-3
    assert "No effect on this target" in (tmp_path / "run" / "report.md").read_text()



def test_a_stored_row_is_keyed_by_the_thiefs_knobs_when_they_are_set():
    from types import SimpleNamespace

    from faststeal.runs.defend_rows import _result_key
    from faststeal.runs.options import DefendOptions

    def key(**kw):
        opts = DefendOptions(target="t.pt", defenses=["noise:sigma=0.1"], **kw)
        opts.sized_for(32)
        return _result_key(SimpleNamespace(opts=opts, ident={"target_sha256": "x"}), "none")

    default = key()
    assert "attack_lr" not in default and "minutes" not in default      # rows stored before still match
    for changed in (key(attack_lr=1e-3), key(augment="none"), key(attack_precision="bf16"), key(minutes=5.0),
                    key(ema_kimg=2.0), key(lr_decay=0.9), key(knowledge="latents", distill_lr=1e-3)):
        assert changed != default
    # the chosen-latent thief's schedule and its perceptual term's sample
    assert key(knowledge="latents", distill_only=0.5) != key(knowledge="latents")
    assert key(knowledge="latents", fresh_fakes=True) != key(knowledge="latents")
    assert key(knowledge="latents", fresh_fakes=False) == key(knowledge="latents")    # the default, said aloud
    assert key(knowledge="latents", perceptual=1.0, perceptual_images=4) != key(knowledge="latents", perceptual=1.0)
    # the paired phase's rate the default 64x64 thief takes with chosen latents keys its rows apart from those
    # stored when that phase ran at the attack's rate
    latents = DefendOptions(target="t.pt", defenses=["noise:sigma=0.1"], knowledge="latents")
    latents.sized_for(64, "pggan")
    assert _result_key(SimpleNamespace(opts=latents, ident={"target_sha256": "x"}), "none")["distill_lr"] == 4e-3
