"""The security review's seven findings, each tried as an attacker would, on the real app (in-process)."""
import io
import json
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from starlette.testclient import TestClient

from faststeal.cli import main
from faststeal.serve.app import create_app
from faststeal.serve.ledger import Ledger
from faststeal.targets.oracle import TargetOracle

from .conftest import add_key

WATERMARK = "watermark:key=owner secret phrase,strength=6"


def _settings(target, db, **over) -> dict:
    return {"target": str(target), "db": str(db), "max_batch": 64, "max_body": 65536, "threads": 1,
            "accept_latents": True, "seed": None, "defense": None, **over}


def _client(target, db, **over) -> TestClient:
    return TestClient(create_app(_settings(target, db, **over)), raise_server_exceptions=False)


def _auth(token, **more) -> dict:
    return {"Authorization": f"Bearer {token}", **more}


def _npy(r) -> torch.Tensor:
    assert r.status_code == 200, r.text
    return torch.from_numpy(np.load(io.BytesIO(r.content), allow_pickle=False))


def _used(db, name) -> int:
    led = Ledger(db)
    try:
        return led.usage(name)["used"]
    finally:
        led.dispose()


# --- 1. replays after a settings change ------------------------------------------------------------------
def test_a_replay_under_other_serving_settings_is_refused_and_costs_nothing_new(tiny_target, tmp_path):
    db = tmp_path / "ledger.sqlite"
    token = add_key(db, "thief", 40)
    marked = _client(tiny_target, db, defense=WATERMARK, seed=0)
    first = {}
    for i in range(10):                                    # the whole budget, under the watermark
        first[i] = _npy(marked.post("/v1/images", json={"n": 4}, headers=_auth(token, **{"Idempotency-Key": f"q{i}"})))
    assert marked.post("/v1/images", json={"n": 1}, headers=_auth(token)).status_code == 402
    same = marked.post("/v1/images", json={"n": 4}, headers=_auth(token, **{"Idempotency-Key": "q3"}))
    assert same.headers["X-Replayed"] == "1" and torch.equal(_npy(same), first[3])     # same settings: the same
    # the owner restarts with another seed and no defense: old ids must not buy unmarked images
    plain = _client(tiny_target, db, seed=12345)
    for i in range(10):
        r = plain.post("/v1/images", json={"n": 4}, headers=_auth(token, **{"Idempotency-Key": f"q{i}"}))
        assert r.status_code == 409 and r.json()["error"]["code"] == "settings_changed", r.text
    for over in ({"defense": WATERMARK, "seed": 1}, {"defense": WATERMARK, "seed": 0, "prior": "uniform"},
                 {"defense": "watermark:key=another,strength=6", "seed": 0}, {"defense": WATERMARK, "seed": 0,
                                                                             "accept_latents": False}):
        r = _client(tiny_target, db, **over).post("/v1/images", json={"n": 4},
                                                  headers=_auth(token, **{"Idempotency-Key": "q0"}))
        assert r.status_code == 409 and r.json()["error"]["code"] == "settings_changed", (over, r.text)
    assert _used(db, "thief") == 40
    back = _client(tiny_target, db, defense=WATERMARK, seed=0)     # the first settings again: replays serve
    assert torch.equal(_npy(back.post("/v1/images", json={"n": 4}, headers=_auth(token, **{"Idempotency-Key": "q0"}))),
                       first[0])


# --- 2. the serving seed is secret, kept in the ledger, one stream per key ---------------------------------
def test_the_default_stream_is_secret_kept_across_restarts_and_per_key(tiny_target, tmp_path):
    db = tmp_path / "ledger.sqlite"
    a, b = add_key(db, "a", 100), add_key(db, "b", 100)
    server = _client(tiny_target, db)
    got_a = _npy(server.post("/v1/images", json={"n": 8}, headers=_auth(a, **{"Idempotency-Key": "x"})))
    got_b = _npy(server.post("/v1/images", json={"n": 8}, headers=_auth(b)))
    public = TargetOracle(tiny_target, budget=8, seed=0).query(8)
    assert not torch.equal(got_a, public)                   # not the stream of the old public default
    assert not torch.equal(got_a, got_b)                    # each key reads its own stream
    with sqlite3.connect(db) as conn:
        (secret,) = conn.execute("SELECT value FROM serving").fetchone()
    assert len(secret) == 64
    again = _client(tiny_target, db)                        # a restart keeps the stream: replays still match
    assert torch.equal(_npy(again.post("/v1/images", json={"n": 8}, headers=_auth(a, **{"Idempotency-Key": "x"}))),
                       got_a)
    nxt = _npy(again.post("/v1/images", json={"n": 4}, headers=_auth(a)))
    assert not torch.equal(nxt, got_a[:4])                  # and goes on from the key's position
    info = again.get("/v1/info", headers=_auth(a))
    assert secret not in info.text and "seed" not in info.json()


