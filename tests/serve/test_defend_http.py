"""`faststeal defend --target URL`: the owner measures the defense its server runs, against an undefended baseline."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from faststeal.attack import queryset
from faststeal.cli import main
from faststeal.defense import parse_pipeline
from faststeal.targets.http import HttpOracle
from faststeal.targets.oracle import TargetOracle

from .conftest import DEFENSE, Server, add_key, same_query_set

SIZES = ["--queries", "48", "--attack", "sngan", "--attack-kimg", "0.016", "--attack-width", "8", "--batch", "8",
         "--fid-n", "16", "--threads", "1"]


@pytest.fixture
def keys_env(monkeypatch):
    """The CLI exports the keys it is given; put the environment back afterwards."""
    monkeypatch.setenv("FASTSTEAL_API_KEY", "")
    monkeypatch.setenv("FASTSTEAL_BASELINE_API_KEY", "")


def _real(tmp_path):
    path = tmp_path / "real.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, (64, 8, 8), dtype=np.uint8))
    return str(path)


def _defend(*args):
    return CliRunner().invoke(main, ["defend", *args])


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_defend_over_http_measures_the_served_defense_against_the_checkpoint(served, tiny_target, tmp_path,
                                                                           keys_env, monkeypatch):
    token = add_key(served.db, "owner", 48)
    args = ["--target", served.url, "--api-key", token, "--baseline", str(tiny_target), "--eval-data",
            _real(tmp_path), *SIZES, "--out", str(tmp_path / "run")]
    monkeypatch.setattr("sys.argv", ["faststeal", "defend", *args])    # as run from a shell: argv is recorded
    res = _defend(*args)
    assert res.exit_code == 0, res.output
    spec = parse_pipeline(DEFENSE).spec()
    assert f"server's defense: {spec}" in res.output
    run = tmp_path / "run"
    m = json.loads((run / "metrics.json").read_text())
    assert m["served_defense"] == spec and m["baseline_source"] == str(tiny_target)
    assert [r["defense"] for r in m["settings"]] == ["none", spec]
    for r in m["settings"]:
        for key in ("utility", "fidelity", "accuracy", "attack_vs_served"):
            assert r[key] is not None and r[key] > 0, (r["defense"], key)
        assert r["changed_pixels"] is None                     # the server's codes are its secret
    base, guarded = m["settings"]
    assert guarded["served_vs_target"] > base["served_vs_target"] >= 0     # the defense changed what is served
    assert m["settings"][1]["fidelity_change"] is not None and m["baseline"]["defense"] == "none"
    secret = token.split(".", 1)[1]
    assert spec in (run / "report.md").read_text() and "--api-key REDACTED" in (run / "report.md").read_text()
    assert secret not in (run / "config.json").read_text() and secret not in (run / "report.md").read_text()
    for name in ("tradeoff-fidelity.png", "samples-served.png", "samples-baseline.png"):
        assert (run / name).exists(), name
    # the served row trained on what the server sent: its defended stream, byte for byte
    local = TargetOracle(tiny_target, budget=48, seed=0, **parse_pipeline(DEFENSE, seed=0).oracle_hooks())
    queryset.collect(local, tmp_path / "local", 48, target=served.url, progress=False)
    same_query_set(run / "queries-served", tmp_path / "local")
    assert HttpOracle(served.url, token).served == 48
    # a rerun reuses every row; the key, now spent, is not charged again
    stamps = {p.name: p.stat().st_mtime_ns for p in run.glob("attack-*.pt")}
    again = _defend(*args)
    assert again.exit_code == 0, again.output
    assert {p.name: p.stat().st_mtime_ns for p in run.glob("attack-*.pt")} == stamps
    assert HttpOracle(served.url, token).served == 48


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_defend_against_a_baseline_server_and_without_any_baseline(served, tiny_target, tmp_path):
    from faststeal.runs.defend import run_defend
    from faststeal.runs.options import DefendOptions
    from faststeal.targets import open_target

    plain = Server(tiny_target, tmp_path / "plain.sqlite", latents=False, log=tmp_path / "plain.log").start()
    try:
        # each key is given to its target once; nothing in the library reads keys from the environment
        server = open_target(served.url, api_key=add_key(served.db, "owner2", 96))
        baseline = open_target(plain.url, api_key=add_key(tmp_path / "plain.sqlite", "owner", 48))
        opts = dict(target=served.url, attack="sngan", queries=48, attack_kimg=0.016, attack_width=8,
                    attack_latent_dim=8, batch=8, fid_n=16, progress=False)
        m = run_defend(DefendOptions(**opts, baseline=plain.url, out=str(tmp_path / "vs-server")), target=server,
                       baseline=baseline)
        assert [r["defense"] for r in m["settings"]] == ["none", parse_pipeline(DEFENSE).spec()]
        assert all(r["fidelity"] is not None and r["utility"] is None for r in m["settings"])
        # no baseline: one row; fidelity n/a with its reason, the copy's distance to what it bought measured
        lone = run_defend(DefendOptions(**opts, out=str(tmp_path / "alone")), target=server)
    finally:
        plain.stop()
    (row,) = lone["settings"]
    assert lone["baseline"] is None and row["fidelity"] is None and row["attack_vs_served"] > 0
    assert "--baseline" in row["target_note"] and "--eval-data" in row["real_note"]
    assert "No fidelity" in (tmp_path / "alone" / "report.md").read_text()


def test_defend_over_http_refuses_bad_options_before_buying_anything(served, tiny_target, tmp_path, keys_env):
    from faststeal.checkpoint import save_checkpoint
    from faststeal.models import build_discriminator, build_generator

    token = add_key(served.db, "careful", 48)
    small = add_key(served.db, "poor", 10)
    wide = tmp_path / "wide.pt"
    save_checkpoint({"config": dict(arch="pggan", resolution=16, channels=1, latent_dim=8, width=8, data_source=None),
                     "G_ema": build_generator("pggan", 16, 1, 8, 8).state_dict(),
                     "D": build_discriminator("pggan", 16, 1, 8).state_dict(), "progress": {"kimg": 0}}, wide)
    url = served.url
    cases = [
        (["--target", url, "--api-key", token, "--defense", "noise:sigma=0.1"], "set on the server"),
        (["--target", str(tiny_target), "--defense", "noise:sigma=0.1", "--baseline", str(tiny_target)],
         "only with an http:// --target"),
        (["--target", str(tiny_target)], "give at least one --defense"),
        (["--target", url, "--api-key", token, "--baseline", url], "--baseline-api-key"),
        (["--target", url, "--api-key", token, "--baseline", str(tiny_target), "--baseline-api-key", "x.y"],
         "only for an http:// --baseline"),
        (["--target", url, "--api-key", token, "--baseline", str(wide)], "not the same model"),
        (["--target", url, "--api-key", token, "--baseline", url, "--baseline-api-key", "nobody.x"],
         "unknown API key"),
        (["--target", url, "--api-key", "nobody.x"], "unknown API key"),
        (["--target", url, "--api-key", small, "--baseline", str(tiny_target)], "10 images left"),
    ]
    for i, (args, message) in enumerate(cases):
        res = _defend(*args, *SIZES, "--out", str(tmp_path / f"r{i}"))
        assert res.exit_code == 2 and message in res.output, (args, res.output)
        assert res.output.count("error:") == 1 and "Traceback" not in res.output, res.output
        assert not list((tmp_path / f"r{i}").glob("queries-*/chunk-*")), args
    assert HttpOracle(url, token).served == 0 and HttpOracle(url, small).served == 0
