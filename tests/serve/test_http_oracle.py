"""The thief over HTTP: query sets equal the in-process oracle's, and crashes on either side lose nothing."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch
from click.testing import CliRunner

from faststeal.attack import queryset
from faststeal.cli import main
from faststeal.defense import parse_pipeline
from faststeal.serve.ledger import Ledger
from faststeal.targets.http import HttpOracle
from faststeal.targets.oracle import TargetOracle

from .conftest import DEFENSE, Server, add_key, same_query_set


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_extract_over_http_buys_the_same_query_set_as_the_in_process_oracle(served, tiny_target, tmp_path,
                                                                          monkeypatch):
    token = add_key(served.db, "thief", 48)
    monkeypatch.setenv("FASTSTEAL_API_KEY", "")          # restored afterwards: the CLI sets it from --api-key
    res = CliRunner().invoke(main, ["extract", "--target", served.url, "--api-key", token, "--queries", "48",
                                    "--attack-kimg", "0.016", "--attack-width", "8", "--batch", "8", "--fid-n",
                                    "16", "--curve-n", "0", "--threads", "1", "--query-set", str(tmp_path / "http"),
                                    "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert "accuracy n/a" in res.output and "FID floor n/a" in res.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["fidelity"] > 0 and metrics["accuracy"] is None
    assert token not in (tmp_path / "run" / "config.json").read_text()
    local = TargetOracle(tiny_target, budget=48, seed=0, **parse_pipeline(DEFENSE, seed=0).oracle_hooks())
    queryset.collect(local, tmp_path / "local", 48, target=served.url, progress=False)
    same_query_set(tmp_path / "http", tmp_path / "local")
    assert HttpOracle(served.url, token).remaining == 0


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_sweep_over_http_needs_only_the_url(served, tmp_path, monkeypatch):
    from faststeal.runs.options import ExtractOptions
    from faststeal.runs.sweep import run_sweep
    from faststeal.targets import open_target

    # the key is given to the target once; nothing in the library reads it from the environment
    target = open_target(served.url, api_key=add_key(served.db, "sweeper", 32))
    opts = ExtractOptions(target=served.url, attack="sngan", queries=32, attack_kimg=0.016, attack_width=8,
                          attack_latent_dim=8, batch=8, fid_n=16, out=str(tmp_path / "run"), progress=False)
    m = run_sweep(opts, [32], target=target)
    assert [r["queries"] for r in m["sweep"]] == [32] and m["sweep"][0]["fidelity"] > 0
    assert m["target_fid"] is None and m["fid_floor"] is None


def test_chosen_codes_over_http_give_the_same_query_set(served, tiny_target, tmp_path):
    token = add_key(served.db, "chooser", 700)
    remote = HttpOracle(served.url, token, seed=3)
    queryset.collect(remote, tmp_path / "http", 700, chunk_size=300, target="t", progress=False,
                     knowledge="latents")                 # 300-image chunks go as 256 + 44
    local = TargetOracle(tiny_target, budget=700, seed=3, **parse_pipeline(DEFENSE, seed=0).oracle_hooks())
    queryset.collect(local, tmp_path / "local", 700, chunk_size=300, target="t", progress=False,
                     knowledge="latents")
    same_query_set(tmp_path / "http", tmp_path / "local")
    assert remote.served == 700


def test_kill_9_the_server_under_load_then_restart_ledger_equals_images_received(tiny_target, tmp_path):
    db = tmp_path / "ledger.sqlite"
    token = add_key(db, "load", 10_000)
    server = Server(tiny_target, db, log=tmp_path / "server.log").start()
    received, errors, lock = {}, [], threading.Lock()

    def client(t):
        oracle = HttpOracle(server.url, token, retry_for=120)
        for i in range(25):
            try:
                images = oracle.query(8, request_id=f"c{t}-{i}")       # a retry after the crash: same id
            except Exception as exc:
                errors.append(repr(exc))
                return
            with lock:
                received[f"c{t}-{i}"] = images.shape[0]

    try:
        threads = [threading.Thread(target=client, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(received) < 30 and not errors and time.monotonic() < deadline:
            time.sleep(0.01)
        server.kill9()
        killed_at = len(received)
        server.start()
        for t in threads:
            t.join()
    finally:
        server.stop()
    assert not errors, errors[:3]
    assert killed_at < 200 and len(received) == 200 and sum(received.values()) == 1600
    ledger = Ledger(db)
    assert ledger.usage("load")["used"] == 1600                        # charged == received, nothing twice
    charged = [r["request_id"] for r in ledger.audit_rows("load") if r["outcome"] == "charged"]
    assert sorted(charged) == sorted(received)
    ledger.dispose()


def _outcomes(ledger, name, request_id) -> list[str]:
    return [r["outcome"] for r in ledger.audit_rows(name) if r["request_id"] == request_id]


def _await_charge(ledger, name, request_id, timeout=60.0) -> None:
    deadline = time.monotonic() + timeout
    while "charged" not in _outcomes(ledger, name, request_id):
        assert time.monotonic() < deadline, "the request was never charged"
        time.sleep(0.005)


def test_kill_9_while_a_request_is_generating_then_its_retry_delivers_it_once(tiny_target, tmp_path):
    """The kill lands provably mid-generation: the request is charged, the server has not marked it served
    (which it does before sending a byte of the answer) and the client holds nothing. JPEG on 20,000 images
    keeps the one worker busy for seconds. After a restart the client's retry of the same id is answered
    from the ledger's record: the same images, once, charged once."""
    n, spec, db = 20_000, "jpeg:quality=50", tmp_path / "ledger.sqlite"
    token = add_key(db, "inflight", n)
    server = Server(tiny_target, db, defense=spec, latents=False, max_batch=n, log=tmp_path / "server.log").start()
    got, errors = [], []

    def client():
        try:
            got.append(HttpOracle(server.url, token, retry_for=120).query(n, request_id="big-1"))
        except Exception as exc:
            errors.append(repr(exc))

    ledger = Ledger(db)
    thread = threading.Thread(target=client)
    try:
        thread.start()
        _await_charge(ledger, "inflight", "big-1")
        server.kill9()
        assert _outcomes(ledger, "inflight", "big-1") == ["charged"] and not got    # killed while generating
        server.start()
        thread.join(timeout=120)
    finally:
        server.stop()
    assert not errors and not thread.is_alive(), errors
    assert len(got) == 1 and got[0].shape == (n, 1, 8, 8)                    # received exactly once
    local = TargetOracle(tiny_target, budget=n, seed=0, **parse_pipeline(spec, seed=0).oracle_hooks())
    assert torch.equal(got[0], local.query(n))                               # the replay regenerated them
    assert ledger.usage("inflight")["used"] == n                              # charged == received
    assert _outcomes(ledger, "inflight", "big-1") == ["charged", "replayed", "served"]   # nothing twice
    ledger.dispose()