def test_an_explicit_seed_warns_that_the_stream_is_public(served):
    assert "an explicit seed makes the served code stream public" in Path(served.log).read_text()


# --- 3. secrets out of argv and logs --------------------------------------------------------------------
def test_ledger_errors_and_config_files_keep_the_password(tmp_path):
    url = "postgresql+psycopg://owner:Pa55word-SECRET@127.0.0.1:9/ledger"
    res = CliRunner().invoke(main, ["keys", "list", "--db", url])
    assert res.exit_code == 2 and "Pa55word-SECRET" not in res.output and "owner:REDACTED@" in res.output
    assert res.output.count("\n") <= 3 and "Traceback" not in res.output
    cfg = tmp_path / "serve.toml"
    cfg.write_text(f'db = "{url}"\n')
    cfg.chmod(0o644)
    res = CliRunner().invoke(main, ["serve", "--target", "builtin:pggan-fmnist32", "--config", str(cfg)])
    assert res.exit_code == 2 and "chmod 600" in res.output, res.output
    cfg.chmod(0o600)
    res = CliRunner().invoke(main, ["serve", "--target", "builtin:pggan-fmnist32", "--config", str(cfg)])
    assert res.exit_code == 2 and "Pa55word-SECRET" not in res.output and "REDACTED" in res.output, res.output


@pytest.mark.parametrize("text", [
    "watermark:key=owner secret phrase",
    "watermark:key=owner secret phrase,strength=6+noise:sigma=0.1",
    "watermark:key=first secret,second secret+noise:sigma=0.1",
    "--defense 'watermark:key=owner secret phrase'",
    'watermark:key="owner, secret phrase"',
])
def test_one_redaction_handles_spaces_quotes_and_sweeps(text):
    from faststeal.report import redact

    out = redact(text)
    assert "secret" not in out and "REDACTED" in out, out
    assert ("noise:sigma=0.1" in out) == ("noise" in text)


def test_a_swept_watermark_key_is_not_recorded_as_the_value():
    from faststeal.report import redacted_value

    assert redacted_value("watermark.key", "owner secret") == "REDACTED"
    assert redacted_value("noise.sigma", "0.1") == "0.1" and redacted_value(None, None) is None


# --- 4. /v1/info behind the key, the defense only when published -------------------------------------------
def test_info_needs_a_key_and_names_the_defense_only_when_published(tiny_target, tmp_path):
    db = tmp_path / "ledger.sqlite"
    token = add_key(db, "k", 0)
    hidden = _client(tiny_target, db, defense=WATERMARK)
    assert hidden.get("/v1/info").status_code == 401
    assert hidden.get("/v1/info", headers=_auth("k.wrong")).status_code == 401
    info = hidden.get("/v1/info", headers=_auth(token)).json()
    assert info["defense"] == "unpublished" and "watermark" not in json.dumps(info)
    shown = _client(tiny_target, db, defense=WATERMARK, publish_defense=True).get("/v1/info", headers=_auth(token))
    assert shown.json()["defense"] == "watermark:key=REDACTED,strength=6"
    assert "#" not in shown.text and "owner" not in shown.text            # no digest of the key, no key