CLIENT = """
import sys
from faststeal.attack import queryset
from faststeal.targets.http import HttpOracle
url, token, folder = sys.argv[1:4]
queryset.collect(HttpOracle(url, token, seed=0), folder, 3000, chunk_size=100, target=url, progress=False)
"""


def test_a_killed_client_resumes_its_query_set_with_nothing_lost_or_paid_twice(tiny_target, tmp_path):
    db = tmp_path / "ledger.sqlite"
    token = add_key(db, "resume", 3000, rate=10.0)            # slow enough to be killed mid-collection
    server = Server(tiny_target, db, log=tmp_path / "server.log").start()
    folder = tmp_path / "http"
    try:
        proc = subprocess.Popen([sys.executable, "-c", CLIENT, server.url, token, str(folder)],
                                env=dict(os.environ, OMP_NUM_THREADS="1"), start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            meta = queryset.read_meta(folder) if (folder / "meta.json").exists() else None
            if meta and meta["count"] >= 500:
                break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at = queryset.read_meta(folder)["count"]
        assert 500 <= killed_at < 3000
        remote = HttpOracle(server.url, token, seed=0)
        queryset.collect(remote, folder, 3000, chunk_size=100, target=server.url, progress=False)
        assert remote.served == 3000                            # 0 paid twice (the budget is exactly 3000)
    finally:
        server.stop()
    local = TargetOracle(tiny_target, budget=3000, seed=0)
    queryset.collect(local, tmp_path / "local", 3000, chunk_size=100, target=server.url, progress=False)
    same_query_set(folder, tmp_path / "local")                       # 0 lost, every position in place
    assert torch.equal(queryset.load(folder).images, queryset.load(tmp_path / "local").images)