# --- 5. every bad request a 4xx without exception text ---------------------------------------------------------
BAD = [  # (what, raw body, status, code, a word the message must hold)
    ("deep nesting", b'{"z": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 422, "too_deep", "nests"),
    ("a 400-digit integer in z", b'{"z": [[' + b"9" * 400 + b", 0, 0, 0, 0, 0, 0, 0]]}", 422, "not_finite", "z"),
    ("a 400-digit n", b'{"n": ' + b"9" * 400 + b"}", 422, "bad_n", "n must"),
    ("1e300 in z", b'{"z": [[1e300, 0, 0, 0, 0, 0, 0, 0]]}', 422, "not_finite", "float32"),
    ("-3.5e38 in z", b'{"z": [[-3.5e38, 0, 0, 0, 0, 0, 0, 0]]}', 422, "not_finite", "float32"),
    ("NaN as n", b'{"n": NaN}', 422, "bad_n", "n must"),
    ("Infinity as a seed", b'{"seeds": [Infinity]}', 422, "bad_seeds", "seeds"),
    ("not UTF-8", b'{"n": "\xff"}', 400, "malformed_json", "JSON"),
]


@pytest.mark.parametrize("what,raw,status,code,word", BAD, ids=[b[0] for b in BAD])
def test_hostile_bodies_get_a_4xx_and_nothing_is_charged(tiny_target, tmp_path, what, raw, status, code, word):
    db = tmp_path / "ledger.sqlite"
    token = add_key(db, "k", 10)
    app = _client(tiny_target, db, max_body=1 << 20)
    r = app.post("/v1/images", content=raw, headers=_auth(token))
    assert r.status_code == status and r.json()["error"]["code"] == code, r.text
    assert word in r.json()["error"]["message"] and "Error" not in r.text
    assert _used(db, "k") == 0


def test_a_locked_ledger_answers_503_with_retry_after_and_charges_nothing(tiny_target, tmp_path):
    db = tmp_path / "ledger.sqlite"
    token = add_key(db, "k", 10)
    app = _client(tiny_target, db, busy_s=0.3, seed=0)
    lock = sqlite3.connect(db, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")                        # another writer holds the ledger
    try:
        tick = time.monotonic()
        r = app.post("/v1/images", json={"n": 2}, headers=_auth(token))
        assert r.status_code == 503 and r.json()["error"]["code"] == "ledger_busy", r.text
        assert int(r.headers["Retry-After"]) >= 1 and time.monotonic() - tick < 5 and "SQL" not in r.text
        assert app.get("/v1/usage", headers=_auth(token)).status_code == 200     # reads go on meanwhile
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert _used(db, "k") == 0
    assert app.post("/v1/images", json={"n": 2}, headers=_auth(token)).status_code == 200


def test_a_failure_inside_is_logged_with_an_incident_id_and_the_client_sees_only_the_id(tmp_path, caplog):
    target = f"py:{Path(__file__).parent / 'fragile_generator.py'}:make_fragile"
    db = tmp_path / "ledger.sqlite"
    token = add_key(db, "k", 10)
    app = _client(target, db, hints={"latent_dim": 8}, seed=0)
    with caplog.at_level("ERROR", logger="faststeal.serve"):
        r = app.post("/v1/images", json={"z": [[5000.0] + [0.0] * 7]}, headers=_auth(token))
    assert r.status_code == 500 and r.json()["error"]["code"] == "generation_failed"
    assert "secret" not in r.text and "RuntimeError" not in r.text
    incident = r.json()["error"]["message"].rsplit("incident ", 1)[1].split()[0]
    assert incident in caplog.text and "RuntimeError" in caplog.text       # the owner can find it
    assert _used(db, "k") == 0                                             # refunded
    assert app.post("/v1/images", json={"n": 2}, headers=_auth(token)).status_code == 200


# --- 6. denial of service ---------------------------------------------------------------------------------------
def test_authentication_never_waits_for_the_write_lock(tiny_target, tmp_path):
    db = tmp_path / "ledger.sqlite"
    token = add_key(db, "k", 10)
    app = _client(tiny_target, db, busy_s=3.0, seed=0)
    lock = sqlite3.connect(db, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        tick = time.monotonic()
        assert app.get("/v1/info", headers=_auth(token)).status_code == 200
        assert app.get("/v1/usage", headers=_auth("k.wrong")).status_code == 401
        assert app.post("/v1/images", json={"n": 20}, headers=_auth(token)).status_code == 402   # refused: a read
        assert time.monotonic() - tick < 1.5
    finally:
        lock.execute("ROLLBACK")
        lock.close()


def test_the_rate_limit_comes_before_the_body_and_refusals_are_aggregated(tiny_target, tmp_path):
    db = tmp_path / "ledger.sqlite"
    token = add_key(db, "slow", 100, rate=0.01)
    with _client(tiny_target, db, seed=0) as app:         # leaving it shuts the app down: counts written
        assert app.post("/v1/images", json={"n": 1}, headers=_auth(token)).status_code == 200
        for _ in range(50):                                # not even parsed: the key is over its rate
            r = app.post("/v1/images", content=b'{"n": ' + b"[" * 1000, headers=_auth(token))
            assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
        strangers = [app.get("/v1/usage", headers=_auth(f"nobody{i}.x")).status_code for i in range(40)]
        assert 429 in strangers and strangers[0] == 401    # unknown keys: limited per client address
    led = Ledger(db)
    refused = [r for r in led.audit_rows("slow") if r["outcome"] == "refused"]
    led.dispose()
    assert len(refused) <= 2 and sum(r["requests"] for r in refused) == 50   # one row per minute, counted


# --- 7. keys add checks its numbers before any secret exists ---------------------------------------------------------
@pytest.mark.parametrize("args,message", [
    (["--budget", "1", "--rate", "nan"], "--rate: rate must be >= 0"),
    (["--budget", "1", "--rate", "inf"], "--rate: rate must be >= 0"),
    (["--budget", "1", "--rate", "-1"], "--rate: rate must be >= 0"),
    (["--budget", "99999999999999999999"], "--budget: budget must be >= 0 and <= 2**62"),
])
def test_keys_add_refuses_bad_numbers_in_one_line(tmp_path, args, message):
    db = tmp_path / "ledger.sqlite"
    res = CliRunner().invoke(main, ["keys", "add", "k", *args, "--db", str(db)])
    assert res.exit_code == 2 and message in res.output, res.output
    assert "Traceback" not in res.output and res.exception is None or isinstance(res.exception, SystemExit)
    led = Ledger(db)
    assert led.list_keys() == []
    led.dispose()
